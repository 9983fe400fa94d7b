"""The paper-size loading path with tiny components on disk.

Every component is saved the way its real release is (transformers ``save_pretrained`` folders for the LLM, its
tokenizer and CLIP; InternVideo2's stage-2 ``.pt``; sam2's ``{"model": state_dict}`` checkpoint next to its yaml; the
proposer's folder, the kit's or a released ``checkpoint-*`` folder)
under the folder names the paper presets expect, and the model is built by ``ModelConfig.for_preset(host, "paper")``
with only ``weights_root`` pointing at them. The SAM2 config is a local yaml instead of the packaged Hiera-L name
(a real Hiera-L would not be tiny); UniPixel's 768-px SAM2 override is dropped for the same reason.
"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch

import sparrow  # noqa: F401  (torchvision shim first)
from fixtures.release_layouts import TINY_PROPOSER, write_internvideo2_release, write_proposer_release
from sparrow.model import ModelConfig, SparrowExample, SparrowModel
from sparrow.model.config import ProposerSpec
from sparrow.model.deformable_detr import DeformableProposer
from sparrow.model.frames import stretch, to_float
from sparrow.model.internvideo2 import InternVideo2Config
from sparrow.model.pixel_decoder import tiny_overrides
from sparrow.model.presets import paper_components
from sparrow.model.proposer import ClassAgnosticProposer
from sparrow.model.temporal_encoder import InternVideo2Encoder

pytestmark = pytest.mark.usefixtures("one_thread")


WORDS = [
    "the",
    "a",
    "red",
    "blue",
    "square",
    "circle",
    "moving",
    "left",
    "right",
    "can",
    "you",
    "segment",
    "in",
    "this",
    "video",
    "what",
    "is",
    "please",
    "sure",
    "it",
    ",",
    ".",
    "?",
    "respond",
    "with",
    "masks",
]


def base_tokenizer(bos: bool = True):
    """A released-style tokenizer: no [SEG]/[BOX] yet (the loader adds them and resizes the embeddings)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>" if bos else None, eos_token="</s>"
    )


def save_llm(kind: str, folder) -> dict[str, torch.Tensor]:
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        Phi3Config,
        Phi3ForCausalLM,
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
    )

    tok = base_tokenizer(bos=kind != "qwen2_5_vl")
    text = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
    )
    torch.manual_seed(1)
    if kind == "phi3":
        model = Phi3ForCausalLM(Phi3Config(**text))
    elif kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(**text))
    else:
        model = Qwen2_5_VLForConditionalGeneration(
            Qwen2_5_VLConfig(
                text_config=dict(text, rope_scaling={"type": "mrope", "mrope_section": [2, 1, 1]}),
                vision_config=dict(
                    depth=1,
                    hidden_size=16,
                    intermediate_size=32,
                    num_heads=2,
                    out_hidden_size=32,
                    patch_size=14,
                    spatial_merge_size=2,
                    temporal_patch_size=2,
                    window_size=112,
                    fullatt_block_indexes=[0],
                    in_channels=3,
                ),
                pad_token_id=0,
                bos_token_id=2,
                eos_token_id=3,
            )
        )
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return {k: v.clone() for k, v in model.state_dict().items()}


def save_clip(folder, image_size: int) -> dict[str, torch.Tensor]:
    from transformers import CLIPVisionConfig, CLIPVisionModel

    model = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=8,
        )
    )
    model.save_pretrained(folder)
    return {k: v.clone() for k, v in model.state_dict().items()}


def save_internvideo2(path) -> dict[str, torch.Tensor]:
    """A tiny InternVideo2 in the released stage-2 ``.pt`` layout; returns its weights under the kit's names."""
    model = write_internvideo2_release(path, InternVideo2Config.tiny())
    return {k: v.clone() for k, v in model.state_dict().items()}


def tiny_internvideo2(paper: ModelConfig) -> dict:
    """The temporal-spec override describing the tiny file (the released .pt holds no configuration)."""
    if paper.temporal is None:
        return {}
    c = InternVideo2Config.tiny()
    return {
        "temporal": dataclasses.replace(
            paper.temporal,
            image_size=c.image_size,
            patch_size=c.patch_size,
            hidden_size=c.embed_dim,
            num_layers=c.depth,
            num_heads=c.num_heads,
            intermediate_size=c.mlp_dim,
        )
    }


