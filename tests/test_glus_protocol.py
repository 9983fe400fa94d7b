"""GLUS's own video inference (:mod:`sparrow.model.glus_protocol`) against the official ``inference_iter.py``.

``tests/fixtures/released/make_glus_fixture.py --video`` ran the official script (fp32, transformers 4.31) with the
tiny ``glus/`` release, a 56-pixel CLIP tower (``glus-video-clip/``: 4 tokens per image, so GLUS's
``image_features_num`` bookkeeping is exercised) and its ``[SEG]`` row of ``lm_head`` scaled by ``seg_row_scale`` so
that some turns answer ``[SEG]`` and some do not, on a 10-frame video; it recorded every turn's prompt ids, new id and
last-position logits, the mask logits of the turns with ``[SEG]`` and the PNG masks it wrote.

Tolerances: ids and ``[SEG]`` outcomes are exact. Logits are float32 sums over the same weights in another order:
the LLM's last-position logits over prompts of up to 383 positions (transformers 4.31's LLaMA against the installed
one) within 3e-5 (measured 7.0e-6; the fixture's smallest top-2 margin is 2.2e-3, so the ids cannot flip); SAM2's
memory-conditioned mask logits within 1e-6 (measured 8.6e-8). A binary mask may differ only where the official logit
is within that bound of the 0 threshold (measured: no pixel differs).
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sparrow.convert import ConvertOptions, convert
from sparrow.model import glus_protocol as gp
from sparrow.model.frames import to_float

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(__file__).parent / "fixtures" / "released"
RECORD = json.loads((FIXTURES / "glus_video_outputs.json").read_text())
LLM_TOL = 3e-5
MASK_TOL = 1e-6


@pytest.fixture(scope="module")
def official() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(FIXTURES / "glus_video_outputs.safetensors"))


@pytest.fixture(scope="module")
def model():
    converted = convert(
        ConvertOptions(
            release="glus",
            src=FIXTURES / "glus",
            clip=FIXTURES / "glus-video-clip",
            tokenizer=FIXTURES / "glus-tokenizer-fast",
            sam_config=FIXTURES / "sam2_tiny.yaml",
            dtype="float32",
        )
    )
    m = converted.model.eval()
    with torch.no_grad():
        m.llm.model.lm_head.weight[m.seg_token_id] *= RECORD["seg_row_scale"]
    return m


@pytest.fixture(scope="module")
def run(model, official):
    frames = to_float(official["video"].numpy())
    return gp.run_video(model, frames, gp.glus_phrase(RECORD["phrase"]))


def test_settings_are_the_official_defaults():
    s = gp.GlusSettings()
    assert (s.context_frames, s.question_frames, s.mem_stride, s.num_maskmem) == (
        RECORD["context_frame_num"],
        RECORD["question_frame_num"],
        RECORD["mem_stride"],
        RECORD["num_maskmem"],
    )


def test_memory_frames_follow_the_stride_grid():
    # frame 10, stride 3: grid (10 - 2) // 3 * 3 = 6, then 6 - 3k for the older slots, and the previous frame last
    assert gp.memory_frames(10, 7, 3) == [0, 3, 6, 9]
    assert gp.memory_frames(20, 7, 3) == [3, 6, 9, 12, 15, 18, 19]
    assert gp.memory_frames(1, 7, 3) == [0]
    assert gp.memory_frames(0, 7, 3) == []


def test_phrase_rule_removes_one_trailing_dot_and_lower_cases():
    assert gp.glus_phrase("The Red square..") == "the red square."
    assert gp.glus_phrase("a cat") == "a cat"


def test_prompts_and_new_ids_match_official(run):
    turns = RECORD["turns"]
    assert len(run.turns) == len(turns)
    for k, (mine, ref) in enumerate(zip(run.turns, turns)):
        assert mine.input_ids == ref["input_ids"], f"turn {k}: prompt ids differ"
        assert mine.new_id == ref["new_id"], f"turn {k}"
        assert (mine.mask_logits is not None) == ref["seg"], f"turn {k}"
    outcomes = {ref["seg"] for ref in turns}
    assert outcomes == {True, False}  # both branches (mask, and empty mask with the filled-in answer) are covered


def test_both_slow_tokenizer_modes_match_official(model):
    """The run above is in the legacy mode (GLUS's default); the other mode drops the SentencePiece prefix after an
    added token."""
    for text, ids in zip(RECORD["prompts"], RECORD["non_legacy_ids"]):
        assert gp.tokenize_with_images(model.tokenizer, text, legacy=False) == ids
    first = RECORD["turns"][0]["input_ids"]
    assert gp.tokenize_with_images(model.tokenizer, RECORD["prompts"][0], legacy=True) == first
    assert RECORD["non_legacy_ids"][0] != first


def test_llm_logits_match_official(run, official):
    logits = torch.stack([turn.logits for turn in run.turns])
    vocab = official["last_logits"].shape[-1]
    torch.testing.assert_close(logits[:, :vocab], official["last_logits"], atol=LLM_TOL, rtol=0)


def test_masks_and_mask_logits_match_official(run, official):
    ref = official["mask_logits"]
    found = torch.tensor([turn["seg"] for turn in RECORD["turns"]])
    mine = run.mask_logits(tuple(ref.shape[-2:]))
    torch.testing.assert_close(mine[found], ref[found], atol=MASK_TOL, rtol=0)
    masks = (mine > 0).numpy()
    expected = official["masks"].numpy().astype(bool)
    assert not masks[~found.numpy()].any() and not expected[~found.numpy()].any()
    differ = masks != expected
    assert np.all(ref.abs().numpy()[differ] <= MASK_TOL)


def test_host_view_runs_the_glus_loop_without_the_dual_prompt(model):
    from sparrow.model.inference import QuestionWindows, host_view

    video = SimpleNamespace(model=model, shape=(6, 56, 56), feats=None)
    assert isinstance(host_view(video), gp.GlusVideo)
    dual = SimpleNamespace(model=SimpleNamespace(cfg=model.cfg.replace(box=True)), shape=(6, 56, 56))
    assert isinstance(host_view(dual), QuestionWindows)
    other = SimpleNamespace(model=SimpleNamespace(cfg=model.cfg.replace(protocol="kit")), shape=(6, 56, 56))
    assert isinstance(host_view(other), QuestionWindows)


@pytest.mark.slow
def test_predict_runs_the_glus_loop(model, official):
    """``SparrowModel.predict`` under ``protocol == "glus"`` (no dual prompt) is this loop."""
    assert model.cfg.protocol == "glus" and not model.cfg.box
    video = official["video"].numpy()
    prediction = model.predict(video, RECORD["phrase"])
    expected = official["masks"].numpy().astype(bool)
    ref = official["mask_logits"].abs().numpy()
    assert np.all(ref[prediction.masks != expected] <= MASK_TOL)
    assert prediction.answer == model.tokenizer.decode([RECORD["turns"][0]["new_id"]]).strip()
