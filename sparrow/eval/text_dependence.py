"""Does a model's mask depend on the referring text? A diagnostic beside the J&F tables (notebook 04).

J&F alone cannot tell a model that segments the referent from one that outputs the same salient blob for every
text of a video: on videos with few objects the blob still overlaps the referent. For every pair of expressions of
the same video whose referents differ (different object sets), this measures the IoU of the two predicted
masks (all frames together) and, for reference, the IoU of the two ground-truth masks. A model that follows the
text has a pair IoU near the ground truth's (near 0 for disjoint referents); a model that ignores it has 1.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparrow.data.curated import CuratedDataset
from sparrow.data.records import submission_names
from sparrow.eval.rvos import read_expression_prediction


@dataclass(frozen=True)
class TextDependence:
    """Mean IoU over pairs of same-video expressions with different referents: predicted and ground truth."""

    pairs: int
    predicted_pair_iou: float | None
    ground_truth_pair_iou: float | None

    @property
    def ignores_text(self) -> bool | None:
        """True when the predicted masks of different referents are (almost) the same masks."""
        return None if self.predicted_pair_iou is None else self.predicted_pair_iou >= 0.95


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum()) / union


def text_dependence(dataset: CuratedDataset | str | Path, pred_root: str | Path, source: str,
                    split: str) -> TextDependence:
    """:class:`TextDependence` of the server-layout predictions under ``pred_root`` (``Annotations/``) on the
    expressions of ``source``/``split`` that have a prediction."""
    ds = dataset if isinstance(dataset, CuratedDataset) else CuratedDataset(dataset)
    by_video: dict[str, list] = {}
    for exp in ds.iter_expressions(source=source, split=split):
        by_video.setdefault(exp.video_id, []).append(exp)
    predicted, truth = [], []
    for video_id, expressions in by_video.items():
        video = ds.video(video_id)
        masks = {}
        for exp in expressions:
            name, exp_name = submission_names(video_id, exp.expression_id)
            pred = read_expression_prediction(pred_root, name, exp_name, list(video.frame_names),
                                              (video.height, video.width))
            if pred is not None:
                masks[exp.expression_id] = (exp, pred, ds.expression_masks(exp))  # each decoded once
        for (a, pa, ga), (b, pb, gb) in itertools.combinations(masks.values(), 2):
            if set(a.object_ids) == set(b.object_ids):
                continue
            predicted.append(_iou(pa, pb))
            truth.append(_iou(ga, gb))
    if not predicted:
        return TextDependence(0, None, None)
    return TextDependence(len(predicted), float(np.mean(predicted)), float(np.mean(truth)))


def tables_text_dependence(plan, curated_root: str | Path | None = None, seed: int | None = None) -> list[dict]:
    """Notebook 04's runs of one training seed (default the plan's first) on its MeViS / Ref-YouTube-VOS columns:
    one row per (host, variant, benchmark) with the pairs, the predicted and the ground-truth pair IoU. Reads the
    predictions :func:`sparrow.eval.tables.measure_main` left on disk; a run without them is left out.
    ``curated_root``: the curated data they were predicted on (default: SPARROW-Mini of the plan's data seed;
    under ``paper`` without it nothing is measured)."""
    from sparrow.data.curate import ensure_curated
    from sparrow.eval.runner import eval_root, variant_eval_dir
    from sparrow.eval.tables import checkpoint_name

    seed = plan.seeds[0] if seed is None else seed
    if curated_root is None and plan.profile == "paper":
        return []  # the real data are absent, so nothing was predicted
    curated = CuratedDataset(curated_root if curated_root is not None else ensure_curated(plan.profile, plan.data_seed))
    rows = []
    for host in plan.hosts:
        for variant in ("baseline", "sparrow"):
            run_dir = (eval_root(plan.profile) / checkpoint_name(host, variant) if plan.profile == "paper"
                       else variant_eval_dir(plan.profile, host, seed, variant))
            for b in plan.benchmarks:
                folder = run_dir / b.key / "Annotations"
                if b.protocol != "rvos" or not folder.is_dir():
                    continue
                r = text_dependence(curated, folder, b.source, b.split)
                rows.append({"host": host, "variant": variant, "benchmark": b.key, "pairs": r.pairs,
                             "predicted_pair_iou": r.predicted_pair_iou,
                             "ground_truth_pair_iou": r.ground_truth_pair_iou, "ignores_text": r.ignores_text})
    return rows


def text_dependence_verdict(rows: list[dict]) -> str:
    """One sentence from :func:`tables_text_dependence`'s rows: how many runs give (almost) the same mask for
    every text of a video, with the measured range beside the ground truth's."""
    measured = [r for r in rows if r["predicted_pair_iou"] is not None]
    if not measured:
        return "Text dependence: not measured (no MeViS / Ref-YouTube-VOS predictions with two referents a video)."
    ignoring = [r for r in measured if r["ignores_text"]]
    pred = [r["predicted_pair_iou"] for r in measured]
    truth = [r["ground_truth_pair_iou"] for r in measured]
    head = (f"{len(ignoring)} of {len(measured)} (host, variant, benchmark) runs give the same mask for different "
            f"referents of a video (pair IoU {min(pred):.3f}-{max(pred):.3f}; ground truth {min(truth):.3f}-"
            f"{max(truth):.3f})")
    if len(ignoring) == len(measured):
        return (head + ": the masks do not follow the text, so these J&F numbers measure a text-independent "
                "segmentation, and neither TSF nor [BOX] can show a gain through them.")
    return head + "."


def text_dependence_numbers(rows: list[dict]) -> list[dict]:
    """The rows as :meth:`sparrow.results.Recorder.add` keyword arguments (notebook 04's last cell)."""
    out = []
    for r in rows:
        if r["predicted_pair_iou"] is None:
            continue
        name = f"text/{r['host']}/{r['variant']}/{r['benchmark']}"
        note = f"{r['pairs']} pairs of same-video expressions with different referents"
        out.append({"name": f"{name}/predicted_pair_iou", "value": r["predicted_pair_iou"], "unit": "IoU",
                    "note": note})
        out.append({"name": f"{name}/ground_truth_pair_iou", "value": r["ground_truth_pair_iou"], "unit": "IoU",
                    "note": note})
    return out