def save_sam2(root, packaged: str) -> tuple[str, dict[str, torch.Tensor]]:
    """sam2's own formats: the composed yaml and ``torch.save({"model": state_dict})``."""
    import sam2  # noqa: F401
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = compose(config_name=packaged, overrides=tiny_overrides(128))
    OmegaConf.resolve(cfg)
    OmegaConf.save(cfg, root / "sam2_tiny.yaml")
    torch.manual_seed(2)
    sam = instantiate(cfg.model, _recursive_=True)
    state = {k: v.clone() for k, v in sam.state_dict().items()}
    return "sam2_tiny.yaml", state


def example(cfg: ModelConfig, h: int = 48, w: int = 64) -> SparrowExample:
    rng = np.random.default_rng(0)
    video = rng.integers(0, 255, (20, h, w, 3), dtype=np.uint8)
    idx = np.linspace(0, 19, cfg.num_frames).astype(int)
    sam_idx = np.linspace(0, 19, cfg.num_sam_frames).astype(int)
    masks = np.zeros((1, cfg.num_sam_frames, h, w), np.int8)
    masks[0, :, 10:30, 20:40] = 1
    return SparrowExample(
        "s/v",
        "e0",
        "expression",
        "the red square",
        None,
        video[idx],
        video[sam_idx],
        masks,
        np.array([[20 / w, 10 / h, 40 / w, 30 / h]], np.float32),
    )


def assert_same(
    expected: dict[str, torch.Tensor], module: torch.nn.Module, prefix: str = "", dtype: torch.dtype = torch.bfloat16
) -> None:
    """Every saved tensor arrived (as the configured dtype), LoRA wrapping aside."""
    actual = {k.replace(".base_layer", ""): v for k, v in module.state_dict().items() if ".lora_" not in k}
    for key, value in expected.items():
        got = actual[prefix + key]
        if got.shape != value.shape:  # resized embeddings: the original rows are kept
            got = got[: value.shape[0]]
        assert torch.equal(got, value.to(dtype)), key


@pytest.mark.parametrize("host", ["videoglamm", "glus", "unipixel"])
def test_paper_presets_load_local_components(tmp_path, host):
    root = tmp_path / "weights"
    root.mkdir()
    paths = paper_components(host)
    llm_kind = {"videoglamm": "phi3", "glus": "llama", "unipixel": "qwen2_5_vl"}[host]
    llm_state = save_llm(llm_kind, root / paths["llm"])
    clip_state = save_clip(root / paths["vision"], 32) if "vision" in paths else None
    temporal_state = save_internvideo2(root / paths["temporal"]) if "temporal" in paths else None
    sam_yaml, sam_state = save_sam2(root, paths["sam_config"])
    torch.save({"model": sam_state}, root / paths["sam_checkpoint"])
    proposer = ClassAgnosticProposer(
        ProposerSpec(
            d_model=32,
            num_queries=10,
            encoder_layers=1,
            decoder_layers=2,
            num_heads=2,
            ffn_dim=32,
            topk=6,
            image_size=448,
        ),
        in_channels=64,
    )
    proposer.save_pretrained(root / "proposer")

    paper = ModelConfig.for_preset(host, "paper")
    sam = dataclasses.replace(paper.sam, config=sam_yaml, image_size=None)
    cfg = ModelConfig.for_preset(
        host,
        "paper",
        weights_root=str(root),
        sam=sam,
        proposer=dataclasses.replace(paper.proposer, path="proposer"),
        **tiny_internvideo2(paper),
    )
    assert cfg.llm.path == paths["llm"] and cfg.sam.checkpoint == paths["sam_checkpoint"]
    model = SparrowModel.from_config(cfg)

    assert model.llm.input_embeddings().weight.shape[0] == len(base_tokenizer()) + 2  # [SEG] and [BOX] added
    assert_same(llm_state, model.llm.model, "")
    if clip_state is not None:
        assert_same(clip_state, model.spatial.clip)
    if temporal_state is not None:
        assert_same(temporal_state, model.temporal.model)
        assert model.temporal.chunk_size == 4 and model.temporal.tubelet == 1
    assert_same(sam_state, model.pixel_decoder.sam, dtype=torch.float32)  # SAM2 and the box modules stay fp32
    assert_same(proposer.state_dict(), model.proposer, dtype=torch.float32)
    assert model.pixel_decoder.image_size == 128 and model.proposer.spec.image_size == 448

    for stage in ("stage1", "stage2"):
        model.configure_stage(stage).train()
        out = model(model.collator()([example(cfg)]))
        assert torch.isfinite(out.loss) and out.losses["ce"] > 0
        out.loss.backward()
    assert out.losses["prop"] > 0

    seg, box, eos = model.seg_token_id, model.box_token_id, model.tokenizer.eos_token_id
    real = type(model.llm).generate
    model.llm.generate = lambda embeds, n, stops: real(model.llm, embeds, n, stops, forced=[box, seg, eos])
    frames = np.random.default_rng(1).integers(0, 255, (6, 48, 64, 3), dtype=np.uint8)
    pred = model.predict(frames, "the red square")
    assert pred.seg_found and pred.masks.shape == (6, 48, 64)
    del model.llm.generate

    # a checkpoint of the paper-size model is self-contained: the component folders are no longer needed
    target = model.save_pretrained(tmp_path / "ckpt")
    shutil.rmtree(root)
    again = SparrowModel.from_pretrained(target)
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_paper_videoglamm_defaults_to_the_released_architecture():
    cfg = ModelConfig.for_preset("videoglamm", "paper")
    assert cfg.temporal.kind == "internvideo2" and cfg.temporal.chunk_size == 4 and cfg.temporal.hidden_size == 1408
    assert cfg.proposer.kind == "deformable_detr" and cfg.proposer.num_queries == 300 and cfg.proposer.topk == 100
    assert cfg.proposer.image_size == 448 and cfg.proposer.backbone_checkpoint == "sam2_hiera_large.pt"
    for profile in ("smoke", "mini"):  # the tiny presets keep the components they train in minutes
        tiny = ModelConfig.for_preset("videoglamm", profile)
        assert tiny.temporal.kind == "videomae" and tiny.proposer.kind == "detr"


