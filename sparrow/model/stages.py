"""Training stages of :class:`~sparrow.model.sparrow_model.SparrowModel`: LoRA injection and folding, and which
parameters train in each stage (``configure_stage``; docs/design.md §10).

- ``host``: the host model's own recipe (no TSF, no ``[BOX]``): LoRA on the LLM's q/v projections plus full training
  of ``lm_head``, ``embed_tokens``, the L->V projector, the V->L adapters and the SAM2 mask decoder (VideoGLaMM's
  ``train_ds`` defaults; ``host_trainable_sam`` / ``host_train_adapters`` change the last two). The paper starts
  from released host checkpoints; the kit trains its own baseline with this stage.
- ``proposer``: class-agnostic proposer pretraining on SAM2 frame-0 features (only the proposer trains).
- ``stage1``: TSF injection: LoRA r=8, alpha=16, dropout 0.05 on the LLM's q/v matches and on every Linear of the
  V->L adapters and the L->V projector; nothing else trains (``lm_head`` and ``embed_tokens`` stay frozen, so the
  ``[BOX]`` row keeps its resize initialisation, as in the released code).
- ``stage2``: LoRA on the LLM and the L->V projector, plus the ProposalSelector, the ROI helper and ``gamma``;
  detection guidance on, TSF off, proposal loss on.

LoRA layers (peft) are injected once at construction on the union of those targets, so every stage has the same
state_dict keys. Moving from one stage to the next on the previous stage's weights (the released pipeline exports
merged weights and starts a fresh LoRA) is :func:`merge_lora`, or ``configure_stage(stage, fold_lora=True)``; a
resumed run of the same stage must not fold.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from sparrow.model.config import MODEL_STAGES

if TYPE_CHECKING:
    from sparrow.model.sparrow_model import SparrowModel

_ADAPTERS = ("image_adapter.", "video_adapter.")
_VISUAL_MERGER = ".visual.merger."  # Qwen2.5-VL's own V->L merger (UniPixel)


def _adapter_linear_names(model: SparrowModel) -> list[str]:
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and (name.startswith(_ADAPTERS + ("lv_projector.",)) or _VISUAL_MERGER in name)
    ]


def inject_lora(model: SparrowModel) -> None:
    """LoRA on the LLM's configured targets and on every Linear of the V->L adapters and the L->V projector."""
    from peft import LoraConfig, inject_adapter_in_model

    lora = model.cfg.lora
    targets = ["llm.model." + n for n in model.llm.lora_target_names(lora.llm_targets, lora.exclude)]
    targets += _adapter_linear_names(model)
    config = LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, bias="none", target_modules=targets)
    inject_adapter_in_model(config, model)


def _names_by_group(model: SparrowModel) -> dict[str, set[str]]:
    names = [n for n, _ in model.named_parameters()]
    lora = {n for n in names if ".lora_" in n}
    by_id = {id(p): n for n, p in model.named_parameters()}
    embeddings = {
        by_id[id(p)]
        for m in (model.llm.input_embeddings(), model.llm.output_embeddings())
        if m is not None
        for p in m.parameters()
        if id(p) in by_id
    }
    adapters = {n for n in names if n.startswith(_ADAPTERS) or _VISUAL_MERGER in n}
    return {
        "llm_lora": {n for n in lora if n.startswith("llm.") and ".visual." not in n},
        "adapter_lora": adapters & lora,
        "adapter_base": adapters - lora,
        "lv_lora": {n for n in lora if n.startswith("lv_projector.")},
        "lv_base": {n for n in names if n.startswith("lv_projector.")} - lora,
        "embeddings": embeddings,
        "mask_decoder": {n for n in names if n.startswith("pixel_decoder.sam.sam_mask_decoder.")},
        "sam": {n for n in names if n.startswith("pixel_decoder.sam.")},
        # the released proposer's own SAM2 backbone copy stays frozen, as in its pretraining
        "proposer": {n for n in names if n.startswith("proposer.") and not n.startswith("proposer.vis_encoder.")},
        "selection": {n for n in names if n.startswith(("selector.", "roi_helper.")) or n == "roi_fusion_gamma"},
    }


def trainable_names(model: SparrowModel, stage: str) -> set[str]:
    """The parameter names that train in ``stage``."""
    if stage not in MODEL_STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(MODEL_STAGES)}")
    g = _names_by_group(model)
    if stage == "host":
        names = g["llm_lora"] | g["embeddings"] | g["lv_base"]
        if model.cfg.host_train_adapters:
            names |= g["adapter_base"]
        if model.cfg.host_trainable_sam == "mask_decoder":
            names |= g["mask_decoder"]
        elif model.cfg.host_trainable_sam == "all":
            names |= g["sam"]
        return names
    if stage == "proposer":
        if model.proposer is None:
            raise ValueError("the proposer stage needs a model built with box=True")
        return g["proposer"]
    if stage == "stage1":
        return g["llm_lora"] | g["adapter_lora"] | g["lv_lora"]
    return g["llm_lora"] | g["lv_lora"] | g["selection"]


def configure_stage(model: SparrowModel, stage: str, fold_lora: bool = False) -> None:
    """Set ``requires_grad`` for ``stage`` and record it on ``model``; ``fold_lora`` merges LoRA first."""
    names = trainable_names(model, stage)
    if fold_lora:
        merge_lora(model)
    for n, p in model.named_parameters():
        p.requires_grad_(n in names)
    model.stage = stage


@torch.no_grad()
def merge_lora(model: nn.Module) -> int:
    """Fold every LoRA delta into its base weight and re-initialise the LoRA (a fresh adapter, same keys)."""
    from peft.tuners.lora import LoraLayer

    count = 0
    for module in model.modules():
        if isinstance(module, LoraLayer):
            for adapter in list(module.lora_A.keys()):
                base = module.get_base_layer()
                base.weight.data += module.get_delta_weight(adapter).to(base.weight.dtype)
                module.reset_lora_parameters(adapter, init_lora_weights=True)
                count += 1
    return count
