"""Ref-DAVIS17's four-annotator protocol: four J&F values and their mean (docs/evaluation.md §6.3).

Each annotator expression set (annotator 1 / 2, first-frame / full-video) has its own folder of merged palette
PNGs (written by :func:`sparrow.eval.export.write_ref_davis_annotator`), scored with the DAVIS-2017 evaluation in
unsupervised mode against ``Annotations_unsupervised`` (Hungarian matching, all frames, void, ``val``). The
reported number is the mean of the four J&F (ReferFormer's convention; presumably SPARROW's).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sparrow.eval.davis import TABLE_COLUMNS, DavisResult, evaluate_davis
from sparrow.storage import DataError

FOLDER_SETS = {
    "sparrow": ("Davis17_annot1", "Davis17_annot1_full_video", "Davis17_annot2", "Davis17_annot2_full_video"),
    "referformer": ("anno_0", "anno_1", "anno_2", "anno_3"),
}


@dataclass
class RefDavisResult:
    runs: dict[str, DavisResult]
    jf: dict[str, float]  # folder -> J&F-Mean
    mean: float  # mean of the four J&F
    table_mean: dict[str, float]  # each global column averaged over the four runs


def find_folders(pred_root: str | Path) -> tuple[str, ...]:
    """The annotator folder set present under ``pred_root`` (SPARROW / VideoGLaMM or ReferFormer names)."""
    pred_root = Path(pred_root)
    best = None
    for names in FOLDER_SETS.values():
        present = [n for n in names if (pred_root / n).is_dir()]
        if len(present) == len(names):
            return names
        if present and (best is None or len(present) > len(best[1])):
            best = (names, present)
    if best is None:
        raise DataError(f"{pred_root}: none of the annotator folders {FOLDER_SETS} exists")
    missing = [n for n in best[0] if n not in best[1]]
    raise DataError(f"{pred_root}: annotator folders incomplete, missing {', '.join(missing)}")


def locate_ground_truth(root: str | Path, split: str = "valid") -> tuple[Path, Path | None]:
    """(DAVIS root, annotation folder to read instead of its ``Annotations_unsupervised/480p``, or None).

    ``root`` is a DAVIS root, a folder holding one (``DAVIS/``), or ReferFormer's converted ``ref-davis`` root,
    whose ``<split>/Annotations`` are copies of the unsupervised annotations.
    """
    root = Path(root)
    for candidate in (root / "DAVIS", root):
        if (candidate / "Annotations_unsupervised" / "480p").is_dir():
            return candidate, None
    for folder in (root / split / "Annotations", root / "Annotations"):
        if folder.is_dir():
            return root, folder
    raise DataError(f"{root}: no DAVIS/Annotations_unsupervised/480p nor {split}/Annotations to score Ref-DAVIS17 with")


def evaluate_ref_davis(
    davis_root: str | Path,
    pred_root: str | Path,
    folders: tuple[str, ...] | None = None,
    sequences: list[str] | None = None,
    gt_set: str = "val",
    device: Any | None = None,
    annotations: str | Path | None = None,
    workers: int = 1,
    progress: Any | None = None,
) -> RefDavisResult:
    """The four annotator folders scored with the DAVIS unsupervised protocol (``evaluate_davis``'s options)."""
    folders = tuple(folders) if folders is not None else find_folders(pred_root)
    runs = {
        f: evaluate_davis(
            davis_root,
            Path(pred_root) / f,
            sequences=sequences,
            mode="unsupervised",
            gt_set=gt_set,
            device=device,
            annotations=annotations,
            workers=workers,
            progress=progress,
        )
        for f in folders
    }
    jf = {f: r.table["J&F-Mean"] for f, r in runs.items()}
    table_mean = {c: float(np.mean([r.table[c] for r in runs.values()])) for c in TABLE_COLUMNS}
    return RefDavisResult(runs, jf, float(np.mean(list(jf.values()))), table_mean)
