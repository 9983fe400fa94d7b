"""Masks, boxes, TSF tracks and the expression drawn over one frame.

Everything here works on RGB ``uint8`` arrays with numpy and OpenCV, so the same code draws the static figures of
the notebooks and the interactive explorer's frames (where a 480x854 update must take well under 100 ms).
Conventions follow ``sparrow.data.records``: masks are (H, W) arrays in which any non-zero pixel is foreground,
boxes are ``[x0, y0, x1, y1]`` pixels with an **exclusive** max.

The colours are fixed per role (ground truth, predictions, boxes, TSF track) so that a reader learns them once
for every notebook; they are saturated colours that rarely occur in video frames, which lets tests find them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

Color = tuple[int, int, int]

GT_COLOR: Color = (0, 255, 128)
PRED_COLORS: tuple[Color, ...] = ((255, 0, 255), (255, 140, 0), (0, 150, 255), (255, 50, 50))
BOX_COLOR: Color = (255, 235, 0)
TRACK_COLOR: Color = (0, 235, 255)
# Distinct hues for per-object masks (several referents, montages of all objects in a video).
OBJECT_COLORS: tuple[Color, ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
)


def pred_color(index: int) -> Color:
    """The colour of the ``index``-th prediction (baseline first, then SPARROW, ...)."""
    return PRED_COLORS[index % len(PRED_COLORS)]


def object_color(index: int) -> Color:
    return OBJECT_COLORS[index % len(OBJECT_COLORS)]


def line_thickness(shape: tuple[int, ...]) -> int:
    """Contour and box width that stays visible without hiding small objects: 1 px at 128 px, 2 px at 480 px."""
    return max(1, round(min(shape[0], shape[1]) / 240))


@dataclass(frozen=True)
class MaskLayer:
    """One mask to draw: filled with ``color`` at the composer's opacity and/or outlined at full colour."""

    mask: np.ndarray
    color: Color = GT_COLOR
    label: str = ""
    fill: bool = True
    contour: bool = True


@dataclass(frozen=True)
class BoxLayer:
    """One box ``[x0, y0, x1, y1]`` (exclusive max) with an optional text label above it."""

    box: Sequence[float]
    color: Color = BOX_COLOR
    label: str = ""


@dataclass(frozen=True)
class TrackLayer:
    """A TSF track: one box (or None) per frame, drawn at ``index`` with the trail of its recent centres.

    ``crop_inset`` pastes the target crop cut at the track box into a corner, as TSF feeds it to the encoder;
    frames listed in ``crop_frames`` (the crops K-means picked) are labelled ``TSF*`` instead of ``TSF``.
    """

    boxes: Sequence[Sequence[float] | None]
    index: int
    color: Color = TRACK_COLOR
    trail: int = 8
    crop_inset: bool = True
    crop_frames: Sequence[int] = field(default_factory=tuple)


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")


