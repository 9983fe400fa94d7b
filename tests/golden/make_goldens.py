"""One small golden tensor (or a few) per box of the paper's figure, from the smoke VideoGLaMM preset.

The model is built with ``torch.manual_seed(0)``, its LoRA ``B`` matrices are filled from a fixed generator (so the
adapters change the outputs), and it runs in eval mode on one thread. Every box is called through its module's own
entry point on fixed inputs drawn from its own generator, so a change in one box shows in that box's tensors only;
the ``forward/*`` tensors then check the assembled training forward (``SparrowModel.forward``) in stage 1 (TSF) and
stage 2 (detection guidance).

    python tests/golden/make_goldens.py        # rewrite tests/golden/boxes.safetensors

``tests/test_golden_boxes.py`` recomputes :func:`compute` and compares it with the file at the tolerance
:data:`TOLERANCES` states per tensor. Rewrite the file only for a change that is meant to move numbers, and say
in the commit which tensors moved and why.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import torch

GOLDEN_FILE = Path(__file__).resolve().parent / "boxes.safetensors"
HOST = "videoglamm"
PROFILE = "smoke"

EXACT = (0.0, 0.0, "integers, indices, copies and closed-form arithmetic: bit-exact on CPU")
NETWORK = (
    1e-6,
    1e-5,
    "float32 through matmuls and attention: allows the summation order of another CPU kernel "
    "or BLAS build; a changed weight, op or input moves these by far more",
)
# tensor-name prefix -> (atol, rtol, why); the longest matching prefix applies.
TOLERANCES: dict[str, tuple[float, float, str]] = {
    "": NETWORK,
    "tokens/ids": EXACT,
    "proposer/topk": EXACT,
    "box_prior_filter/": EXACT,
    "tsf/crops_at_boxes": EXACT,
    "tsf/ground_truth_mask_crops": EXACT,
    "tsf/model_crops": EXACT,
    "tsf/kmeans_indices": EXACT,
    "losses/proposal_targets": EXACT,
}


def tolerance(name: str) -> tuple[float, float, str]:
    """(atol, rtol, why) of the golden tensor ``name``."""
    return TOLERANCES[max((p for p in TOLERANCES if name.startswith(p)), key=len)]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _example(cfg, seed: int = 0, t: int = 6, h: int = 40, w: int = 56):
    """A red square on noise, its mask on every SAM frame, and its box: one referring-expression sample."""
    from sparrow.model import SparrowExample

    rng = np.random.default_rng(seed)
    video = rng.integers(0, 255, (t, h, w, 3), dtype=np.uint8)
    video[:, 10:26, 14:34] = (220, 30, 30)
    masks = np.zeros((1, cfg.num_sam_frames, h, w), np.int8)
    masks[0, :, 10:26, 14:34] = 1
    idx = np.linspace(0, t - 1, cfg.num_frames).astype(int)
    sam_idx = np.linspace(0, t - 1, cfg.num_sam_frames).astype(int)
    return SparrowExample(
        f"golden/v{seed}",
        f"e{seed}",
        "expression",
        "the red square",
        None,
        video[idx],
        video[sam_idx],
        masks,
        np.array([[14 / w, 10 / h, 34 / w, 26 / h]], np.float32),
    )


def build_model():
    """The smoke VideoGLaMM model with non-zero LoRA, in eval mode."""
    from sparrow.model import ModelConfig, SparrowModel

    torch.manual_seed(0)
    model = SparrowModel.from_config(ModelConfig.for_preset(HOST, PROFILE))
    g = _gen(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return model.eval()


@torch.no_grad()
def compute(model=None) -> dict[str, torch.Tensor]:
    """Every golden tensor, recomputed from the current code."""
    from sparrow.model.box_prior_filter import filter_boxes, prior_scores
    from sparrow.model.losses import mask_losses, proposal_bce, proposal_targets
    from sparrow.tsf.crops import crops_at_boxes, ground_truth_mask_crops
    from sparrow.tsf.kmeans import tsf_kmeans

    model = model if model is not None else build_model()
    cfg = model.cfg
    out: dict[str, torch.Tensor] = {}
    d_llm = model.llm.hidden_size

    # Spatial encoder (CLIP) and temporal encoder (VideoMAE) on fixed frames in [0, 1].
    s = model.spatial.image_size
    frames = torch.rand(2, 3, s, s, generator=_gen(10))
    out["spatial_encoder/tokens"] = model.spatial(frames, visual=model.llm.visual)
    t_frames = torch.rand(
        model.temporal.chunk_size, 3, model.temporal.image_size, model.temporal.image_size, generator=_gen(11)
    )
    out["temporal_encoder/tokens"] = model.temporal(t_frames)

    # V->L adapters: image tokens (with the context pooling), video tokens, and the TSF crop embedding.
    image_in = torch.randn(2, out["spatial_encoder/tokens"].shape[1], model.spatial.output_dim, generator=_gen(12))
    out["vl_adapter/image"] = model.image_adapter(image_in)
    out["vl_adapter/crop_mean"] = model.image_adapter.encode_mean(image_in)
    video_in = torch.randn(2, out["temporal_encoder/tokens"].shape[1], model.temporal.output_dim, generator=_gen(13))
    out["vl_adapter/video"] = model.video_adapter(video_in)

    # LLM with LoRA: last-layer hidden states and the last position's logits on fixed input embeddings.
    embeds = torch.randn(1, 9, d_llm, generator=_gen(14)) * 0.5
    logits, hidden, _ = model.llm(embeds, torch.ones(1, 9, dtype=torch.long))
    out["llm/hidden"] = hidden
    out["llm/last_logits"] = logits[:, -1]

    # [SEG]/[BOX]: their ids, their embedding rows, and the LLM's hidden states at their positions in an answer.
    tk = model.tokenizer
    ids = tk.encode("sure , it is [BOX] [SEG] .", add_special_tokens=False)
    ids_t = torch.tensor([ids])
    special = torch.tensor([model.box_token_id, model.seg_token_id])
    out["tokens/ids"] = torch.cat([special, ids_t[0]])
    out["tokens/embeddings"] = model.llm.embed(special)
    _, states, _ = model.llm(model.llm.embed(ids_t), torch.ones_like(ids_t))
    seg_h = states[0][ids_t[0] == model.seg_token_id]
    box_h = states[0][ids_t[0] == model.box_token_id]
    out["tokens/seg_hidden"], out["tokens/box_hidden"] = seg_h, box_h

    # L->V projector: [SEG] prompt tokens and the [BOX] query (shared projector).
    lv_in = torch.randn(2, d_llm, generator=_gen(15))
    out["lv_projector/seg"] = model.lv_projector(lv_in)
    out["lv_projector/box_query"] = model.lv_projector.query(lv_in)

    # SAM2 pixel decoder: features of fixed frames, then masks from [SEG] tokens alone and with box prompts.
    sam = model.pixel_decoder
    sam_frames = torch.rand(2, 3, sam.image_size, sam.image_size, generator=_gen(16))
    feats = sam.encode(sam_frames)
    seg_tokens = torch.randn(2, cfg.seg_tokens_per_target, sam.hidden_dim, generator=_gen(17))
    boxes = [torch.tensor([[0.1, 0.2, 0.6, 0.7]]), torch.tensor([[0.3, 0.1, 0.9, 0.5], [0.0, 0.0, 0.4, 0.4]])]
    out["pixel_decoder/top_level"] = sam.top_level(feats, 1)[:, :8]
    out["pixel_decoder/mask_logits"] = sam.decode(feats, seg_tokens, None, (24, 32), "framewise")
    out["pixel_decoder/mask_logits_boxes"] = sam.decode(feats, seg_tokens, boxes, (24, 32), "framewise")
    out["pixel_decoder/box_masks"] = sam.box_masks(feats, torch.cat(boxes), (24, 32))

    # Class-agnostic proposer on fixed stride-16 features of the SAM2 width.
    top = sam.top_level(feats, 0)
    prop_in = torch.randn(top.shape, generator=_gen(18))
    (proposals,) = model.proposer.propose(prop_in)
    out["proposer/boxes"] = proposals.boxes
    out["proposer/scores"] = proposals.scores
    out["proposer/features"] = proposals.features[:, :8]
    raw = model.proposer(prop_in)
    out["proposer/topk"] = raw.logits_coco[-1].sigmoid().topk(4, dim=-1).indices

    # ProposalSelector: queries against fixed proposal features.
    n_p = 6
    queries = torch.randn(2, sam.hidden_dim, generator=_gen(19))
    p_feats = torch.randn(n_p, model.proposer.spec.d_model, generator=_gen(20))
    p_scores = torch.rand(n_p, generator=_gen(21))
    p_valid = torch.tensor([True, True, True, True, True, False])
    refined, sel_logits, attention, pair_boxes = model.selector(queries, p_feats, p_scores, p_valid)
    out["selector/refined"], out["selector/logits"] = refined, sel_logits.clamp(min=-1e4)
    out["selector/attention"], out["selector/pair_boxes"] = attention, pair_boxes

    # ROI helper: fixed proposal boxes on a pyramid of the pixel decoder's level shapes, filled with fixed values.
    pyramid_shapes = [tuple(level.shape) for level in sam.roi_pyramid(feats, 0)]
    g = _gen(22)
    pyramid = [torch.randn(shape, generator=g) for shape in pyramid_shapes]
    p_boxes = torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.2, 0.3, 0.9, 0.8], [0.0, 0.0, 1.0, 1.0]])
    out["roi_helper/logits"] = model.roi_helper(queries, p_boxes, pyramid, sam.image_size)

    # Box prior filter: scores of boxes against their SAM2 masks, and the boxes kept at the inference setting.
    prior_masks = torch.zeros(3, 20, 30, dtype=torch.bool)
    prior_masks[0, 2:10, 3:15] = True
    prior_masks[1, 5:20, 0:30] = True
    prior_masks[2, 0:2, 0:2] = True
    prior_boxes = torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.0, 0.25, 1.0, 1.0], [0.5, 0.5, 0.9, 0.9]])
    scores = prior_scores(prior_boxes, prior_masks)
    out["box_prior_filter/scores"] = scores
    out["box_prior_filter/kept"] = filter_boxes(
        prior_boxes, scores, cfg.selector.box_prior_min_score, cfg.selector.box_prior_max_keep
    )
    out["box_prior_filter/kept_uncapped"] = filter_boxes(prior_boxes, scores, cfg.selector.box_prior_min_score, 0)

    # TSF crops (the offline pass's box crops and ground-truth-mask crops), the crops the model's collator makes,
    # their embeddings, and the K-means representatives.
    example = _example(cfg)
    video = np.random.default_rng(23).integers(0, 255, (6, 40, 56, 3), dtype=np.uint8)
    out["tsf/crops_at_boxes"] = crops_at_boxes(
        video, [0, 3, 5], [(0.1, 0.2, 0.5, 0.9), (0.0, 0.0, 1.0, 1.0), (0.6, 0.1, 0.95, 0.4)], 16
    )
    gt_masks = np.zeros((6, 40, 56), dtype=bool)
    gt_masks[:, 8:30, 10:40] = True
    out["tsf/ground_truth_mask_crops"] = ground_truth_mask_crops(
        video, [gt_masks], 16, num_frames=4, num_mask_frames=3
    )[0]
    batch1 = model.collator("stage1")([example])
    crops = batch1.tsf_crops[0]
    out["tsf/model_crops"] = crops
    embeddings = model.encode_crops(crops)
    out["tsf/embeddings"] = embeddings
    out["tsf/kmeans_indices"] = tsf_kmeans(embeddings, cfg.tsf_k, cfg.tsf_kmeans_iters).indices

    # Losses on fixed logits and targets: mask BCE + Dice, proposal targets and BCE.
    pred = [torch.randn(1, 3, 12, 16, generator=_gen(24))]
    target = torch.zeros(1, 3, 12, 16)
    target[0, :, 3:9, 4:12] = 1
    target[0, 0, 0, :] = -1
    bce, dice, pairs = mask_losses(pred, [target])
    out["losses/mask_bce_dice"] = torch.stack([bce, dice, torch.tensor(float(pairs))])
    hot = proposal_targets(p_boxes, target[:, 0].clamp(min=0), cfg.selector.proposal_iou_threshold)
    out["losses/proposal_targets"] = hot
    out["losses/proposal_bce"] = proposal_bce(torch.randn(1, 3, generator=_gen(25)), hot, None).reshape(1)

    # The assembled training forward, stage 1 (TSF tokens) and stage 2 (guidance, proposal loss).
    from sparrow.model import LOSS_KEYS

    for stage in ("stage1", "stage2"):
        model.configure_stage(stage)
        result = model(model.collator()([example, _example(cfg, seed=1)]))
        out[f"forward/{stage}/losses"] = torch.stack([result.losses[k] for k in LOSS_KEYS])
        out[f"forward/{stage}/mask_logits"] = result.mask_logits[0]
        if stage == "stage2":
            out["forward/stage2/selected_boxes"] = torch.cat([b for sel in result.selected_boxes for b in sel])
    model.configure_stage("stage1")
    return {k: v.detach().float().contiguous() if v.is_floating_point() else v.contiguous() for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    from safetensors.torch import save_file

    torch.set_num_threads(1)
    tensors = compute()
    save_file(tensors, str(GOLDEN_FILE), metadata={"host": HOST, "profile": PROFILE, "torch": torch.__version__})
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    print(f"{GOLDEN_FILE.name}: {len(tensors)} tensors, {total / 1024:.1f} KiB of data")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import sparrow  # noqa: F401  (the torchvision shim, before transformers loads)

    raise SystemExit(main(sys.argv[1:]))
