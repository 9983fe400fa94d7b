"""Model x benchmark -> predictions on disk -> metrics with the official protocols.

:func:`run_benchmark` predicts one benchmark (:mod:`sparrow.eval.benchmarks`) video by video and writes what the
official evaluators and servers read; :func:`score_benchmark` then scores that folder from disk alone, so a
prediction folder made elsewhere in the same layout is scored the same way. Layouts (under the benchmark folder):

- ``rvos``: ``Annotations/<video>/<exp_id>/<frame>.png`` (0/255, the MeViS / Ref-YouTube-VOS server layout; a
  split without public ground truth also gets ``submission.zip``);
- ``ref_davis``: ``Davis17_annot1``, ``Davis17_annot1_full_video``, ``Davis17_annot2``,
  ``Davis17_annot2_full_video``, each ``<video>/<frame>.png`` palette PNGs (objects merged as the released scripts);
- ``grounding``: ``masks/<video>/<exp_id>/<frame>.png`` for the frames of the sentence's clip;
- ``gcg``: ``video_gcg/<index:06d>/res.json`` with ``gt_masks_<k>/`` and ``pred_masks_<k>/mask_<t>.png``, the
  layout of SPARROW's ``eval_gcg_infer.py`` (index = position of the video in the sorted split);
- every protocol: ``records/<video>.json`` (answers, per-frame boxes, whether a ``[SEG]`` was emitted, seconds).

PNGs are written as :mod:`sparrow.eval.png` writes them (0/255 single-channel, or DAVIS palette indices after
:func:`sparrow.eval.export.merge_objects`), each atomically, from a few threads so that their fsyncs overlap the
next video's prediction.

**Resuming.** A video counts as done when its record exists and covers the expressions wanted now; the record is
written (atomically, like every file here) after the video's masks, so a killed run redoes at most the video it
was on, and the result is identical because prediction is deterministic. ``metrics.json`` caches the scores for
the scored subset and scoring settings.

**One folder, one model.** ``manifest.json`` holds what decides the predictions (model fingerprint, curated data,
protocol, prompts, TSF source, format, and the official-parity switches of :func:`parity_switches`). A folder whose manifest differs is refused (:class:`PredictionsMismatch`),
never cleared nor merged into, and a folder is written by one process at a time
(:func:`sparrow.storage.folder_lock`; a second writer gets :class:`sparrow.storage.FolderLocked`). The default
folders are named after what makes the predictions (:func:`keyed_eval_dir`), so two models never meet in one.

**Batching.** The expressions of one video (one clip for VidSTG) are predicted together with
``model.predict_many(frames, texts, tsf_boxes=...)`` when the model has it, else one ``predict`` per text.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sparrow.data.curated import CuratedDataset, records_fingerprint
from sparrow.data.indices import evenly_spread
from sparrow.data.qa_templates import marked_text, markup_to_tokens
from sparrow.data.records import ExpressionRecord, submission_names
from sparrow.eval.benchmarks import Benchmark
from sparrow.eval.export import merge_objects, zip_submission
from sparrow.eval.gcg import GcgSample, WordBagEncoder, clean_caption, evaluate_gcg, phrases, read_gcg_prediction
from sparrow.eval.png import read_gray_png, write_binary_png, write_index_png
from sparrow.eval.ref_davis import FOLDER_SETS, evaluate_ref_davis, locate_ground_truth
from sparrow.eval.rvos import evaluate_rvos, read_expression_prediction
from sparrow.eval.score import ref_davis_meta_path, score_ref_davis
from sparrow.eval.vidstg import GroundingSample, mllm_grounding_miou
from sparrow.model import SparrowModel
from sparrow.model.batch import Prediction
from sparrow.paths import home
from sparrow.profiles import check_profile
from sparrow.storage import DataError, atomic_write_json, digest_json, folder_lock, read_json, sha256_file
from sparrow.tsf.runs import TSFRun

# 2: a SAM2 trained from scratch decodes its trained single mask at inference (no stability fallback), so
# predictions cached by format 1 no longer match the code that would make them; 3: grounded captions are generated
# with their own answer budget (GCG_MAX_NEW_TOKENS); 4: the manifest records the official-parity switches; 5: it
# records the referring clip length (Ref-DAVIS17 in independent 64-frame clips)
FORMAT = 5
MANIFEST = "manifest.json"
METRICS = "metrics.json"
RECORDS = "records"
DAVIS_FOLDERS = FOLDER_SETS["sparrow"]
MASK_TOKENS = ("[SEG]", "[BOX]")
# A grounded caption of SPARROW-Mini (3 to 5 phrases, each with <p>, </p> and [SEG]) takes 50 to 80 tokens; the
# tiny models' answer budget (12) fits a referring answer only.
GCG_MAX_NEW_TOKENS = 128
TSFBoxes = Callable[[ExpressionRecord], "np.ndarray | None"]


@dataclass
class BenchmarkResult:
    """One benchmark's score for one model. ``value`` is the table's number in percent, or None with ``note``."""

    key: str
    title: str
    metric: str
    value: float | None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    units: int = 0
    expressions: int = 0
    missing: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seg_found_rate: float | None = None
    predict_seconds: float = 0.0  # prediction time, summed over the videos' records (the run that made each)
    predictions: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> BenchmarkResult:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})


# ----------------------------------------------------------------------------------------------------------------
# Fingerprints and folders
# ----------------------------------------------------------------------------------------------------------------
def checkpoint_fingerprint(directory: str | Path) -> str:
    """SHA-256 over a ``save_pretrained`` folder's config and weights (what decides the predictions)."""
    directory = Path(directory)
    parts = []
    for name in ("config.json", "model.safetensors"):
        path = directory / name
        if not path.is_file():
            raise DataError(f"{directory}: not a checkpoint folder (missing {name})")
        parts.append(sha256_file(path))
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def model_fingerprint(model: Any) -> str:
    """SHA-256 over a loaded model's config and weights (for models that have no checkpoint folder)."""
    digest = hashlib.sha256(json.dumps(model.cfg.to_json(), sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _parity_switches(model_cfg: dict[str, Any], llm_config: dict[str, Any] | None) -> dict[str, Any]:
    from sparrow.model.conversation import CHAT_TEMPLATES

    selector = model_cfg.get("selector") or {}
    template = model_cfg.get("chat_template")
    return {
        "chat_template": template,
        "system_prompt": CHAT_TEMPLATES[template].system if template in CHAT_TEMPLATES else None,
        "sliding_window": (llm_config or {}).get("sliding_window"),
        "decoding": model_cfg.get("decoding"),
        "decoding_seed": model_cfg.get("decoding_seed") if model_cfg.get("decoding") == "sample" else None,
        "clamp_boxes": selector.get("clamp_boxes"),
        "box_prior_prompt": selector.get("box_prior_prompt"),
        "gamma": selector.get("roi_fusion_init"),
        "frame_chain": model_cfg.get("frame_chain"),
        "inference_protocol": model_cfg.get("protocol"),
        "eval_prompt": model_cfg.get("eval_prompt"),
        "tsf_at_test": model_cfg.get("tsf_at_test"),
        "precision": model_cfg.get("precision", "mixed"),
        "propagation": model_cfg.get("propagation"),
    }


def parity_switches(source: Any) -> dict[str, Any] | None:
    """The switches that make a run follow the released code or the kit (docs/released-weights.md §3): system prompt,
    Phi-3 sliding window, greedy or sampled decoding, unclamped boxes, the prior filter's prompt form, gamma, frame
    chain, inference protocol, precision, SAM2 propagation. ``source``: a ``save_pretrained`` folder or a loaded model; None for a model without
    a :class:`~sparrow.model.config.ModelConfig` (a stand-in)."""
    if isinstance(source, (str, Path)):
        directory = Path(source)
        model_cfg = read_json(directory / "config.json").get("model", {})
        llm_path = directory / "components" / "llm" / "config.json"
        return _parity_switches(model_cfg, read_json(llm_path) if llm_path.is_file() else None)
    cfg = getattr(source, "cfg", None)
    if cfg is None or not hasattr(cfg, "to_json"):
        return None
    hf = getattr(getattr(getattr(source, "llm", None), "model", None), "config", None)
    return _parity_switches(cfg.to_json(), {"sliding_window": getattr(hf, "sliding_window", None)})


def eval_root(profile: str) -> Path:
    """Where predictions and metrics are cached: ``$SPARROW_HOME/eval/<profile>``."""
    return home() / "eval" / check_profile(profile)


def keyed_eval_dir(
    parent: str | Path,
    label: str,
    model_id: str,
    tsf_tag: str | None = None,
    switches: dict[str, Any] | None = None,
) -> Path:
    """``<parent>/<label>[+tsf-test]-<key>``: a prediction root named after what makes its predictions (the key
    hashes the model's fingerprint, the TSF source at test, the prediction format and, when given, the
    :func:`parity_switches`), so the predictions of two models, e.g. two runs' ``final/`` folders, or of one model
    under two switch settings never share a folder."""
    ident: dict[str, Any] = {"format": FORMAT, "model": model_id, "tsf": tsf_tag}
    if switches is not None:
        ident["switches"] = switches
    key = digest_json(ident, 12)
    return Path(parent) / f"{label}{'+tsf-test' if tsf_tag else ''}-{key}"


class PredictionsMismatch(DataError):
    """A prediction folder that holds another model's (data's, protocol's) predictions."""


def _has_ground_truth(ds: CuratedDataset, source: str, split: str) -> bool:
    return bool(ds.meta.get("sources", {}).get(source, {}).get("ground_truth", {}).get(split, True))


# ----------------------------------------------------------------------------------------------------------------
# Clips
# ----------------------------------------------------------------------------------------------------------------
def clip_indices(benchmark: Benchmark, video, expression: ExpressionRecord) -> list[int]:
    """Frame indices a sentence is evaluated on.

    VidSTG (``tmp_loc=False``): the ground-truth tube ``frame_span`` only, at about 1 fps (every round(fps)-th frame
    of the curated frames when they are denser), at most ``max_frames`` evenly spread. GCG: the whole video, at
    most ``max_frames``. Referring benchmarks: every frame (cut into independent clips when the benchmark has
    ``clip_frames``: :func:`predict_clips`)."""
    n = video.num_frames
    if n == 0:
        raise DataError(f"video {video.video_id}: no frames")
    if benchmark.protocol == "grounding":
        if expression.frame_span is None:
            raise DataError(f"{expression.expression_id}: a VidSTG sentence needs a frame_span (its ground-truth tube)")
        start, end = expression.frame_span
        step = max(1, int(round(video.fps))) if video.fps and video.fps > 1 else 1
        indices = list(range(start, end, step))
        if not indices:
            raise DataError(f"{expression.expression_id}: empty ground-truth tube {expression.frame_span}")
    else:
        indices = list(range(n))
    if benchmark.max_frames is not None and benchmark.protocol in ("grounding", "gcg"):
        indices = evenly_spread(indices, benchmark.max_frames)
    return indices


# ----------------------------------------------------------------------------------------------------------------
# Prediction
# ----------------------------------------------------------------------------------------------------------------
def predict_texts(
    model: Any,
    frames: np.ndarray,
    texts: Sequence[str],
    raw_question: bool = False,
    tsf_boxes: Sequence[Any] | None = None,
    max_new_tokens: int | None = None,
) -> list:
    """One Prediction per text on the same frames: ``predict_many`` when the model has it, else ``predict``.
    ``max_new_tokens`` (when given) bounds the answer instead of the model's default."""
    boxes = list(tsf_boxes) if tsf_boxes is not None else None

    def length(fn) -> dict[str, int]:  # a stand-in model without the argument answers with its own budget
        wanted = max_new_tokens is not None and "max_new_tokens" in inspect.signature(fn).parameters
        return {"max_new_tokens": max_new_tokens} if wanted else {}

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no [SEG] emitted" is counted in seg_found_rate instead
        many = getattr(model, "predict_many", None)
        if many is not None:
            params = inspect.signature(many).parameters
            if not raw_question:
                return list(many(frames, list(texts), tsf_boxes=boxes, **length(many)))
            if "raw_question" in params:
                return list(many(frames, list(texts), tsf_boxes=boxes, raw_question=True, **length(many)))
        extra = length(model.predict)
        return [
            model.predict(frames, t, raw_question=raw_question, tsf_boxes=None if boxes is None else boxes[i], **extra)
            for i, t in enumerate(texts)
        ]


def predict_clips(
    model: Any,
    frames: np.ndarray,
    texts: Sequence[str],
    raw_question: bool,
    tsf_boxes: Sequence[Any] | None,
    clip_frames: int | None,
) -> tuple[list[Prediction], list[list[str]] | None]:
    """:func:`predict_texts` on the whole video, or, when it is longer than ``clip_frames``, on each run of
    ``clip_frames`` frames as an independent sample (the released Ref-DAVIS17 protocol) with the masks joined along
    time. Returns the predictions and, for a clipped video, each text's answer per clip (else None).

    A joined prediction found its ``[SEG]`` only if every clip did (a clip without one has empty masks, as released);
    its answer is the first clip's. Each clip's TSF boxes are its own frames' (the released script indexes the
    video's box file by the frame's position within the clip, so its later clips crop at the first clip's boxes)."""
    n = len(frames)
    if clip_frames is None or n <= clip_frames:
        return predict_texts(model, frames, texts, raw_question, tsf_boxes), None
    parts = []
    for start in range(0, n, clip_frames):
        stop = min(start + clip_frames, n)
        boxes = None if tsf_boxes is None else [None if x is None else np.asarray(x)[start:stop] for x in tsf_boxes]
        parts.append(predict_texts(model, frames[start:stop], texts, raw_question, boxes))
    joined = [_join_clips([clip[i] for clip in parts]) for i in range(len(texts))]
    return joined, [[clip[i].answer for clip in parts] for i in range(len(texts))]


def _join_clips(clips: Sequence[Prediction]) -> Prediction:
    n_seg = max(c.masks_per_seg.shape[0] for c in clips)
    per_seg = [
        np.concatenate([c.masks_per_seg, np.zeros((n_seg - len(c.masks_per_seg), *c.masks.shape), bool)]) for c in clips
    ]
    return Prediction(
        masks=np.concatenate([c.masks for c in clips]),
        boxes=np.concatenate([c.boxes for c in clips]),
        answer=clips[0].answer,
        masks_per_seg=np.concatenate(per_seg, axis=1),
        prompt_boxes=list(clips[0].prompt_boxes),
        seg_found=all(c.seg_found for c in clips),
    )


def gcg_max_new_tokens(model: Any) -> int:
    """The answer budget of a grounded caption: the model's own, at least :data:`GCG_MAX_NEW_TOKENS`."""
    cfg = getattr(model, "cfg", None)
    return max(int(getattr(cfg, "max_new_tokens", 0) or 0), GCG_MAX_NEW_TOKENS)


def _boxes_json(boxes: np.ndarray) -> list[list[float] | None]:
    return [None if np.isnan(row).any() else [float(v) for v in row] for row in np.asarray(boxes, dtype=float)]


def _record_row(exp: ExpressionRecord, pred, text: str) -> dict[str, Any]:
    return {
        "expression_id": exp.expression_id,
        "prompt": text,
        "answer": pred.answer,
        "seg_found": bool(pred.seg_found),
        "boxes": _boxes_json(pred.boxes),
        "n_seg": int(pred.masks_per_seg.shape[0]),
    }


Write = tuple[str, Path, Any]  # ("binary" | "index" | "json", path, mask / labels / object)


def _flush(writes: list[Write], record_path: Path, record: dict[str, Any]) -> None:
    """One video's files, then its record (which marks the video done), each written atomically."""
    for kind, path, data in writes:
        if kind == "binary":
            write_binary_png(path, data)
        elif kind == "index":
            write_index_png(path, data)
        else:
            atomic_write_json(path, data)
    atomic_write_json(record_path, record)


def _frame_writes(kind: str, folder: Path, frame_names: Sequence[str], frames: np.ndarray) -> list[Write]:
    if len(frames) != len(frame_names):
        raise ValueError(f"{folder}: {len(frame_names)} frame names for {len(frames)} predicted frames")
    return [(kind, folder / f"{n}.png", f) for n, f in zip(frame_names, frames)]


class _Predictor:
    """Predicts one benchmark for one model, video by video; returns each video's files to write and its rows."""

    def __init__(self, benchmark: Benchmark, ds: CuratedDataset, out: Path, tsf_boxes: TSFBoxes | None):
        self.b, self.ds, self.out, self.tsf_boxes = benchmark, ds, out, tsf_boxes
        self._gcg_order: dict[str, int] | None = None

    def _tsf(self, expressions: Sequence[ExpressionRecord]) -> list | None:
        if self.tsf_boxes is None:
            return None
        return [self.tsf_boxes(e) for e in expressions]

    def video(
        self, model: Any, video_id: str, expressions: list[ExpressionRecord]
    ) -> tuple[list[Write], list[dict[str, Any]]]:
        b, ds = self.b, self.ds
        video = ds.video(video_id)
        name = submission_names(video_id, expressions[0].expression_id)[0]
        writes: list[Write] = []
        if b.protocol in ("rvos", "ref_davis"):
            frames = ds.load_frames(video_id)
            prompts = [b.prompt(e) for e in expressions]
            texts = [p[0] for p in prompts]
            preds, answers = predict_clips(model, frames, texts, prompts[0][1], self._tsf(expressions), b.clip_frames)
            if b.protocol == "rvos":
                for e, p in zip(expressions, preds):
                    folder = self.out / "Annotations" / name / submission_names(video_id, e.expression_id)[1]
                    writes += _frame_writes("binary", folder, video.frame_names, p.masks)
            else:
                writes += self._davis_writes(video, name, expressions, preds)
            rows = [_record_row(e, p, t) for e, p, (t, _) in zip(expressions, preds, prompts)]
            if answers is not None:
                for row, clip_answers in zip(rows, answers):
                    row["clip_answers"] = clip_answers
        elif b.protocol == "grounding":
            clips: dict[tuple[int, ...], list[ExpressionRecord]] = {}
            for e in expressions:
                clips.setdefault(tuple(clip_indices(b, video, e)), []).append(e)
            by_id = {}
            for indices, group in clips.items():
                frames = ds.load_frames(video_id, list(indices))
                prompts = [b.prompt(e) for e in group]
                preds = predict_texts(model, frames, [p[0] for p in prompts], True, self._tsf(group))
                names = [video.frame_names[i] for i in indices]
                for e, p, (t, _) in zip(group, preds, prompts):
                    folder = self.out / "masks" / name / submission_names(video_id, e.expression_id)[1]
                    writes += _frame_writes("binary", folder, names, p.masks)
                    by_id[e.expression_id] = {**_record_row(e, p, t), "frames": list(indices)}
            rows = [by_id[e.expression_id] for e in expressions]
        else:
            rows = [self._gcg(model, video, e, writes) for e in expressions]
        return writes, rows

    def _davis_writes(self, video, name: str, expressions: list[ExpressionRecord], preds: list) -> list[Write]:
        """Per annotator set, the video's objects merged into palette labels (:func:`merge_objects`)."""
        objects = sorted({o for e in expressions for o in e.object_ids}, key=_object_order)
        shape = (video.num_frames, video.height, video.width)
        writes: list[Write] = []
        for slot, folder in enumerate(DAVIS_FOLDERS):
            masks = {o: np.zeros(shape, bool) for o in objects}
            for e, p in zip(expressions, preds):
                if _davis_slot(e) == slot:
                    for o in e.object_ids:
                        masks[o] = masks[o] | p.masks
            labels = merge_objects([masks[o] for o in objects])
            writes += _frame_writes("index", self.out / folder / name, video.frame_names, labels)
        return writes

    def _gcg(self, model: Any, video, exp: ExpressionRecord, writes: list[Write]) -> dict[str, Any]:
        indices = clip_indices(self.b, video, exp)
        frames = self.ds.load_frames(video.video_id, indices)
        text, _ = self.b.prompt(exp)
        pred = predict_texts(model, frames, [text], True, self._tsf([exp]), gcg_max_new_tokens(model))[0]
        folder = self.out / "video_gcg" / f"{self._gcg_index(video.video_id):06d}"
        gt_text = markup_to_tokens(marked_text(exp))
        for k, ids in enumerate(ids for _, ids in exp.phrase_list()):
            gt = self._union(video.video_id, ids)[indices]
            writes += [("binary", folder / f"gt_masks_{k}" / f"mask_{t}.png", m) for t, m in enumerate(gt)]
        for k, tube in enumerate(pred.masks_per_seg):
            writes += [("binary", folder / f"pred_masks_{k}" / f"mask_{t}.png", m) for t, m in enumerate(tube)]
        writes.append(
            (
                "json",
                folder / "res.json",
                {
                    "video_id": video.video_id,
                    "expression_id": exp.expression_id,
                    "frames": indices,
                    "gt_text": gt_text,
                    "pred_text": pred.answer,
                    "gt_text_cleaned": clean_caption(gt_text, MASK_TOKENS),
                    "pred_text_cleaned": clean_caption(pred.answer, MASK_TOKENS),
                    "gt_phrases": phrases(gt_text),
                    "pred_phrases": phrases(pred.answer),
                },
            )
        )
        return {**_record_row(exp, pred, text), "frames": indices, "folder": folder.name}

    def _union(self, video_id: str, ids: Sequence[str]) -> np.ndarray:
        masks = [self.ds.object_masks(video_id, i) for i in ids]
        return np.logical_or.reduce(masks) if masks else np.zeros(0, bool)

    def _gcg_index(self, video_id: str) -> int:
        if self._gcg_order is None:
            self._gcg_order = gcg_order(self.b, self.ds)
        return self._gcg_order[video_id]


def gcg_order(benchmark: Benchmark, ds: CuratedDataset) -> dict[str, int]:
    """GCG sample index of each video: its position in the sorted split (stable whatever subset is scored)."""
    return {v: i for i, v in enumerate(sorted({e.video_id for e in benchmark.expressions(ds)}))}


def _object_order(object_id: str) -> tuple[int, Any]:
    return (0, int(object_id)) if object_id.isdigit() else (1, object_id)


def _davis_slot(exp: ExpressionRecord) -> int:
    """Annotator set of a Ref-DAVIS17 expression: converted ids are ``4k + slot`` (docs/data-formats.md §3.3)."""
    exp_id = exp.expression_id.rsplit("/", 1)[-1]
    if not exp_id.isdigit():
        raise DataError(f"{exp.expression_id}: Ref-DAVIS17 expression ids must be integers 4k + annotator slot")
    return int(exp_id) % 4


# ----------------------------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------------------------
def _prediction_manifest(
    benchmark: Benchmark, model_id: str, data: str, tsf_tag: str | None, switches: dict[str, Any] | None
) -> dict[str, Any]:
    """What decides the predictions (not the subset size, nor the scoring settings: those reuse predictions)."""
    b = benchmark
    return {
        "format": FORMAT,
        "model": model_id,
        "data": data,
        "tsf": tsf_tag,
        "switches": switches,
        "source": b.source,
        "split": b.split,
        "protocol": b.protocol,
        "kinds": list(b.kinds) if b.kinds else None,
        "max_frames": b.max_frames,
        "clip_frames": b.clip_frames,
    }


def _done(out: Path, video_id: str, expressions: list[ExpressionRecord]) -> bool:
    path = out / RECORDS / f"{_safe(video_id)}.json"
    if not path.is_file():
        return False
    have = {r["expression_id"] for r in read_json(path).get("expressions", [])}
    return all(e.expression_id in have for e in expressions)


def _safe(video_id: str) -> str:
    return video_id.replace("/", "__")


def run_benchmark(
    model: Any,
    benchmark: Benchmark,
    curated_root: str | Path,
    out_dir: str | Path,
    *,
    model_id: str | None = None,
    tsf_boxes: TSFBoxes | None = None,
    tsf_tag: str | None = None,
    clair_judge: Any = None,
    show_progress: bool = True,
    switches: dict[str, Any] | None = None,
) -> BenchmarkResult:
    """Predict what is not on disk yet, then score (or load the cached score). See the module doc.

    ``model`` is a model with ``predict`` or a zero-argument callable that loads one (called only if some video
    still needs predicting). ``model_id`` identifies its weights (default: a hash of the loaded model's weights).
    ``tsf_boxes`` gives each expression's tracked boxes for TSF at test, ``tsf_tag`` names their source.
    ``switches``: the model's :func:`parity_switches` when the caller has them (read from the model otherwise, or
    None when ``model_id`` is given and the model is not loaded).
    ``out_dir`` is locked while this runs; one that holds other predictions raises :class:`PredictionsMismatch`."""
    curated_root, out = Path(curated_root), Path(out_dir)
    ds = CuratedDataset(curated_root)
    units = benchmark.select(ds)
    if tsf_boxes is not None and tsf_tag is None:
        raise ValueError("tsf_boxes needs a tsf_tag naming their source (it enters the prediction manifest)")
    loaded = model if hasattr(model, "predict") else None
    if model_id is None:
        loaded = loaded if loaded is not None else model()
        model_id = model_fingerprint(loaded)
    if switches is None and loaded is not None:
        switches = parity_switches(loaded)
    manifest = _prediction_manifest(benchmark, model_id, records_fingerprint(curated_root), tsf_tag, switches)
    with folder_lock(out):
        return _run_locked(
            model, loaded, benchmark, ds, curated_root, out, units, manifest, tsf_boxes, clair_judge, show_progress
        )


def _check_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest of a new folder; refuse a folder whose manifest differs (or that has files but none)."""
    path = out / MANIFEST
    if path.is_file():
        found = read_json(path)
        if found != manifest:
            found = found if isinstance(found, dict) else {}
            differ = [
                f"{k} {str(found.get(k))[:16]} (folder) vs {str(v)[:16]} (now)"
                for k, v in manifest.items()
                if found.get(k) != v
            ]
            raise PredictionsMismatch(
                f"{path}: the folder holds predictions made otherwise ({'; '.join(differ)}); refusing to mix "
                "them: write to another folder or remove this one"
            )
        return
    if any(p.name != ".lock" for p in out.iterdir()):
        raise PredictionsMismatch(
            f"{out}: not empty and has no {MANIFEST}, so what made its files is unknown; refusing to mix them: "
            "write to another folder or remove this one"
        )
    atomic_write_json(path, manifest)


def _run_locked(
    model, loaded, benchmark, ds, curated_root, out, units, manifest, tsf_boxes, clair_judge, show_progress
) -> BenchmarkResult:
    from tqdm.auto import tqdm

    _check_manifest(out, manifest)
    todo = [(v, exps) for v, exps in units.items() if not _done(out, v, exps)]
    if todo:
        from concurrent.futures import ThreadPoolExecutor

        loaded = loaded if loaded is not None else model()
        predictor = _Predictor(benchmark, ds, out, tsf_boxes)
        # Each PNG is fsynced; writing them from threads keeps that I/O wait out of the prediction loop. The pool
        # finishes every submitted video (files, then record) even when the loop is interrupted.
        with ThreadPoolExecutor(max_workers=4) as writer:
            pending = []
            for video_id, expressions in tqdm(todo, desc=benchmark.title, disable=not show_progress, leave=False):
                start = time.perf_counter()
                writes, rows = predictor.video(loaded, video_id, expressions)
                record = {"video_id": video_id, "expressions": rows, "seconds": time.perf_counter() - start}
                pending.append(writer.submit(_flush, writes, out / RECORDS / f"{_safe(video_id)}.json", record))
            for done in pending:
                done.result()
    scoring = {
        "manifest": manifest,
        "benchmark": benchmark.to_json(),
        "units": {v: [e.expression_id for e in exps] for v, exps in units.items()},
        "judge": _judge_settings(clair_judge),
        "recall_similarity": WordBagEncoder.name,
    }
    key = digest_json(scoring)
    if (out / METRICS).is_file():
        cached = read_json(out / METRICS)
        if cached.get("scoring_key") == key:
            return BenchmarkResult.from_json(cached["result"])
    result = score_benchmark(benchmark, curated_root, out, clair_judge=clair_judge, units=units)
    atomic_write_json(out / METRICS, {"scoring_key": key, "result": result.to_json()})
    return result


def _judge_settings(judge: Any) -> Any:
    if judge is None:
        return None
    judges = judge if isinstance(judge, (list, tuple)) else [judge]
    return [dict(getattr(j, "settings", {})) for j in judges]


# ----------------------------------------------------------------------------------------------------------------
# Scoring from disk
# ----------------------------------------------------------------------------------------------------------------
def _records(out: Path, units: dict[str, list[ExpressionRecord]]) -> tuple[dict[str, dict], float]:
    rows, seconds = {}, 0.0
    for video_id in units:
        path = out / RECORDS / f"{_safe(video_id)}.json"
        if not path.is_file():
            continue
        record = read_json(path)
        try:
            seconds += float(record.get("seconds", 0.0))
            rows.update({r["expression_id"]: r for r in record["expressions"]})
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: malformed prediction record ({exc})") from exc
    return rows, seconds


def score_benchmark(
    benchmark: Benchmark,
    curated_root: str | Path,
    pred_dir: str | Path,
    *,
    clair_judge: Any = None,
    units: dict[str, list[ExpressionRecord]] | None = None,
) -> BenchmarkResult:
    """Score a prediction folder in the layout of the module doc against the curated ground truth."""
    ds = CuratedDataset(curated_root)
    out = Path(pred_dir)
    if not out.is_dir():
        raise DataError(f"prediction folder {out} does not exist")
    units = units if units is not None else benchmark.select(ds)
    expressions = [e for exps in units.values() for e in exps]
    rows, seconds = _records(out, units)
    seg = [bool(rows[e.expression_id]["seg_found"]) for e in expressions if e.expression_id in rows]
    result = BenchmarkResult(
        benchmark.key,
        benchmark.title,
        benchmark.metric,
        None,
        units=len(units),
        expressions=len(expressions),
        predict_seconds=seconds,
        predictions=str(out),
        seg_found_rate=float(np.mean(seg)) if seg else None,
    )
    scorer = {"rvos": _score_rvos, "ref_davis": _score_ref_davis, "grounding": _score_grounding, "gcg": _score_gcg}
    scorer[benchmark.protocol](benchmark, ds, out, units, result, clair_judge)
    return result


def _score_rvos(b: Benchmark, ds, out: Path, units, result: BenchmarkResult, judge) -> None:
    if not _has_ground_truth(ds, b.source, b.split):
        parent = b.source == "ref-youtube-vos"  # Ref-YouTube-VOS keeps Annotations/ in the zip; MeViS does not
        zipped = zip_submission(out / "Annotations", out / "submission.zip", parent=parent)
        result.note = f"not computed: {b.source}/{b.split} has no public ground truth; submit {zipped} to the server"
        return
    ids = [e.expression_id for exps in units.values() for e in exps]
    r = evaluate_rvos(ds, out / "Annotations", source=b.source, split=b.split, expression_ids=ids)
    result.value = 100.0 * r.jf
    result.details = {"J": 100.0 * r.j, "F": 100.0 * r.f}
    result.missing, result.warnings = list(r.missing), list(r.warnings)


def _score_ref_davis(b: Benchmark, ds, out: Path, units, result: BenchmarkResult, judge) -> None:
    gt_root, annotations = locate_ground_truth(ds.meta.get("sources", {}).get(b.source, {}).get("root", ""), b.split)
    sequences = [submission_names(v, exps[0].expression_id)[0] for v, exps in units.items()]
    missing = [s for s in sequences if not all((out / f / s).is_dir() for f in DAVIS_FOLDERS)]
    if missing:
        raise DataError(
            f"{out}: no Ref-DAVIS17 predictions for {', '.join(missing[:5])} (the DAVIS evaluation scores "
            f"whole sequences and stops on a missing one)"
        )
    r = evaluate_ref_davis(gt_root, out, folders=DAVIS_FOLDERS, sequences=sequences, annotations=annotations)
    result.value = 100.0 * r.mean
    result.details = {
        **{f"J&F {f}": 100.0 * v for f, v in r.jf.items()},
        **{c: 100.0 * v for c, v in r.table_mean.items() if c in ("J-Mean", "F-Mean")},
    }
    # The other published protocol (GLUS, UniPixel): every expression its own unit, its object read from its
    # annotator folder, on the same predictions
    source_root = ds.meta.get("sources", {}).get(b.source, {}).get("root", "")
    if source_root and ref_davis_meta_path(Path(source_root)) is not None:
        per = score_ref_davis(source_root, out, protocols=("expression",), sequences=sequences)
        for k, v in per.tables["per expression"].items():
            result.details[f"{k} per expression"] = v


def _score_grounding(b: Benchmark, ds, out: Path, units, result: BenchmarkResult, judge) -> None:
    samples = []
    for video_id, exps in units.items():
        video = ds.video(video_id)
        for e in exps:
            if len(e.object_ids) != 1:
                raise DataError(
                    f"{e.expression_id}: a VidSTG sentence refers to exactly one object, got {e.object_ids}"
                )
            indices = clip_indices(b, video, e)
            obj = ds.objects(video_id)[e.object_ids[0]]
            gt = [obj.boxes[i] for i in indices]
            absent = [video.frame_names[i] for i, box in zip(indices, gt) if box is None]
            if absent:
                raise DataError(f"{e.expression_id}: no ground-truth box on tube frame(s) {', '.join(absent[:5])}")
            name, exp = submission_names(video_id, e.expression_id)
            pred = read_expression_prediction(
                out / "masks", name, exp, [video.frame_names[i] for i in indices], (video.height, video.width)
            )
            samples.append(GroundingSample(e.expression_id, e.kind, gt, None if pred is None else list(pred)))
    r = mllm_grounding_miou(samples, missing="zero")
    values = list(r.per_video.values())
    result.value = 100.0 * float(np.mean(values))
    result.details = {
        **{f"mIoU {q}": 100.0 * v for q, v in r.miou.items()},
        **{f"mIoU@{th} {q}": 100.0 * v for q, by in r.recall.items() for th, v in by.items()},
    }
    result.missing = list(r.missing)
    if r.missing:
        result.warnings = [f"{len(r.missing)} sentences have no prediction and score 0: {', '.join(r.missing[:10])}"]


def _score_gcg(b: Benchmark, ds, out: Path, units, result: BenchmarkResult, judge) -> None:
    order = gcg_order(b, ds)
    samples = []
    for video_id, exps in units.items():
        video = ds.video(video_id)
        for e in exps:
            indices = clip_indices(b, video, e)
            gt_masks = []
            for _, ids in e.phrase_list():
                masks = [ds.object_masks(video_id, i)[indices] for i in ids]
                gt_masks.append(np.logical_or.reduce(masks))
            pred_text, pred_masks = read_gcg_prediction(
                out / "video_gcg" / f"{order[video_id]:06d}", len(indices), (video.height, video.width)
            )
            samples.append(
                GcgSample(e.expression_id, markup_to_tokens(marked_text(e)), gt_masks, pred_text, pred_masks)
            )
    # No BERT weights reach a kit run (nothing is downloaded): the recall's phrase similarity is lexical, and said.
    encoder = WordBagEncoder()
    r = evaluate_gcg(
        samples, text_encoder=encoder, caption_metrics=b.caption_metrics, clair_judge=judge, mask_tokens=MASK_TOKENS
    )
    result.value = 100.0 * r.miou
    result.details = {
        "METEOR": r.meteor,
        "CIDEr": r.cider,
        "CLAIR": None if r.clair is None else 100.0 * r.clair,
        "recall": r.recall,
        "recall_similarity": encoder.name,
        "failed": len(r.failed),
        "notes": dict(r.notes),
        "judges": r.judges,
    }
    result.missing = list(r.missing)
    result.warnings = (
        [
            f"{len(r.failed)} videos: predicted phrases and masks do not pair up (mIoU 0, caption "
            f"scored as empty): {', '.join(sorted(r.failed)[:5])}"
        ]
        if r.failed
        else []
    )
    if r.missing:
        result.warnings.append(f"{len(r.missing)} videos have no prediction and score 0: {', '.join(r.missing[:10])}")


# ----------------------------------------------------------------------------------------------------------------
# Whole models
# ----------------------------------------------------------------------------------------------------------------
def tsf_boxes_from_run(tsf_run: str | Path) -> tuple[TSFBoxes, str]:
    """(per-expression tracked boxes, tag) from a finished TSF run folder (:class:`sparrow.tsf.runs.TSFRun`)."""
    run = TSFRun(tsf_run)

    def boxes(expression: ExpressionRecord) -> np.ndarray:
        # lost frames stay NaN: the model fills its sampled frames by the rule the TSF pass used
        return run.boxes(expression.video_id, expression.expression_id, fill_lost=False)

    return boxes, f"tsf-run:{Path(tsf_run).resolve().name}"


def with_tsf_at_test(model: Any) -> Any:
    """The model switched to TSF tokens at inference (the paper's best Ref-DAVIS17 setting; released default off)."""
    model.cfg = model.cfg.replace(tsf_at_test=True)
    return model


def evaluate_checkpoint(
    checkpoint_dir: str | Path,
    benchmarks: Sequence[Benchmark],
    curated_root: str | Path,
    out_root: str | Path,
    *,
    tsf_boxes: TSFBoxes | None = None,
    tsf_tag: str | None = None,
    clair_judge: Any = None,
    show_progress: bool = True,
    device: str | None = None,
    model_id: str | None = None,
) -> dict[str, BenchmarkResult]:
    """Every benchmark for one ``save_pretrained`` folder; predictions under ``out_root/<benchmark key>``.

    The model is loaded only if some benchmark still has videos to predict, on ``device`` (default: where
    ``from_pretrained`` puts it, the CPU). With ``tsf_boxes`` it runs with TSF at test (:func:`with_tsf_at_test`).
    ``model_id``: the folder's :func:`checkpoint_fingerprint` when the caller has it already (computed otherwise).
    Name ``out_root`` with :func:`keyed_eval_dir` to give every model its own folder."""
    checkpoint_dir = Path(checkpoint_dir)
    model_id = model_id or checkpoint_fingerprint(checkpoint_dir)
    switches = parity_switches(checkpoint_dir)
    if tsf_boxes is not None:
        switches["tsf_at_test"] = True  # with_tsf_at_test below
    cache: dict[str, Any] = {}

    def load() -> Any:  # loading a paper-size model is slow; run_benchmark calls this only when it must predict
        if "model" not in cache:
            model = SparrowModel.from_pretrained(checkpoint_dir)
            if device is not None:
                model = model.to(device)
            cache["model"] = with_tsf_at_test(model) if tsf_boxes is not None else model
        return cache["model"]

    return {
        b.key: run_benchmark(
            load,
            b,
            curated_root,
            Path(out_root) / b.key,
            model_id=model_id,
            tsf_boxes=tsf_boxes,
            tsf_tag=tsf_tag,
            clair_judge=clair_judge,
            show_progress=show_progress,
            switches=switches,
        )
        for b in benchmarks
    }


def variant_eval_dir(
    profile: str,
    host: str,
    seed: int,
    variant: str,
    model_id: str,
    tsf_tag: str | None = None,
    switches: dict[str, Any] | None = None,
) -> Path:
    """``$SPARROW_HOME/eval/<profile>/<host>-seed<seed>/<variant>[+tsf-test]-<key>``: the predictions of a trained
    variant whose final weights have the fingerprint ``model_id`` (:func:`keyed_eval_dir`)."""
    return keyed_eval_dir(eval_root(profile) / f"{host}-seed{seed}", variant, model_id, tsf_tag, switches)


def run_eval_dir(run: Any, tsf_tag: str | None = None) -> Path:
    """:func:`variant_eval_dir` of a trained :class:`~sparrow.train.variants.RunResult` (its final weights)."""
    model_id, switches = checkpoint_fingerprint(run.final_dir), parity_switches(run.final_dir)
    return variant_eval_dir(run.profile, run.host, run.seed, run.name, model_id, tsf_tag, switches)


def evaluate_run(
    run: Any,
    benchmarks: Sequence[Benchmark],
    curated_root: str | Path,
    *,
    tsf_boxes: TSFBoxes | None = None,
    tsf_tag: str | None = None,
    clair_judge: Any = None,
    show_progress: bool = True,
) -> dict[str, BenchmarkResult]:
    """:func:`evaluate_checkpoint` on a :class:`~sparrow.train.variants.RunResult`'s final weights, into
    :func:`run_eval_dir`."""
    model_id, switches = checkpoint_fingerprint(run.final_dir), parity_switches(run.final_dir)
    return evaluate_checkpoint(
        run.final_dir,
        benchmarks,
        curated_root,
        variant_eval_dir(run.profile, run.host, run.seed, run.name, model_id, tsf_tag, switches),
        tsf_boxes=tsf_boxes,
        tsf_tag=tsf_tag,
        clair_judge=clair_judge,
        show_progress=show_progress,
        model_id=model_id,
    )
