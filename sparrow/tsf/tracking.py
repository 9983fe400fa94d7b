"""The tracker box of the TSF pipeline: a keyframe box in, one box per frame (and optionally masks) out.

Three trackers behind one interface (:class:`Tracker`):

- :class:`SAM2Tracker`: the ``sam2`` package's video predictor, prompted with the keyframe box and propagated
  forward and backward (the paper's offline pass also produces SAM2 masks). Under ``smoke``/``mini`` it is
  built with the pixel decoder's tiny hydra overrides (``sparrow.model.pixel_decoder.tiny_overrides``,
  docs/runtime.md §5.1); without a checkpoint its weights are random, so its boxes only exercise the plumbing.
- :class:`AppearanceMotionTracker`: a light template tracker (OpenCV SSD matching over a few scales in a window
  around a constant-velocity prediction, with a motion penalty, loss detection and whole-frame re-acquisition).
  It is the tracker that means something on CPU for SPARROW-Mini.
- :class:`ExternalTracks`: boxes written by an external tracker (CLDTracker/pytracking: one ``x y w h`` line per
  frame, tab separated), read with the released ``--tsf_boxes_txt`` rules (docs/design.md §4.4): path as file,
  folder (``<dir>/<video>.txt``) or ``{video}`` template; lines split on whitespace or commas, fewer than four
  fields skipped; xyxy vs xywh decided by the released per-line vote (ties to xywh); frame i uses line
  ``min(i, L - 1)``.

Boxes are ``(x0, y0, x1, y1)`` floats in pixels with an exclusive max (the kit's convention); ``None`` marks a
frame where the tracker has lost the target.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from sparrow.profiles import get_profile
from sparrow.storage import DataError

BoxT = tuple[float, float, float, float]


@dataclass
class Track:
    """Per-frame output of a tracker over a whole clip."""

    boxes: list[BoxT | None]
    scores: list[float]
    masks: np.ndarray | None = None

    @property
    def lost_frames(self) -> int:
        return sum(box is None for box in self.boxes)


class Tracker(Protocol):
    """Turns the keyframe box into per-frame boxes over ``frames`` (T, H, W, 3) uint8.

    ``frame_paths`` (the frames' image files, when known) lets file-based trackers avoid re-encoding;
    ``video_id`` names the clip for trackers that read precomputed output.
    """

    name: str

    def track(
        self,
        frames: np.ndarray,
        key_index: int,
        key_box: Sequence[float],
        frame_paths: Sequence[str | os.PathLike] | None = None,
        video_id: str | None = None,
    ) -> Track: ...


# -- configuration -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackerConfig:
    """Which tracker and its settings.

    ``kind``: ``appearance`` | ``sam2`` | ``external``. SAM2: ``sam2_config`` (a config name inside the sam2
    package), ``sam2_checkpoint`` (sam2's ``{"model": state_dict}`` file, loaded with ``weights_only=True``;
    None = random weights), ``sam2_tiny_size`` (0 = the config's own size, else the tiny overrides at that
    size). External: ``boxes_txt`` (file, folder or ``{video}`` template).
    """

    kind: Literal["appearance", "sam2", "external"] = "appearance"
    # appearance + motion tracker
    search_factor: float = 1.5
    scales: tuple[float, ...] = (1.0,)
    accept: float = 0.5
    reacquire: float = 0.6
    motion_weight: float = 0.1
    template_rate: float = 0.1
    velocity_momentum: float = 0.5
    global_search_after: int = 2
    # SAM2
    sam2_config: str = "configs/sam2.1/sam2.1_hiera_t.yaml"
    sam2_checkpoint: str | None = None
    sam2_tiny_size: int = 0
    sam2_seed: int = 0
    # external tracker output
    boxes_txt: str | None = None

    @classmethod
    def for_profile(cls, profile: str, **overrides) -> TrackerConfig:
        return cls(**{**get_profile(profile).tsf.tracker, **overrides})


def build_tracker(config: TrackerConfig, device: str = "cpu") -> Tracker:
    if config.kind == "appearance":
        return AppearanceMotionTracker(config)
    if config.kind == "sam2":
        return SAM2Tracker(config, device=device)
    if config.kind == "external":
        if not config.boxes_txt:
            raise ValueError(
                "TrackerConfig(kind='external') needs boxes_txt (a file, a folder or a '{video}' template)"
            )
        return ExternalTracks(config.boxes_txt)
    raise ValueError(f"unknown tracker kind {config.kind!r}; choose appearance, sam2 or external")


# -- (b) appearance + motion ---------------------------------------------------------------------------------------


class AppearanceMotionTracker:
    """Template tracker: SSD matching near a constant-velocity prediction, scale search, loss and re-acquisition.

    Similarity of a placement is ``1 - MSD / d0``: ``MSD`` its mean squared RGB difference to the template and
    ``d0`` the MSD of the template against its own surroundings on the keyframe (how distinct the target is
    from what lies half a box away), so one threshold works for flat and textured targets alike. A motion
    penalty ``motion_weight * (distance to the prediction / box size)^2`` separates identical-looking objects.
    Below ``accept`` the frame is lost (``None``); the prediction keeps moving with the last velocity, the
    window grows, and after ``global_search_after`` lost frames the whole frame is searched and the target is
    re-acquired above ``reacquire``.
    """

    name = "appearance"

    def __init__(self, config: TrackerConfig | None = None):
        self.config = config or TrackerConfig()

    def track(
        self,
        frames: np.ndarray,
        key_index: int,
        key_box: Sequence[float],
        frame_paths: Sequence[str | os.PathLike] | None = None,
        video_id: str | None = None,
    ) -> Track:
        total = frames.shape[0]
        if not 0 <= key_index < total:
            raise ValueError(f"keyframe {key_index} outside a clip of {total} frames")
        images = frames.astype(np.float32) / 255.0
        height, width = frames.shape[1:3]
        x0, y0, x1, y1 = _clip_box(key_box, width, height)
        boxes: list[BoxT | None] = [None] * total
        scores = [0.0] * total
        boxes[key_index] = (x0, y0, x1, y1)
        scores[key_index] = 1.0
        template = images[key_index, int(y0) : int(y1), int(x0) : int(x1)].copy()
        if template.shape[0] < 2 or template.shape[1] < 2:
            return Track(boxes, scores)
        d0 = _distinctiveness(images[key_index], template, int(x0), int(y0))
        for order in (range(key_index + 1, total), range(key_index - 1, -1, -1)):
            self._run(images, order, (x0, y0, x1, y1), template.copy(), d0, boxes, scores)
        return Track(boxes, scores)

    def _run(
        self,
        images: np.ndarray,
        order: range,
        key_box: BoxT,
        template: np.ndarray,
        d0: float,
        boxes: list,
        scores: list,
    ) -> None:
        cfg = self.config
        height, width = images.shape[1:3]
        cx, cy = (key_box[0] + key_box[2]) / 2, (key_box[1] + key_box[3]) / 2
        w, h = key_box[2] - key_box[0], key_box[3] - key_box[1]
        vx = vy = 0.0
        lost = 0
        for t in order:
            px, py = cx + vx, cy + vy
            if lost >= cfg.global_search_after:
                window = (0, 0, width, height)
            else:
                pad = cfg.search_factor * (1 + lost) * max(w, h)
                window = (px - w / 2 - pad, py - h / 2 - pad, px + w / 2 + pad, py + h / 2 + pad)
            best = None
            for scale in cfg.scales:
                found = _match(
                    images[t],
                    template,
                    window,
                    w * scale,
                    h * scale,
                    d0,
                    (px, py),
                    max(w, h),
                    cfg.motion_weight if lost < cfg.global_search_after else 0.0,
                )
                if found is not None and (best is None or found[0] > best[0]):
                    best = found + (scale,)
            threshold = cfg.accept if lost < cfg.global_search_after else cfg.reacquire
            if best is None or best[1] < threshold:
                lost += 1
                cx, cy = px, py
                vx, vy = vx * 0.9, vy * 0.9
                continue
            _, similarity, (nx, ny), (nw, nh), patch, _scale = best
            if lost == 0:
                m = cfg.velocity_momentum
                vx, vy = m * vx + (1 - m) * (nx - cx), m * vy + (1 - m) * (ny - cy)
            else:
                vx = vy = 0.0
            cx, cy, w, h = nx, ny, nw, nh
            lost = 0
            boxes[t] = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            scores[t] = float(similarity)
            if similarity > 0.8 and cfg.template_rate > 0:
                import cv2

                resized = cv2.resize(patch, (template.shape[1], template.shape[0]), interpolation=cv2.INTER_LINEAR)
                template *= 1 - cfg.template_rate
                template += cfg.template_rate * resized


def _clip_box(box: Sequence[float], width: int, height: int) -> BoxT:
    x0 = min(max(float(box[0]), 0.0), width - 1.0)
    y0 = min(max(float(box[1]), 0.0), height - 1.0)
    x1 = min(max(float(box[2]), x0 + 1.0), float(width))
    y1 = min(max(float(box[3]), y0 + 1.0), float(height))
    return float(math.floor(x0)), float(math.floor(y0)), float(math.ceil(x1)), float(math.ceil(y1))


def _distinctiveness(image: np.ndarray, template: np.ndarray, x: int, y: int) -> float:
    """Mean MSD of the template against the frame half a box away in 8 directions (floored for flat frames)."""
    th, tw = template.shape[:2]
    height, width = image.shape[:2]
    values = []
    for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)):
        ox, oy = x + int(round(dx * tw / 2)), y + int(round(dy * th / 2))
        if 0 <= ox and 0 <= oy and ox + tw <= width and oy + th <= height:
            values.append(float(np.mean((image[oy : oy + th, ox : ox + tw] - template) ** 2)))
    return max(float(np.mean(values)) if values else 0.0, 1e-3)


def _match(
    image: np.ndarray,
    template: np.ndarray,
    window: tuple[float, float, float, float],
    w: float,
    h: float,
    d0: float,
    predicted: tuple[float, float],
    size: float,
    motion_weight: float,
):
    """Best placement of the template resized to (w, h) inside ``window``: (score, similarity, centre, size, patch)."""
    import cv2

    height, width = image.shape[:2]
    tw, th = max(2, int(round(w))), max(2, int(round(h)))
    wx0, wy0 = max(0, int(math.floor(window[0]))), max(0, int(math.floor(window[1])))
    wx1, wy1 = min(width, int(math.ceil(window[2]))), min(height, int(math.ceil(window[3])))
    if wx1 - wx0 < tw or wy1 - wy0 < th:
        return None
    templ = cv2.resize(template, (tw, th), interpolation=cv2.INTER_LINEAR)
    ssd = cv2.matchTemplate(image[wy0:wy1, wx0:wx1], templ, cv2.TM_SQDIFF)
    similarity = 1.0 - ssd / (tw * th * 3 * d0)
    ys, xs = np.mgrid[0 : ssd.shape[0], 0 : ssd.shape[1]].astype(np.float32)
    centre_x, centre_y = wx0 + xs + tw / 2, wy0 + ys + th / 2
    distance2 = ((centre_x - predicted[0]) ** 2 + (centre_y - predicted[1]) ** 2) / max(size, 1.0) ** 2
    score = similarity - motion_weight * distance2
    iy, ix = np.unravel_index(int(np.argmax(score)), score.shape)
    patch = image[wy0 + iy : wy0 + iy + th, wx0 + ix : wx0 + ix + tw]
    return (
        float(score[iy, ix]),
        float(similarity[iy, ix]),
        (float(centre_x[iy, ix]), float(centre_y[iy, ix])),
        (float(tw), float(th)),
        patch,
    )


# -- (a) SAM2 video predictor ----------------------------------------------------------------------------------


class SAM2Tracker:
    """SAM2 video predictor prompted with the keyframe box; masks propagated forward, then backward."""

    name = "sam2"

    def __init__(self, config: TrackerConfig, device: str = "cpu"):
        import torch
        from sam2.build_sam import build_sam2_video_predictor

        from sparrow.model.pixel_decoder import tiny_overrides

        if config.sam2_checkpoint is not None and not Path(config.sam2_checkpoint).is_file():
            raise FileNotFoundError(f"SAM2 checkpoint {config.sam2_checkpoint} not found")
        overrides = tiny_overrides(config.sam2_tiny_size) if config.sam2_tiny_size else []
        # Random weights must be the same every run: the cache key does not see them.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.sam2_seed)
            self.predictor = build_sam2_video_predictor(
                config.sam2_config,
                ckpt_path=config.sam2_checkpoint,
                device=device,
                hydra_overrides_extra=overrides + ["++model.fill_hole_area=0"],
                apply_postprocessing=False,
            )
        self.device = device
        _quiet_sam2_progress()

    def track(
        self,
        frames: np.ndarray,
        key_index: int,
        key_box: Sequence[float],
        frame_paths: Sequence[str | os.PathLike] | None = None,
        video_id: str | None = None,
    ) -> Track:
        import torch

        from sparrow.data.boxes import mask_box

        total, height, width = frames.shape[:3]
        masks = np.zeros((total, height, width), dtype=bool)
        with tempfile.TemporaryDirectory(prefix="sparrow-sam2-") as folder:
            _frames_folder(folder, frames, frame_paths)
            with torch.inference_mode():
                state = self.predictor.init_state(folder, offload_video_to_cpu=True)
                self.predictor.add_new_points_or_box(
                    state, frame_idx=key_index, obj_id=1, box=np.asarray(key_box, dtype=np.float32)
                )
                for reverse in (False, True):
                    for t, _ids, logits in self.predictor.propagate_in_video(
                        state, start_frame_idx=key_index, reverse=reverse
                    ):
                        masks[t] = (logits[0, 0] > 0).cpu().numpy()
                self.predictor.reset_state(state)
        boxes: list[BoxT | None] = []
        for mask in masks:
            boxes.append(mask_box(mask))
        return Track(boxes, [1.0 if b is not None else 0.0 for b in boxes], masks)


def _quiet_sam2_progress() -> None:
    """Turn off the two progress bars sam2 draws per propagated clip (a notebook tracking hundreds of clips would
    drown in them); sam2 1.1.0 has no switch for them, so its module-level ``tqdm`` names are replaced."""
    import functools

    import sam2.sam2_video_predictor as video_predictor
    import sam2.utils.misc as misc
    from tqdm import tqdm

    quiet = functools.partial(tqdm, disable=True)
    video_predictor.tqdm = quiet
    misc.tqdm = quiet


def _frames_folder(folder: str, frames: np.ndarray, frame_paths: Sequence[str | os.PathLike] | None) -> None:
    """sam2 reads a folder of ``<index>.jpg``: link the frame files when given (PIL reads any format), else write JPEGs."""
    from PIL import Image

    for i in range(frames.shape[0]):
        target = os.path.join(folder, f"{i:05d}.jpg")
        if frame_paths is not None:
            os.symlink(os.path.abspath(frame_paths[i]), target)
        else:
            Image.fromarray(frames[i]).save(target, quality=95)


# -- (c) external tracker output ---------------------------------------------------------------------------------


def resolve_boxes_txt(spec: str | os.PathLike, video: str) -> Path:
    """The box file for ``video``: ``spec`` itself, ``<spec>/<video>.txt``, or ``spec`` with ``{video}`` filled."""
    text = str(spec)
    if "{video}" in text:
        return Path(text.format(video=video))
    path = Path(text)
    if path.is_dir():
        return path / f"{video}.txt"
    return path


def read_boxes_txt(path: str | os.PathLike) -> list[tuple[float, float, float, float]]:
    """Raw 4-tuples of a box file: non-empty lines split on whitespace/commas; lines with < 4 fields skipped."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: tracker box file not found")
    rows = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            line = line.strip()
            if not line:
                continue
            parts = [p for p in re.split(r"[\s,]+", line) if p]
            if len(parts) < 4:
                continue
            try:
                rows.append(tuple(float(p) for p in parts[:4]))
            except ValueError as exc:
                raise DataError(f"{path}:{lineno}: not a number in {line!r} ({exc})") from None
    return rows


