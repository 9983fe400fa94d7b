"""The converted VideoGLaMM/SPARROW release against the official per-sample inference path, before the model call.

``tests/fixtures/released/official_inference.{json,safetensors}`` were written by ``make_fixtures.py
--inference-only`` with the official code (transformers 4.41): the token ids of ``conv_generator.apply_for_chat``
(phi3_instruct template with its system turn, ``tokenizer_image_token``) for the referring prompt, with and without
``<tsf>`` placeholders, on the release's tokenizer files and on ``tokenizer-phi3/`` (the same construction with
Phi-3's byte fallback, so that the template's newlines are byte pieces as in Phi-3 rather than the unknown piece);
and ``chat.py::preprocess_vision`` on two frames of a real photograph, every n-th pixel stored.

Tolerances: token ids equal (the official run of 16 ``<image>`` ids is one placeholder in the kit, expanded to the
same visual tokens); the released frame chains (``frame_chain="released"``, the paper preset) within 1e-6 of the
official normalised tensors (measured: SAM2 3.6e-7, the normalisation applied after the stretch instead of before;
CLIP 0; InternVideo2 2.4e-7, float32 instead of float64 arithmetic); the kit's own chain within 0.03 (measured:
SAM2 0.019, CLIP 0.016, InternVideo2 0.013, about one grey level: the released chains round their resized frames to
uint8 and resize SAM2 frames in two steps).

``official_framewise.*`` (same script): the official ``inference_framewise`` from a given answer and LLM states on,
with the tiny proposer; the kit's kept box within 1e-6 (measured 1.5e-8), mask logits within 1e-5 (measured 4.8e-7),
binary masks equal.

``official_generation.*`` (``make_fixtures.py --generation-only``): the official greedy generation over the released
3,328 visual tokens (tiny CLIP-336 and InternVideo2-224 towers); visual tokens within 1e-5 (measured 5.4e-7), the new
ids equal, step logits within 1e-4 (measured 2.3e-7), last-layer states within 1e-5 (measured 1.7e-6).
"""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from sparrow.convert.reader import load_tokenizer
from sparrow.eval.runner import (
    PredictionsMismatch,
    _check_manifest,
    _prediction_manifest,
    keyed_eval_dir,
    parity_switches,
)
from sparrow.model import inference, release_frames
from sparrow.model.collator import FrameSizes
from sparrow.model.frames import encoder_frames, stretch, to_float
from sparrow.model.internvideo2 import IMAGENET_MEAN, IMAGENET_STD
from sparrow.model.pixel_decoder import SAM_MEAN, SAM_STD
from sparrow.model.presets import preset
from sparrow.model.spatial_encoder import CLIP_MEAN, CLIP_STD
from sparrow.model.tokens import IMAGE_TOKEN_INDEX

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(__file__).parent / "fixtures" / "released"
META = json.loads((FIXTURES / "official_inference.json").read_text())
PHI3 = FIXTURES / "tokenizer-phi3"


@pytest.fixture(scope="module")
def official() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(FIXTURES / "official_inference.safetensors"))


def _official_ids(key: str) -> list[int]:
    """The official ids with the run of ``<image>`` ids (one per encoder frame) as the kit's one placeholder."""
    out: list[int] = []
    for i in META["input_ids"][key]:
        if not (i == IMAGE_TOKEN_INDEX and out and out[-1] == IMAGE_TOKEN_INDEX):
            out.append(i)
    return out


def _kit_ids(tokenizer, num_tsf: int) -> list[int]:
    cfg = preset("videoglamm", "paper")
    question = inference.question_text(cfg, META["expression"])
    assert question == META["prompt_text"]
    stand_in = types.SimpleNamespace(tokenizer=tokenizer, cfg=cfg)
    return inference.prompt_ids(stand_in, question, num_tsf)


