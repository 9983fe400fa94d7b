"""Notebook 03's checks of a trained variant: J&F on held-out expressions, predictions to look at, whether the
pretrained tiny SAM2 follows box prompts, and the numbers the notebook records.

The score follows the MeViS per-expression protocol (metrics reference §6.1): for each expression the masks of
every frame are predicted with the host's evaluation prompt (``model.predict_many`` over a video's expressions,
which gives what ``model.predict`` gives per text; the first ``[SEG]``'s mask per frame), J and F are averaged
over all frames (bound_th 0.008; a frame where prediction and ground truth are both empty scores 1), then over
expressions; J&F = (J + F) / 2, reported in percent. The default split is MeViS ``valid_u``, the held-out split
whose ground truth MeViS itself releases.

"Quick" means a fixed, evenly spread subset of the split's expressions (all of them with ``limit=None``), chosen
from the sorted expression ids only, so two variants are always scored on the same expressions.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparrow.data.curate import ensure_curated
from sparrow.data.curated import CuratedDataset
from sparrow.data.indices import evenly_spread, linspace_rounded_unique
from sparrow.eval.jf import jf_per_frame, region_similarity
from sparrow.eval.paper import TABLE_HOSTS, paper_value
from sparrow.eval.text_dependence import TextMask, text_dependence_of
from sparrow.model import ModelConfig
from sparrow.model.config import SamSpec
from sparrow.profiles import check_profile
from sparrow.storage import DataError
from sparrow.train.sam_pretrain import BoxPromptDataset, SamPretrainer, box_mask_logits, collate, load_pretrained_sam
from sparrow.train.variants import RunResult, pretrained_sam

DEFAULT_SOURCE = "mevis"
DEFAULT_SPLIT = "valid_u"
DEFAULT_COLUMN = "mevis_valid_u"  # the paper table's column of that split
# Expressions scored per profile by default: the whole held-out split would take longer than the training.
DEFAULT_LIMIT = {"smoke": 2, "mini": 60, "paper": None}


@dataclass
class ExpressionScore:
    video_id: str
    expression_id: str
    text: str
    j: float
    f: float
    seg_found: bool
    answer: str


@dataclass
class Validation:
    """J, F and J&F in percent over ``n_expressions`` expressions of ``source``/``split``."""

    source: str
    split: str
    jf: float
    j: float
    f: float
    n_expressions: int
    seg_found_rate: float
    per_expression: list[ExpressionScore] = field(default_factory=list)
    # Does the mask follow the text (sparrow.eval.text_dependence)? Over the scored expressions' pairs in a video.
    referent_accuracy: float | None = None
    referent_cases: int = 0
    predicted_pair_iou: float | None = None


def held_out_expressions(curated, source: str, split: str, limit: int | None) -> list:
    """Expressions of ``source``/``split``, sorted by (video, expression) id, thinned evenly to ``limit``."""
    found = sorted(curated.iter_expressions(source=source, split=split), key=lambda e: (e.video_id, e.expression_id))
    if not found:
        raise DataError(
            f"{curated.root}: no expressions in {source}/{split} (available: "
            f"{', '.join(f'{s}/{p}' for s in curated.sources() for p in curated.splits(s))})"
        )
    return evenly_spread(found, limit)


def score_expression(gt: np.ndarray, pred: np.ndarray) -> tuple[float, float]:
    """(j, f) of one expression: per-frame J and F of ``sparrow.eval.jf`` averaged over every frame."""
    j, f = jf_per_frame(gt, pred)
    return float(np.mean(j)), float(np.mean(f))


def _curated(run: RunResult, curated_root: str | Path | None) -> CuratedDataset:
    return CuratedDataset(curated_root if curated_root is not None else ensure_curated(run.profile, run.seed))


def quick_validation(
    run: RunResult,
    split: str = DEFAULT_SPLIT,
    source: str = DEFAULT_SOURCE,
    limit: int | None = -1,
    curated_root: str | Path | None = None,
    model: Any = None,
) -> Validation:
    """Score ``run`` (a :class:`~sparrow.train.variants.RunResult`) on held-out expressions.

    ``limit=-1`` uses the profile's default subset size (:data:`DEFAULT_LIMIT`); ``None`` scores every expression."""
    check_profile(run.profile)
    curated = _curated(run, curated_root)
    if limit == -1:
        limit = DEFAULT_LIMIT[run.profile]
    expressions = held_out_expressions(curated, source, split, limit)
    model = model if model is not None else run.load_model()
    scores = []
    # Expressions come sorted by video: each video's are predicted together (predict_many shares the per-video
    # work and gives what predict gives for each text).
    groups: dict[str, list] = {}
    follows: list[list[TextMask]] = []
    for exp in expressions:
        groups.setdefault(exp.video_id, []).append(exp)
    for video_id, group in groups.items():
        frames = curated.load_frames(video_id)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "no [SEG] emitted" is counted in seg_found_rate instead
            preds = model.predict_many(frames, [exp.text for exp in group])
        masks = []
        for exp, pred in zip(group, preds):
            truth = curated.expression_masks(exp)
            j, f = score_expression(truth, pred.masks)
            scores.append(
                ExpressionScore(exp.video_id, exp.expression_id, exp.text, j, f, bool(pred.seg_found), pred.answer)
            )
            masks.append(TextMask(tuple(exp.object_ids), pred.masks, truth))
        follows.append(masks)
    text = text_dependence_of(follows)
    j = float(np.mean([s.j for s in scores]))
    f = float(np.mean([s.f for s in scores]))
    return Validation(
        source=source,
        split=split,
        jf=100.0 * (j + f) / 2,
        j=100.0 * j,
        f=100.0 * f,
        n_expressions=len(scores),
        seg_found_rate=float(np.mean([s.seg_found for s in scores])),
        per_expression=scores,
        referent_accuracy=text.referent_accuracy,
        referent_cases=text.referent_cases,
        predicted_pair_iou=text.predicted_pair_iou,
    )