def _as_bool(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    if mask.shape != tuple(shape[:2]):
        raise ValueError(f"mask of shape {mask.shape} for an image of {shape[0]}x{shape[1]}")
    return mask if mask.dtype == bool else mask != 0


def blend_mask(image: np.ndarray, mask: np.ndarray, color: Color, alpha: float) -> np.ndarray:
    """Tint the pixels of ``mask`` towards ``color`` by ``alpha`` in [0, 1], in place; returns ``image``."""
    _check_image(image)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    mask = _as_bool(mask, image.shape)
    if alpha == 0.0:
        return image
    # Work inside the mask's bounding box only: boolean indexing over a whole 480x854 frame costs milliseconds,
    # over the box of a typical object a tenth of that.
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    if w == 0 or h == 0:
        return image
    crop, sel = image[y : y + h, x : x + w], mask[y : y + h, x : x + w]
    weight = int(round(alpha * 256))
    region = crop[sel].astype(np.uint16)
    tint = np.asarray(color, dtype=np.uint16) * weight
    crop[sel] = ((region * (256 - weight) + tint + 128) >> 8).astype(np.uint8)
    return image


def draw_contours(image: np.ndarray, mask: np.ndarray, color: Color, thickness: int = 1) -> np.ndarray:
    """Outline every region of ``mask`` (holes included) in ``color``, in place."""
    _check_image(image)
    mask = _as_bool(mask, image.shape)
    if not mask.any():
        return image
    contours, _ = cv2.findContours(mask.view(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(image, contours, -1, tuple(int(c) for c in color), thickness, lineType=cv2.LINE_8)
    return image


def _font_scale(shape: tuple[int, ...]) -> float:
    return max(0.3, min(shape[0], shape[1]) / 600)


def draw_label(
    image: np.ndarray, text: str, origin: tuple[int, int], color: Color, background: Color = (0, 0, 0)
) -> np.ndarray:
    """Write ``text`` with its top-left corner at ``origin`` on a solid background, in place."""
    scale = _font_scale(image.shape)
    thick = max(1, round(scale * 1.5))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    x = int(np.clip(origin[0], 0, max(0, image.shape[1] - tw - 2)))
    y = int(np.clip(origin[1], 0, max(0, image.shape[0] - th - base - 2)))
    cv2.rectangle(image, (x, y), (x + tw + 2, y + th + base + 2), background, thickness=-1)
    cv2.putText(
        image,
        text,
        (x + 1, y + th + 1),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        tuple(int(c) for c in color),
        thick,
        lineType=cv2.LINE_AA,
    )
    return image


def draw_box(
    image: np.ndarray, box: Sequence[float], color: Color = BOX_COLOR, thickness: int = 1, label: str = ""
) -> np.ndarray:
    """Draw ``[x0, y0, x1, y1]`` (exclusive max) as a rectangle on its outermost pixels, in place."""
    _check_image(image)
    if len(box) != 4:
        raise ValueError(f"a box has 4 numbers [x0, y0, x1, y1], got {list(box)}")
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    if x1 <= x0 or y1 <= y0:
        return image
    cv2.rectangle(image, (x0, y0), (x1 - 1, y1 - 1), tuple(int(c) for c in color), thickness)
    # Below 160 px a label would hide the object it names; figures carry the names in their legend instead.
    if label and min(image.shape[:2]) >= 160:
        draw_label(image, label, (x0, y0 - int(_font_scale(image.shape) * 30)), color)
    return image


def box_center(box: Sequence[float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0


def crop_box(frame: np.ndarray, box: Sequence[float], size: int | None = None) -> np.ndarray | None:
    """The pixels of ``frame`` inside ``box`` (floor of the min, ceil of the max, clamped to the frame).

    Rounding follows the released TSF crop rule (docs/design.md §4.4); ``size`` resizes the crop to a square.
    Returns None when the clamped box is empty.
    """
    height, width = frame.shape[:2]
    x0 = min(max(int(math.floor(box[0])), 0), width - 1)
    y0 = min(max(int(math.floor(box[1])), 0), height - 1)
    x1 = max(x0 + 1, min(width, int(math.ceil(box[2]))))
    y1 = max(y0 + 1, min(height, int(math.ceil(box[3]))))
    crop = frame[y0:y1, x0:x1]
    if crop.size == 0:
        return None
    if size is not None:
        crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(crop)


def paste_inset(image: np.ndarray, inset: np.ndarray, color: Color, corner: str = "top-right") -> np.ndarray:
    """Paste ``inset`` into a corner of ``image`` with a 1-px frame of ``color``, in place."""
    h, w = inset.shape[:2]
    if h + 2 > image.shape[0] or w + 2 > image.shape[1]:
        return image
    y = 1 if corner.startswith("top") else image.shape[0] - h - 1
    x = image.shape[1] - w - 1 if corner.endswith("right") else 1
    image[y : y + h, x : x + w] = inset
    cv2.rectangle(image, (x - 1, y - 1), (x + w, y + h), tuple(int(c) for c in color), 1)
    return image


def draw_track(image: np.ndarray, layer: TrackLayer, frame: np.ndarray | None = None, thickness: int = 1) -> np.ndarray:
    """Draw a TSF track at ``layer.index``: its box, the trail of recent box centres and the crop inset."""
    _check_image(image)
    boxes = layer.boxes
    if not boxes or not 0 <= layer.index < len(boxes):
        return image
    color = tuple(int(c) for c in layer.color)
    start = max(0, layer.index - layer.trail)
    centres = [box_center(b) for b in boxes[start : layer.index + 1] if b is not None]
    if len(centres) >= 2:
        points = np.round(np.asarray(centres)).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(image, [points], False, color, thickness, lineType=cv2.LINE_AA)
    box = boxes[layer.index]
    if box is None:
        return image
    label = "TSF*" if layer.index in set(layer.crop_frames) else "TSF"
    draw_box(image, box, layer.color, thickness, label=label)
    if layer.crop_inset:
        side = max(16, min(image.shape[0], image.shape[1]) // 4)
        crop = crop_box(frame if frame is not None else image, box, side)
        if crop is not None:
            paste_inset(image, crop, layer.color)
    return image


def draw_caption(image: np.ndarray, text: str, color: Color = (255, 255, 255)) -> np.ndarray:
    """Write ``text`` (wrapped to the width) on a dark band along the bottom of ``image``, in place."""
    if not text:
        return image
    scale = _font_scale(image.shape)
    thick = max(1, round(scale * 1.5))
    width = image.shape[1]
    lines: list[str] = []
    for word in text.split():
        trial = f"{lines[-1]} {word}" if lines else word
        if lines and cv2.getTextSize(trial, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][0] <= width - 4:
            lines[-1] = trial
        else:
            lines.append(word)
    line_h = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0][1] + 4
    band = min(image.shape[0], line_h * len(lines) + 4)
    region = image[image.shape[0] - band :]
    region[:] = (region.astype(np.uint16) * 3 // 8).astype(np.uint8)
    for i, line in enumerate(lines):
        y = image.shape[0] - band + (i + 1) * line_h
        cv2.putText(image, line, (2, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, lineType=cv2.LINE_AA)
    return image


def compose(
    frame: np.ndarray,
    masks: Sequence[MaskLayer] = (),
    boxes: Sequence[BoxLayer] = (),
    track: TrackLayer | None = None,
    alpha: float = 0.45,
    text: str = "",
    thickness: int | None = None,
) -> np.ndarray:
    """A new RGB image: ``frame`` with filled masks, then outlines, boxes, the TSF track and a caption.

    Fills are blended in order (later layers on top); outlines are drawn after every fill so that each stays
    visible at full colour where masks overlap.
    """
    _check_image(frame)
    image = frame.copy()
    thick = line_thickness(frame.shape) if thickness is None else thickness
    for layer in masks:
        if layer.fill:
            blend_mask(image, layer.mask, layer.color, alpha)
    for layer in masks:
        if layer.contour:
            draw_contours(image, layer.mask, layer.color, thick)
    for layer in boxes:
        draw_box(image, layer.box, layer.color, thick, layer.label)
    if track is not None:
        draw_track(image, track, frame=frame, thickness=thick)
    if text:
        draw_caption(image, text)
    return image


def _legend(ax, masks: Sequence[MaskLayer], boxes: Sequence[BoxLayer], track: TrackLayer | None) -> None:
    from matplotlib.patches import Patch

    handles = []
    seen = set()
    for label, color in (
        [(m.label, m.color) for m in masks]
        + [(b.label, b.color) for b in boxes]
        + ([("TSF track", track.color)] if track is not None else [])
    ):
        if label and label not in seen:
            seen.add(label)
            handles.append(Patch(color=np.asarray(color) / 255.0, label=label))
    if handles:
        ax.legend(handles=handles, loc="upper left", fontsize="small", framealpha=0.7)


def overlay_figure(
    frame: np.ndarray,
    masks: Sequence[MaskLayer] = (),
    boxes: Sequence[BoxLayer] = (),
    track: TrackLayer | None = None,
    alpha: float = 0.45,
    title: str = "",
    text: str = "",
    width: float = 6.0,
):
    """A matplotlib Figure of one composed frame, with a legend of the labelled layers and the expression."""
    from sparrow.viz._figures import new_figure

    image = compose(frame, masks, boxes, track, alpha)
    height = width * image.shape[0] / image.shape[1] + (0.6 if text or title else 0.2)
    fig = new_figure(width, height)
    ax = fig.add_subplot()
    ax.imshow(image, interpolation="nearest")
    ax.set_axis_off()
    if title or text:
        ax.set_title("\n".join(t for t in (title, f"“{text}”" if text else "") if t), fontsize="medium")
    _legend(ax, masks, boxes, track)
    return fig
