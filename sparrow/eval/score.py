"""``sparrow score``: anyone's predictions, in the layouts the community writes, against the ground truth as released.

One scorer per benchmark (:data:`BENCHMARKS`), each the kit's implementation of the official protocol
(docs/evaluation.md §5-§8, §10), streamed video by video (a video's masks are decoded, scored and dropped before the
next one is read; ``workers`` processes score videos in parallel, results in input order):

===================  ===========================================================  =================================
benchmark            ground truth (``--gt``)                                      protocol
===================  ===========================================================  =================================
``mevis-valid-u``    a MeViS split folder: ``meta_expressions.json``,             per expression (§6.1)
``mevis-valid``      ``mask_dict.json`` (valid: only where its masks are given)
``ref-youtube-vos``  ``meta_expressions.json`` + ``Annotations/<video>/<frame>``  per expression (§6.2)
                     palette PNGs (or a ``mask_dict.json`` as MeViS)
``ref-davis17``      the converted ``ref-davis`` root (``meta_expressions/valid``, both, labelled: DAVIS unsupervised
                     ``valid/Annotations``) or a DAVIS root                      per annotator set and averaged;
                                                                                  per expression (§6.3)
``revos``            ``meta_expressions_valid_.json``, ``mask_dict.json``,        J, F, A, R per type (§6.4)
                     ``mask_dict_foreground.json``
``vidstg``           TubeDETR's ``test.json``                                     TubeDETR per sentence type (§7.1)
``videogcg``         none: inside ``eval_gcg_infer.py``'s sample folders          mIoU, METEOR, CIDEr (§8.2)
===================  ===========================================================  =================================

Predictions (``--pred``): ``<video>/<exp_id>/<frame>.png`` (any non-zero pixel foreground; an ``Annotations``
folder inside is looked into), or a JSON file of RLE masks as Sa2VA writes it
(``{video: {exp_id: {"prediction_masks": [rle per frame]}}}``); Ref-DAVIS17: the four annotator folders
(``Davis17_annot1``, ... or ``anno_0``..``anno_3``) of merged palette PNGs, and/or per-expression folders.

Missing predictions follow the official rule and are listed: a missing video (and, here, a missing expression)
scores 0 for MeViS, Ref-YouTube-VOS, ReVOS and Ref-DAVIS17 per expression; the DAVIS protocol stops on a missing
sequence, so that is an error. A missing frame, an unreadable PNG, a size that differs from the ground truth or
malformed ground truth is a :class:`~sparrow.storage.DataError` naming the file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparrow.eval.jf import jf_per_frame
from sparrow.eval.parallel import map_ordered
from sparrow.eval.png import read_gray_png, read_index_png
from sparrow.eval.revos import TYPES, RevosScore, accuracy, revos_tables, robustness, rounded
from sparrow.eval.rvos import aggregate_jf, missing_warning, read_expression_prediction
from sparrow.storage import DataError, atomic_write_json, read_json

REF_DAVIS_PROTOCOLS = ("davis", "expression")


@dataclass(frozen=True)
class ScoreBenchmark:
    """One benchmark ``sparrow score`` knows: its key, what it reports and how its ground truth is laid out."""

    key: str
    title: str
    protocols: tuple[str, ...]
    ground_truth: str


BENCHMARKS: dict[str, ScoreBenchmark] = {
    b.key: b
    for b in (
        ScoreBenchmark("mevis-valid-u", "MeViS valid_u", ("expression",), "meta_expressions.json + mask_dict.json"),
        ScoreBenchmark("mevis-valid", "MeViS valid", ("expression",), "meta_expressions.json + mask_dict.json"),
        ScoreBenchmark(
            "ref-youtube-vos", "Ref-YouTube-VOS", ("expression",), "meta_expressions.json + Annotations/ palette PNGs"
        ),
        ScoreBenchmark(
            "ref-davis17",
            "Ref-DAVIS17",
            REF_DAVIS_PROTOCOLS,
            "meta_expressions/valid/meta_expressions.json + valid/Annotations/ (or a DAVIS root)",
        ),
        ScoreBenchmark(
            "revos", "ReVOS", ("revos",), "meta_expressions_valid_.json + mask_dict.json + mask_dict_foreground.json"
        ),
        ScoreBenchmark("vidstg", "VidSTG", ("tubedetr",), "TubeDETR's test.json (videos + trajectories, boxes xywh)"),
        ScoreBenchmark("videogcg", "VideoGCG", ("gcg",), "inside the sample folders (res.json, gt_masks_<k>)"),
    )
}


# ----------------------------------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------------------------------
@dataclass
class ScoreResult:
    """Tables in percent (``{label: {metric: value}}``, labels naming the protocol), per-video and per-expression
    rows (fractions; per video also the per-frame J and F averaged over its expressions or objects)."""

    benchmark: str
    tables: dict[str, dict[str, float]]
    videos: list[dict[str, Any]] = field(default_factory=list)
    expressions: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def write_json(self, path: str | Path) -> Path:
        atomic_write_json(path, self.to_json())
        return Path(path)

    def format_table(self) -> str:
        """The tables as text, two decimals, one row per label."""
        lines = []
        width = max((len(label) for label in self.tables), default=0)
        for label, table in self.tables.items():
            lines.append(f"{label:<{width}}  " + "  ".join(f"{m} {v:6.2f}" for m, v in table.items()))
        for w in self.warnings:
            lines.append(f"warning: {w}")
        return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Ground truth
# ----------------------------------------------------------------------------------------------------------------
def _load_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: no {what}")
    try:
        return read_json(path)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from exc


def read_meta_expressions(path: str | Path) -> dict[str, dict[str, Any]]:
    """``videos`` of a ``meta_expressions.json``, each checked to have ``frames`` and ``expressions``."""
    path = Path(path)
    meta = _load_json(path, "expression list")
    videos = meta.get("videos") if isinstance(meta, dict) else None
    if not isinstance(videos, dict) or not videos:
        raise DataError(f"{path}: no 'videos' mapping")
    for name, video in videos.items():
        if not isinstance(video, dict) or "expressions" not in video or not video.get("frames"):
            raise DataError(f"{path}: video {name} has no 'frames' or 'expressions'")
    return videos


def _decode(rle: Any, what: str) -> np.ndarray:
    from pycocotools import mask as cocomask

    try:
        return np.asarray(cocomask.decode(rle))
    except (TypeError, KeyError, ValueError) as exc:
        raise DataError(f"{what}: not an RLE mask ({exc})") from exc


def _rle_size(rle: Any, what: str) -> tuple[int, int]:
    try:
        h, w = rle["size"]
        return int(h), int(w)
    except (TypeError, KeyError, ValueError) as exc:
        raise DataError(f"{what}: RLE without a size ({exc})") from exc


# ----------------------------------------------------------------------------------------------------------------
# Predictions
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Pred:
    """Where one video's predictions are: a PNG root, or this video's part of an RLE JSON."""

    root: Path | None = None
    rle: dict[str, Any] | None = None
    source: str = ""

    def expression(
        self, video: str, exp: str, frames: list[str], shape: tuple[int, int], raw: bool
    ) -> np.ndarray | None:
        """(T, H, W) uint8 of one expression (raw grayscale values if ``raw``, else 0/1), or None if missing."""
        if self.rle is not None:
            entry = self.rle.get(exp)
            if entry is None:
                return None
            masks = entry.get("prediction_masks") if isinstance(entry, dict) else None
            what = f"{self.source}: video {video}, expression {exp}"
            if not isinstance(masks, list) or len(masks) != len(frames):
                got = len(masks) if isinstance(masks, list) else "no"
                raise DataError(f"{what}: {got} prediction_masks for {len(frames)} frames")
            out = np.zeros((len(frames), *shape), np.uint8)
            for t, rle in enumerate(masks):
                m = _decode(rle, f"{what}, frame {frames[t]}")
                if m.shape != shape:
                    raise DataError(f"{what}, frame {frames[t]}: mask size {m.shape} differs from {shape}")
                out[t] = m
            return out
        folder = self.root / video / exp
        if not folder.is_dir():
            return None
        if not raw:
            return read_expression_prediction(self.root, video, exp, frames, shape, allow_extra_frames=True).view(
                np.uint8
            )
        out = np.zeros((len(frames), *shape), np.uint8)
        for t, name in enumerate(frames):
            what = f"video {video}, expression {exp}, frame {name}"
            arr = read_gray_png(folder / f"{name}.png", what)
            if arr.shape != shape:
                raise DataError(f"{what}: prediction size {arr.shape} differs from the ground truth {shape}")
            out[t] = arr
        return out


def _prediction_source(pred: str | Path) -> tuple[Path | None, dict[str, Any] | None]:
    pred = Path(pred)
    if pred.is_file() and pred.suffix == ".json":
        data = _load_json(pred, "RLE predictions")
        if not isinstance(data, dict):
            raise DataError(f"{pred}: expected {{video: {{exp_id: {{'prediction_masks': [...]}}}}}}")
        return None, data
    if not pred.is_dir():
        raise DataError(f"prediction folder {pred} does not exist")
    return pred, None


def _video_pred(root: Path | None, rle: dict[str, Any] | None, video: str, source: str) -> _Pred | None:
    """The video's predictions, or None when the video has none (scored 0)."""
    if rle is not None:
        entry = rle.get(video)
        return None if entry is None else _Pred(rle=entry, source=source)
    if root is not None and (root / video).is_dir():
        return _Pred(root=root, source=source)
    return None


