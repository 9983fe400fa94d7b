"""Dense-grounding pretraining: the tiny profiles' stand-in for the hosts' pretrained grounding (docs/design.md §14).

:class:`sparrow.model.dense_grounding.DenseGrounding` learns, on the training split's referring expressions, to
score every cell of every frame against the text: per-cell BCE (positive weight 3) plus 0.5 Dice per frame against
the share of the cell covered by the referent's mask. The supervision is the generator's own: each expression
names its objects by colour, shape, motion and timing, and their masks are known on every frame. Each sample is
one video with all of its referring expressions (so every step also contrasts texts that name different objects
of one scene), on an evenly spread frame sample whose length is drawn from ``CLIP_LENGTHS`` (every frame, as at
inference, and the hosts' SAM frame samples), mirrored left-right half of the time with "left" and "right"
swapped in its texts.

It runs once per curated dataset, whatever the host, variant or training seed, as one foundation serves them all.
Layout: ``sparrow.paths.runs_dir(profile) / "grounding-pretrain" / <fingerprint>`` is a
:class:`~sparrow.train.trainer.Trainer` run (resumable checkpoints, loss log; an interrupted run resumes to the
same weights); its ``final/`` folder holds ``grounding.safetensors`` and ``grounding.json`` (the spec, vocabulary
included, and the fingerprint). The fingerprint covers the data, the spec and the training settings; weights whose
recorded fingerprint differs are never loaded (:func:`load_pretrained_grounding` refuses them with the reason).

Its foundation corpus is SPARROW-Mini generated under other data seeds (the profile's
``grounding_foundation_seeds``), named in the fingerprint by generator version, profile and seeds: the generator is
deterministic, and the evaluated data's own record fingerprint changes with any change of its output. The mini
pretraining costs about 37 CPU minutes, so its result is committed (``reproductions/weights/<profile>-grounding``,
written by ``make pretrain-mini``); a run whose fingerprint is the committed one's uses it instead of training, and
says so; one with another fingerprint trains, and says why the committed weights do not serve.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from sparrow.data.curated import CuratedDataset, records_fingerprint
from sparrow.data.indices import linspace_truncated_padded
from sparrow.model.checkpoint import read_state, save_state
from sparrow.model.config import GroundingSpec, _build
from sparrow.model.dense_grounding import DenseGrounding, grounding_inputs
from sparrow.model.frames import to_float
from sparrow.paths import committed_weights_root, runs_dir
from sparrow.storage import DataError, atomic_write_bytes, atomic_write_json, digest_json, read_json
from sparrow.train.committed import committed_if_matching
from sparrow.train.config import BOOKKEEPING_FIELDS, TrainConfig
from sparrow.train.sampling import derive_seed, seed_all
from sparrow.train.trainer import RESULT_FILE, Trainer
from sparrow.tsf.detection import torch_threads

WEIGHTS_NAME = "grounding.safetensors"
SPEC_NAME = "grounding.json"
RUN_DIR = "grounding-pretrain"
STAGE = "grounding"
PRETRAIN_SEED = 0  # one foundation for every training seed
# torch threads of the pretraining, whatever the machine: CPU kernels split their sums by thread count (not by
# cores), and the committed weights are retrained bit for bit (make pretrain-mini).
PRETRAIN_THREADS = 1
_GROUNDING_INIT = 14  # seed-derivation tag (sparrow.train.variants uses 11 and 12, sam_pretrain 13)
CLIP_LENGTHS = (0, 8, 4)  # frames per sample (0: every frame of the video)
POS_WEIGHT = 3.0
DICE_WEIGHT = 0.5


@dataclass
class GroundingOutput:
    loss: torch.Tensor
    losses: dict[str, torch.Tensor]


class GroundingDataset(Dataset):
    """Per video of ``split`` with referring expressions whose referent is visible somewhere: (grounding inputs,
    texts, referent masks) on an evenly spread frame sample of a drawn length, mirrored left-right half of the
    time (the texts' "left" and "right" swapped with it). ``foundation_roots``: further curated datasets (other
    data seeds of the generator) whose every split joins the videos, the evaluated data never among them."""

    def __init__(
        self, curated_root: str | Path, split: str, spec: GroundingSpec, foundation_roots: Sequence[str | Path] = ()
    ):
        self.curated = CuratedDataset(curated_root)
        self.spec = spec
        own = Path(curated_root).resolve()
        for root in foundation_roots:
            if Path(root).resolve() == own:
                raise DataError(f"{root}: a foundation corpus must be other data than the curated dataset it serves")
        sources = [(self.curated, split)] + [(CuratedDataset(root), None) for root in foundation_roots]
        self.items: list[tuple[CuratedDataset, list]] = []  # (its dataset, the expressions of one video)
        for curated, wanted in sources:
            by_video: dict[str, list] = {}
            for e in curated.iter_expressions(split=wanted):
                if e.object_ids and e.kind == "referring" and self._visible(curated, e):
                    by_video.setdefault(e.video_id, []).append(e)
            self.items += [(curated, expressions) for expressions in by_video.values()]
        self._decoded: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # every video is decoded once per process
        if not self.items:
            raise DataError(f"{self.curated.root}: no referring expressions in split {split!r} to pretrain on")

    @staticmethod
    def _visible(curated: CuratedDataset, expression) -> bool:
        objects = curated.objects(expression.video_id)
        return any(any(m is not None for m in objects[o].masks) for o in expression.object_ids if o in objects)

    def __len__(self) -> int:
        return len(self.items)

    def _video(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Frames (T, H, W, 3) uint8 and referent masks (E, T, H, W) bool of item ``index``."""
        if index not in self._decoded:
            curated, expressions = self.items[index]
            frames = curated.load_frames(expressions[0].video_id)
            self._decoded[index] = (frames, np.stack([curated.expression_masks(e) for e in expressions]))
        return self._decoded[index]

    def __getitem__(self, index: int) -> dict:
        _, expressions = self.items[index]
        all_frames, all_masks = self._video(index)
        length = CLIP_LENGTHS[int(torch.randint(len(CLIP_LENGTHS), ()).item())] or all_frames.shape[0]
        frames = linspace_truncated_padded(all_frames.shape[0], length)
        clip = to_float(all_frames[frames])
        masks = torch.from_numpy(all_masks[:, frames].astype(np.float32))
        texts = [e.text for e in expressions]
        if bool(torch.rand(()) < 0.5):
            clip, masks = clip.flip(-1), masks.flip(-1)
            texts = [mirror_text(t) for t in texts]
        return {"inputs": grounding_inputs(clip, self.spec), "texts": texts, "masks": masks}


