"""``sparrow convert --release unipixel|glus``: tiny released-layout folders written by the official code convert
with zero unexplained keys, and the converted kit model reproduces the official outputs stored beside them.

The folders and outputs under ``tests/fixtures/released/`` were written by ``make_unipixel_fixture.py`` (the official
UniPixel code under transformers 4.53, which writes Qwen2.5-VL's legacy key names) and ``make_glus_fixture.py`` (the
official GLUS code under transformers 4.31) there.

Tolerances, per tensor (float32 on CPU, the weights are the same fp16-rounded values on both sides): logits and the
pre-norm (UniPixel) or final (GLUS) hidden states 1e-5 absolute (a different attention kernel and transformers
version); ``seg_head`` / ``text_hidden_fcs`` outputs and GLUS's image tokens (CLIP layer -2, AvgPool1d(4), linear
``mm_projector``) 1e-5.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sparrow.convert import ConversionError, ConvertOptions, convert, write_converted
from sparrow.convert import unipixel as uni
from sparrow.convert.reader import ReleaseError

pytestmark = pytest.mark.usefixtures("one_thread")

FIXTURES = Path(__file__).parent / "fixtures" / "released"
UNIPIXEL_DIR = FIXTURES / "unipixel"
UNIPIXEL_META = json.loads((FIXTURES / "unipixel_outputs.json").read_text())
TOL = 1e-5  # measured: at most 5e-7 on every tensor below


def _unipixel(**changes) -> ConvertOptions:
    base = dict(release="unipixel", src=UNIPIXEL_DIR, sam_config=FIXTURES / "sam2.1_bplus_tiny.yaml", dtype="float32")
    return ConvertOptions(**{**base, **changes})


@pytest.fixture(scope="module")
def unipixel():
    return convert(_unipixel())


@pytest.fixture(scope="module")
def unipixel_official() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(FIXTURES / "unipixel_outputs.safetensors"))


def test_unipixel_release_holds_legacy_keys_and_no_lm_head():
    from sparrow.convert.reader import read_weights

    state, files = read_weights(UNIPIXEL_DIR)
    assert files == ["model.safetensors"]
    assert "model.embed_tokens.weight" in state and any(k.startswith("visual.") for k in state)
    assert "lm_head.weight" not in state
    assert "sam2.memory_encoder.fuser.layers.0.weight" in state


def test_unipixel_converts_with_zero_unexplained_keys(unipixel):
    report = unipixel.report
    assert report.ok, report.format()
    assert set(report.mapped) == {"Qwen2.5 LLM", "Qwen2.5-VL ViT and merger", "seg_head", "SAM2.1"}
    dropped = report.allowed_unexpected[uni.UNUSED_MODULES.reason]
    prefixes = {k.split(":", 1)[1].split(".")[0] for k in dropped}
    assert prefixes == {
        "ref_encoder",
        "ref_proj_single",
        "ref_proj_double",
        "ref_proj",
        "tem_pe",
        "tem_emb",
        "tem_proj",
        "msk_proj",
    }


def test_unipixel_tokens_seg_is_the_release_row_and_box_is_new(unipixel):
    model = unipixel.model
    assert model.seg_token_id == UNIPIXEL_META["seg_token_id"]
    assert model.box_token_id not in (model.seg_token_id,) and model.box_token_id > model.seg_token_id
    assert model.tokenizer.convert_tokens_to_ids("<|ref|>") == model.seg_token_id - 1


def test_unipixel_fuser_layer_scale_and_seg_head_norm(unipixel):
    from safetensors.torch import load_file

    stored = load_file(str(UNIPIXEL_DIR / "model.safetensors"))
    sam = unipixel.model.pixel_decoder.sam
    torch.testing.assert_close(
        sam.memory_encoder.fuser.layers[1].gamma, stored["sam2.memory_encoder.fuser.layers.1.weight"].float()
    )
    norm = unipixel.model.lv_projector.net[0]
    assert norm.variance_epsilon == uni.SEG_HEAD_EPS
    assert UNIPIXEL_META["official_loader"]["fuser_layer_scale_equals_saved"]


def test_unipixel_llm_and_seg_head_match_official(unipixel, unipixel_official):
    model = unipixel.model
    ids = unipixel_official["ids"]
    with torch.no_grad():
        logits, prenorm, _ = model.llm(model.llm.embed(ids), torch.ones_like(ids))
        seg = model.lv_projector.net(prenorm)
        small = model.lv_projector.net(prenorm * 1e-3)
    torch.testing.assert_close(prenorm, unipixel_official["prenorm"], atol=TOL, rtol=0)
    torch.testing.assert_close(logits, unipixel_official["logits"], atol=TOL, rtol=0)
    torch.testing.assert_close(seg, unipixel_official["seg_tokens"], atol=TOL, rtol=0)
    torch.testing.assert_close(small, unipixel_official["seg_tokens_small"], atol=TOL, rtol=0)


def test_unipixel_default_rms_eps_would_not_match(unipixel, unipixel_official):
    """The eps pin: torch's default RMSNorm eps gives different seg_head outputs on small states."""
    weight = unipixel.model.lv_projector.net[0].weight
    default = torch.nn.RMSNorm(weight.shape[0])
    default.weight.data.copy_(weight)
    x = unipixel_official["prenorm"] * 1e-3
    with torch.no_grad():
        out = unipixel.model.lv_projector.net[1:](default(x))
    assert (out - unipixel_official["seg_tokens_small"]).abs().max() > TOL