def _png_root(pred: Path, videos: Iterable[str]) -> Path:
    """``pred`` or its ``Annotations`` folder (the server layout), whichever holds the videos."""
    inner = pred / "Annotations"
    if inner.is_dir() and not any((pred / v).is_dir() for v in videos):
        return inner
    return pred


# ----------------------------------------------------------------------------------------------------------------
# Per-video jobs (top-level functions: they run in worker processes)
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Expression:
    exp_id: str
    masks: tuple[Any, ...] = ()  # mask_dict entries (per-frame RLE lists), one per referent
    label: int | None = None  # or: the object's index in the palette annotations
    type_id: int | None = None


@dataclass(frozen=True)
class _VideoJob:
    protocol: str  # "expression" or "revos"
    video: str
    frames: tuple[str, ...]
    expressions: tuple[_Expression, ...]
    pred: _Pred | None
    annotations: Path | None = None  # palette PNG folder of the video
    shape: tuple[int, int] | None = None
    foreground: tuple[Any, ...] = ()
    davis_folders: tuple[str, ...] = ()  # Ref-DAVIS17: annotator folders, slot = exp_id % 4
    device: str | None = None  # torch device of the J/F counts (None: the CPU path)


def _gt_expression(job: _VideoJob, exp: _Expression, labels: np.ndarray | None) -> np.ndarray:
    if exp.label is not None:
        return (labels == exp.label).astype(np.uint8)
    shape = job.shape
    out = np.zeros((len(job.frames), *shape), np.uint8)
    for k, masks in enumerate(exp.masks):
        for t in range(len(job.frames)):
            rle = masks[t]
            if rle:
                what = f"video {job.video}, expression {exp.exp_id}, referent {k}, frame {job.frames[t]}"
                m = _decode(rle, what)
                if m.shape != shape:
                    raise DataError(f"{what}: mask size {m.shape} differs from {shape}")
                out[t] += m
    return out


