"""Montages across time: sampled frames of one video with its masks.

Used by notebook 01 (a look at curated videos and their hard cases), 02 (tracks over frames) and 05.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from sparrow.data.indices import linspace_rounded_unique
from sparrow.viz._figures import new_figure
from sparrow.viz.overlay import (
    BOX_COLOR,
    GT_COLOR,
    BoxLayer,
    MaskLayer,
    TrackLayer,
    compose,
    object_color,
)

MaskInput = np.ndarray | Mapping[str, np.ndarray] | None
BoxTrack = Sequence[Sequence[float] | None]


def sample_indices(num_frames: int, num: int) -> list[int]:
    """``num`` evenly spaced frame positions from first to last (all frames when there are fewer)."""
    return linspace_rounded_unique(num_frames, max(1, num))


def _mask_sets(masks: MaskInput, num_frames: int) -> list[tuple[str, np.ndarray, tuple[int, int, int]]]:
    if masks is None:
        return []
    if isinstance(masks, np.ndarray):
        masks = {"ground truth": masks}
    out = []
    for i, (label, stack) in enumerate(masks.items()):
        if stack.shape[0] != num_frames:
            raise ValueError(f"masks {label!r} have {stack.shape[0]} frames, the video has {num_frames}")
        out.append((label, stack, GT_COLOR if len(masks) == 1 else object_color(i)))
    return out


def montage_frames(
    frames: np.ndarray,
    masks: MaskInput = None,
    boxes: Mapping[str, BoxTrack] | None = None,
    track: BoxTrack | None = None,
    indices: Sequence[int] | None = None,
    num: int = 8,
    alpha: float = 0.45,
) -> list[np.ndarray]:
    """The composed images of the sampled frames (what :func:`montage` lays out)."""
    if frames.ndim != 4:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    indices = sample_indices(len(frames), num) if indices is None else list(indices)
    sets = _mask_sets(masks, len(frames))
    images = []
    for t in indices:
        layers = [MaskLayer(stack[t], color, label) for label, stack, color in sets]
        box_layers = [
            BoxLayer(track_[t], BOX_COLOR if len(boxes) == 1 else object_color(i), label)
            for i, (label, track_) in enumerate((boxes or {}).items())
            if track_[t] is not None
        ]
        track_layer = TrackLayer(track, t, crop_inset=False) if track is not None else None
        images.append(compose(frames[t], layers, box_layers, track_layer, alpha))
    return images


def montage_image(
    frames: np.ndarray,
    masks: MaskInput = None,
    indices: Sequence[int] | None = None,
    num: int = 8,
    cols: int | None = None,
    alpha: float = 0.45,
    gap: int = 2,
) -> np.ndarray:
    """The sampled, composed frames tiled into one RGB array (rows of ``cols``), e.g. to save as a PNG."""
    images = montage_frames(frames, masks, indices=indices, num=num, alpha=alpha)
    if not images:
        raise ValueError("no frames to tile")
    cols = cols or len(images)
    rows = -(-len(images) // cols)
    h, w = images[0].shape[:2]
    canvas = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), 255, np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        canvas[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = image
    return canvas


def montage(
    frames: np.ndarray,
    masks: MaskInput = None,
    boxes: Mapping[str, BoxTrack] | None = None,
    track: BoxTrack | None = None,
    indices: Sequence[int] | None = None,
    num: int = 8,
    cols: int | None = None,
    alpha: float = 0.45,
    title: str = "",
    text: str = "",
    frame_names: Sequence[str] | None = None,
    panel_width: float = 2.0,
):
    """A Figure of sampled frames across time with masks, boxes and a TSF track drawn over them.

    ``masks`` is one (T, H, W) stack (drawn as ground truth) or a mapping label -> stack (one colour each);
    ``boxes`` maps a label to per-frame boxes; ``track`` is a TSF track (per-frame boxes). Each panel is titled
    with its frame position (or name); the expression ``text`` and ``title`` head the figure.
    """
    from matplotlib.patches import Patch

    indices = sample_indices(len(frames), num) if indices is None else list(indices)
    images = montage_frames(frames, masks, boxes, track, indices, alpha=alpha)
    cols = cols or min(len(images), 8)
    rows = max(1, -(-len(images) // cols))
    h, w = frames.shape[1:3]
    fig = new_figure(panel_width * cols, panel_width * h / w * rows + 0.5 + (0.3 if text else 0))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, t, image in zip(axes.flat, indices, images):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(f"frame {frame_names[t]}" if frame_names is not None else f"t={t}", fontsize="small")
    heading = "\n".join(s for s in (title, f"“{text}”" if text else "") if s)
    if heading:
        fig.suptitle(heading, fontsize="medium")
    handles = [
        Patch(color=np.asarray(color) / 255.0, label=label) for label, _, color in _mask_sets(masks, len(frames))
    ]
    if track is not None:
        from sparrow.viz.overlay import TRACK_COLOR

        handles.append(Patch(color=np.asarray(TRACK_COLOR) / 255.0, label="TSF track"))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize="small")
    return fig