@dataclass
class Comparison:
    """One held-out expression with its frames, ground truth and each run's predicted masks (for figures)."""

    video_id: str
    expression_id: str
    text: str
    frames: np.ndarray  # (T, H, W, 3) uint8
    gt: np.ndarray  # (T, H, W) bool
    preds: dict[str, np.ndarray]  # run name -> (T, H, W) bool
    answers: dict[str, str]


def compare_predictions(
    models: Mapping[str, Any],
    profile: str,
    seed: int,
    n: int = 2,
    split: str = DEFAULT_SPLIT,
    source: str = DEFAULT_SOURCE,
    curated_root: str | Path | None = None,
) -> list[Comparison]:
    """Each model's prediction on the same ``n`` held-out expressions (evenly spread over the split)."""
    curated = CuratedDataset(curated_root if curated_root is not None else ensure_curated(profile, seed))
    out = []
    for exp in held_out_expressions(curated, source, split, n):
        frames = curated.load_frames(exp.video_id)
        preds, answers = {}, {}
        for name, model in models.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pred = model.predict(frames, exp.text)
            preds[name], answers[name] = pred.masks, pred.answer
        out.append(
            Comparison(exp.video_id, exp.expression_id, exp.text, frames, curated.expression_masks(exp), preds, answers)
        )
    return out


def paper_mevis_valid_u(host: str) -> tuple[float, float] | None:
    """(host alone, host + SPARROW) J&F in percent on MeViS valid_u in the paper's table, None for another host."""
    if host not in TABLE_HOSTS:
        return None
    return paper_value(host, "baseline", DEFAULT_COLUMN), paper_value(host, "sparrow", DEFAULT_COLUMN)


def summary_rows(validations: Mapping[str, Validation]) -> list[dict[str, Any]]:
    """One row per run: J&F, J, F, expressions scored and the share of answers that contained a [SEG]."""
    return [
        {
            "run": name,
            "J&F": round(v.jf, 2),
            "J": round(v.j, 2),
            "F": round(v.f, 2),
            "expressions": v.n_expressions,
            "[SEG] emitted": f"{100 * v.seg_found_rate:.0f}%",
            "split": f"{v.source}/{v.split}",
        }
        for name, v in validations.items()
    ]


def verdict(baseline: Validation, sparrow: Validation, host: str, profile: str) -> str:
    """A sentence saying, with the numbers, whether SPARROW beat the baseline on this run."""
    delta = sparrow.jf - baseline.jf
    where = f"{baseline.n_expressions} {baseline.source} {baseline.split} expressions ({profile})"
    paper = paper_mevis_valid_u(host)
    paper_text = (
        f" The paper reports {paper[0]:.1f} -> {paper[1]:.1f} ({paper[1] - paper[0]:+.1f}) on the full "
        f"MeViS valid_u with the real {host}."
    )
    if delta > 0:
        head = f"SPARROW beats the baseline: J&F {sparrow.jf:.2f} vs {baseline.jf:.2f} ({delta:+.2f}) on {where}."
    elif delta == 0:
        head = f"SPARROW ties with the baseline: J&F {sparrow.jf:.2f} vs {baseline.jf:.2f} on {where}."
    else:
        head = (
            f"SPARROW does NOT beat the baseline here: J&F {sparrow.jf:.2f} vs {baseline.jf:.2f} "
            f"({delta:+.2f}) on {where}."
        )
    return head + paper_text