def _read_labels(job: _VideoJob) -> np.ndarray:
    frames = [read_index_png(job.annotations / f"{f}.png", f"video {job.video}, annotation {f}") for f in job.frames]
    shapes = {a.shape for a in frames}
    if len(shapes) != 1:
        raise DataError(f"video {job.video}: annotation sizes differ ({sorted(shapes)}) in {job.annotations}")
    return np.stack(frames)


def _davis_expression(job: _VideoJob, exp: _Expression, shape: tuple[int, int]) -> np.ndarray | None:
    """An expression's prediction: its own folder (or RLE), else (Ref-DAVIS17) its object in its annotator folder."""
    own = job.pred.expression(job.video, exp.exp_id, list(job.frames), shape, raw=False)
    if own is not None or not job.davis_folders:
        return own
    folder = job.pred.root / job.davis_folders[int(exp.exp_id) % 4] / job.video
    if not folder.is_dir():
        return None
    out = np.zeros((len(job.frames), *shape), np.uint8)
    for t, name in enumerate(job.frames):
        what = f"{folder.parent.name}, video {job.video}, frame {name}"
        arr = read_index_png(folder / f"{name}.png", what)
        if arr.shape != shape:
            raise DataError(f"{what}: prediction size {arr.shape} differs from the ground truth {shape}")
        out[t] = arr == exp.label
    return out