# -- tokenisation ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tsf", [False, True], ids=["prompt", "prompt+tsf"])
@pytest.mark.parametrize("kind", ["fast", "slow", "saved"])
def test_prompt_ids_equal_the_official_conversation(tsf, kind, tmp_path):
    """``saved``: the tokenizer as a converted folder holds it (``tokenizer.json``, read back), whose
    ``add_bos_token`` reads False while its post-processor adds the BOS the released prompt starts with."""
    from transformers import AutoTokenizer

    if kind == "slow":
        tokenizer = AutoTokenizer.from_pretrained(PHI3, use_fast=False)
    else:
        tokenizer = load_tokenizer(PHI3)
        if kind == "saved":
            tokenizer.save_pretrained(tmp_path)
            tokenizer = load_tokenizer(tmp_path)
    num_tsf = preset("videoglamm", "paper").num_tsf_placeholders if tsf else 0
    assert _kit_ids(tokenizer, num_tsf) == _official_ids(f"tokenizer-phi3/{'prompt_tsf' if tsf else 'prompt'}")


def test_release_tokenizer_as_converted_prompts_with_the_official_ids(tmp_path):
    """The release's own tiny tokenizer has no newline piece (the slow tokenizer writes the unknown id, the fast
    one nothing): outside the newlines, the ids of the tokenizer a converted folder saves (``sparrow convert
    --tokenizer``, then ``save_pretrained``) are the official ones, BOS included."""
    load_tokenizer(FIXTURES / "tokenizer-fast").save_pretrained(tmp_path)
    tokenizer = load_tokenizer(tmp_path)
    official = [i for i in _official_ids("sparrow-finetune/prompt") if i != tokenizer.unk_token_id]
    assert official[0] == tokenizer.bos_token_id
    assert _kit_ids(tokenizer, 0) == official


# -- frame chains ------------------------------------------------------------------------------------------------
def _normalised(x: torch.Tensor, mean, std, stride: int) -> torch.Tensor:
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    return x[:, :, 1::stride, 1::stride]


def _chains(frames: np.ndarray, released: bool) -> dict[str, torch.Tensor]:
    s = META["strides"]
    sam, clip, iv2 = META["sam_shape"][-1], META["clip_shape"][-1], META["iv2_shape"][-1]
    if released:
        raw = (release_frames.sam_frames(frames, sam), release_frames.clip_frames(frames, clip))
        raw += (release_frames.internvideo2_frames(frames, iv2),)
    else:
        x = to_float(frames)
        raw = (stretch(x, sam), encoder_frames(x, clip, "clip"), encoder_frames(x, iv2, "stretch"))
    return {
        "sam": _normalised(raw[0], SAM_MEAN, SAM_STD, s["sam"]),
        "clip": _normalised(raw[1], CLIP_MEAN, CLIP_STD, s["clip"]),
        "iv2": _normalised(raw[2], IMAGENET_MEAN, IMAGENET_STD, s["iv2"]),
    }


def test_released_frame_chains_equal_the_official_chains(official):
    frames = official["frames"].numpy()
    assert list(release_frames.longest_side_shape(*frames.shape[1:3], META["sam_shape"][-1])) == META["resize_shape"]
    released, kit = _chains(frames, released=True), _chains(frames, released=False)
    for name, value in released.items():
        torch.testing.assert_close(value, official[name], rtol=0, atol=1e-6, msg=name)
        assert (kit[name] - official[name]).abs().max() < 0.03, name


class _FrameModel:
    """What :class:`~sparrow.model.inference.VideoContext` asks of a model, recording the SAM2 frames it gets."""

    device = torch.device("cpu")

    def __init__(self, frame_chain: str):
        self.cfg = preset("videoglamm", "paper").replace(frame_chain=frame_chain)

    def frame_sizes(self) -> FrameSizes:
        return FrameSizes(spatial=336, spatial_kind="clip", sam=1024, temporal=224, temporal_kind="stretch")

    def sam_features(self, frames: torch.Tensor, chunk: int) -> torch.Tensor:
        return frames

    def frame_zero(self, feats, pixels):
        return None


