"""UniPixel's referring-VOS inference (``sparrow.model.unipixel_protocol``) on a converted UniPixel release equals the
official inference (``unipixel/eval/infer_seg.py``) on the same tiny released-layout folder and tiny video.

``tests/fixtures/released/make_unipixel_fixture.py --inference`` wrote ``unipixel_inference.*`` with the official code
under transformers 4.53 (float32, CPU): a 7-frame 42 x 60 video, 5 LLM frames (padded to 6, three temporal patches of
20 x 28 patches), the query "The red ball.", two greedy answer tokens. The tiny random model answers ``<|seg|>`` because
its (tied) embedding row was set along the last prompt state; the row is stored and set here too.

Tolerances: token ids, mrope positions and grids exact; the video patches exact up to 1e-6 (the same float32
operations; measured 0); the SAM2 input 1e-6 (measured 0); answer logits, ``seg_head`` prompts and SAM2 mask logits
1e-5 absolute (attention kernels of two transformers versions; measured 4.8e-7 on logits, 4.7e-9 on mask logits).
Binary masks are equal wherever the official logit is farther than that tolerance from the threshold 0 (measured: on
every pixel).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sparrow.model import unipixel_protocol as up

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(__file__).parent / "fixtures" / "released"
META = json.loads((FIXTURES / "unipixel_inference.json").read_text())
TOL = 1e-5


@pytest.fixture(scope="module")
def official() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(FIXTURES / "unipixel_inference.safetensors"))


@pytest.fixture(scope="module")
def model(official):
    from sparrow.convert import ConvertOptions, convert

    opts = ConvertOptions(
        release="unipixel",
        src=FIXTURES / "unipixel",
        sam_config=FIXTURES / "sam2.1_bplus_tiny.yaml",
        dtype="float32",
    )
    m = convert(opts).model.eval()
    m.cfg = m.cfg.replace(num_frames=META["sample_frames"])
    with torch.no_grad():
        for table in (m.llm.model.get_input_embeddings(), m.llm.model.get_output_embeddings()):
            table.weight[m.seg_token_id] = official["seg_row"]
    return m


@pytest.fixture(scope="module")
def run(model, official):
    with torch.no_grad():
        video = up.NativeVideo(model, official["video"].numpy())
        question = model.cfg.eval_prompt.format(phrase=up.query(META["query"]))
        logits, text, answer = video.segment(question, META["max_new_tokens"])
    return video, question, logits, text, answer


def test_native_applies_to_a_unipixel_release_only(model):
    assert model.cfg.protocol == "unipixel-native" and up.native(model.cfg)
    assert not up.native(model.cfg.replace(protocol="unipixel"))  # a kit-trained UniPixel host


def test_converted_tokenizer_keeps_the_release_chat_template(model):
    text = (FIXTURES / "unipixel" / "chat_template.jinja").read_text()
    assert model.tokenizer.chat_template == text


def test_video_input_matches_official(run, official):
    video, question, _, _, answer = run
    assert question == META["question"]
    assert video.llm_index == META["llm_frames"]
    assert torch.equal(video.grid_thw.cpu(), official["video_grid_thw"])
    assert list(video.pixel_values_videos.shape) == META["pixel_values_videos_shape"]
    rows = video.pixel_values_videos[:: META["pixel_row_step"]].float().cpu()
    torch.testing.assert_close(rows, official["pixel_values_videos_rows"], atol=1e-6, rtol=0)
    assert torch.equal(answer.input_ids.cpu(), official["input_ids"])
    assert torch.equal(answer.position_ids.cpu(), official["position_ids"])
    assert video.second_per_grid_ts.tolist() == META["second_per_grid_ts"]


def test_sam_frames_match_official(official):
    step = META["sam_pixel_step"]
    frames = up.sam_frames(official["video"].numpy(), 256)
    mean = torch.tensor(up.SAM_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(up.SAM_STD).view(1, 3, 1, 1)
    normalised = ((frames - mean) / std)[:, :, ::step, ::step]
    torch.testing.assert_close(normalised, official["sam_frames_sub"], atol=1e-6, rtol=0)


def test_answer_and_seg_prompts_match_official(model, run, official):
    _, _, _, text, answer = run
    assert torch.equal(answer.output_ids.cpu(), official["output_ids"])
    torch.testing.assert_close(answer.step_logits.cpu(), official["step_logits"], atol=TOL, rtol=0)
    prompts = model.lv_projector(answer.seg_states).float().cpu()
    torch.testing.assert_close(prompts, official["seg_prompts"], atol=TOL, rtol=0)
    assert text == META["response"].replace("<|seg|>", "[SEG]")


def test_masks_match_official(run, official):
    _, _, logits, _, _ = run
    ref = official["mask_logits"]
    assert logits.shape == ref.shape == official["masks"].shape
    torch.testing.assert_close(logits.float().cpu(), ref, atol=TOL, rtol=0)
    decided = ref.abs() > TOL
    assert torch.equal((logits.cpu() > 0)[decided], official["masks"][decided])


def test_predict_many_runs_the_unipixel_inference(model, official):
    frames = official["video"].numpy()
    pred = model.predict_many(frames, [META["query"]], max_new_tokens=META["max_new_tokens"])[0]
    masks = official["masks"].numpy()
    assert pred.seg_found and pred.masks_per_seg.shape == masks.shape
    assert np.array_equal(pred.masks, masks[0])


def test_video_frames_pad_to_an_even_count_and_keep_the_pixel_budget():
    frames = np.zeros((3, 42, 60, 3), dtype=np.uint8)
    video = up.video_frames(frames, [0, 1, 2], 16)
    assert video.shape == (4, 3, 280, 392)  # 100,352-pixel floor, sides multiples of 28
    h, w = up.frame_size(1080, 1920, up.VIDEO_MIN_PIXELS, up.VIDEO_PIXELS_PER_FRAME)
    assert h % 28 == w % 28 == 0 and up.VIDEO_MIN_PIXELS <= h * w <= up.VIDEO_PIXELS_PER_FRAME
    assert abs(w / h - 1920 / 1080) < 0.1


def test_bfloat16_as_the_release_runs_stays_near_the_float32_official(official):
    """UniPixel-3B was exported and is evaluated in bf16: the same inference with the converted model at
    ``precision="bfloat16"`` (the LLM in bf16, SAM2 and seg_head on bf16 values under autocast) against the
    official float32 outputs: the same answer and the same masks away from the threshold."""
    from sparrow.convert import ConvertOptions, convert

    opts = ConvertOptions(
        release="unipixel",
        src=FIXTURES / "unipixel",
        sam_config=FIXTURES / "sam2.1_bplus_tiny.yaml",
        dtype="float32",
        precision="bfloat16",
    )
    m = convert(opts).model.eval()
    m.cfg = m.cfg.replace(num_frames=META["sample_frames"])
    with torch.no_grad():
        for table in (m.llm.model.get_input_embeddings(), m.llm.model.get_output_embeddings()):
            table.weight[m.seg_token_id] = official["seg_row"].to(table.weight.dtype)
    assert {p.dtype for p in m.llm.parameters()} == {torch.bfloat16}
    pred = m.predict_many(official["video"].numpy(), [META["query"]], max_new_tokens=META["max_new_tokens"])[0]
    masks = official["masks"].numpy()
    assert pred.seg_found and pred.answer == META["response"].replace("<|seg|>", "[SEG]")
    # The tiny SAM2's logits span only +-0.024: bf16 moves the pixels within about 1e-4 of the threshold (measured:
    # 40 of 17,640, each within 1.3e-4 of it); every pixel the official logit decides by more is the same
    differ = pred.masks != masks[0]
    ref = official["mask_logits"][0].numpy()
    assert differ.mean() < 0.01 and np.abs(ref[differ]).max(initial=0.0) < 1e-3