def _score_video(job: _VideoJob) -> list[dict[str, Any]]:
    """Per-expression rows of one video; missing predictions scored 0 with ``missing: True``."""
    labels = _read_labels(job) if job.annotations is not None else None
    shape = labels.shape[1:] if labels is not None else job.shape
    fg = None
    if job.protocol == "revos":
        fg = np.zeros((len(job.frames), *shape), np.uint8)
        for t, rle in enumerate(job.foreground):
            m = _decode(rle, f"video {job.video}, foreground frame {job.frames[t]}")
            fg[t] = m.sum(axis=2).astype(np.uint8) if m.ndim == 3 else m.astype(np.uint8)
    rows = []
    n = len(job.frames)
    for exp in job.expressions:
        row: dict[str, Any] = {"video": job.video, "expression": exp.exp_id}
        if exp.type_id is not None:
            row["type_id"] = exp.type_id
        if job.pred is None:
            pred = None
        elif job.protocol == "revos":
            pred = job.pred.expression(job.video, exp.exp_id, list(job.frames), shape, raw=True)
        else:
            pred = _davis_expression(job, exp, shape)
        if pred is None:
            row.update({"j": 0.0, "f": 0.0, "missing": True, "j_frames": [0.0] * n, "f_frames": [0.0] * n})
            if job.protocol == "revos":
                row.update({"a": 0.0, "r": 0.0})
            rows.append(row)
            continue
        gt = _gt_expression(job, exp, labels)
        # J and F take any non-zero value as foreground; ReVOS' A and R use the stored values (sparrow.eval.revos)
        j, f = jf_per_frame(gt != 0, pred != 0, device=job.device)
        row.update({"j": float(j.mean()), "f": float(f.mean())})
        if job.protocol == "revos":
            row.update({"a": float(accuracy(gt, pred).mean()), "r": float(robustness(gt, pred, fg).mean())})
        row.update({"missing": False, "j_frames": j.tolist(), "f_frames": f.tolist()})
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Streaming and rows
# ----------------------------------------------------------------------------------------------------------------
Progress = Callable[[Iterator[Any], int, str], Iterable[Any]]