_MIRRORED = {"left": "right", "right": "left"}


def mirror_text(text: str) -> str:
    """``text`` as it reads on the left-right mirrored video."""
    return re.sub(r"[a-z]+", lambda m: _MIRRORED.get(m.group(0), m.group(0)), text.lower())


def collate(items: list[dict]) -> list[dict]:
    """Videos stay apart: each is encoded once for all of its texts."""
    return items


def grounding_loss(logits: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """BCE and Dice of cell logits (..., h, w) against referent masks (..., H, W) pooled to cells; Dice per frame."""
    logits, masks = logits.flatten(0, -3), masks.flatten(0, -3)
    target = F.adaptive_avg_pool2d(masks, logits.shape[-2:])
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=logits.new_tensor(POS_WEIGHT))
    p, y = logits.sigmoid().flatten(1), target.flatten(1)
    dice = (1 - (2 * (p * y).sum(1) + 1) / (p.sum(1) + y.sum(1) + 1)).mean()
    return {"bce": bce, "dice": DICE_WEIGHT * dice}


class GroundingPretrainer(nn.Module):
    """:class:`DenseGrounding` with its pretraining loss; the Trainer's model."""

    def __init__(self, spec: GroundingSpec, fingerprint: str = ""):
        super().__init__()
        self.spec = spec
        self.fingerprint = fingerprint  # recorded beside the weights: what they were trained from
        self.grounding = DenseGrounding(spec)

    def forward(self, batch: list[dict]) -> GroundingOutput:
        logits = torch.cat([self.grounding(v["inputs"], v["texts"]).flatten(0, 1) for v in batch])
        losses = grounding_loss(logits, torch.cat([v["masks"].flatten(0, 1) for v in batch]))
        return GroundingOutput(loss=losses["bce"] + losses["dice"], losses=losses)

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_state(self.grounding, directory / WEIGHTS_NAME)
        atomic_write_json(directory / SPEC_NAME, {"spec": spec_json(self.spec), "fingerprint": self.fingerprint})

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> GroundingPretrainer:
        row = read_json(Path(directory) / SPEC_NAME)
        model = cls(_build(GroundingSpec, row["spec"], str(directory)), row.get("fingerprint", ""))
        model.grounding.load_state_dict(read_state(Path(directory) / WEIGHTS_NAME))
        return model


