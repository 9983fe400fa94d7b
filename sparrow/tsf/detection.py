"""The detector box of the TSF pipeline: GroundingDINO finds the referent on a keyframe from the referring text.

GroundingDINO runs through transformers (``GroundingDinoForObjectDetection`` + ``GroundingDinoProcessor``) and is
always loaded with ``from_pretrained`` from a local folder:

- ``paper``: a released checkpoint copied to disk (e.g. ``IDEA-Research/grounding-dino-tiny``), given as
  ``DetectorConfig.checkpoint_dir``;
- ``smoke``/``mini``: a tiny configuration (docs/runtime.md §6.1) with an offline word-level BERT tokenizer built
  from the training expressions, saved to a folder, trained on the curated training split by
  :func:`train_detector` so that detection means something on SPARROW-Mini, and reloaded from that folder.

The tokenizer keeps the ids GroundingDINO hard-codes from bert-base-uncased (``[PAD]`` 0, ``[CLS]`` 101, ``[SEP]``
102, ``.`` 1012, ``?`` 1029): its label maps split phrases at those ids. The query is the expression lowercased
with ``.``/``?`` removed and one trailing `` .``, so the whole expression is one phrase (GroundingDINO's
"phrase." convention). Keyframe: the paper initialises its tracker from the detection on the first frame, so
``keyframe="first"``; ``"best"`` takes the highest-scoring of a few evenly spaced frames and tracks both ways.
``box_source="ground_truth"`` replaces the detector by the referent's ground-truth box on the first frame where
it is visible (an oracle for isolating the tracker).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from sparrow.data.curated import CuratedDataset
from sparrow.data.indices import linspace_truncated
from sparrow.paths import runs_dir
from sparrow.profiles import check_profile, get_profile
from sparrow.storage import atomic_write_json, digest_json
from sparrow.tsf.cache import dataset_fingerprint

#: ids GroundingDINO's loss and label maps take from bert-base-uncased.
SPECIAL_IDS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103, ".": 1012, "?": 1029}
#: expression kinds that name a target (GCG captions name several and are not queries).
QUERY_KINDS = ("referring", "reasoning", "declarative", "interrogative")


@dataclass(frozen=True)
class DetectorConfig:
    """Detection stage settings: where the model is, thresholds, keyframe policy, and the oracle option."""

    checkpoint_dir: str | None = None
    box_threshold: float = 0.35
    text_threshold: float = 0.25
    keyframe: Literal["first", "best"] = "first"
    keyframe_candidates: int = 4
    box_source: Literal["detector", "ground_truth"] = "detector"
    batch_size: int = 16

    @classmethod
    def for_profile(cls, profile: str, **overrides) -> DetectorConfig:
        return cls(**{**get_profile(profile).tsf.detector, **overrides})


@dataclass(frozen=True)
class TinyDetectorSpec:
    """Sizes of the tiny GroundingDINO (docs/runtime.md §6.1; decoder_layers >= 2, vocab >= 1030)."""

    image_size: int = 128
    embed_dim: int = 24
    d_model: int = 32
    num_queries: int = 20
    max_text_len: int = 32


@dataclass(frozen=True)
class DetectorTrainingConfig:
    """How the tiny detector is trained on SPARROW-Mini's training expressions (one keyframe box set per sample)."""

    # 600 steps fit notebook 02's budget (~85-95 s on one core, ~0.15 s a step). Chosen on a holdout of 1/6 of the
    # TRAIN videos (trained on the other 5/6; top-box mean IoU / acc@0.5 / AP50 on the holdout keyframes; unfused
    # AdamW): 4000 steps, batch 8, lr 1e-3: 0.111 / 0.066 / 0.009 (640 s); 600 steps, same: 0.105 / 0.033 / 0.007;
    # 500: 0.087 / 0.009 / 0.002; 600 at lr 2e-3: 0.054 / 0.009 / 0.000, at 4e-3: 0.083 / 0.038 / 0.006; 750 at
    # 96 px, lr 2e-3: 0.085 / 0.033 / 0.013; 300 at batch 16, lr 2e-3: 0.088 / 0.047 / 0.023.
    # Held-out valid (every valid source, 1468 keyframes with a target), trained on all of train: 4000 steps
    # 0.126 / 0.068 / 0.018; 600 steps 0.050 / 0.010 / 0.006 (fused AdamW, this setting) and 0.075 / 0.029 / 0.009
    # (unfused): the short run costs about half the mean IoU, and rounding alone moves it by 0.025. Earlier,
    # GroundingDINO's own lr 1e-4..5e-4 with clip 0.1 stayed at 0.06. From scratch on CPU the detector is weak
    # either way, so the pipeline also offers the ground-truth keyframe box.
    steps: int = 600
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    seed: int = 0
    # Tiny models gain nothing from intra-op threads, and lose a lot when other processes share the cores.
    threads: int = 1
    spec: TinyDetectorSpec = field(default_factory=TinyDetectorSpec)

    @classmethod
    def for_profile(cls, profile: str, **overrides) -> DetectorTrainingConfig:
        section = get_profile(profile).tsf
        if section.detector_training is None:
            raise ValueError(
                f"under {profile!r} GroundingDINO is a released checkpoint: set DetectorConfig.checkpoint_dir"
            )
        return cls(**{**section.detector_training, "spec": TinyDetectorSpec(**section.tiny_detector), **overrides})