def tqdm_progress(stream: Iterator[Any], total: int, desc: str) -> Iterable[Any]:
    """A tqdm bar over the stream when tqdm is installed, else the stream as it is."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return stream
    return tqdm(stream, total=total, desc=desc, unit="video", leave=False)


def _stream(
    jobs: list[_VideoJob], workers: int, progress: Progress | None, desc: str, device: str | None = None
) -> Iterable[list[dict]]:
    if device is not None:
        jobs = [dataclasses.replace(j, device=str(device)) for j in jobs]
    stream = map_ordered(_score_video, iter(jobs), workers)
    return progress(stream, len(jobs), desc) if progress is not None else stream


def _video_row(video: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    j = float(np.mean([r["j"] for r in rows]))
    f = float(np.mean([r["f"] for r in rows]))
    return {
        "video": video,
        "expressions": len(rows),
        "j": j,
        "f": f,
        "jf": (j + f) / 2,
        "j_frames": np.mean([r["j_frames"] for r in rows], axis=0).tolist(),
        "f_frames": np.mean([r["f_frames"] for r in rows], axis=0).tolist(),
        "missing": sum(bool(r["missing"]) for r in rows),
    }


def _collect(stream: Iterable[list[dict]]) -> tuple[list[dict], list[dict]]:
    """Per-expression rows without their per-frame values, and per-video rows with them."""
    expressions, videos = [], []
    for rows in stream:
        if rows:
            videos.append(_video_row(rows[0]["video"], rows))
        for r in rows:
            expressions.append({k: v for k, v in r.items() if k not in ("j_frames", "f_frames")})
    return expressions, videos


def _jf_table(expressions: list[dict[str, Any]]) -> dict[str, float]:
    j, f, jf = aggregate_jf([r["j"] for r in expressions], [r["f"] for r in expressions])
    return {"J&F": 100.0 * jf, "J": 100.0 * j, "F": 100.0 * f}


def _missing(expressions: list[dict[str, Any]]) -> list[str]:
    return [f"{r['video']}/{r['expression']}" for r in expressions if r["missing"]]


# ----------------------------------------------------------------------------------------------------------------
# Benchmarks
# ----------------------------------------------------------------------------------------------------------------
def _mask_dict_jobs(videos: dict, mask_dict: dict, mask_path: Path, root, rle, source, protocol, fore=None):
    jobs = []
    for name, video in videos.items():
        frames = tuple(str(f) for f in video["frames"])
        exps, shape = [], None
        for exp_id, exp in video["expressions"].items():
            ids = exp.get("anno_id")
            if not isinstance(ids, list):
                raise DataError(f"{mask_path.parent}: video {name}, expression {exp_id} has no anno_id list")
            masks = []
            for a in ids:
                entry = mask_dict.get(str(a))
                if not isinstance(entry, list) or len(entry) != len(frames):
                    raise DataError(
                        f"{mask_path}: anno_id {a} (video {name}, expression {exp_id}) needs one entry per frame "
                        f"({len(frames)})"
                    )
                masks.append(tuple(entry))
                for m in entry:
                    if m and shape is None:
                        shape = _rle_size(m, f"{mask_path}: anno_id {a}")
            exps.append(
                _Expression(str(exp_id), tuple(masks), type_id=exp.get("type_id") if protocol == "revos" else None)
            )
        if "height" in video and "width" in video:
            shape = (int(video["height"]), int(video["width"]))
        foreground: tuple = ()
        if fore is not None:
            entry = fore.get(name, {}).get("masks_rle") if isinstance(fore.get(name), dict) else None
            if not isinstance(entry, list) or len(entry) != len(frames):
                raise DataError(f"mask_dict_foreground.json: video {name} needs 'masks_rle' with one mask per frame")
            foreground = tuple(entry)
            if shape is None:
                shape = _rle_size(entry[0], f"mask_dict_foreground.json: video {name}")
        if shape is None:
            shape = _shape_from_prediction(root, rle, name, exps, frames)
        jobs.append(
            _VideoJob(
                protocol, name, frames, tuple(exps), _video_pred(root, rle, name, source), None, shape, foreground
            )
        )
    return jobs


def _shape_from_prediction(root, rle, video, exps, frames) -> tuple[int, int]:
    """A video whose referents are absent on every frame: its size as MeViS takes it, from the first prediction."""
    if root is not None:
        for e in exps:
            path = root / video / e.exp_id / f"{frames[0]}.png"
            if path.is_file():
                return read_gray_png(path, f"video {video}, expression {e.exp_id}, frame {frames[0]}").shape
    if rle is not None:
        for entry in rle.get(video, {}).values():
            masks = entry.get("prediction_masks") if isinstance(entry, dict) else None
            if masks:
                return _rle_size(masks[0], f"video {video}")
    return (1, 1)


def _labelled_expressions(
    meta_path: Path, name: str, video: dict, integer_ids: bool = False
) -> tuple[_Expression, ...]:
    """A video's expressions in ``meta_expressions.json``, each with its object label (``obj_id``); with
    ``integer_ids`` the expression ids must be integers too, as the per-expression Ref-DAVIS17 protocol names them."""
    out = []
    for exp_id, exp in video["expressions"].items():
        try:
            label = int(exp["obj_id"])
            if integer_ids:
                int(exp_id)
        except (KeyError, TypeError, ValueError) as exc:
            what = "integer exp_id and obj_id" if integer_ids else "obj_id"
            raise DataError(f"{meta_path}: video {name}, expression {exp_id}: {what}") from exc
        out.append(_Expression(str(exp_id), label=label))
    return tuple(out)


def score_mevis(
    gt: str | Path,
    pred: str | Path,
    benchmark: str = "mevis-valid-u",
    workers: int = 1,
    progress: Progress | None = None,
    device: str | None = None,
    videos_only: Sequence[str] | None = None,
) -> ScoreResult:
    """MeViS (``eval_mevis.py``) or Ref-YouTube-VOS (the same rule): J, F, J&F per expression, averaged;
    ``videos_only``: score just these videos of the ground truth (a subset predicted on purpose)."""
    gt = Path(gt)
    videos = read_meta_expressions(gt / "meta_expressions.json")
    if videos_only is not None:
        unknown = sorted(set(videos_only) - set(videos))
        if unknown:
            raise DataError(f"{gt / 'meta_expressions.json'}: no video {unknown[0]!r}")
        videos = {name: videos[name] for name in videos if name in set(videos_only)}
    root, rle = _prediction_source(pred)
    if root is not None:
        root = _png_root(root, videos)
    source = str(pred)
    mask_path = gt / "mask_dict.json"
    if mask_path.is_file():
        jobs = _mask_dict_jobs(
            videos, _load_json(mask_path, "mask dictionary"), mask_path, root, rle, source, "expression"
        )
    elif (gt / "Annotations").is_dir():
        jobs = []
        for name, video in videos.items():
            jobs.append(
                _VideoJob(
                    "expression",
                    name,
                    tuple(str(f) for f in video["frames"]),
                    _labelled_expressions(gt / "meta_expressions.json", name, video),
                    _video_pred(root, rle, name, source),
                    gt / "Annotations" / name,
                )
            )
    else:
        hint = (
            " (MeViS valid has no public masks: write the server zip with `sparrow package`)"
            if "valid" in benchmark
            else ""
        )
        raise DataError(f"{gt}: neither mask_dict.json nor Annotations/ holds the ground-truth masks{hint}")
    expressions, per_video = _collect(_stream(jobs, workers, progress, BENCHMARKS[benchmark].title, device))
    missing = _missing(expressions)
    return ScoreResult(
        benchmark,
        {f"{BENCHMARKS[benchmark].title} (per expression)": _jf_table(expressions)},
        per_video,
        expressions,
        missing,
        missing_warning(missing, len(expressions)),
    )


def ref_davis_meta_path(gt: Path) -> Path | None:
    candidates = (gt / "meta_expressions" / "valid" / "meta_expressions.json", gt / "meta_expressions.json")
    return next((p for p in candidates if p.is_file()), None)


def score_ref_davis(
    gt: str | Path,
    pred: str | Path,
    protocols: Iterable[str] = REF_DAVIS_PROTOCOLS,
    workers: int = 1,
    progress: Progress | None = None,
    device: str | None = None,
    sequences: Iterable[str] | None = None,
) -> ScoreResult:
    """Ref-DAVIS17 under both protocols, labelled: DAVIS unsupervised per annotator set (mean of four), and per
    expression as GLUS / UniPixel compute it (the expression's object, ``obj_id``, from its annotator folder
    ``exp_id % 4`` or from its own ``<video>/<exp_id>/`` folder). ``sequences``: score only these videos (default:
    every video of the split's expressions file)."""
    from sparrow.eval.ref_davis import FOLDER_SETS, evaluate_ref_davis, find_folders, locate_ground_truth

    gt, pred = Path(gt), Path(pred)
    protocols = tuple(protocols)
    unknown = [p for p in protocols if p not in REF_DAVIS_PROTOCOLS]
    if unknown or not protocols:
        raise ValueError(f"protocol must be among {', '.join(REF_DAVIS_PROTOCOLS)}, got {', '.join(unknown) or 'none'}")
    if not pred.is_dir():
        raise DataError(f"prediction folder {pred} does not exist")
    meta_path = ref_davis_meta_path(gt)
    davis_root, annotations = locate_ground_truth(gt)
    videos = read_meta_expressions(meta_path) if meta_path is not None else None
    if sequences is not None:
        sequences = sorted(sequences)
        unknown = [v for v in sequences if videos is not None and v not in videos]
        if unknown:
            raise DataError(f"{meta_path}: no expressions for video(s) {', '.join(unknown[:5])}")
    elif videos is not None:
        sequences = sorted(videos)
    tables: dict[str, dict[str, float]] = {}
    result = ScoreResult("ref-davis17", tables)
    has_folders = any((pred / n).is_dir() for names in FOLDER_SETS.values() for n in names)
    notes = []
    if "davis" in protocols and "expression" in protocols and not has_folders:
        protocols = ("expression",)
        notes.append("DAVIS protocol not computed: it needs the four annotator folders of merged palette PNGs")
    if "davis" in protocols:
        folders = find_folders(pred)
        r = evaluate_ref_davis(
            davis_root,
            pred,
            folders=folders,
            sequences=sequences,
            annotations=annotations,
            workers=workers,
            device=device,
            progress=(lambda s, n: progress(s, n, "Ref-DAVIS17 (DAVIS)")) if progress else None,
        )
        for folder, run in r.runs.items():
            tables[f"DAVIS unsupervised, {folder}"] = {
                "J&F": 100 * run.table["J&F-Mean"],
                "J": 100 * run.table["J-Mean"],
                "F": 100 * run.table["F-Mean"],
            }
        tables["DAVIS unsupervised, mean of 4 annotator sets"] = {
            "J&F": 100 * r.mean,
            "J": 100 * r.table_mean["J-Mean"],
            "F": 100 * r.table_mean["F-Mean"],
        }
        if "expression" not in protocols:
            by_seq: dict[str, list] = {}
            for run in r.runs.values():
                for o in run.objects:
                    by_seq.setdefault(o.sequence, []).append(o)
            for seq, objs in by_seq.items():
                j = float(np.mean([o.j_mean for o in objs]))
                f = float(np.mean([o.f_mean for o in objs]))
                result.videos.append(
                    {
                        "video": seq,
                        "objects": len(objs),
                        "j": j,
                        "f": f,
                        "jf": (j + f) / 2,
                        "j_frames": np.mean([o.j_frames for o in objs], axis=0).tolist(),
                        "f_frames": np.mean([o.f_frames for o in objs], axis=0).tolist(),
                    }
                )
    if "expression" in protocols:
        if videos is None:
            raise DataError(f"{gt}: the per-expression protocol needs meta_expressions/valid/meta_expressions.json")
        folders = find_folders(pred) if has_folders else ()
        ann = annotations if annotations is not None else davis_root / "Annotations_unsupervised" / "480p"
        jobs = []
        for name in sequences:
            jobs.append(
                _VideoJob(
                    "expression",
                    name,
                    tuple(str(f) for f in videos[name]["frames"]),
                    _labelled_expressions(meta_path, name, videos[name], integer_ids=True),
                    _Pred(root=pred, source=str(pred)),
                    ann / name,
                    davis_folders=folders,
                )
            )
        expressions, per_video = _collect(_stream(jobs, workers, progress, "Ref-DAVIS17 (per expression)", device))
        tables["per expression"] = _jf_table(expressions)
        result.expressions, result.videos = expressions, per_video
        result.missing = _missing(expressions)
        result.warnings = missing_warning(result.missing, len(expressions))
    result.warnings += notes
    return result


def score_revos(
    gt: str | Path,
    pred: str | Path,
    workers: int = 1,
    progress: Progress | None = None,
    device: str | None = None,
) -> ScoreResult:
    """ReVOS with VISA's scorer (:mod:`sparrow.eval.revos`): J, F, A, R, JF for referring, reasoning, overall."""
    gt = Path(gt)
    meta_path = next(
        (p for p in (gt / "meta_expressions_valid_.json", gt / "meta_expressions.json") if p.is_file()),
        gt / "meta_expressions_valid_.json",
    )
    videos = read_meta_expressions(meta_path)
    root, rle = _prediction_source(pred)
    if root is not None:
        root = _png_root(root, videos)
    for exp_name, video in ((e, v) for v in videos.values() for e in v["expressions"]):
        if "type_id" not in video["expressions"][exp_name]:
            raise DataError(f"{meta_path}: expression {exp_name} has no type_id (0 referring, 1 reasoning)")
    mask_path = gt / "mask_dict.json"
    jobs = _mask_dict_jobs(
        videos,
        _load_json(mask_path, "mask dictionary"),
        mask_path,
        root,
        rle,
        str(pred),
        "revos",
        fore=_load_json(gt / "mask_dict_foreground.json", "foreground masks"),
    )
    expressions, per_video = _collect(_stream(jobs, workers, progress, "ReVOS", device))
    scored = [(r["type_id"], RevosScore(r["j"], r["f"], r["a"], r["r"])) for r in expressions]
    for row, (_, s) in zip(expressions, scored):
        row["official"] = rounded(s)
    tables = revos_tables(scored)
    missing = _missing(expressions)
    untyped = [r for r in expressions if r["type_id"] not in TYPES]
    warnings = missing_warning(missing, len(expressions))
    if untyped:
        warnings.append(f"{len(untyped)} expressions of other types (no target) are scored but enter no table")
    return ScoreResult("revos", tables, per_video, expressions, missing, warnings)


def score_gcg(
    pred: str | Path,
    workers: int = 1,
    progress: Progress | None = None,
    captions: bool = False,
    text_encoder: Any = None,
    clair_judge: Any = None,
) -> ScoreResult:
    """VideoGCG from ``eval_gcg_infer.py``'s sample folders (``<pred>/[video_gcg/]<index:06d>/``), ground truth
    included: mIoU; METEOR and CIDEr with ``captions``; recall with a ``text_encoder``; CLAIR with a judge
    (:func:`sparrow.eval.gcg.evaluate_gcg`)."""
    from sparrow.eval.gcg import evaluate_gcg, read_gcg_sample

    pred = Path(pred)
    if not pred.is_dir():
        raise DataError(f"prediction folder {pred} does not exist")
    root = pred / "video_gcg" if (pred / "video_gcg").is_dir() else pred
    folders = sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit())
    if not folders:
        raise DataError(f"{root}: no sample folders <index:06d>/ (res.json, gt_masks_<k>, pred_masks_<k>)")
    stream = map_ordered(read_gcg_sample, iter(folders), workers)
    if progress is not None:
        stream = progress(stream, len(folders), "VideoGCG")
    r = evaluate_gcg(
        stream,
        text_encoder=text_encoder,
        caption_metrics=captions,
        clair_judge=clair_judge,
        mask_tokens=("[SEG]", "[BOX]"),
    )
    table = {"mIoU": 100.0 * r.miou}
    for name, value, scale in (("recall", r.recall, 100.0), ("METEOR", r.meteor, 1.0), ("CIDEr", r.cider, 1.0)):
        if value is not None:
            table[name] = scale * value
    if r.clair is not None:
        table["CLAIR"] = 100.0 * r.clair
    videos = [
        {"video": v, "miou": m, "missing": v in r.missing, "failed": r.failed.get(v)}
        for v, m in r.per_video_miou.items()
    ]
    warnings = [f"{k}: {v}" for k, v in r.notes.items()]
    if r.failed:
        warnings.append(
            f"{len(r.failed)} samples: predicted phrases and masks do not pair up (mIoU 0): {', '.join(sorted(r.failed))}"
        )
    warnings += missing_warning(list(r.missing), len(videos), "samples")
    return ScoreResult("videogcg", {"VideoGCG": table}, videos, [], list(r.missing), warnings)