def infer_box_format(rows: Sequence[Sequence[float]], width: float, height: float) -> Literal["xyxy", "xywh"]:
    """The released per-line vote between xyxy and xywh readings; ties and empty input give ``xywh``.

    Per line: a valid xyxy geometry (x1 > x0, y1 > y0) gives xyxy one vote, otherwise xywh two; positive w, h
    gives xywh one; each valid reading then earns a vote if it lies inside the image and gives one to the other
    reading if it does not.
    """
    xyxy = xywh = 0
    for a, b, c, d in rows:
        xyxy_geometry = c > a and d > b
        xywh_geometry = c > 0 and d > 0
        if xyxy_geometry:
            xyxy += 1
        else:
            xywh += 2
        if xywh_geometry:
            xywh += 1
        if xyxy_geometry:
            if 0 <= a <= width and 0 <= c <= width and 0 <= b <= height and 0 <= d <= height:
                xyxy += 1
            else:
                xywh += 1
        if xywh_geometry:
            if 0 <= a <= width and 0 <= a + c <= width and 0 <= b <= height and 0 <= b + d <= height:
                xywh += 1
            else:
                xyxy += 1
    return "xyxy" if xyxy > xywh else "xywh"


def boxes_for_frames(
    rows: Sequence[Sequence[float]], num_frames: int, width: float, height: float
) -> list[BoxT | None]:
    """Per-frame xyxy boxes from a box file's rows: frame i uses row ``min(i, L - 1)``; no rows, no boxes."""
    if not rows:
        return [None] * num_frames
    fmt = infer_box_format(rows, width, height)
    out: list[BoxT | None] = []
    for i in range(num_frames):
        a, b, c, d = rows[min(i, len(rows) - 1)]
        out.append((a, b, c, d) if fmt == "xyxy" else (a, b, a + c, b + d))
    return out