def spec_json(spec: GroundingSpec) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(spec)))  # tuples as lists, as the JSON file holds them


def grounding_fingerprint(
    data_fingerprint: str,
    spec: GroundingSpec,
    train_config: TrainConfig,
    foundation_roots: Sequence[str | Path] = (),
    foundation_seeds: Sequence[int] = (),
) -> str:
    """What the pretrained weights depend on (it names their folder): other data or settings, other weights."""
    train = {k: v for k, v in train_config.to_json().items() if k not in BOOKKEEPING_FIELDS}
    # How many location boxes a frame gives, and whether SAM2 also gets the logits, are read when the channel is
    # used, never in pretraining.
    row = {
        "data": data_fingerprint,
        "spec": {k: v for k, v in spec_json(spec).items() if k not in ("max_boxes", "dense_prompt")},
        "train": train,
        "clip_lengths": list(CLIP_LENGTHS),
        "loss": [POS_WEIGHT, DICE_WEIGHT],
    }
    if foundation_roots:  # absent otherwise, so that the weights pretrained without one keep their fingerprint
        row["foundation"] = [records_fingerprint(root) for root in foundation_roots]
    if foundation_seeds:
        from sparrow.data.synthetic import GENERATOR_VERSION

        row["foundation_seeds"] = {
            "profile": train_config.profile,
            "generator_version": GENERATOR_VERSION,
            "seeds": [int(s) for s in foundation_seeds],
        }
    return digest_json(row, 16)


def committed_grounding(profile: str) -> Path:
    """Where the committed pretrained grounding of ``profile`` lives (it may be absent)."""
    return committed_weights_root() / f"{profile}-grounding"


def _committed_if_matching(profile: str, fingerprint: str) -> Path | None:
    return committed_if_matching(committed_grounding(profile), SPEC_NAME, fingerprint, "dense grounding")


def write_committed_grounding(profile: str, folder: str | Path) -> Path:
    """Commit a pretrained grounding (``folder``, the ``final/`` of this stage's run: weights and their record with
    the fingerprint) as :func:`committed_grounding`."""
    out = committed_grounding(profile)
    out.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS_NAME, SPEC_NAME):
        atomic_write_bytes(out / name, (Path(folder) / name).read_bytes())
    return out