# -- text --------------------------------------------------------------------------------------------------------


def query_text(expression: str) -> str:
    """GroundingDINO query for a referring expression: lowercase, one phrase, ending in ``" ."``."""
    cleaned = " ".join(expression.lower().replace(".", " ").replace("?", " ").split())
    return f"{cleaned} ." if cleaned else "."


def words(text: str) -> list[str]:
    """BERT's own normalisation and pre-tokenisation (lowercase, punctuation split)."""
    from tokenizers import normalizers, pre_tokenizers

    normalised = normalizers.BertNormalizer(lowercase=True).normalize_str(text)
    return [w for w, _ in pre_tokenizers.BertPreTokenizer().pre_tokenize_str(normalised)]


def build_vocabulary(texts: Iterable[str]) -> dict[str, int]:
    """A contiguous word-level vocabulary holding GroundingDINO's required special ids.

    Words fill the free ids in sorted order; unused ids below the largest get ``[unusedN]`` placeholders so the
    saved ``vocab.txt`` (one token per line, line = id) reloads with the same ids.
    """
    found = sorted({w for text in texts for w in words(query_text(text))} - set(SPECIAL_IDS))
    vocab = dict(SPECIAL_IDS)
    taken = set(vocab.values())
    next_id = 0
    for word in found:
        while next_id in taken:
            next_id += 1
        vocab[word] = next_id
        taken.add(next_id)
    size = max(max(taken) + 1, 1030)
    for i in range(size):
        if i not in taken:
            vocab[f"[unused{i}]"] = i
    return vocab


