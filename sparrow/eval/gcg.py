"""Video grounded conversation generation (GCG) metrics: mIoU, recall, METEOR, CIDEr and CLAIR (docs/evaluation.md §8).

- **Tube IoU** of two mask tubes: ``Σ_t |P∧G| / Σ_t |P∨G|``, 1.0 on an empty union (SPARROW).
- **mIoU** per video: greedy one-to-one pairing on the (prediction × ground truth) IoU matrix: take the global
  maximum (row-major argmax), record it, delete its row and column, stop when the maximum is not > 0; the mean of
  the recorded IoUs, 0 if none or if either side is empty. Unpaired masks are not penalised. Mean over videos.
- **Recall**: on the (ground truth × prediction) IoU and phrase-similarity matrices, take the argmax IoU; stop at
  the first pair with IoU < 0.5 or similarity < 0.5, else count a true positive and zero its row and column.
  ``Σ TP / Σ #GT phrases``. Similarity = cosine of a pluggable text encoder (:class:`BertMeanEncoder` is the
  original ``bert-base-uncased`` last-hidden-state mean over all tokens, loaded from local files only).
- **METEOR, CIDEr** through pycocoevalcap: PTB tokenisation (Java, the bundled Stanford CoreNLP jar), the METEOR
  1.5 jar's corpus score, CIDEr-D over the evaluated corpus; cleaned captions truncated to 2,000 characters.
  Without Java they are reported as "not computed: Java missing". SPICE (which downloads models) is not used.
- **CLAIR** through :mod:`sparrow.eval.clair`, only with a judge.

Failures as SPARROW handles them (docs/evaluation.md §8.2): a missing prediction scores mIoU 0, its GT phrases are not
counted and both captions are scored as empty; a prediction whose phrases and masks do not pair up scores mIoU 0,
its GT phrases are counted and its caption is scored as empty. Both are listed in the result.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sparrow.eval.clair import Judge, evaluate_clair
from sparrow.eval.png import read_gray_png
from sparrow.storage import DataError, read_json

MAX_CHARS = 2000
JAVA_MISSING = "not computed: Java missing"
NO_ENCODER = "not computed: no text encoder"


def phrases(text: str) -> list[str]:
    """The ``<p> ... </p>`` spans of a grounded caption, stripped."""
    return [p.strip() for p in re.findall(r"<p>(.*?)</p>", text, flags=re.S)]


def clean_caption(text: str, tokens: Sequence[str] = ("[SEG]",)) -> str:
    """The caption without ``<p>``, ``</p>`` and the mask tokens, whitespace collapsed."""
    for t in ("<p>", "</p>", *tokens):
        text = text.replace(t, " ")
    return " ".join(text.split())


def tube_iou(pred: np.ndarray, gt: np.ndarray, empty: float = 1.0) -> float:
    pred, gt = np.asarray(pred) != 0, np.asarray(gt) != 0
    if pred.shape != gt.shape:
        raise DataError(f"mask tube shapes differ: {pred.shape} vs {gt.shape}")
    union = int(np.count_nonzero(pred | gt))
    return float(np.count_nonzero(pred & gt)) / union if union else empty


def iou_matrix(rows: Sequence[np.ndarray], cols: Sequence[np.ndarray]) -> np.ndarray:
    return np.array([[tube_iou(r, c) for c in cols] for r in rows], dtype=np.float64).reshape(len(rows), len(cols))


def greedy_miou(ious: np.ndarray) -> float:
    """GLaMM's pairing on a (prediction × ground truth) IoU matrix; 0.0 when nothing pairs."""
    m = np.array(ious, dtype=np.float64)
    paired = []
    while m.size > 0 and np.max(m) > 0:
        i, j = np.unravel_index(np.argmax(m), m.shape)
        paired.append(m[i, j])
        m = np.delete(np.delete(m, i, axis=0), j, axis=1)
    return float(np.mean(paired)) if paired else 0.0