def test_unipixel_round_trip(unipixel, tmp_path):
    from sparrow.model.sparrow_model import SparrowModel

    out = write_converted(unipixel, tmp_path / "unipixel-host")
    loaded = SparrowModel.from_pretrained(out)
    assert loaded.cfg.seg_head_norm_eps == uni.SEG_HEAD_EPS and not loaded.cfg.box
    assert loaded.cfg.protocol == "unipixel-native"
    assert loaded.tokenizer.chat_template == unipixel.model.tokenizer.chat_template is not None
    state = unipixel.model.state_dict()
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, state[key])


def test_unipixel_unknown_module_is_unexplained(tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "release"
    shutil.copytree(UNIPIXEL_DIR, folder)
    state = load_file(str(folder / "model.safetensors"))
    state["obj_head.weight"] = torch.zeros(2)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ConversionError) as err:
        convert(_unipixel(src=folder))
    assert err.value.report.unexpected == ["release:obj_head.weight"]


def test_unipixel_refuses_other_model_types(tmp_path):
    import shutil

    folder = tmp_path / "release"
    shutil.copytree(UNIPIXEL_DIR, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"] = "qwen2_5_vl"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ReleaseError, match="pixel_qwen2_5_vl"):
        convert(_unipixel(src=folder))


def test_paper_preset_seg_head_eps_only_at_paper_size():
    from sparrow.model.config import ModelConfig

    assert ModelConfig.for_preset("unipixel", "paper").seg_head_norm_eps == 1e-6
    assert ModelConfig.for_preset("unipixel", "mini").seg_head_norm_eps is None
    assert ModelConfig.for_preset("unipixel", "smoke").seg_head_norm_eps is None


# -- GLUS-A: the tiny folder written by make_glus_fixture.py (official code, transformers 4.31) ----------------------
GLUS_DIR = FIXTURES / "glus"
GLUS_META = json.loads((FIXTURES / "glus_outputs.json").read_text())


def _glus(**changes) -> ConvertOptions:
    base = dict(
        release="glus",
        src=GLUS_DIR,
        clip=FIXTURES / "clip",
        tokenizer=FIXTURES / "glus-tokenizer-fast",
        sam_config=FIXTURES / "sam2_tiny.yaml",
        dtype="float32",
    )
    return ConvertOptions(**{**base, **changes})


@pytest.fixture(scope="module")
def glus():
    return convert(_glus())


@pytest.fixture(scope="module")
def glus_official() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(FIXTURES / "glus_outputs.safetensors"))


def test_glus_release_layout():
    from sparrow.convert.reader import read_release

    release = read_release(GLUS_DIR)
    assert release.config["model_type"] == "llava"
    assert len(release.weight_files) == 2 and all(f.endswith(".bin") for f in release.weight_files)
    assert {"[SEG]", "<im_start>", "<im_end>"} <= set(release.added_tokens)
    assert not any("vision_tower" in k for k in release.state)