def ensure_pretrained_grounding(
    profile: str,
    curated_root: str | Path,
    spec: GroundingSpec,
    data_fingerprint: str,
    *,
    runs_root: str | Path | None = None,
    show_progress: bool = True,
    foundation_roots: Sequence[str | Path] = (),
    foundation_seeds: Sequence[int] = (),
    use_committed: bool = True,
) -> tuple[Path, str]:
    """Train (or reuse) the dense grounding of ``profile`` on ``curated_root``: (final folder, fingerprint).

    One run per data and spec, whatever the host or training seed. Processes of a worker pool that ask at once wait
    on a file lock while the first one trains; DDP ranks train it together. An interrupted run resumes from its
    last checkpoint. ``foundation_roots`` (default none): curated datasets of other generator seeds whose every
    split joins the training split (:class:`GroundingDataset`); on the mini profile they lift the grounding's
    held-out referent accuracy, as 220 training videos alone are overfitted (docs/design.md §14).
    ``foundation_seeds``: the same from SPARROW-Mini generated (on first need) under those data seeds of ``profile``.
    ``use_committed``: a committed copy recorded under the same fingerprint is returned instead of training."""
    import fcntl

    import torch.distributed as dist

    cfg = TrainConfig.for_profile(profile, STAGE, seed=PRETRAIN_SEED, show_progress=show_progress)
    _check_foundation_seeds(curated_root, foundation_seeds)
    fingerprint = grounding_fingerprint(data_fingerprint, spec, cfg, foundation_roots, foundation_seeds)
    folder = (Path(runs_root) if runs_root is not None else runs_dir(profile)) / RUN_DIR / fingerprint
    if (folder / RESULT_FILE).is_file():
        return folder / "final", fingerprint
    committed = _committed_if_matching(profile, fingerprint) if use_committed else None
    if committed is not None:
        return committed, fingerprint
    if foundation_seeds:
        from sparrow.data.curate import ensure_curated

        foundation_roots = [*foundation_roots, *(ensure_curated(profile, s) for s in foundation_seeds)]
    folder.mkdir(parents=True, exist_ok=True)
    if dist.is_available() and dist.is_initialized():
        # the trainer's collectives need every rank
        _train(spec, curated_root, cfg, folder, fingerprint, foundation_roots)
        return folder / "final", fingerprint
    with open(folder.parent / f".{fingerprint}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / RESULT_FILE).is_file():
            _train(spec, curated_root, cfg, folder, fingerprint, foundation_roots)
    return folder / "final", fingerprint


def _check_foundation_seeds(curated_root: str | Path, seeds: Sequence[int]) -> None:
    """A foundation seed must not be the evaluated data's own seed."""
    if not seeds:
        return
    meta = Path(curated_root) / "meta.json"
    seed = read_json(meta).get("seed") if meta.is_file() else None
    if seed is not None and int(seed) in {int(s) for s in seeds}:
        raise DataError(f"{curated_root}: data seed {seed} is also a foundation seed of its dense grounding")


def _train(
    spec: GroundingSpec,
    curated_root: str | Path,
    cfg: TrainConfig,
    folder: Path,
    fingerprint: str,
    foundation_roots: Sequence[str | Path] = (),
) -> None:
    seed_all(derive_seed(PRETRAIN_SEED, _GROUNDING_INIT))
    model = GroundingPretrainer(spec, fingerprint)
    dataset = GroundingDataset(curated_root, "train", spec, foundation_roots)
    with torch_threads(PRETRAIN_THREADS):
        Trainer(model, dataset, cfg, folder, collate_fn=collate).train(resume=True)


def load_pretrained_grounding(grounding: nn.Module, directory: str | Path, fingerprint: str) -> None:
    """Copy pretrained weights into a model's grounding module; weights recorded under another fingerprint (other
    data, spec or settings) are refused with the reason, never loaded."""
    directory = Path(directory)
    try:
        row = read_json(directory / SPEC_NAME)
    except (OSError, ValueError) as exc:
        raise DataError(f"{directory / SPEC_NAME}: no readable grounding record ({exc})") from exc
    if row.get("fingerprint") != fingerprint:
        raise DataError(
            f"{directory}: dense-grounding weights were pretrained for fingerprint {row.get('fingerprint')!r}, "
            f"this model needs {fingerprint!r} (other data, spec or training settings); not loading them"
        )
    state = read_state(directory / WEIGHTS_NAME)
    missing, unexpected = grounding.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DataError(
            f"{directory / WEIGHTS_NAME}: grounding weights do not fit this model (missing {sorted(missing)[:10]}, "
            f"unexpected {sorted(unexpected)[:10]})"
        )
