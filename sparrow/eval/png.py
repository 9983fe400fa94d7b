"""Mask PNGs as the official evaluators read and write them.

- DAVIS reads annotations and results with ``np.array(Image.open(path))``: the raw palette indices (index PNGs),
  255 being void in annotations.
- MeViS reads predictions with ``cv2.imread(path, cv2.IMREAD_GRAYSCALE)``: any non-zero luminance is foreground, so
  predictions are written as single-channel 0/255 PNGs.

Readers raise :class:`sparrow.storage.DataError` naming the file (and, through ``what``, the sequence and frame).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from sparrow.storage import DataError, atomic_write_bytes


def davis_palette() -> list[int]:
    """The DAVIS / PASCAL VOC colour map: index i gets the bits of i spread over R, G, B from the top bit down."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def read_index_png(path: str | Path, what: str) -> np.ndarray:
    """Raw indices of a single-channel PNG (palette ``P``, ``L`` or 16-bit), as the DAVIS toolkit reads them."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what}: missing file {path}")
    try:
        with Image.open(path) as img:
            arr = np.array(img)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"{what}: cannot read {path} ({exc})") from exc
    if arr.ndim != 2:
        raise DataError(f"{what}: {path} has shape {arr.shape}; masks must be single-channel index (palette) PNGs")
    return arr


def read_gray_png(path: str | Path, what: str) -> np.ndarray:
    """``cv2.IMREAD_GRAYSCALE`` as MeViS reads predictions (a palette PNG is read as luminance)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what}: missing file {path}")
    arr = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if arr is None:
        raise DataError(f"{what}: cannot read {path} (not a readable image)")
    return arr


def _encode_png(arr: np.ndarray, palette: list[int] | None) -> bytes:
    import io

    from PIL import Image

    img = Image.fromarray(arr)  # 2-D uint8: mode "L"
    if palette is not None:
        img.putpalette(palette)  # "L" becomes "P", the values kept as indices
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def write_index_png(path: str | Path, labels: np.ndarray) -> None:
    """A palette PNG of uint8 labels (0 background, k = object k) with the DAVIS colour map."""
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.dtype != np.uint8:
        raise ValueError(f"labels must be a 2-D uint8 array, got {labels.dtype} {labels.shape}")
    atomic_write_bytes(path, _encode_png(labels, davis_palette()))


def write_binary_png(path: str | Path, mask: np.ndarray) -> None:
    """A single-channel 0/255 PNG of a mask (non-zero = foreground), the MeViS / Ref-YouTube-VOS server format."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    atomic_write_bytes(path, _encode_png(np.where(mask != 0, 255, 0).astype(np.uint8), None))
