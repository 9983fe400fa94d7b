"""Random-weight component folders in the released formats, for speed measurements without the real weights.

``write_videoglamm_components`` writes what ``ModelConfig.for_preset("videoglamm", "paper")`` loads, in the default
layout of a weights root (the names of :func:`sparrow.model.presets.paper_components`: transformers
``save_pretrained`` folders for Phi-3 and CLIP plus a tokenizer; InternVideo2's stage-2 ``.pt`` layout; sam2's
``{"model": state_dict}`` checkpoint for the packaged Hiera-L config; the proposer's own folder, with its SAM2
backbone copy), so the model is then built by the paper-size
loading code itself, through the same component resolution as real weights. Speed depends on the architecture, not
on the weights' values: at ``scale="paper"`` every dimension is the released one (Phi-3-mini-4k, CLIP ViT-L/14-336,
InternVideo2-1B, SAM2 Hiera-L, the 300-query Deformable-DETR proposer); ``scale="tiny"`` keeps the same folder layout with small
dimensions, so the same path runs on a CPU in seconds (the test of the benchmark script).

The tokenizer is the kit's offline word-level tokenizer padded to Phi-3's 32,011 entries (its real tokenizer is a
SentencePiece model that cannot be fetched here), so the embedding and output layers have the released sizes; the
prompt's token count differs from Phi-3's by a few text tokens, next to hundreds of visual tokens.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import torch

from sparrow.model.config import ModelConfig
from sparrow.model.presets import paper_components
from sparrow.model.tokens import build_word_tokenizer

Scale = Literal["paper", "tiny"]
PHI3_TOKENIZER_SIZE = 32_011


def _tokenizer(size: int):
    base = len(build_word_tokenizer())
    return build_word_tokenizer(tuple(f"w{i}" for i in range(max(0, size - base))))


@contextmanager
def _init_on(device: str | torch.device, dtype: torch.dtype):
    """Build modules directly on ``device`` in ``dtype`` (Phi-3 in fp32 first would need 15 GB more memory)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def write_videoglamm_components(
    root: Path, scale: Scale = "paper", device: str | torch.device = "cpu", seed: int = 0
) -> ModelConfig:
    """Write random VideoGLaMM + SPARROW components under ``root``; returns the paper preset pointing at them.

    ``device``: where the random weights are initialised (a GPU initialises Phi-3's 3.8 B parameters in seconds).
    """
    import sam2  # noqa: F401  (initialises sam2's hydra config module)
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from transformers import CLIPVisionConfig, CLIPVisionModel, Phi3Config, Phi3ForCausalLM

    from sparrow.model.internvideo2 import RELEASE_PREFIX, InternVideo2, InternVideo2Config
    from sparrow.model.pixel_decoder import tiny_overrides
    from sparrow.model.proposer import build_proposer

    if scale not in ("paper", "tiny"):
        raise ValueError(f"scale must be 'paper' or 'tiny', got {scale!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = paper_components("videoglamm")
    paper = ModelConfig.for_preset("videoglamm", "paper")
    tiny = scale == "tiny"
    torch.manual_seed(seed)

    tokenizer = _tokenizer(64 if tiny else PHI3_TOKENIZER_SIZE)
    specials = dict(
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id
    )
    if tiny:
        llm_config = Phi3Config(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            **specials,
        )
    else:
        llm_config = Phi3Config(**specials)  # transformers' defaults are Phi-3-mini-4k's dimensions
    with _init_on(device, torch.bfloat16):
        Phi3ForCausalLM(llm_config).save_pretrained(root / paths["llm"])
    tokenizer.save_pretrained(root / paths["llm"])

    clip = (
        dict(
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        )
        if tiny
        else dict(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            image_size=336,
            patch_size=14,
            projection_dim=768,
        )
    )
    temporal = InternVideo2Config.tiny() if tiny else InternVideo2Config()
    with _init_on(device, torch.bfloat16):
        CLIPVisionModel(CLIPVisionConfig(**clip)).save_pretrained(root / paths["vision"])
        encoder = InternVideo2(temporal)
    (root / paths["temporal"]).parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {"model": {RELEASE_PREFIX + k: v.cpu() for k, v in encoder.state_dict().items()}}, root / paths["temporal"]
    )
    del encoder
    temporal_spec = dataclasses.replace(
        paper.temporal,
        image_size=temporal.image_size,
        patch_size=temporal.patch_size,
        hidden_size=temporal.embed_dim,
        num_layers=temporal.depth,
        num_heads=temporal.num_heads,
        intermediate_size=temporal.mlp_dim,
    )

    sam_cfg = compose(config_name=paths["sam_config"], overrides=tiny_overrides(128) if tiny else [])
    OmegaConf.resolve(sam_cfg)
    with _init_on(device, torch.float32):
        sam = instantiate(sam_cfg.model, _recursive_=True)
    sam_spec = paper.sam
    if tiny:
        OmegaConf.save(sam_cfg, root / "sam2_tiny.yaml")
        sam_spec = dataclasses.replace(sam_spec, config="sam2_tiny.yaml")
    torch.save({"model": {k: v.cpu() for k, v in sam.state_dict().items()}}, root / paths["sam_checkpoint"])

    spec = (
        dataclasses.replace(
            paper.proposer,
            d_model=32,
            num_queries=10,
            encoder_layers=1,
            decoder_layers=2,
            num_heads=2,
            ffn_dim=32,
            topk=6,
            backbone_tiny=True,
        )
        if tiny
        else paper.proposer
    )
    with _init_on(device, torch.float32):
        proposer = build_proposer(spec, int(sam.hidden_dim))
    proposer.save_pretrained(root / "proposer")
    return ModelConfig.for_preset(
        "videoglamm",
        "paper",
        weights_root=str(root),
        temporal=temporal_spec,
        sam=sam_spec,
        proposer=dataclasses.replace(paper.proposer, path="proposer"),
    )