def build_processor(vocab: dict[str, int], image_size: int):
    from transformers import BertTokenizer, GroundingDinoImageProcessor, GroundingDinoProcessor

    # vocab= (not vocab_file=, which transformers 5 silently ignores): docs/runtime.md §6.1.
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True)
    images = GroundingDinoImageProcessor(size={"shortest_edge": image_size, "longest_edge": image_size * 5 // 4})
    return GroundingDinoProcessor(image_processor=images, tokenizer=tokenizer)


def build_tiny_detector(
    out_dir: str | os.PathLike, vocab: dict[str, int], spec: TinyDetectorSpec, seed: int = 0
) -> Path:
    """Write an untrained tiny GroundingDINO and its processor to ``out_dir`` (loadable by ``from_pretrained``)."""
    from transformers import BertConfig, GroundingDinoConfig, GroundingDinoForObjectDetection, SwinConfig

    backbone = SwinConfig(
        embed_dim=spec.embed_dim,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        image_size=spec.image_size,
        out_features=["stage2", "stage3", "stage4"],
        out_indices=[2, 3, 4],
    )
    text = BertConfig(
        vocab_size=len(vocab),
        hidden_size=spec.d_model,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * spec.d_model,
        max_position_embeddings=max(64, spec.max_text_len),
    )
    config = GroundingDinoConfig(
        backbone_config=backbone,
        text_config=text,
        d_model=spec.d_model,
        encoder_layers=1,
        decoder_layers=2,
        encoder_ffn_dim=2 * spec.d_model,
        decoder_ffn_dim=2 * spec.d_model,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        num_queries=spec.num_queries,
        num_feature_levels=4,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=spec.max_text_len,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GroundingDinoForObjectDetection(config)
    out_dir = Path(out_dir)
    _quiet_transformers()
    model.save_pretrained(out_dir)
    build_processor(vocab, spec.image_size).save_pretrained(out_dir)
    return out_dir


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


# -- inference ---------------------------------------------------------------------------------------------------


@dataclass
class Detections:
    """Boxes (N, 4) xyxy in pixels of the input image and their scores (N,), best first."""

    boxes: np.ndarray
    scores: np.ndarray

    @property
    def best(self) -> tuple[tuple[float, float, float, float], float] | None:
        if len(self.scores) == 0:
            return None
        return tuple(float(v) for v in self.boxes[0]), float(self.scores[0])


class GroundingDetector:
    """A GroundingDINO loaded from a local folder; :meth:`detect` takes RGB frames and referring texts."""

    def __init__(self, checkpoint_dir: str | os.PathLike, device: str | torch.device = "cpu"):
        from transformers import GroundingDinoForObjectDetection, GroundingDinoProcessor

        path = Path(checkpoint_dir)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{path}: no GroundingDINO checkpoint (config.json missing); under 'paper' copy a released "
                "checkpoint there, under smoke/mini call sparrow.tsf.detection.ensure_detector"
            )
        _quiet_transformers()
        self.path = path
        self.device = torch.device(device)
        self.processor = GroundingDinoProcessor.from_pretrained(path)
        self.model = GroundingDinoForObjectDetection.from_pretrained(path).to(self.device).eval()
        self.fingerprint = weights_fingerprint(path)

    @torch.no_grad()
    def detect(
        self, images: Sequence[np.ndarray], texts: Sequence[str], text_threshold: float = 0.0, batch_size: int = 16
    ) -> list[Detections]:
        """Every query box for each (image, text) pair, scores = max token probability (GroundingDINO's)."""
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images but {len(texts)} texts")
        out: list[Detections] = []
        for start in range(0, len(images), batch_size):
            chunk = list(images[start : start + batch_size])
            queries = [query_text(t) for t in texts[start : start + batch_size]]
            inputs = self.processor(images=chunk, text=queries, return_tensors="pt", padding=True).to(self.device)
            outputs = self.model(**inputs)
            sizes = [img.shape[:2] for img in chunk]
            results = self.processor.post_process_grounded_object_detection(
                outputs, inputs["input_ids"], threshold=0.0, text_threshold=text_threshold, target_sizes=sizes
            )
            for result in results:
                scores = result["scores"].float().cpu().numpy()
                boxes = result["boxes"].float().cpu().numpy()
                order = np.argsort(-scores, kind="stable")
                out.append(Detections(boxes[order], scores[order]))
        return out


def weights_fingerprint(path: str | os.PathLike) -> str:
    """sha256 of a checkpoint folder's weight and config files (identifies the detector in cache keys).

    ``training.json`` (the loss log and wall time of :func:`train_detector`) is left out: the same weights
    trained twice must give the same fingerprint.
    """
    path = Path(path)
    digest = hashlib.sha256()
    for name in sorted(
        p.name
        for p in path.iterdir()
        if p.suffix in (".safetensors", ".json", ".txt", ".bin") and p.name != "training.json"
    ):
        digest.update(name.encode())
        with open(path / name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:24]


def choose_keyframe(
    detector: GroundingDetector,
    frames: np.ndarray,
    text: str,
    config: DetectorConfig,
    candidates: Sequence[int] | None = None,
) -> tuple[int, Detections]:
    """Keyframe and its detections under ``config.keyframe`` (``first``, or ``best`` of evenly spaced frames)."""
    total = frames.shape[0]
    if config.keyframe == "first" or total == 1:
        frames_to_try = [0]
    else:
        count = min(config.keyframe_candidates, total)
        frames_to_try = list(candidates) if candidates is not None else linspace_truncated(total, count)
    found = detector.detect(
        [frames[i] for i in frames_to_try],
        [text] * len(frames_to_try),
        text_threshold=config.text_threshold,
        batch_size=config.batch_size,
    )
    best = max(range(len(frames_to_try)), key=lambda j: (found[j].scores[0] if len(found[j].scores) else -1.0, -j))
    return frames_to_try[best], found[best]


# -- training the tiny detector -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectionSample:
    """One training example: a frame of a curated video, a query, the referents' boxes on that frame."""

    video_id: str
    frame: int
    text: str
    boxes: tuple[tuple[float, float, float, float], ...]


def detection_samples(dataset, split: str | None, kinds: Sequence[str] = QUERY_KINDS) -> list[DetectionSample]:
    """Every (expression, frame) of ``split`` where at least one referent has a box (within the frame span)."""
    samples = []
    for expression in dataset.iter_expressions(split=split):
        if expression.kind not in kinds or not expression.text.strip() or not expression.object_ids:
            continue
        video = dataset.video(expression.video_id)
        objects = dataset.objects(expression.video_id)
        start, end = expression.frame_span or (0, video.num_frames)
        for t in range(start, min(end, video.num_frames)):
            boxes = tuple(
                tuple(float(v) for v in objects[o].boxes[t])
                for o in expression.object_ids
                if o in objects and objects[o].boxes[t] is not None
            )
            if boxes:
                samples.append(DetectionSample(expression.video_id, t, expression.text, boxes))
    return samples


def _training_key(dataset, split: str, training: DetectorTrainingConfig) -> str:
    # version 2: fused AdamW (same update, different rounding), so a version-1 checkpoint is not reused
    payload = {"data": dataset_fingerprint(dataset, split), "training": asdict(training), "version": 2}
    return digest_json(payload, 16)


def train_detector(
    curated_root: str | os.PathLike,
    training: DetectorTrainingConfig,
    out_root: str | os.PathLike,
    split: str = "train",
    log_every: int = 0,
) -> Path:
    """Train the tiny GroundingDINO on ``split`` of a curated set; cached by data and settings.

    Returns the checkpoint folder ``<out_root>/detector-<key>`` (written to a temporary sibling and renamed, so a
    killed run leaves no half checkpoint); ``training.json`` inside records the losses and the wall time.
    """
    dataset = CuratedDataset(curated_root)
    out = Path(out_root) / f"detector-{_training_key(dataset, split, training)}"
    if (out / "training.json").is_file():
        return out
    samples = detection_samples(dataset, split)
    if not samples:
        raise ValueError(f"{curated_root}: no {split} expression has a visible referent to train the detector on")
    texts = sorted({s.text for s in samples} | {e.text for e in dataset.iter_expressions()})
    tmp = Path(out_root) / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    # Vocabulary from every expression's words (text only, no labels), so held-out queries are not [UNK].
    build_tiny_detector(tmp, build_vocabulary(texts), training.spec, seed=training.seed)
    detector = GroundingDetector(tmp)
    model, processor = detector.model, detector.processor
    frames = _FrameCache(dataset)
    rng = np.random.default_rng(training.seed)
    # fused: the same update in one kernel, 12 -> 4 ms of the ~160 ms step on CPU
    optimizer = torch.optim.AdamW(model.parameters(), lr=training.lr, weight_decay=training.weight_decay, fused=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 50) * (0.1 if step >= 0.8 * training.steps else 1.0)
    )
    losses = []
    started = time.perf_counter()
    model.train()
    with torch_threads(training.threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(training.seed)
        for step in range(training.steps):
            batch = [samples[i] for i in rng.integers(0, len(samples), size=training.batch_size)]
            images = [frames.get(s.video_id, s.frame) for s in batch]
            inputs = processor(
                images=images, text=[query_text(s.text) for s in batch], return_tensors="pt", padding=True
            )
            labels = [_target(s, img.shape[:2]) for s, img in zip(batch, images)]
            loss = model(**inputs, labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), training.grad_clip)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
            if log_every and (step + 1) % log_every == 0:
                print(f"detector step {step + 1}/{training.steps} loss {np.mean(losses[-log_every:]):.3f}", flush=True)
    model.eval()
    model.save_pretrained(tmp)
    atomic_write_json(
        tmp / "training.json",
        {
            "curated_root": str(curated_root),
            "split": split,
            "samples": len(samples),
            "config": asdict(training),
            "losses": losses,
            "wall_s": time.perf_counter() - started,
        },
    )
    if out.exists():  # another process finished first; keep its (identical-by-construction) result
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, out)
    return out