def greedy_true_positives(ious: np.ndarray, sims: np.ndarray, iou_th: float = 0.5, sim_th: float = 0.5) -> int:
    """GLaMM's recall matching on (ground truth × prediction) matrices: stop at the first pair below a threshold."""
    m = np.array(ious, dtype=np.float64)
    tp = 0
    while m.size > 0:
        i, j = np.unravel_index(np.argmax(m), m.shape)
        if m[i, j] < iou_th or sims[i, j] < sim_th:
            break
        tp += 1
        m[i, :] = 0
        m[:, j] = 0
    return tp


class TextEncoder(Protocol):
    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class BertMeanEncoder:
    """``bert-base-uncased`` (or a local path): mean of the last hidden state over all tokens, [CLS]/[SEP] included,
    one phrase at a time (no padding), truncated at 512 tokens. Loads from local files only."""

    def __init__(self, name_or_path: str = "bert-base-uncased", device: str = "cpu") -> None:
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=True)
        self.model = AutoModel.from_pretrained(name_or_path, local_files_only=True).to(device).eval()
        self.device = device

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for text in texts:
                enc = self.tokenizer(text, return_tensors="pt", truncation=True, max_length=512).to(self.device)
                out.append(self.model(**enc).last_hidden_state[0].mean(dim=0).float().cpu().numpy())
        return np.stack(out) if out else np.zeros((0, 0), np.float32)


class WordBagEncoder:
    """An offline phrase similarity for the recall when no BERT weights are at hand: lower-cased word counts,
    whose cosine is the share of words two phrases have in common (0.5: half the words of two phrases of equal
    length). A lexical measure, not the original's: results computed with it say so (``name``). Every word seen
    gets its own column, kept across calls, so that the two sides of a similarity share one space."""

    name = "word-bag cosine (offline stand-in for bert-base-uncased)"
    width = 1 << 14

    def __init__(self) -> None:
        self.columns: dict[str, int] = {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.width), dtype=np.float64)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                column = self.columns.setdefault(word, len(self.columns))
                if column >= self.width:
                    raise DataError(f"word-bag similarity: more than {self.width} distinct words")
                out[row, column] += 1.0
        return out


def similarity_matrix(encoder: TextEncoder, a: Sequence[str], b: Sequence[str]) -> np.ndarray:
    from sklearn.metrics.pairwise import cosine_similarity

    if not a or not b:
        return np.zeros((len(a), len(b)))
    return cosine_similarity(encoder.encode(list(a)), encoder.encode(list(b)))


def caption_scores(references: Sequence[str], candidates: Sequence[str]) -> tuple[dict[str, float | None], dict]:
    """(``{"METEOR": ..., "CIDEr": ...}``, notes): corpus scores via pycocoevalcap, None with a note if not computed."""
    if len(references) != len(candidates):
        raise ValueError(f"{len(references)} references for {len(candidates)} candidates")
    if not references:
        return {"METEOR": None, "CIDEr": None}, {"METEOR": "not computed: no captions", "CIDEr": "no captions"}
    if shutil.which("java") is None:
        return {"METEOR": None, "CIDEr": None}, {"METEOR": JAVA_MISSING, "CIDEr": JAVA_MISSING}
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts = {str(i): [{"caption": r[:MAX_CHARS]}] for i, r in enumerate(references)}
    res = {str(i): [{"caption": c[:MAX_CHARS]}] for i, c in enumerate(candidates)}
    tokenizer = PTBTokenizer()
    gts_tok, res_tok = tokenizer.tokenize(gts), tokenizer.tokenize(res)
    m_score, _ = _meteor_scorer().compute_score(gts_tok, res_tok)
    c_score, _ = Cider().compute_score(gts_tok, res_tok)
    return {"METEOR": float(m_score), "CIDEr": float(c_score)}, {}


_METEOR = None