# ----------------------------------------------------------------------------------------------------------------
# Does the pretrained tiny SAM2 follow its box prompt?
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class PromptFollowing:
    """How well a SAM2 follows box prompts on held-out objects."""

    target_iou: float  # mean IoU of the mask under an object's box with that object
    other_box_overlap: float  # mean IoU of that mask with the mask under another item's box (1: prompt ignored)
    n: int


@torch.no_grad()
def prompt_following(
    weights: str | Path, spec: SamSpec, curated_root: str | Path, split: str = "valid", n: int = 64
) -> PromptFollowing:
    """Score pretrained SAM2 weights on ``n`` evenly spread held-out (frame, box, mask) items of ``split``."""
    model = SamPretrainer(spec).eval()
    load_pretrained_sam(model.decoder.sam, weights)
    data = BoxPromptDataset(curated_root, split, model.decoder.image_size)
    picks = linspace_rounded_unique(len(data), n)
    batch = collate([data[i] for i in picks])
    own = (box_mask_logits(model.decoder, batch["frame"], batch["box"]) > 0).numpy()
    # Another item's box (the next one in the list) asks for another object, usually in another video.
    other = (box_mask_logits(model.decoder, batch["frame"], batch["box"].roll(1, 0)) > 0).numpy()
    # J of the DAVIS definition per item (1 on an empty union), averaged
    return PromptFollowing(
        float(region_similarity(batch["mask"].numpy(), own).mean()),
        float(region_similarity(own, other).mean()),
        len(picks),
    )


def pretrained_sam_check(host: str, profile: str, curated_root: str | Path) -> PromptFollowing | None:
    """How the pretrained tiny SAM2 of ``host`` follows box prompts on held-out objects (:func:`prompt_following`),
    or None where the host starts from a SAM2 checkpoint."""
    cfg = ModelConfig.for_preset(host, profile)  # the SAM2 spec does not depend on the tokenizer's vocabulary
    weights, _ = pretrained_sam(cfg, curated_root)
    return None if weights is None else prompt_following(weights, cfg.sam, curated_root)


# ----------------------------------------------------------------------------------------------------------------
# Recorded numbers
# ----------------------------------------------------------------------------------------------------------------
def recorded_numbers(
    runs: Mapping[str, RunResult],
    validations: Mapping[str, Validation],
    host: str,
    profile: str,
    sam_check: PromptFollowing | None = None,
) -> list[dict[str, Any]]:
    """Every number notebook 03 reports, as keyword arguments of :meth:`sparrow.results.Recorder.add`: per run
    (``"baseline"`` and the SPARROW variant's name) its steps, final loss terms and held-out J&F, J, F and [SEG]
    rate, then the SAM2 prompt-following check."""
    paper_base, paper_sparrow = paper_mevis_valid_u(host)
    source = f"README results table ({host} / {host} + SPARROW, MeViS valid_u)"
    n = validations["baseline"].n_expressions
    note = f"SPARROW-Mini ({profile}), {n} expressions, tiny models: not the paper's setting"
    out: list[dict[str, Any]] = []
    for name, run in runs.items():
        out.append({"name": f"train/steps/{name}", "value": run.total_steps, "unit": "steps"})
        out += [
            {"name": f"train/final_{term}/{name}", "value": value, "unit": "loss"}
            for term, value in run.final_losses.items()
        ]
        v = validations[name]
        paper = paper_base if name == "baseline" else (paper_sparrow if name == "sparrow" else None)
        out.append(
            {
                "name": f"val/jf/{name}",
                "value": v.jf,
                "unit": "J&F (%)",
                "paper": paper,
                "paper_source": source if paper else None,
                "note": note,
            }
        )
        out.append({"name": f"val/j/{name}", "value": v.j, "unit": "J (%)"})
        out.append({"name": f"val/f/{name}", "value": v.f, "unit": "F (%)"})
        out.append({"name": f"val/seg_emitted/{name}", "value": v.seg_found_rate, "unit": "fraction"})
        if v.referent_accuracy is not None:
            out.append(
                {
                    "name": f"val/referent_accuracy/{name}",
                    "value": v.referent_accuracy,
                    "unit": "fraction",
                    "note": f"{v.referent_cases} referent cases (text-blind <= 0.5)",
                }
            )
            out.append({"name": f"val/predicted_pair_iou/{name}", "value": v.predicted_pair_iou, "unit": "IoU"})
    out.append({"name": "val/expressions", "value": n, "unit": "count"})
    if sam_check is not None:
        out.append({"name": "sam2_pretrain/target_iou", "value": sam_check.target_iou, "unit": "IoU"})
        out.append({"name": "sam2_pretrain/other_box_overlap", "value": sam_check.other_box_overlap, "unit": "IoU"})
    return out