def score_vidstg(gt: str | Path, pred: str | Path) -> ScoreResult:
    """VidSTG with TubeDETR's evaluator (:func:`sparrow.eval.vidstg.tubedetr_metrics`): m_tIoU, m_vIoU, vIoU@R and
    the gt_vIoU variants per sentence type, from its ``test.json`` and a prediction file holding ``predictions``
    (``{"<video_id>_<frame_id>": {"boxes": [[x1, y1, x2, y2]]}}``) and ``video_predictions``
    (``{video_id: {"sted": [start, end], "qtype": ...}}``), as its ``save_pred`` output does."""
    from sparrow.eval.vidstg import TubeSample, sample_frame_ids, tubedetr_metrics

    gt, pred = Path(gt), Path(pred)
    ann_path = gt if gt.is_file() else gt / "test.json"
    anns = _load_json(ann_path, "VidSTG annotations")
    data = _load_json(pred, "VidSTG predictions")
    try:
        boxes, video_preds = data["predictions"], data["video_predictions"]
        videos, trajectories = anns["videos"], anns["trajectories"]
    except (KeyError, TypeError) as exc:
        raise DataError(
            f"{pred} / {ann_path}: missing {exc} (predictions, video_predictions; videos, trajectories)"
        ) from exc
    samples = []
    for video in videos:
        vid = str(video["video_id"])
        if vid not in video_preds:
            raise DataError(f"{pred}: no video_predictions entry for video {vid} (TubeDETR stops on a missing video)")
        vp = video_preds[vid]
        frame_ids = sample_frame_ids(video["start_frame"], video["end_frame"], video["fps"])
        track = trajectories[video["original_video_id"]][str(video["target_id"])]
        tube = (video["tube_start_frame"], video["tube_end_frame"])
        gt_boxes, pred_boxes = {}, {}
        for f in frame_ids:
            if tube[0] <= f < tube[1]:
                x, y, w, h = track[str(f)]["bbox"]
                gt_boxes[f] = (x, y, x + w, y + h)
                entry = boxes.get(f"{vid}_{f}")
                if entry is None:
                    raise DataError(f"{pred}: no box prediction for frame {vid}_{f}")
                pred_boxes[f] = entry["boxes"][0]
        samples.append(TubeSample(vid, vp["qtype"], frame_ids, tube, gt_boxes, tuple(vp["sted"]), pred_boxes))
    r = tubedetr_metrics(samples)
    rows = [{"video": s.video_id, "qtype": s.qtype, **r.per_video[s.video_id]} for s in samples]
    tables = {
        f"VidSTG {qtype} (TubeDETR)": {k: 100.0 * v for k, v in means.items()} for qtype, means in r.means.items()
    }
    return ScoreResult("vidstg", tables, [], rows)