def _meteor_scorer():
    """One METEOR jar per process: its first score loads the paraphrase tables (15-30 s on 2 cores), later ones
    take a fraction of a second, and the jar keeps no state between ``compute_score`` calls."""
    global _METEOR
    if _METEOR is None:
        import atexit

        from pycocoevalcap.meteor.meteor import Meteor

        _METEOR = Meteor()
        atexit.register(_METEOR.__del__)
    return _METEOR


@dataclass(frozen=True)
class GcgSample:
    """One video: the grounded GT caption and one mask tube per GT phrase; the prediction likewise.

    ``pred_caption=None`` is a missing prediction. Tubes are (T, H, W) masks, non-zero = foreground.
    """

    video_id: str
    gt_caption: str
    gt_masks: Sequence[np.ndarray]
    pred_caption: str | None
    pred_masks: Sequence[np.ndarray] = ()


@dataclass
class GcgResult:
    miou: float
    recall: float | None
    meteor: float | None
    cider: float | None
    clair: float | None
    notes: dict[str, str] = field(default_factory=dict)
    per_video_miou: dict[str, float] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    judges: list[dict[str, Any]] = field(default_factory=list)


def evaluate_gcg(
    samples: Iterable[GcgSample],
    text_encoder: TextEncoder | None = None,
    caption_metrics: bool = True,
    clair_judge: Judge | Sequence[Judge] | None = None,
    mask_tokens: Sequence[str] = ("[SEG]",),
    iou_th: float = 0.5,
    sim_th: float = 0.5,
) -> GcgResult:
    per_video: dict[str, float] = {}
    missing: list[str] = []
    failed: dict[str, str] = {}
    tp = n_gt = 0
    refs, cands = [], []
    for s in samples:
        gt_phr = phrases(s.gt_caption)
        if len(gt_phr) != len(s.gt_masks):
            raise DataError(f"video {s.video_id}: {len(gt_phr)} ground-truth phrases for {len(s.gt_masks)} mask tubes")
        if s.pred_caption is None:
            missing.append(s.video_id)
            per_video[s.video_id] = 0.0
            refs.append("")
            cands.append("")
            continue
        refs.append(clean_caption(s.gt_caption, mask_tokens))
        n_gt += len(gt_phr)
        pred_phr = phrases(s.pred_caption)
        if len(pred_phr) != len(s.pred_masks):
            failed[s.video_id] = f"{len(pred_phr)} predicted phrases for {len(s.pred_masks)} mask tubes"
            per_video[s.video_id] = 0.0
            cands.append("")
            continue
        cands.append(clean_caption(s.pred_caption, mask_tokens))
        if not gt_phr or not pred_phr:
            per_video[s.video_id] = 0.0
            continue
        ious = iou_matrix(s.pred_masks, s.gt_masks)  # prediction x ground truth
        per_video[s.video_id] = greedy_miou(ious)
        if text_encoder is not None:
            tp += greedy_true_positives(ious.T, similarity_matrix(text_encoder, gt_phr, pred_phr), iou_th, sim_th)
    if not per_video:
        raise DataError("no videos to evaluate")
    notes: dict[str, str] = {}
    recall = None
    if text_encoder is None:
        notes["recall"] = NO_ENCODER
    else:
        recall = tp / n_gt if n_gt else 0.0
    meteor = cider = None
    if caption_metrics:
        scores, caption_notes = caption_scores(refs, cands)
        meteor, cider = scores["METEOR"], scores["CIDEr"]
        notes.update({k.lower(): v for k, v in caption_notes.items()})
    else:
        notes["meteor"] = notes["cider"] = "not computed: caption metrics off"
    clair_result = evaluate_clair(zip(cands, refs), clair_judge, names=list(per_video))
    if clair_result.value is None:
        notes["clair"] = clair_result.note
    return GcgResult(
        float(np.mean(list(per_video.values()))),
        recall,
        meteor,
        cider,
        clair_result.value,
        notes,
        per_video,
        missing,
        failed,
        clair_result.judges,
    )