def test_inference_uses_the_configured_frame_chain(official):
    assert preset("videoglamm", "paper").frame_chain == "released"
    assert preset("videoglamm", "mini").frame_chain == "kit"
    frames = official["frames"].numpy()
    video = inference.VideoContext(_FrameModel("released"), frames)
    torch.testing.assert_close(video.feats, release_frames.sam_frames(frames, 1024), rtol=0, atol=0)
    torch.testing.assert_close(video.encoder_frames([1, 0]), release_frames.clip_frames(frames[[1, 0]], 336))
    temporal = video.encoder_frames([0], 224, "stretch")
    torch.testing.assert_close(temporal, release_frames.internvideo2_frames(frames[:1], 224), rtol=0, atol=0)
    video = inference.VideoContext(_FrameModel("kit"), frames)
    torch.testing.assert_close(video.feats, stretch(to_float(frames), 1024), rtol=0, atol=0)
    torch.testing.assert_close(video.encoder_frames([0]), encoder_frames(to_float(frames[:1]), 336, "clip"))


# -- switches ----------------------------------------------------------------------------------------------------
def _checkpoint(folder: Path, cfg, sliding_window: int) -> Path:
    """The two files of a ``save_pretrained`` folder the switches are read from."""
    (folder / "components" / "llm").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model": cfg.to_json(), "stage": "stage2"}))
    (folder / "components" / "llm" / "config.json").write_text(json.dumps({"sliding_window": sliding_window}))
    return folder


def test_parity_switches_are_in_the_manifest_and_the_folder_key(tmp_path):
    from sparrow.eval.benchmarks import BENCHMARKS

    paper = preset("videoglamm", "paper")
    switches = parity_switches(_checkpoint(tmp_path / "a", paper, 2048))
    assert switches["system_prompt"] == "<|system|>\nYou are a helpful AI assistant.<|end|>\n"
    assert switches["sliding_window"] == 2048
    assert (switches["decoding"], switches["decoding_seed"]) == ("greedy", None)
    assert (switches["clamp_boxes"], switches["box_prior_prompt"]) == (False, "corners")
    assert switches["gamma"] == paper.selector.roi_fusion_init
    assert switches["frame_chain"] == "released"
    sampled = parity_switches(_checkpoint(tmp_path / "b", paper.replace(decoding="sample"), 2048))
    assert sampled["decoding"] == "sample" and sampled["decoding_seed"] == paper.decoding_seed
    window = parity_switches(_checkpoint(tmp_path / "c", paper, 2047))
    half = parity_switches(_checkpoint(tmp_path / "d", paper.replace(precision="float16"), 2048))
    assert (switches["precision"], half["precision"]) == ("mixed", "float16")
    branch = parity_switches(_checkpoint(tmp_path / "e", paper.replace(propagation="video_branch"), 2048))
    assert (switches["propagation"], branch["propagation"]) == ("framewise", "video_branch")

    benchmark = BENCHMARKS[0]
    variants = (switches, sampled, window, half, branch)
    assert len({keyed_eval_dir(tmp_path, "m", "same-weights", None, s).name for s in variants}) == 5
    out = tmp_path / "predictions"
    out.mkdir()
    _check_manifest(out, _prediction_manifest(benchmark, "same-weights", "data", None, switches))
    assert json.loads((out / "manifest.json").read_text())["switches"] == switches
    with pytest.raises(PredictionsMismatch, match="switches"):
        _check_manifest(out, _prediction_manifest(benchmark, "same-weights", "data", None, window))