def score(
    benchmark: str,
    pred: str | Path,
    gt: str | Path | None,
    protocol: str | None = None,
    workers: int = 1,
    progress: Progress | None = None,
    device: str | None = None,
    captions: bool = False,
    text_encoder: Any = None,
    clair_judge: Any = None,
) -> ScoreResult:
    """Score ``pred`` on ``benchmark`` (a key of :data:`BENCHMARKS`) against the released ground truth ``gt``
    (VideoGCG: None, its sample folders hold the ground truth; ``captions`` adds METEOR and CIDEr, a
    ``text_encoder`` the phrase recall, a ``clair_judge`` CLAIR)."""
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; choose from {', '.join(BENCHMARKS)}")
    b = BENCHMARKS[benchmark]
    if protocol is not None and protocol not in b.protocols and protocol != "both":
        raise ValueError(f"{benchmark}: protocol must be one of {', '.join(b.protocols)}, got {protocol!r}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if benchmark == "videogcg":
        return score_gcg(pred, workers, progress, captions, text_encoder, clair_judge)
    if gt is None:
        raise ValueError(f"{benchmark}: --gt (the released ground truth) is required")
    if not Path(gt).exists():
        raise DataError(f"ground-truth folder {gt} does not exist")
    if benchmark == "vidstg":
        return score_vidstg(gt, pred)
    if benchmark == "ref-davis17":
        protocols = REF_DAVIS_PROTOCOLS if protocol in (None, "both") else (protocol,)
        return score_ref_davis(gt, pred, protocols, workers, progress, device)
    if benchmark == "revos":
        return score_revos(gt, pred, workers, progress, device)
    return score_mevis(gt, pred, benchmark, workers, progress, device)


def read_score_json(path: str | Path) -> ScoreResult:
    """A :class:`ScoreResult` written by ``--json`` / :meth:`ScoreResult.write_json`."""
    data = _load_json(Path(path), "score result")
    names = {f.name for f in dataclasses.fields(ScoreResult)}
    try:
        return ScoreResult(**{k: v for k, v in data.items() if k in names})
    except TypeError as exc:
        raise DataError(f"{path}: not a score result ({exc})") from exc