def test_paper_videoglamm_runs_with_internvideo2_and_a_released_proposer_folder(tmp_path):
    root = tmp_path / "weights"
    root.mkdir()
    paths = paper_components("videoglamm")
    save_llm("phi3", root / paths["llm"])
    save_clip(root / paths["vision"], 32)
    temporal_state = save_internvideo2(root / paths["temporal"])
    sam_yaml, sam_state = save_sam2(root, paths["sam_config"])
    torch.save({"model": sam_state}, root / paths["sam_checkpoint"])
    released = write_proposer_release(root / "sparrow-det-pretrain" / "checkpoint-5000")

    paper = ModelConfig.for_preset("videoglamm", "paper")
    proposer = dataclasses.replace(
        paper.proposer, path="sparrow-det-pretrain/checkpoint-5000", image_size=64, topk=6, backbone_tiny=True
    )
    sam = dataclasses.replace(paper.sam, config=sam_yaml, image_size=None)
    cfg = ModelConfig.for_preset(
        "videoglamm", "paper", weights_root=str(root), sam=sam, proposer=proposer, **tiny_internvideo2(paper)
    )
    model = SparrowModel.from_config(cfg)
    assert isinstance(model.temporal, InternVideo2Encoder) and isinstance(model.proposer, DeformableProposer)
    assert_same(temporal_state, model.temporal.model)
    assert_same(released.state_dict(), model.proposer, dtype=torch.float32)
    assert model.proposer.spec.num_queries == TINY_PROPOSER.num_queries and model.proposer.spec.topk == 6

    item = example(cfg)
    batch = model.collator("stage2")([item])
    # InternVideo2's frames are stretched, not cropped like CLIP's
    assert torch.equal(batch.temporal_frames[0], stretch(to_float(item.frames), 28))
    model.configure_stage("stage2").train()
    out = model(batch)
    assert torch.isfinite(out.loss) and out.losses["prop"] > 0
    out.loss.backward()
    trained = {id(p) for p in model.trainable_parameters("proposer")}
    names = [n for n, p in model.named_parameters() if id(p) in trained]
    assert names and not any(n.startswith("proposer.vis_encoder.") for n in names)  # its SAM2 copy stays frozen

    seg, box, eos = model.seg_token_id, model.box_token_id, model.tokenizer.eos_token_id
    real = type(model.llm).generate
    model.llm.generate = lambda embeds, n, stops: real(model.llm, embeds, n, stops, forced=[box, seg, eos])
    frames = np.random.default_rng(1).integers(0, 255, (5, 48, 64, 3), dtype=np.uint8)
    pred = model.eval().predict(frames, "the red square")
    assert pred.seg_found and pred.masks.shape == (5, 48, 64)
    del model.llm.generate

    target = model.save_pretrained(tmp_path / "ckpt")
    shutil.rmtree(root)
    again = SparrowModel.from_pretrained(target)
    assert isinstance(again.temporal, InternVideo2Encoder) and isinstance(again.proposer, DeformableProposer)
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