def test_lower_precision_casts_the_llm_side_rounds_the_rest_and_infers_under_autocast(tmp_path, monkeypatch):
    from sparrow.model import SparrowModel
    from sparrow.model.config import ModelConfig

    cfg = ModelConfig.for_preset("videoglamm", "smoke")
    assert "precision" not in cfg.to_json()  # the kit's default: configs and fingerprints read as before
    with pytest.raises(ValueError, match="precision"):
        cfg.replace(precision="float64")
    model = SparrowModel.from_config(cfg).eval()
    sam = model.pixel_decoder.sam.sam_mask_decoder.iou_token.weight
    assert not torch.equal(sam, sam.bfloat16().float())
    model.set_precision("bfloat16")
    assert model.cfg.to_json()["precision"] == "bfloat16" and parity_switches(model)["precision"] == "bfloat16"
    assert {p.dtype for p in model.llm.parameters()} == {torch.bfloat16}
    assert sam.dtype == torch.float32 and torch.equal(sam, sam.bfloat16().float())  # bf16 values, float32 storage
    seen = []
    features = model.sam_features

    def recording(*args, **kwargs):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return features(*args, **kwargs)

    monkeypatch.setattr(model, "sam_features", recording)
    frames = np.random.default_rng(0).integers(0, 255, (4, 32, 40, 3), dtype=np.uint8)
    prediction = model.predict(frames, "the red ball")
    assert prediction.masks.shape == (4, 32, 40) and seen == [(True, torch.bfloat16)]
    again = SparrowModel.from_pretrained(model.save_pretrained(tmp_path / "bf16"))
    assert again.cfg.precision == "bfloat16" and {p.dtype for p in again.llm.parameters()} == {torch.bfloat16}
    reloaded = again.predict(frames, "the red ball")
    assert reloaded.answer == prediction.answer and np.array_equal(reloaded.masks, prediction.masks)
    model.set_precision("mixed")
    seen.clear()
    model.predict(frames, "the red ball")
    assert seen[0][0] is False and {p.dtype for p in model.llm.parameters()} == {torch.float32}


def test_a_stand_in_model_without_config_has_no_switches():
    assert parity_switches(types.SimpleNamespace(predict=lambda *a: None)) is None


# -- framewise inference after the answer --------------------------------------------------------------------------
def _framewise_from_the_answer(official, expected, monkeypatch, precision: str):
    """The converted tiny release (with the tiny proposer) at ``precision``, decoding the two real frames from the
    official answer's states on: (mask logits, kept boxes)."""
    from sparrow.convert import ConvertOptions, convert
    from sparrow.model.config import stage_behaviour

    options = ConvertOptions(
        release="sparrow",
        src=FIXTURES / "sparrow-finetune",
        clip=FIXTURES / "clip",
        sam_config=FIXTURES / "sam2_tiny.yaml",
        tokenizer=FIXTURES / "tokenizer-fast",
        proposer=FIXTURES / "sparrow-det-pretrain" / "checkpoint-1",
        dtype="float32",
        precision=precision,
    )
    model = convert(options).model.eval()
    assert model.cfg.precision == precision
    seg, box = expected["seg_state"][None], expected["box_state"][None]
    monkeypatch.setattr(inference, "answer", lambda *args: ("[BOX] [SEG]", seg, box))
    with torch.no_grad(), inference._inference_mode(model):
        view = inference.WholeVideo(inference.VideoContext(model, official["frames"].numpy()))
        logits, _, boxes = view.segment("", None, 0, 8, stage_behaviour(model.cfg, "inference"))
    return logits, boxes


@pytest.mark.slow
def test_framewise_inference_after_the_answer_matches_the_official_one(official, monkeypatch):
    """From the answer's last-layer states on: token extraction, L->V projection, frame-0 proposals from the SAM2
    frame, selection with the ROI helper, the prior filter, the guided decode of every frame and the threshold."""
    from safetensors.torch import load_file

    expected = load_file(str(FIXTURES / "official_framewise.safetensors"))
    logits, boxes = _framewise_from_the_answer(official, expected, monkeypatch, "mixed")
    torch.testing.assert_close(boxes[0].float(), expected["boxes_after_filter"], rtol=0, atol=1e-6)
    torch.testing.assert_close(logits, expected["logits"], rtol=0, atol=1e-5)
    assert torch.equal((logits[0] > 0).to(torch.uint8), expected["masks"].to(torch.uint8))


@pytest.mark.slow
@pytest.mark.parametrize(("precision", "atol", "flipped"), [("float16", 5e-3, 0), ("bfloat16", 5e-2, 10)])
def test_framewise_inference_at_the_released_precisions_stays_near_the_float32_one(
    official, monkeypatch, precision, atol, flipped
):
    """The same path under ``precision`` (the released evaluation's --precision fp16 default, or bf16) against the
    official float32 outputs: measured logits 1.2e-3 (fp16) and 1.3e-2 (bf16) away, 0 and 4 of 10,800 pixels."""
    from safetensors.torch import load_file

    expected = load_file(str(FIXTURES / "official_framewise.safetensors"))
    logits, _ = _framewise_from_the_answer(official, expected, monkeypatch, precision)
    torch.testing.assert_close(logits.float(), expected["logits"], rtol=0, atol=atol)
    assert 0 < (logits.float() - expected["logits"]).abs().max()  # the lower precision did apply
    assert int(((logits[0] > 0) != (expected["masks"] > 0)).sum()) <= flipped