@contextmanager
def torch_threads(count: int | None):
    """Run a block with ``count`` intra-op threads (None: leave torch's setting), restoring it afterwards."""
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _target(sample: DetectionSample, shape: tuple[int, int]) -> dict[str, torch.Tensor]:
    height, width = shape
    boxes = torch.tensor(sample.boxes, dtype=torch.float32)
    cxcywh = torch.stack(
        [
            (boxes[:, 0] + boxes[:, 2]) / 2 / width,
            (boxes[:, 1] + boxes[:, 3]) / 2 / height,
            (boxes[:, 2] - boxes[:, 0]) / width,
            (boxes[:, 3] - boxes[:, 1]) / height,
        ],
        dim=1,
    )
    return {"class_labels": torch.zeros(len(boxes), dtype=torch.long), "boxes": cxcywh.clamp(0.0, 1.0)}


class _FrameCache:
    """Frames of a curated set, loaded once per video (SPARROW-Mini's training frames fit in memory)."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.videos: dict[str, np.ndarray] = {}

    def get(self, video_id: str, frame: int) -> np.ndarray:
        if video_id not in self.videos:
            self.videos[video_id] = self.dataset.load_frames(video_id)
        return self.videos[video_id][frame]


def ensure_detector(
    curated_root: str | os.PathLike, profile: str, training: DetectorTrainingConfig | None = None, log_every: int = 0
) -> Path:
    """The trained tiny detector for a curated SPARROW-Mini set (trains it on first use)."""
    training = training or DetectorTrainingConfig.for_profile(profile)
    return train_detector(curated_root, training, runs_dir(profile) / "tsf", log_every=log_every)