def test_glus_converts_with_zero_unexplained_keys(glus):
    assert glus.report.ok, glus.report.format()
    assert set(glus.report.mapped) == {
        "LLaMA LLM",
        "mm_projector (linear)",
        "L->V projector (text_hidden_fcs)",
        "SAM2",
        "CLIP spatial tower (224)",
    }
    model = glus.model
    assert model.cfg.protocol == "glus"
    assert model.seg_token_id == GLUS_META["seg_token_id"]
    rows = model.box_token_id
    assert torch.all(model.llm.input_embeddings().weight[rows] == 0)


def test_glus_fuser_layer_scale_is_what_the_official_loader_left(glus, glus_official):
    """transformers 4.31 drops the stored gamma (missing gamma, unexpected weight); the official model keeps 1e-6."""
    loader = GLUS_META["official_loader"]
    assert all(k.endswith("gamma") for k in loader["missing_keys"]) and len(loader["missing_keys"]) == 2
    for i in (0, 1):
        gamma = glus.model.pixel_decoder.sam.memory_encoder.fuser.layers[i].gamma
        torch.testing.assert_close(gamma, glus_official["loaded_fuser_gamma"])


def test_glus_stored_fuser_policy_keeps_the_saved_values():
    converted = convert(_glus(fuser_gamma="stored"))
    gamma = converted.model.pixel_decoder.sam.memory_encoder.fuser.layers[1].gamma
    torch.testing.assert_close(gamma, torch.full_like(gamma, GLUS_META["stored_gamma"]), atol=1e-3, rtol=0)


def test_glus_llm_projectors_match_official(glus, glus_official):
    from sparrow.model.spatial_encoder import CLIP_MEAN, CLIP_STD

    model = glus.model
    ids = glus_official["ids"]
    with torch.no_grad():
        logits, hidden, _ = model.llm(model.llm.embed(ids), torch.ones_like(ids))
        seg = model.lv_projector(hidden[0]).squeeze(1)
        pixels = glus_official["pixels"]
        frames = pixels * torch.tensor(CLIP_STD).view(1, 3, 1, 1) + torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        image_tokens = model.image_adapter(model.spatial(frames))
    vocab = glus_official["logits"].shape[-1]
    torch.testing.assert_close(hidden, glus_official["hidden"], atol=TOL, rtol=0)
    torch.testing.assert_close(logits[..., :vocab], glus_official["logits"], atol=TOL, rtol=0)
    torch.testing.assert_close(seg, glus_official["seg_embeddings"][0], atol=TOL, rtol=0)
    torch.testing.assert_close(image_tokens, glus_official["image_tokens"], atol=TOL, rtol=0)


def test_glus_needs_the_clip_folder():
    with pytest.raises(ReleaseError, match="--clip"):
        convert(_glus(clip=None))


# -- paper size: the official SAM2 key names and shapes (written by the official code) against the kit's SAM2 ------
@pytest.mark.slow
@pytest.mark.parametrize(
    "host, config, size, prefix",
    [
        ("unipixel", "configs/sam2.1/sam2.1_hiera_b+.yaml", 768, "sam2."),
        ("glus", "configs/sam2/sam2_hiera_l.yaml", None, "model.visual_model."),
    ],
)
def test_paper_size_sam2_keys_map_one_to_one(host, config, size, prefix):
    """``sam2_official_keys.json``: the state_dict names and shapes of UniPixel's fork (SAM2.1-B+ at 768) and GLUS's
    copy (SAM2 Hiera-L), built by their own code; the key map fills the kit's paper-size SAM2 from them, key for key."""
    from sparrow.convert import glus as glus_map
    from sparrow.model.config import SamSpec
    from sparrow.model.pixel_decoder import build_sam
    from sparrow.model.state_report import apply_keymap

    official = json.loads((FIXTURES / "sam2_official_keys.json").read_text())[host]
    sam = build_sam(SamSpec(config=config, image_size=size, tiny=False), None, None)
    kit_state = {"pixel_decoder.sam." + k: v for k, v in sam.state_dict().items()}
    zero = torch.zeros(())
    release = {prefix + k: zero.expand(shape) for k, shape in official.items()}
    keymap = uni.keymap() if host == "unipixel" else glus_map.keymap()
    mapped, report = apply_keymap(keymap, {"release": release}, kit_state, {"fuser_gamma": lambda t: t})
    assert report.ok, report.format()
    assert len(mapped) == len(kit_state) == len(official)