# -- greedy generation over the visual tokens ----------------------------------------------------------------------
def test_greedy_generation_over_the_visual_tokens_matches_the_official_one(official, monkeypatch):
    """The two real frames through the released chains, a tiny CLIP-336 and InternVideo2-224 (so the released 3,328
    visual tokens: 16 x 144 context then 16 x 64 video, past Phi-3's 2,048-key sliding window), the referring prompt,
    then greedy decoding: the visual tokens, the new ids, every step's logits and last-layer state."""
    from safetensors.torch import load_file

    from sparrow.convert import ConvertOptions, convert
    from sparrow.model.multimodal_inputs import expand_sample

    expected = load_file(str(FIXTURES / "official_generation.safetensors"))
    meta = json.loads((FIXTURES / "official_generation.json").read_text())
    options = ConvertOptions(
        release="sparrow",
        src=FIXTURES / "sparrow-finetune",
        clip=FIXTURES / "clip-336",
        internvideo2=FIXTURES / "internvideo2-224" / "InternVideo2-stage2_1b-224p-f4.pt",
        internvideo2_heads=2,
        sam_config=FIXTURES / "sam2_tiny.yaml",
        tokenizer=FIXTURES / "tokenizer-fast",
        dtype="float32",
    )
    model = convert(options).model.eval()
    frames = official["frames"].numpy()
    assert int(frames.astype(np.int64).sum()) == meta["frames_sha"]
    with torch.no_grad():
        visual = inference.WholeVideo(inference.VideoContext(model, frames)).visual()
    assert visual.shape[0] == meta["visual_tokens"] == 3328 and meta["sequence_length"] > 2048
    torch.testing.assert_close(visual, expected["visual_tokens"], rtol=0, atol=1e-5)

    # The prompt ids are the official ones (the release's tiny tokenizer maps newlines to its unknown id; the kit's
    # ids on a byte-fallback tokenizer are compared in the tests above): the run of 16 <image> ids is one placeholder.
    ids = meta["prompt_ids"]
    first = ids.index(IMAGE_TOKEN_INDEX)
    prompt = ids[:first] + [IMAGE_TOKEN_INDEX] + [i for i in ids[first:] if i != IMAGE_TOKEN_INDEX]
    with torch.no_grad():
        embeds, _, _, _ = expand_sample(
            torch.tensor(prompt),
            None,
            visual,
            None,
            model.llm.embed,
            model.seg_token_id,
            model.box_token_id,
            model.cfg.tsf_k,
            model.cfg.seg_hidden_at,
        )
        generated, states = model.llm.generate(embeds[None], len(meta["new_ids"]), inference._stop_ids(model))
        logits = model.llm.output_embeddings()(states)
    assert meta["attn_implementation"] == "eager" and meta["sliding_window"] == 2047
    assert model.llm.model.config.sliding_window == 2048  # what 4.41's eager mask let each query see
    assert generated == meta["new_ids"]
    n = len(generated)
    torch.testing.assert_close(states[:n], expected["states"][:n], rtol=0, atol=1e-5)
    torch.testing.assert_close(logits[:n], expected["logits"][:n], rtol=0, atol=1e-4)
    assert 1e-4 < meta["min_top2_gap"] / 10  # the greedy choices are far from ties at this tolerance
    # The window is exercised: the stored 2,047 keys move the states by ~7e-4
    model.llm.model.config.sliding_window = 2047
    with torch.no_grad():
        _, narrower = model.llm.generate(embeds[None], n, inference._stop_ids(model))
    assert (narrower[:n] - expected["states"][:n]).abs().max() > 1e-4
