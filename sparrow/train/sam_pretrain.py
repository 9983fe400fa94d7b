"""Class-agnostic SAM2 pretraining: the tiny profiles' stand-in for the released SAM2 checkpoint.

Every host starts from a SAM2 checkpoint pretrained on SA-1B/SA-V to segment whatever a point or box prompt asks
for, and fine-tunes only its mask decoder (docs/design.md §10, §13). Under ``smoke`` and ``mini`` no such
checkpoint exists offline, and a tiny SAM2 trained from scratch inside the host stage learns to segment whatever is
salient and to ignore its prompt (measured: ``benchmarks/probe_sam2_prompt.py``, and notebook 04's text-dependence
check before this stage existed: the same mask for every text). With nothing in SAM2 that follows a prompt, neither
the ``[SEG]`` embedding nor SPARROW's ``[BOX]`` prompt can choose the target.

So the tiny profiles first run this stage once per curated dataset, as SA-1B pretraining does in miniature:
box prompt → mask of that object, for every object of the training split on a few frames each, with the kit's mask
losses (2.0 BCE + 0.5 Dice). The randomly initialised image encoder stays frozen and the prompt encoder and mask
decoder train: trained whole, the probe's tiny SAM2 still ignored its box after 1,000 steps, while with the encoder
frozen it follows the box after 300-400 steps. The host stage then starts from these weights and, as at paper size,
trains only the mask decoder (``host_trainable_sam="mask_decoder"``).

Layout: ``sparrow.paths.runs_dir(profile) / "sam2-pretrain" / <fingerprint>`` is a
:class:`~sparrow.train.trainer.Trainer` run (resumable checkpoints, loss log); its ``final/sam2.safetensors`` holds
the SAM2 state dict. The fingerprint covers the data, the SAM2 config and the training settings, so a run is never
reused for anything else.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from sparrow.data.curated import CuratedDataset
from sparrow.data.indices import linspace_rounded_unique
from sparrow.data.rle import decode_rle
from sparrow.model.checkpoint import read_state, save_state
from sparrow.model.config import LossWeights, SamSpec, _build
from sparrow.model.frames import stretch, to_float
from sparrow.model.losses import mask_bce_per_pair, mask_dice_per_pair, union_box
from sparrow.model.pixel_decoder import PixelDecoder, build_sam
from sparrow.paths import committed_weights_root, runs_dir
from sparrow.storage import DataError, atomic_write_bytes, atomic_write_json, digest_json, read_json
from sparrow.train.committed import committed_if_matching
from sparrow.train.config import BOOKKEEPING_FIELDS, TrainConfig
from sparrow.train.sampling import derive_seed, seed_all
from sparrow.train.trainer import RESULT_FILE, Trainer
from sparrow.tsf.detection import torch_threads

WEIGHTS_NAME = "sam2.safetensors"
RUN_DIR = "sam2-pretrain"
# What this stage trains; the rest of the tiny SAM2 keeps its seeded initialisation, so that the committed copy
# (committed_sam) holds these tensors alone and rebuilds the rest.
TRAINED_PREFIXES = ("sam_prompt_encoder.", "sam_mask_decoder.")
COMMITTED_WEIGHTS = "sam2-trained.safetensors"
COMMITTED_RECORD = "sam2.json"
PRETRAIN_SEED = 0  # one pretrained SAM2 for every training seed, as one released checkpoint
# torch threads of the pretraining, whatever the machine: the committed mini SAM2 was trained with two, and the same
# count retrains it bit for bit (one thread gives other low bits).
PRETRAIN_THREADS = 2
_SAM_INIT = 13  # seed-derivation tag (sparrow.train.variants uses 11 and 12)
FRAMES_PER_OBJECT = 3  # evenly spread over the frames where the object is visible
MIN_AREA = 16  # pixels at the video's size: smaller slivers (a mostly occluded object) are no prompt target
# Half the samples also carry a dense (mask) prompt, as SAM's own training feeds masks back as prompts: the
# object's mask pooled to SAM2's mask-input grid as logits, blurred, shifted and noised so that it is as rough as
# what the location channel's grounding gives (docs/design.md §14).
DENSE_SHARE = 0.5
DENSE_SCALE = 6.0  # logit of a fully covered cell (the negative for an empty one)
DENSE_NOISE = 2.0  # std of the logit noise
DENSE_SHIFT = 1  # cells of random shift at most, each axis


@dataclass
class SamPretrainOutput:
    loss: torch.Tensor
    losses: dict[str, torch.Tensor]


class BoxPromptDataset(Dataset):
    """(frame, box, mask) of every training object on ``FRAMES_PER_OBJECT`` frames, resized to SAM2's input size.

    Boxes are the visible mask's extent (normalised xyxy), so a prompt always names what is drawn."""

    def __init__(self, curated_root: str | Path, split: str, image_size: int):
        self.curated = CuratedDataset(curated_root)
        self.image_size = int(image_size)
        self.items: list[tuple[str, str, int]] = []
        for video in self.curated.iter_videos(split=split):
            for object_id, obj in sorted(self.curated.objects(video.video_id).items()):
                present = [t for t, rle in enumerate(obj.masks) if rle is not None]
                if not present:
                    continue
                picks = linspace_rounded_unique(len(present), FRAMES_PER_OBJECT)
                self.items.extend((video.video_id, object_id, present[i]) for i in picks)
        if not self.items:
            raise DataError(f"{self.curated.root}: no object masks in split {split!r} to pretrain SAM2 on")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        import torch.nn.functional as F

        video_id, object_id, t = self.items[index]
        video = self.curated.video(video_id)
        frame = stretch(to_float(self.curated.load_frames(video_id, [t])), self.image_size)[0]
        mask = torch.from_numpy(
            decode_rle(self.curated.objects(video_id)[object_id].masks[t], (video.height, video.width)).astype(
                np.float32
            )
        )
        mask = F.interpolate(mask[None, None], size=(self.image_size, self.image_size), mode="nearest")[0, 0]
        if mask.sum() * video.height * video.width < MIN_AREA * self.image_size**2:
            box = torch.tensor([0.0, 0.0, 1.0, 1.0])  # too small to prompt: a whole-frame box and an empty target
            mask = torch.zeros_like(mask)
        else:
            box = union_box(mask)
        dense, use = rough_mask_prompt(mask, self.image_size // 4)
        return {"frame": frame, "box": box, "mask": mask, "dense": dense, "use_dense": use}


def rough_mask_prompt(mask: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A dense prompt (1, g, g) of logits from an (S, S) mask (module constants), and whether to use it (drawn)."""
    import torch.nn.functional as F

    cover = F.adaptive_avg_pool2d(mask[None, None], grid)[0]
    if bool(torch.rand(()) < 0.5):
        cover = F.avg_pool2d(cover[None], 3, stride=1, padding=1, count_include_pad=False)[0]
    dy, dx = (int(v) for v in torch.randint(-DENSE_SHIFT, DENSE_SHIFT + 1, (2,)))
    cover = torch.roll(cover, shifts=(dy, dx), dims=(1, 2))
    logits = DENSE_SCALE * (2 * cover - 1) + DENSE_NOISE * torch.randn_like(cover)
    return logits, torch.rand(()) < DENSE_SHARE


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}


class SamPretrainer(nn.Module):
    """The pixel decoder trained on box prompts alone (no text token), encoder frozen."""

    def __init__(self, spec: SamSpec):
        super().__init__()
        if spec.checkpoint is not None or not spec.tiny:
            raise ValueError(
                "SAM2 pretraining is for the tiny randomly initialised SAM2 (smoke, mini); paper size "
                "loads the released checkpoint"
            )
        self.spec = spec
        self.decoder = PixelDecoder(build_sam(spec, None, None))
        self.configure_stage("sam")

    def configure_stage(self, stage: str) -> SamPretrainer:
        for name, p in self.decoder.sam.named_parameters():
            p.requires_grad_(name.startswith(TRAINED_PREFIXES))
        return self

    def forward(self, batch: dict[str, torch.Tensor]) -> SamPretrainOutput:
        dense = batch.get("dense")
        if dense is not None:
            dense = [d if bool(u) else None for d, u in zip(dense, batch["use_dense"])]
        logits = box_mask_logits(self.decoder, batch["frame"], batch["box"], dense)
        target, weights = batch["mask"], LossWeights()
        bce = weights.bce * mask_bce_per_pair(logits, target).mean()
        dice = weights.dice * mask_dice_per_pair(logits, target).mean()
        return SamPretrainOutput(loss=bce + dice, losses={"bce": bce, "dice": dice})

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_state(self.decoder.sam, directory / WEIGHTS_NAME)
        atomic_write_json(directory / "sam_spec.json", _spec_json(self.spec))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> SamPretrainer:
        spec = _build(SamSpec, read_json(Path(directory) / "sam_spec.json"), str(directory))
        model = cls(spec)
        load_pretrained_sam(model.decoder.sam, Path(directory) / WEIGHTS_NAME)
        return model


def _spec_json(spec: SamSpec) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(spec)))  # tuples as lists, as the JSON file holds them


def box_mask_logits(
    decoder: PixelDecoder, frames: torch.Tensor, boxes: torch.Tensor, dense: list[torch.Tensor | None] | None = None
) -> torch.Tensor:
    """(n, S, S) mask logits at SAM2's input size, frame ``i`` prompted with ``boxes[i]`` (normalised xyxy) and,
    where given, the dense prompt ``dense[i]`` (1, g, g)."""
    feats = decoder.encode(frames)
    size = (decoder.image_size, decoder.image_size)
    return torch.stack(
        [
            decoder.box_masks(
                feats,
                boxes[i : i + 1],
                size,
                t=i,
                mask_input=None if dense is None or dense[i] is None else dense[i][None],
            )[0]
            for i in range(frames.shape[0])
        ]
    )


def pretrain_fingerprint(data_fingerprint: str, spec: SamSpec, train_config) -> str:
    """What the pretrained weights depend on (it names their folder): other data or settings, other weights."""
    train = {k: v for k, v in train_config.to_json().items() if k not in BOOKKEEPING_FIELDS}
    row = {
        "data": data_fingerprint,
        "spec": _spec_json(spec),
        "train": train,
        "frames_per_object": FRAMES_PER_OBJECT,
        "min_area": MIN_AREA,
        "dense_prompts": [DENSE_SHARE, DENSE_SCALE, DENSE_NOISE, DENSE_SHIFT],
    }
    return digest_json(row, 16)


def ensure_pretrained_sam(
    profile: str,
    curated_root: str | Path,
    spec: SamSpec,
    data_fingerprint: str,
    *,
    runs_root: str | Path | None = None,
    show_progress: bool = True,
    use_committed: bool = True,
) -> tuple[Path, str]:
    """Train (or reuse) the tiny SAM2 of ``profile`` on ``curated_root``: (weights file, fingerprint).

    One run per profile, data and SAM2 config, whatever the host or training seed, as one released checkpoint
    serves every host and seed at paper size. Processes of a worker pool that ask at once wait on a file lock while
    the first one trains; DDP ranks train it together. An interrupted run resumes from its last checkpoint.
    ``use_committed``: the committed copy (:func:`committed_sam`) recorded under the same fingerprint is used
    instead of training (its SAM2 rebuilt once into the run folder, ``committed/``)."""
    import fcntl

    cfg = TrainConfig.for_profile(profile, "sam", seed=PRETRAIN_SEED, show_progress=show_progress)
    fingerprint = pretrain_fingerprint(data_fingerprint, spec, cfg)
    folder = (Path(runs_root) if runs_root is not None else runs_dir(profile)) / RUN_DIR / fingerprint
    weights = folder / "final" / WEIGHTS_NAME
    if (folder / RESULT_FILE).is_file():
        return weights, fingerprint
    committed = _committed_if_matching(profile, fingerprint) if use_committed else None
    folder.mkdir(parents=True, exist_ok=True)
    if committed is not None:
        rebuilt = folder / "committed" / WEIGHTS_NAME
        with open(folder.parent / f".{fingerprint}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not rebuilt.is_file():
                save_state(_rebuild(spec, committed / COMMITTED_WEIGHTS), rebuilt)
        return rebuilt, fingerprint
    if _distributed():
        # DDP ranks train it together (the trainer's collectives need every rank); the main process writes.
        _train(spec, curated_root, cfg, folder)
        return weights, fingerprint
    with open(folder.parent / f".{fingerprint}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / RESULT_FILE).is_file():
            _train(spec, curated_root, cfg, folder)
    return weights, fingerprint


def committed_sam(profile: str) -> Path:
    """Where the committed pretrained SAM2 of ``profile`` lives (it may be absent)."""
    return committed_weights_root() / f"{profile}-sam2"


def _committed_if_matching(profile: str, fingerprint: str) -> Path | None:
    return committed_if_matching(committed_sam(profile), COMMITTED_RECORD, fingerprint, "SAM2")


def write_committed_sam(profile: str, weights: str | Path, fingerprint: str, spec: SamSpec) -> Path:
    """Commit a pretrained SAM2 (``weights``, a full state written by this stage) as :func:`committed_sam`: the
    tensors this stage trains, and the fingerprint and spec they were trained for."""
    from safetensors.torch import save

    state = read_state(Path(weights))
    trained = {k: v.contiguous() for k, v in state.items() if k.startswith(TRAINED_PREFIXES)}
    out = committed_sam(profile)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / COMMITTED_WEIGHTS, save(trained))
    atomic_write_json(out / COMMITTED_RECORD, {"fingerprint": fingerprint, "spec": _spec_json(spec)})
    return out


def _initial_sam(spec: SamSpec) -> SamPretrainer:
    """The tiny SAM2 this stage starts from (seeded): a committed copy's untrained tensors come from here."""
    seed_all(derive_seed(PRETRAIN_SEED, _SAM_INIT))
    return SamPretrainer(spec)


def _rebuild(spec: SamSpec, trained: Path) -> nn.Module:
    model = _initial_sam(spec)
    state = read_state(trained)
    own = model.decoder.sam.state_dict()
    wrong = sorted(k for k in state if k not in own or not k.startswith(TRAINED_PREFIXES))
    missing = sorted(k for k in own if k.startswith(TRAINED_PREFIXES) and k not in state)
    if wrong or missing:
        raise DataError(f"{trained}: not this SAM2's trained tensors (unexpected {wrong[:5]}, missing {missing[:5]})")
    model.decoder.sam.load_state_dict(state, strict=False)
    return model.decoder.sam


def _train(spec: SamSpec, curated_root: str | Path, cfg, folder: Path) -> None:
    model = _initial_sam(spec)
    dataset = BoxPromptDataset(curated_root, "train", model.decoder.image_size)
    with torch_threads(PRETRAIN_THREADS):
        Trainer(model, dataset, cfg, folder, collate_fn=collate).train(resume=True)


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


def load_pretrained_sam(sam: nn.Module, weights: str | Path) -> None:
    """Copy pretrained SAM2 weights into a model's SAM2 (strict: the same tiny config)."""
    state = read_state(Path(weights))
    missing, unexpected = sam.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise DataError(
            f"{weights}: SAM2 weights do not fit this model (missing {sorted(missing)[:10]}, "
            f"unexpected {sorted(unexpected)[:10]})"
        )
