"""The kit's component specs read from a release's Hugging Face configs, shared by every release's converter."""

from __future__ import annotations

from typing import Any


def llm_spec(kind: str, hf_config: Any, base: Any, dtype: str | None) -> Any:
    """:class:`sparrow.model.config.LLMSpec` of a transformers text config (``hf_config``); the context length the
    kit trains with and the default dtype come from the preset ``base`` (a ModelConfig)."""
    from sparrow.model.config import LLMSpec

    return LLMSpec(
        kind=kind,
        hidden_size=hf_config.hidden_size,
        num_layers=hf_config.num_hidden_layers,
        num_heads=hf_config.num_attention_heads,
        num_kv_heads=hf_config.num_key_value_heads,
        intermediate_size=hf_config.intermediate_size,
        max_position_embeddings=hf_config.max_position_embeddings,
        model_max_length=base.llm.model_max_length,
        dtype=dtype or base.llm.dtype,
    )


def clip_vision_spec(clip_config: Any, select_layer: int) -> Any:
    """:class:`sparrow.model.config.VisionSpec` of a CLIP vision tower's transformers config."""
    from sparrow.model.config import VisionSpec

    return VisionSpec(
        kind="clip",
        image_size=clip_config.image_size,
        patch_size=clip_config.patch_size,
        hidden_size=clip_config.hidden_size,
        num_layers=clip_config.num_hidden_layers,
        num_heads=clip_config.num_attention_heads,
        intermediate_size=clip_config.intermediate_size,
        select_layer=select_layer,
    )
