"""The DAVIS-2017 evaluation protocols (semi-supervised and unsupervised) over palette-PNG folders.

Follows ``davis2017/evaluation.py``, ``davis.py``, ``results.py`` and ``evaluation_method.py`` (docs/evaluation.md §5):

- Ground truth: ``<root>/Annotations/<res>/<seq>/*.png`` (semi-supervised) or ``Annotations_unsupervised`` (unsupervised),
  frames in sorted file order, raw palette indices; 255 is void (removed from the objects, returned as the void
  mask); the number of objects is the largest label of the **first** frame (larger labels are ignored).
- Predictions: ``<pred_root>/<seq>/<frame>.png`` for every ground-truth frame name, raw indices; proposal k is
  ``== k``; the number of proposals is the largest label over all frames.
- Semi-supervised: first and last frames dropped, proposals matched to objects by id, zero-padded; no void.
- Unsupervised: all frames, void passed, at most 20 proposals, every proposal scored against every object with
  the per-frame J and F, the assignment maximising ``(mean J + mean F) / 2`` (Hungarian, scipy); object keys
  ``{seq}_{k}`` in the order of the matched proposals.
- Global table: each object's ``db_statistics`` of J and F, means over all objects pooled across sequences,
  ``J&F-Mean = (J-Mean + F-Mean) / 2``.

Where the official code calls ``sys.exit`` (a missing prediction frame, more proposals than allowed, an index
above the number of objects) or crashes (an RGB prediction, a size mismatch), this raises
:class:`sparrow.storage.DataError` naming the sequence and frame. Differences, on purpose: ``JPEGImages`` is not
required, and prediction files that are not ground-truth frames are an error (``allow_extra_frames`` to accept them).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparrow.eval.jf import jf_per_frame, statistics
from sparrow.eval.parallel import map_ordered
from sparrow.eval.png import read_index_png
from sparrow.storage import DataError, atomic_write_text

MODES = ("unsupervised", "semi-supervised")
TABLE_COLUMNS = ("J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay")
MAX_PROPOSALS = 20
VOID = 255


@dataclass(frozen=True)
class ObjectScore:
    """One object: its key as the official per-sequence CSV names it, statistics and per-frame values."""

    sequence: str
    name: str
    j_mean: float
    j_recall: float
    j_decay: float
    f_mean: float
    f_recall: float
    f_decay: float
    j_frames: tuple[float, ...] = field(repr=False)
    f_frames: tuple[float, ...] = field(repr=False)


@dataclass
class DavisResult:
    """Per-object scores and the global table (fractions in [0, 1]; papers print them x100)."""

    mode: str
    sequences: list[str]
    objects: list[ObjectScore]
    table: dict[str, float]

    @property
    def jf(self) -> float:
        return self.table["J&F-Mean"]

    def global_csv(self, precision: int = 3) -> str:
        """The official ``global_results-*.csv`` (``%.3f``; ReferFormer and SPARROW's copy write ``%.5f``)."""
        values = ",".join(f"{self.table[c]:.{precision}f}" for c in TABLE_COLUMNS)
        return ",".join(TABLE_COLUMNS) + "\n" + values + "\n"

    def per_sequence_csv(self, precision: int = 3) -> str:
        rows = [f"{o.name},{o.j_mean:.{precision}f},{o.f_mean:.{precision}f}" for o in self.objects]
        return "Sequence,J-Mean,F-Mean\n" + "".join(r + "\n" for r in rows)

    def write_csv(self, out_dir: str | Path, precision: int = 3) -> tuple[Path, Path]:
        out_dir = Path(out_dir)
        name = self.mode.replace("-", "")
        paths = (out_dir / f"global_results-{name}.csv", out_dir / f"per-sequence_results-{name}.csv")
        atomic_write_text(paths[0], self.global_csv(precision))
        atomic_write_text(paths[1], self.per_sequence_csv(precision))
        return paths


def list_sequences(
    gt_root: str | Path, gt_set: str = "val", year: str = "2017", mode: str = "unsupervised", resolution: str = "480p"
) -> list[str]:
    """``ImageSets/<year>/<gt_set>.txt`` when present, else every sequence folder of the annotations."""
    gt_root = Path(gt_root)
    listing = gt_root / "ImageSets" / year / f"{gt_set}.txt"
    if listing.is_file():
        return [line.strip() for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]
    ann = _annotation_dir(gt_root, mode, resolution)
    if not ann.is_dir():
        raise DataError(f"{gt_root}: neither {listing} nor {ann} exists")
    return sorted(p.name for p in ann.iterdir() if p.is_dir())


def _annotation_dir(gt_root: Path, mode: str, resolution: str) -> Path:
    return gt_root / ("Annotations_unsupervised" if mode == "unsupervised" else "Annotations") / resolution


def read_gt_sequence(
    gt_root: str | Path,
    sequence: str,
    mode: str = "unsupervised",
    resolution: str = "480p",
    annotations: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(objects (N, T, H, W) bool, void (T, H, W) bool, frame names) of one ground-truth sequence."""
    base = Path(annotations) if annotations is not None else _annotation_dir(Path(gt_root), mode, resolution)
    folder = base / sequence
    files = sorted(folder.glob("*.png"))
    if not files:
        raise DataError(f"sequence {sequence}: no ground-truth PNGs in {folder}")
    frames = []
    for f in files:
        arr = read_index_png(f, f"sequence {sequence}, ground-truth frame {f.stem}")
        if frames and arr.shape != frames[0].shape:
            raise DataError(
                f"sequence {sequence}, ground-truth frame {f.stem}: size {arr.shape} differs from "
                f"{frames[0].shape} of frame {files[0].stem}"
            )
        frames.append(arr)
    labels = np.stack(frames)
    void = labels == VOID
    labels = np.where(void, 0, labels)
    n_objects = int(labels[0].max())
    objects = labels[None] == np.arange(1, n_objects + 1, dtype=labels.dtype)[:, None, None, None]
    return objects, void, [f.stem for f in files]


def read_pred_sequence(
    pred_root: str | Path,
    sequence: str,
    frame_names: list[str],
    shape: tuple[int, int],
    all_frames: list[str] | None = None,
    allow_extra_frames: bool = False,
) -> np.ndarray:
    """Prediction labels (T, H, W) for the given frames; every problem named by sequence and frame."""
    folder = Path(pred_root) / sequence
    if not folder.is_dir():
        raise DataError(f"sequence {sequence}: no prediction folder {folder}")
    if not allow_extra_frames:
        known = set(all_frames if all_frames is not None else frame_names)
        extra = sorted(p.stem for p in folder.glob("*.png") if p.stem not in known)
        if extra:
            raise DataError(
                f"sequence {sequence}: prediction frames {', '.join(extra[:5])}"
                f"{' ...' if len(extra) > 5 else ''} are not ground-truth frames "
                f"(names must match the annotations, e.g. {frame_names[0]}.png)"
            )
    out = np.zeros((len(frame_names), *shape), np.int64)
    for i, name in enumerate(frame_names):
        what = f"sequence {sequence}, frame {name}"
        arr = read_index_png(folder / f"{name}.png", what)
        if arr.shape != shape:
            raise DataError(f"{what}: prediction size {arr.shape} differs from the ground truth {shape}")
        out[i] = arr
    return out


def _proposals(labels: np.ndarray, count: int) -> np.ndarray:
    return labels[None] == np.arange(1, count + 1)[:, None, None, None]


def evaluate_sequence(
    objects: np.ndarray,
    void: np.ndarray,
    pred_labels: np.ndarray,
    sequence: str,
    mode: str = "unsupervised",
    max_proposals: int = MAX_PROPOSALS,
    device: Any | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-object per-frame J and F (n_objects, T) of one sequence, objects already ordered as the official code.

    ``objects``/``void``/``pred_labels`` cover the frames being scored (semi-supervised: without first and last).
    """
    n_gt = objects.shape[0]
    n_pred = int(pred_labels.max()) if pred_labels.size else 0
    hint = (
        " (the PNGs look like 0/255 binary masks; DAVIS expects index PNGs with object k = k)" if n_pred == 255 else ""
    )
    if mode == "semi-supervised":
        if n_pred > n_gt:
            raise DataError(
                f"sequence {sequence}: prediction index {n_pred} is higher than the number of objects ({n_gt}){hint}"
            )
        proposals = _proposals(pred_labels, n_gt)  # ids match by value; missing ones are empty
        j = np.zeros(objects.shape[:2])
        f = np.zeros(objects.shape[:2])
        for i in range(n_gt):
            j[i], f[i] = jf_per_frame(objects[i], proposals[i], device=device)
        return j, f
    if n_pred > max_proposals:
        raise DataError(
            f"sequence {sequence}: prediction index {n_pred} is higher than the maximum number of "
            f"proposals ({max_proposals}){hint}"
        )
    proposals = _proposals(pred_labels, max(n_pred, n_gt))
    n_prop = proposals.shape[0]
    j_all = np.zeros((n_prop, n_gt, objects.shape[1]))
    f_all = np.zeros((n_prop, n_gt, objects.shape[1]))
    for i in range(n_gt):
        for k in range(n_prop):
            j_all[k, i], f_all[k, i] = jf_per_frame(objects[i], proposals[k], void, device=device)
    from scipy.optimize import linear_sum_assignment

    scores = (np.mean(j_all, axis=2) + np.mean(f_all, axis=2)) / 2
    rows, cols = linear_sum_assignment(-scores)
    return j_all[rows, cols], f_all[rows, cols]


@dataclass(frozen=True)
class _SequenceJob:
    gt_root: Path
    pred_root: Path
    sequence: str
    mode: str
    resolution: str
    max_proposals: int
    allow_extra_frames: bool
    device: Any | None
    annotations: Path | None


def _score_sequence(job: _SequenceJob) -> list[ObjectScore]:
    """The objects of one sequence (a top-level function: it runs in worker processes)."""
    seq = job.sequence
    objects, void, frames = read_gt_sequence(job.gt_root, seq, job.mode, job.resolution, job.annotations)
    if job.mode == "semi-supervised":
        if len(frames) < 3:
            raise DataError(
                f"sequence {seq}: {len(frames)} frames; the semi-supervised task drops the first "
                "and last frames and needs at least 3"
            )
        objects, scored = objects[:, 1:-1], frames[1:-1]
    else:
        scored = frames
    labels = read_pred_sequence(job.pred_root, seq, scored, objects.shape[2:], frames, job.allow_extra_frames)
    j, f = evaluate_sequence(
        objects, void if job.mode == "unsupervised" else None, labels, seq, job.mode, job.max_proposals, job.device
    )
    out = []
    for i in range(j.shape[0]):
        jm, jr, jd = statistics(j[i])
        fm, fr, fd = statistics(f[i])
        out.append(
            ObjectScore(seq, f"{seq}_{i + 1}", jm, jr, jd, fm, fr, fd, tuple(j[i].tolist()), tuple(f[i].tolist()))
        )
    return out


def evaluate_davis(
    gt_root: str | Path,
    pred_root: str | Path,
    sequences: list[str] | None = None,
    mode: str = "unsupervised",
    gt_set: str = "val",
    year: str = "2017",
    resolution: str = "480p",
    max_proposals: int = MAX_PROPOSALS,
    allow_extra_frames: bool = False,
    device: Any | None = None,
    annotations: str | Path | None = None,
    workers: int = 1,
    progress: Callable[[Iterable[list[ObjectScore]], int], Iterable[list[ObjectScore]]] | None = None,
) -> DavisResult:
    """Score a results folder against a DAVIS root like ``evaluation_method.py --task <mode>`` (see module doc).

    ``annotations`` is a folder of ground-truth sequence folders used instead of the root's (e.g. the Ref-DAVIS17
    conversion's ``valid/Annotations``, copies of ``Annotations_unsupervised/480p``); sequences are scored one at a
    time, by ``workers`` processes; ``progress`` wraps the stream of per-sequence results (e.g. a progress bar).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    gt_root, pred_root = Path(gt_root), Path(pred_root)
    if not Path(pred_root).is_dir():
        raise DataError(f"results folder {pred_root} does not exist")
    names = list(sequences) if sequences is not None else list_sequences(gt_root, gt_set, year, mode, resolution)
    if not names:
        raise DataError(f"{gt_root}: no sequences to evaluate")
    ann = Path(annotations) if annotations is not None else None
    jobs = (
        _SequenceJob(gt_root, pred_root, seq, mode, resolution, max_proposals, allow_extra_frames, device, ann)
        for seq in names
    )
    stream = map_ordered(_score_sequence, jobs, workers)
    if progress is not None:
        stream = progress(stream, len(names))
    objects_out = [o for objects in stream for o in objects]
    return DavisResult(mode, names, objects_out, global_table(objects_out))


def global_table(objects: list[ObjectScore]) -> dict[str, float]:
    """Means over all objects, as ``evaluation_method.py`` (NaN when there are none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        cols = {
            "J-Mean": np.mean([o.j_mean for o in objects]),
            "J-Recall": np.mean([o.j_recall for o in objects]),
            "J-Decay": np.mean([o.j_decay for o in objects]),
            "F-Mean": np.mean([o.f_mean for o in objects]),
            "F-Recall": np.mean([o.f_recall for o in objects]),
            "F-Decay": np.mean([o.f_decay for o in objects]),
        }
    table = {"J&F-Mean": float((cols["J-Mean"] + cols["F-Mean"]) / 2.0)}
    table.update({k: float(v) for k, v in cols.items()})
    return {c: table[c] for c in TABLE_COLUMNS}
