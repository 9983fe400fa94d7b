"""sparrow.convert on tiny folders in the released layouts, against outputs of the official code.

The folders and outputs under ``tests/fixtures/released/`` were written by ``make_fixtures.py`` there (the official
SPARROW code under transformers 4.41). Tolerances, per tensor (everything in float32 on the CPU):

- ``seg_embeddings`` (``text_hidden_fcs``): abs 1e-6 (measured: 0);
- ``guided_masks`` and ``seg_only_masks`` (mask logits at the original size, up to ~1.4 in magnitude): abs 1e-5
  (measured: 7e-7; the same float32 operations batched differently, and the sam2 package instead of the bundled
  copy), and the binary masks (logits > 0) equal;
- ``prior_scores`` recomputed by the kit from the official prior masks: abs 1e-6 (measured: 0); the kept boxes equal;
- ``prior_masks`` from the kit's released prompt form (``box_prior_prompt="corners"``): equal;
- InternVideo2 (the official ``PretrainInternVideo2`` of the VideoGPT+ path, tiny, from its released-layout ``.pt``):
  the frame chain ``iv2_chain`` abs 1e-6 (measured: 0); ``iv2_video_tokens`` (4-frame chunk, values up to ~8) and
  ``iv2_image_tokens`` (one frame, the image position embedding) abs 1e-5 (measured: 2.4e-7 and 1.2e-7), natively
  and through ``sparrow convert --internvideo2``;
- the proposer (the official ``CustomDDETRSAM2Model`` saved as a ``checkpoint-*`` folder by transformers 4.41, its
  tiny SAM2 image encoder from ``sam2_tiny.yaml``), natively and through ``sparrow convert --proposer``: the input
  chain abs 1e-6 (measured: 0); last-layer coco/sa1b logits (up to ~6) and decoder states abs 1e-5 (measured: 9.5e-7,
  6.4e-7); boxes abs 1e-6 (measured: 1.2e-7); the top-6 proposals' boxes and scores abs 1e-6, features abs 1e-5
  (measured: 1.2e-7, 2.8e-9, 6.4e-7).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from sparrow.convert import ConversionError, ConvertOptions, apply_keymap, convert, read_release, write_converted
from sparrow.convert import videoglamm as maps
from sparrow.convert.converter import token_ids
from sparrow.convert.reader import ReleaseError, load_tokenizer, read_weights
from sparrow.model.state_report import Allowance, KeyMap, Rule, Section
from tests.fixtures.release_layouts import (
    TINY_PROPOSER,
    write_internvideo2_release,
    write_proposer_release,
    write_videoglamm_release,
)

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(__file__).parent / "fixtures" / "released"
SPARROW_DIR = FIXTURES / "sparrow-finetune"
OUTPUTS = FIXTURES / "official_outputs.safetensors"
META = json.loads((FIXTURES / "official_outputs.json").read_text())


def _options(**changes) -> ConvertOptions:
    base = dict(
        release="sparrow",
        src=SPARROW_DIR,
        clip=FIXTURES / "clip",
        sam_config=FIXTURES / "sam2_tiny.yaml",
        tokenizer=FIXTURES / "tokenizer-fast",
        dtype="float32",
    )
    base.update(changes)
    return ConvertOptions(**base)


@pytest.fixture(scope="module")
def converted():
    return convert(_options())


@pytest.fixture(scope="module")
def official() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(OUTPUTS))


def _sam_frames(base: torch.Tensor) -> torch.Tensor:
    # make_fixtures.py stores a 16 px base; nearest upsampling to the SAM2 input size is exact
    size = META["sam_image_size"]
    return torch.nn.functional.interpolate(base, size=(size, size), mode="nearest")


def _features(model, official):
    decoder = model.pixel_decoder
    normalised = _sam_frames(official["sam_frames_base"])
    # the kit normalises [0, 1] frames itself: hand it the official normalised tensor in that form
    return decoder.encode(normalised * decoder.std + decoder.mean)


# -- reader ----------------------------------------------------------------------------------------------------
def test_reader_reads_the_bin_shards_config_and_tokenizer_files():
    release = read_release(SPARROW_DIR)
    assert release.config["model_type"] == "VideoGPT+"
    assert len(release.weight_files) > 1 and all(f.endswith(".bin") for f in release.weight_files)
    assert release.added_tokens["[SEG]"] == META["seg_token_id"]
    assert release.added_tokens["[BOX]"] == META["box_token_id"]
    assert release.generation_config["do_sample"] is True
    assert "model.visual_model.memory_encoder.fuser.layers.0.weight" in release.state
    assert "model.roi_fusion_gamma" in release.state


def test_reader_reads_safetensors_shards_and_refuses_mixed_or_pickled_folders(tmp_path):
    from safetensors.torch import save_file

    state, _ = read_weights(SPARROW_DIR)
    keys = sorted(state)
    halves = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    folder = tmp_path / "safe"
    folder.mkdir()
    for name, part in halves.items():
        save_file({k: state[k].contiguous() for k in part}, str(folder / name))
    index = {"weight_map": {k: name for name, part in halves.items() for k in part}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    again, files = read_weights(folder)
    assert files == sorted(halves) and set(again) == set(state)
    assert all(torch.equal(again[k], state[k]) for k in keys)

    for path in SPARROW_DIR.glob("pytorch_model*"):
        shutil.copy(path, folder)
    with pytest.raises(ReleaseError, match="both"):
        read_weights(folder)

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    torch.save({"w": torch.zeros(1), "meta": argparse.Namespace(step=1)}, pickled / "pytorch_model.bin")
    with pytest.raises(ReleaseError, match="weights_only"):
        read_weights(pickled)


def test_slow_tokenizer_needs_sentencepiece_and_says_so():
    try:
        import google.protobuf  # noqa: F401
        import sentencepiece  # noqa: F401
    except ImportError:
        with pytest.raises(ReleaseError, match="pip install"):
            load_tokenizer(SPARROW_DIR)
    else:
        tokenizer = load_tokenizer(SPARROW_DIR)
        fast = load_tokenizer(FIXTURES / "tokenizer-fast")
        text = "What is the red ball in this video? [BOX] [SEG]"
        assert tokenizer(text)["input_ids"] == fast(text)["input_ids"]


# -- key map engine --------------------------------------------------------------------------------------------
def test_keymap_reports_every_leftover_key_unless_allowed_with_a_reason():
    kit = {
        "a.base_layer.weight": torch.zeros(2, 2),
        "a.lora_A.default.weight": torch.zeros(1, 2),
        "b.weight": torch.zeros(3),
        "c.weight": torch.zeros(1),
    }
    keymap = KeyMap(
        "toy",
        (Section("A", "release", "x.", "a.", lora_aware=True), Section("B", "release", "y.", "b.")),
        allow_unexpected=(Allowance(r"skip\..+", "dropped on purpose"),),
        allow_missing=(Allowance(r".+\.lora_A\..+", "LoRA factors", "kit"),),
    )
    release = {"x.weight": torch.ones(2, 2), "y.weight": torch.ones(4), "skip.me": torch.ones(1), "z": torch.ones(1)}
    mapped, report = apply_keymap(keymap, {"release": release}, kit)
    assert set(mapped) == {"a.base_layer.weight"}
    assert report.unexpected == ["release:z"]
    assert report.missing == ["b.weight", "c.weight"]
    assert report.allowed_unexpected == {"dropped on purpose": ["release:skip.me"]}
    assert report.allowed_missing == {"LoRA factors": ["a.lora_A.default.weight"]}
    assert any("shape (4,) != kit (3,)" in e for e in report.errors)
    assert not report.ok and "UNEXPECTED  release:z" in report.format()


def test_keymap_refuses_two_keys_on_one_target_and_applies_transforms():
    kit = {"t": torch.zeros(())}
    keymap = KeyMap("toy", (Section("T", "release", "", "", (Rule(r"(?:p|q)", "t", "half"),)),))
    _, report = apply_keymap(
        keymap, {"release": {"p": torch.ones(()), "q": torch.ones(())}}, kit, {"half": lambda t: t}
    )
    assert any("also mapped from" in e for e in report.errors)
    mapped, report = apply_keymap(keymap, {"release": {"p": torch.ones(())}}, kit, {"half": lambda t: t / 2})
    assert report.ok and float(mapped["t"]) == 0.5


def test_sam2_fuser_layer_scale_is_read_under_both_names():
    rules = maps._SAM_RULES
    keymap = KeyMap("sam", (Section("SAM2", "release", "model.visual_model.", "pixel_decoder.sam.", rules),))
    kit = {f"pixel_decoder.sam.memory_encoder.fuser.layers.{i}.gamma": torch.zeros(4) for i in (0, 1)}
    kit["pixel_decoder.sam.memory_encoder.fuser.layers.0.dwconv.weight"] = torch.zeros(4, 1, 7, 7)
    release = {
        "model.visual_model.memory_encoder.fuser.layers.0.weight": torch.ones(4),  # VideoGLaMM's bundled SAM2
        "model.visual_model.memory_encoder.fuser.layers.1.gamma": torch.ones(4),  # sam2's own name
        "model.visual_model.memory_encoder.fuser.layers.0.dwconv.weight": torch.ones(4, 1, 7, 7),
    }
    mapped, report = apply_keymap(keymap, {"release": release}, kit)
    assert report.ok and set(mapped) == set(kit)


# -- the SPARROW release -----------------------------------------------------------------------------------------
def test_sparrow_release_converts_with_zero_unexplained_keys(converted):
    report = converted.report
    assert report.ok, report.format()
    release = read_release(SPARROW_DIR)
    used = sum(report.mapped.values()) - report.mapped["CLIP spatial tower"]
    assert used == len(release.state)  # every released tensor lands in the kit model
    assert set(report.allowed_missing) == {
        maps._LORA_REASON,
        "temporal: kept at the kit's initialisation (no internvideo2 input converted)",
        "proposer: kept at the kit's initialisation (no proposer input converted)",
    }
    model = converted.model
    state = model.state_dict()
    scales = [
        k for k in release.state if re.fullmatch(r"model\.visual_model\.memory_encoder\.fuser\.layers\.\d\.weight", k)
    ]
    assert len(scales) == 2  # the bundled SAM2's name for the layer scale
    for key in scales:
        kit_key = "pixel_decoder.sam." + key[len("model.visual_model.") : -len("weight")] + "gamma"
        assert torch.equal(state[kit_key], release.state[key].float())
    assert torch.equal(state["llm.model.lm_head.weight"], release.state["lm_head.weight"].float())
    lora_b = [v for k, v in state.items() if ".lora_B." in k]
    assert lora_b and all(not v.any() for v in lora_b)


def test_token_ids_come_from_the_released_tokenizer(converted):
    model = converted.model
    assert (model.seg_token_id, model.box_token_id) == (META["seg_token_id"], META["box_token_id"])
    assert converted.provenance["token_ids"] == {"[SEG]": META["seg_token_id"], "[BOX]": META["box_token_id"]}


def test_gamma_policy_official_is_what_the_official_loader_uses(converted):
    loader = META["official_loader"]
    assert loader["missing_keys"] == ["model.roi_fusion_gamma"]
    assert "model.roi_fusion_weight" in loader["unexpected_keys"]
    assert float(converted.model.roi_fusion_gamma) == pytest.approx(loader["roi_fusion_gamma"], abs=1e-7)
    stored = convert(_options(gamma="stored")).model
    assert float(stored.roi_fusion_gamma) == pytest.approx(META["stored_roi_fusion_gamma"], abs=1e-3)
    assert float(stored.roi_fusion_gamma) != pytest.approx(0.1, abs=1e-3)


@torch.no_grad()
def test_seg_embeddings_match_the_official_text_hidden_fcs(converted, official):
    seg = converted.model.lv_projector(official["hidden"])[:, 0]
    torch.testing.assert_close(seg, official["seg_embeddings"], atol=1e-6, rtol=0)


@torch.no_grad()
def test_guided_and_seg_only_decodes_match_the_official_decode(converted, official):
    model = converted.model
    feats = _features(model, official)
    tokens = official["seg_embeddings"].unsqueeze(1)
    boxes = [official["boxes_0"], official["boxes_1"]]
    out_hw = tuple(META["orig_hw"])
    for got, name in (
        (model.pixel_decoder.decode(feats, tokens, boxes, out_hw), "guided_masks"),
        (model.pixel_decoder.decode(feats, tokens, None, out_hw), "seg_only_masks"),
    ):
        want = official[name]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0, msg=name)
        assert torch.equal(got > 0, want > 0), name


def _official_internvideo2():
    hook = META["hooks"]["internvideo2"]
    return FIXTURES / hook["file"], hook["num_heads"]


def test_internvideo2_matches_the_official_frame_chain_and_forward(official):
    from sparrow.model.internvideo2 import InternVideo2, load_released, preprocess, read_release, release_config

    path, heads = _official_internvideo2()
    cfg = release_config(read_release(path), heads)
    assert (cfg.depth, cfg.blocks_run, cfg.embed_dim, cfg.tokens_per_frame) == (3, 2, 32, 4)
    model = InternVideo2(cfg).eval()
    report = load_released(model, path)
    assert report.ok and report.mapped["InternVideo2 (temporal encoder)"] == len(model.state_dict())
    chain = official["iv2_chain"]
    assert torch.allclose(preprocess(official["iv2_frames"].numpy(), cfg.image_size), chain, atol=1e-6, rtol=0)
    with torch.no_grad():
        video = model(chain.transpose(0, 1)[None])
        image = model(chain[:1].transpose(0, 1)[None])
    assert torch.allclose(video, official["iv2_video_tokens"], atol=1e-5, rtol=0)
    assert torch.allclose(image, official["iv2_image_tokens"], atol=1e-5, rtol=0)


def _official_proposer():
    from sparrow.model.config import ProposerSpec

    hook = META["hooks"]["proposer"]
    base = ProposerSpec(kind="deformable_detr", topk=hook["topk"], image_size=hook["input_size"])
    return FIXTURES / hook["folder"], base


def _check_official_proposer(proposer, official) -> None:
    pixels = official["det_pixels"]
    frame = official["det_frame"].permute(2, 0, 1).float() / 255
    assert torch.allclose(proposer.preprocess(frame)[0], pixels, atol=1e-6, rtol=0)
    with torch.no_grad():
        out = proposer(pixels[None])
    assert torch.allclose(out.logits_coco[-1, 0], official["det_logits_coco"], atol=1e-5, rtol=0)
    assert torch.allclose(out.logits_sa1b[-1, 0], official["det_logits_sa1b"], atol=1e-5, rtol=0)
    assert torch.allclose(out.boxes[-1, 0], official["det_pred_boxes"], atol=1e-6, rtol=0)
    assert torch.allclose(out.hidden[0], official["det_hidden"], atol=1e-5, rtol=0)
    proposals = proposer.propose(pixels[None])[0]
    assert torch.allclose(proposals.boxes, official["det_proposal_boxes"], atol=1e-6, rtol=0)
    assert torch.allclose(proposals.scores, official["det_proposal_scores"], atol=1e-6, rtol=0)
    assert torch.allclose(proposals.features, official["det_proposal_features"], atol=1e-5, rtol=0)


def test_proposer_matches_the_official_chain_forward_and_proposals(official):
    from sparrow.model.deformable_detr import load_release

    folder, base = _official_proposer()
    loaded = load_release(folder, base, sam_config=FIXTURES / "sam2_tiny.yaml")
    assert loaded.report.ok and loaded.report.aliased  # transformers 4.41 wrote the heads under both names
    _check_official_proposer(loaded.proposer, official)


def test_converted_internvideo2_and_proposer_give_the_official_outputs(official):
    path, heads = _official_internvideo2()
    folder, base = _official_proposer()
    result = convert(_options(internvideo2=path, internvideo2_heads=heads, proposer=folder, proposer_base=base))
    assert result.report.ok, result.report.format()
    chain = official["iv2_chain"]
    with torch.no_grad():
        tokens = result.model.temporal.encode_chunks(chain[None])  # (1 chunk, 4 frames, 4 tokens, 32)
    want = official["iv2_video_tokens"][0, 1:].reshape(tokens.shape)  # CLS dropped
    assert torch.allclose(tokens, want, atol=1e-5, rtol=0)
    _check_official_proposer(result.model.proposer, official)


def test_prior_scores_match_the_official_scores_on_the_official_prior_masks(official):
    from sparrow.model.box_prior_filter import filter_boxes, prior_scores

    scores = prior_scores(official["prior_boxes"], official["prior_masks"].bool())
    torch.testing.assert_close(scores, official["prior_scores"], atol=1e-6, rtol=0)
    n0 = official["boxes_0"].shape[0]
    for k, part in enumerate((scores[:n0], scores[n0:])):
        kept = filter_boxes(official[f"boxes_{k}"], part, min_score=0.35, max_keep=1)
        torch.testing.assert_close(kept, official[f"prior_kept_{k}"], atol=0, rtol=0)


@torch.no_grad()
def test_prior_masks_match_the_official_prompt_form(converted, official):
    from sparrow.model.box_prior_filter import prior_scores

    model = converted.model
    assert model.cfg.selector.box_prior_prompt == "corners"  # the paper preset's, which a conversion builds
    feats = _features(model, official)
    boxes, frame_hw = official["prior_boxes"], tuple(official["guided_masks"].shape[-2:])
    masks = model.pixel_decoder.prior_masks(feats, boxes, frame_hw, "corners")
    assert torch.equal(masks.to(torch.uint8), official["prior_masks"])
    assert torch.allclose(prior_scores(boxes, masks), official["prior_scores"], atol=1e-6, rtol=0)
    # the box-prompt form (smoke, mini) scores other masks
    box_form = model.pixel_decoder.prior_masks(feats, boxes, tuple(official["prior_masks"].shape[-2:]), "box")
    assert not torch.equal(box_form.to(torch.uint8), official["prior_masks"])


# -- the VideoGLaMM release --------------------------------------------------------------------------------------
def test_videoglamm_release_converts_with_box_added_and_its_tower_copy_allowed(tmp_path):
    result = convert(_options(release="videoglamm", src=write_videoglamm_release(SPARROW_DIR, tmp_path / "videoglamm")))
    report = result.report
    assert report.ok, report.format()
    assert any("InternVideo2 copy" in reason for reason in report.allowed_unexpected)
    model = result.model
    assert model.selector is None and model.roi_fusion_gamma is None and model.stage == "host"
    assert model.seg_token_id == META["seg_token_id"] and model.box_token_id == META["box_token_id"]
    assert not model.llm.model.lm_head.weight[model.box_token_id].any()
    assert any("[BOX] added" in note for note in report.notes)


# -- failures ----------------------------------------------------------------------------------------------------
def test_unexplained_keys_fail_with_the_report(tmp_path):
    folder = write_videoglamm_release(SPARROW_DIR, tmp_path / "videoglamm")
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    state["model.something_new.weight"] = torch.zeros(2)
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(ConversionError, match="unexplained") as info:
        convert(_options(release="videoglamm", src=folder))
    assert info.value.report.unexpected == ["release:model.something_new.weight"]


def test_internvideo2_and_proposer_inputs_fill_the_native_components(tmp_path):
    from sparrow.model.internvideo2 import InternVideo2Config

    width = int(read_weights(SPARROW_DIR)[0]["model.mm_projector.0.weight"].shape[1])
    encoder_cfg = InternVideo2Config(image_size=28, patch_size=14, embed_dim=width, depth=3, num_heads=2, mlp_dim=64)
    pt = tmp_path / "InternVideo2-stage2_1b-224p-f4.pt"
    encoder = write_internvideo2_release(pt, encoder_cfg)
    folder = tmp_path / "sparrow-det-pretrain" / "checkpoint-5000"
    proposer = write_proposer_release(folder)
    with pytest.raises(ReleaseError, match="--internvideo2-heads"):
        convert(_options(internvideo2=pt))
    result = convert(_options(internvideo2=pt, internvideo2_heads=2, proposer=folder, proposer_base=TINY_PROPOSER))
    report = result.report
    assert report.ok, report.format()
    assert report.mapped["InternVideo2 (temporal encoder)"] == len(encoder.state_dict())
    assert report.mapped["proposer (sparrow-det-pretrain)"] == len(proposer.state_dict())
    heads = [k for k in proposer.state_dict() if re.match(r"ddetr_transformer\.(?:bbox|class)_embed", k)]
    assert len(report.aliased) == len(heads) > 0  # the heads' second names, equal to the first
    assert not any(reason.startswith(("temporal:", "proposer:")) for reason in report.allowed_missing)
    assert any("after the feature block" in reason for reason in report.allowed_unexpected)
    model = result.model
    assert model.cfg.temporal.kind == "internvideo2" and model.cfg.proposer.kind == "deformable_detr"
    for kit, source in ((model.temporal.model, encoder), (model.proposer, proposer)):
        got, want = kit.state_dict(), source.state_dict()
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    out = write_converted(result, tmp_path / "kit")
    from sparrow.model import SparrowModel

    reloaded = SparrowModel.from_pretrained(out)
    assert type(reloaded.temporal.model) is type(encoder) and reloaded.cfg.proposer.kind == "deformable_detr"
    assert torch.equal(reloaded.temporal.model.pos_embed, encoder.pos_embed)


def test_token_ids_disagreeing_with_config_are_refused(tmp_path):
    folder = tmp_path / "bad"
    shutil.copytree(SPARROW_DIR, folder)
    config = json.loads((folder / "config.json").read_text())
    config["seg_token_idx"] = 5
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ReleaseError, match="seg_token_idx=5"):
        token_ids(read_release(folder), "sparrow")


# -- the written folder and the command line ------------------------------------------------------------------------
def test_written_folder_loads_with_from_pretrained(converted, tmp_path):
    from sparrow.model import SparrowModel

    out = write_converted(converted, tmp_path / "kit")
    model = SparrowModel.from_pretrained(out)
    assert model.stage == "stage2"
    for key, value in converted.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    record = json.loads((out / "conversion.json").read_text())
    assert record["gamma_policy"] == "official" and record["report"]["ok"]
    stored = json.loads((SPARROW_DIR / "config.json").read_text())["sliding_window"]
    assert record["sliding_window"] == {"stored": stored, "used": stored + 1}
    assert model.llm.model.config.sliding_window == stored + 1  # 4.41 eager attends stored + 1 keys
    assert "dynamic_multimask_via_stability: true" in (out / "components" / "sam2.yaml").read_text()
    assert (out / "conversion-report.txt").read_text().startswith("key map sparrow->kit: OK")


def test_cli_convert_writes_the_folder_and_errors_in_one_line(tmp_path, capsys):
    from sparrow.cli import main

    out = tmp_path / "kit"
    args = ["convert", "--release", "sparrow", "--src", str(SPARROW_DIR), "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparrow convert: error: --clip") and "\n" not in err
    extra = ["--clip", str(FIXTURES / "clip"), "--sam-config", str(FIXTURES / "sam2_tiny.yaml")]
    extra += ["--tokenizer", str(FIXTURES / "tokenizer-fast"), "--dtype", "float32", "--gamma", "stored"]
    assert main(args + extra) == 0
    assert "key map sparrow->kit: OK" in capsys.readouterr().out
    record = json.loads((out / "conversion.json").read_text())
    assert record["gamma_policy"] == "stored" and record["sliding_window_policy"] == "official"
    assert main(args + extra + ["--sliding-window", "stored", "--out", str(tmp_path / "kit2")]) == 0
    record = json.loads((tmp_path / "kit2" / "conversion.json").read_text())
    assert record["sliding_window"]["used"] == record["sliding_window"]["stored"]
    switches = ["--precision", "float16", "--propagation", "video_branch", "--out", str(tmp_path / "kit3")]
    assert main(args + extra + switches) == 0
    saved = json.loads((tmp_path / "kit3" / "config.json").read_text())["model"]
    assert (saved["precision"], saved["propagation"]) == ("float16", "video_branch")
    assert json.loads((out / "config.json").read_text())["model"]["propagation"] == "framewise"
    with pytest.raises(SystemExit) as refused:  # argparse's usage error
        main(args + extra + ["--precision", "float64", "--out", str(tmp_path / "kit4")])
    assert refused.value.code == 2 and "--precision" in capsys.readouterr().err