class ExternalTracks:
    """Boxes precomputed by an external tracker (e.g. CLDTracker's ``<seq>.txt``), one file per video.

    The keyframe box is not used: the file already holds the whole track. The video's file name is the part
    of ``video_id`` after the source prefix (``"<source>/<id>"`` -> ``<id>``).
    """

    name = "external"

    def __init__(self, boxes_txt: str | os.PathLike):
        self.spec = str(boxes_txt)

    def track(
        self,
        frames: np.ndarray,
        key_index: int,
        key_box: Sequence[float],
        frame_paths: Sequence[str | os.PathLike] | None = None,
        video_id: str | None = None,
    ) -> Track:
        if video_id is None:
            raise ValueError("ExternalTracks needs the video_id to find the box file")
        path = resolve_boxes_txt(self.spec, video_id.split("/", 1)[-1])
        rows = read_boxes_txt(path)
        height, width = frames.shape[1:3]
        boxes = boxes_for_frames(rows, frames.shape[0], width, height)
        return Track(boxes, [1.0 if b is not None else 0.0 for b in boxes])


def write_boxes_txt(path: str | os.PathLike, boxes: Sequence[Sequence[float] | None]) -> None:
    """Write a track in the CLDTracker/pytracking format: tab-separated integer x, y, w, h per frame.

    A lost frame repeats the previous box (the format has no "absent" marker); before the first box, zeros.
    """
    from sparrow.storage import atomic_open

    previous = (0, 0, 0, 0)
    with atomic_open(path, "w") as handle:
        for box in boxes:
            if box is not None:
                x0, y0 = int(round(box[0])), int(round(box[1]))
                previous = (x0, y0, int(round(box[2])) - x0, int(round(box[3])) - y0)
            handle.write("\t".join(str(v) for v in previous) + "\n")
