"""``sparrow convert --release unipixel|glus``: tiny released-layout folders written by the official code convert
with zero unexplained keys, and the converted kit model reproduces the official outputs stored beside them.

The folders and outputs under ``tests/fixtures/released/`` were written by ``make_unipixel_fixture.py`` there (the
official UniPixel code under transformers 4.53, which writes Qwen2.5-VL's legacy key names).

Tolerances, per tensor (float32 on CPU, the weights are the same fp16-rounded values on both sides): logits and the
pre-norm states 1e-4 absolute (a different attention kernel and transformers version); ``seg_head`` outputs 1e-4.
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
TOL = 1e-4


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


# -- GLUS-A: a released-layout folder written here (llava config, .bin shards, LISA's added tokens) ----------------
GLUS_CLIP = FIXTURES / "clip"
GLUS_SAM = FIXTURES / "sam2_tiny.yaml"


def _glus_release(folder: Path, gamma: float = 0.37) -> dict[str, torch.Tensor]:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from sparrow.model.config import SamSpec
    from sparrow.model.pixel_decoder import build_sam

    torch.manual_seed(0)
    words = ["<unk>", "<s>", "</s>", "can", "you", "segment", "the", "dog", "sure", "."]
    tk = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    tok.add_tokens(["[SEG]", "<im_start>", "<im_end>"])
    folder.mkdir(parents=True)
    tok.save_pretrained(folder)
    # transformers 4.31 writes the added tokens to added_tokens.json, as the release holds them
    added = {t: tok.convert_tokens_to_ids(t) for t in ("[SEG]", "<im_start>", "<im_end>")}
    (folder / "added_tokens.json").write_text(json.dumps(added))
    llama = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
    )
    state = {k: v.clone() for k, v in LlamaForCausalLM(llama).state_dict().items()}
    clip_width = json.loads((GLUS_CLIP / "config.json").read_text())["vision_config"]["hidden_size"]
    state["model.mm_projector.weight"] = torch.randn(32, clip_width)
    state["model.mm_projector.bias"] = torch.randn(32)
    sam = build_sam(SamSpec(config=str(GLUS_SAM), image_size=None, tiny=False), GLUS_SAM, None)
    sam_dim = int(sam.hidden_dim)
    for i, shape in ((0, (32, 32)), (2, (sam_dim, 32))):
        state[f"model.text_hidden_fcs.0.{i}.weight"] = torch.randn(shape)
        state[f"model.text_hidden_fcs.0.{i}.bias"] = torch.randn(shape[0])
    for key, value in sam.state_dict().items():
        state[f"model.visual_model.{key}"] = value.clone()
    for i in (0, 1):
        state[f"model.visual_model.memory_encoder.fuser.layers.{i}.gamma"].fill_(gamma)
    keys = sorted(state)
    halves = {
        "pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2],
        "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2 :],
    }
    for name, part in halves.items():
        torch.save({k: state[k] for k in part}, folder / name)
    index = {"metadata": {}, "weight_map": {k: n for n, part in halves.items() for k in part}}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    config = {
        **llama.to_dict(),
        "model_type": "llava",
        "architectures": ["GLUSForCausalLM"],
        "mm_vision_tower": "openai/clip-vit-large-patch14",
        "mm_hidden_size": clip_width,
        "mm_vision_select_layer": -2,
        "mm_use_im_start_end": True,
        "train_mask_decoder": True,
        "out_dim": sam_dim,
    }
    (folder / "config.json").write_text(json.dumps(config))
    return state


def _glus(src: Path, **changes) -> ConvertOptions:
    base = dict(release="glus", src=src, clip=GLUS_CLIP, sam_config=GLUS_SAM, dtype="float32")
    return ConvertOptions(**{**base, **changes})


@pytest.fixture(scope="module")
def glus_release(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    folder = tmp_path_factory.mktemp("glus") / "GLUS-A"
    return folder, _glus_release(folder)


def test_glus_converts_with_zero_unexplained_keys_and_official_fuser(glus_release):
    from sparrow.convert import glus

    folder, state = glus_release
    converted = convert(_glus(folder))
    assert converted.report.ok, converted.report.format()
    assert set(converted.report.mapped) == {
        "LLaMA LLM",
        "mm_projector (linear)",
        "L->V projector (text_hidden_fcs)",
        "SAM2",
        "CLIP spatial tower (224)",
    }
    model = converted.model
    fuser = model.pixel_decoder.sam.memory_encoder.fuser.layers[0].gamma
    assert torch.all(fuser == glus.layer_scale_init(GLUS_SAM))
    torch.testing.assert_close(model.image_adapter.proj[0].weight, state["model.mm_projector.weight"])
    torch.testing.assert_close(model.lv_projector.net[2].weight, state["model.text_hidden_fcs.0.2.weight"])
    rows = state["model.embed_tokens.weight"].shape[0]
    assert model.box_token_id == rows and model.seg_token_id == 10
    emb = model.llm.input_embeddings().weight
    torch.testing.assert_close(emb[:rows], state["model.embed_tokens.weight"])
    assert torch.all(emb[rows] == 0)


def test_glus_stored_fuser_policy_keeps_the_saved_values(glus_release):
    folder, _ = glus_release
    converted = convert(_glus(folder, fuser_gamma="stored"))
    fuser = converted.model.pixel_decoder.sam.memory_encoder.fuser.layers[1].gamma
    assert torch.allclose(fuser, torch.full_like(fuser, 0.37))


def test_glus_needs_the_clip_folder(glus_release):
    folder, _ = glus_release
    with pytest.raises(ReleaseError, match="--clip"):
        convert(_glus(folder, clip=None))