# ----------------------------------------------------------------------------------------------------------------
# The sample folders of ``eval_gcg_infer.py``: <index:06d>/res.json, gt_masks_<k>/ and pred_masks_<k>/mask_<t>.png
# ----------------------------------------------------------------------------------------------------------------
def _tube_folders(folder: Path, prefix: str) -> list[Path]:
    def index(p: Path) -> int:
        tail = p.name[len(prefix) :]
        return int(tail) if tail.isdigit() else -1

    return sorted((p for p in folder.glob(f"{prefix}*") if p.is_dir() and index(p) >= 0), key=index)


def read_tube(folder: Path, num_frames: int, shape: tuple[int, int]) -> np.ndarray:
    """(T, H, W) bool from ``mask_<t>.png``; a missing frame reads as an empty mask (SPARROW)."""
    tube = np.zeros((num_frames, *shape), bool)
    for t in range(num_frames):
        path = folder / f"mask_{t}.png"
        if path.is_file():
            arr = read_gray_png(path, f"{folder.parent.name}/{folder.name}/mask_{t}")
            if arr.shape != shape:
                raise DataError(f"{path}: mask size {arr.shape} differs from the frame size {shape}")
            tube[t] = arr != 0
    return tube


def read_gcg_prediction(folder: Path, num_frames: int, shape: tuple[int, int]) -> tuple[str | None, list[np.ndarray]]:
    """(predicted caption, one tube per ``pred_masks_<k>``) of a sample folder; (None, []) without ``res.json``."""
    res = folder / "res.json"
    if not res.is_file():
        return None, []
    data = read_json(res)
    if "pred_text" not in data:
        raise DataError(f"{res}: no pred_text")
    return str(data["pred_text"]), [read_tube(f, num_frames, shape) for f in _tube_folders(folder, "pred_masks_")]


def read_gcg_sample(folder: Path) -> GcgSample:
    """One sample folder with its ground truth (``gt_text`` and ``gt_masks_<k>``, one per ground-truth phrase);
    without ``res.json`` a missing prediction.

    The number of frames is ``res.json``'s ``frames`` list when present, else the ``img_frames`` images, else one
    past the highest ``mask_<t>`` index; the frame size is that of the first ground-truth mask.
    """
    res = folder / "res.json"
    if not res.is_file():
        return GcgSample(folder.name, "", [], None)  # a missing prediction: mIoU 0, no phrase counted (SPARROW)
    data = read_json(res)
    if "gt_text" not in data:
        raise DataError(f"{res}: no gt_text")
    gt_dirs = _tube_folders(folder, "gt_masks_")
    n_phrases = len(phrases(str(data["gt_text"])))
    if len(gt_dirs) != n_phrases:
        raise DataError(f"{folder}: {n_phrases} ground-truth phrases for {len(gt_dirs)} gt_masks_<k> folders")
    masks = sorted(p for d in gt_dirs + _tube_folders(folder, "pred_masks_") for p in d.glob("mask_*.png"))
    if isinstance(data.get("frames"), list):
        num_frames = len(data["frames"])
    elif (folder / "img_frames").is_dir():
        num_frames = sum(1 for p in (folder / "img_frames").iterdir() if p.suffix == ".jpg")
    else:
        stems = [p.stem[len("mask_") :] for p in masks]
        num_frames = max((int(s) for s in stems if s.isdigit()), default=-1) + 1
    first = next((p for d in gt_dirs for p in sorted(d.glob("mask_*.png"))), None)
    if first is None or num_frames == 0:
        raise DataError(f"{folder}: no ground-truth masks (gt_masks_<k>/mask_<t>.png)")
    shape = read_gray_png(first, f"{folder.name}/{first.parent.name}/{first.stem}").shape
    gt = [read_tube(d, num_frames, shape) for d in gt_dirs]
    pred_text, pred = read_gcg_prediction(folder, num_frames, shape)
    return GcgSample(folder.name, str(data["gt_text"]), gt, pred_text, pred)
