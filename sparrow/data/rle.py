"""COCO run-length encoding through pycocotools, for every variant the sources use.

Variants (docs/data-formats.md §2.1): compressed ``counts`` as str (JSON) or bytes (pickles), uncompressed ``counts`` as a
list of ints (some BURST / YTVIS-GCG entries), and a list of RLEs per frame (ReVOS, SA-V), reduced by OR.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """Encode one (H, W) mask (any non-zero pixel is foreground) as COCO RLE with ``counts`` as str."""
    if mask.ndim != 2:
        raise ValueError(f"encode_rle expects an (H, W) mask, got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(bool).astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def _normalise(rle: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(rle, dict) or "counts" not in rle or "size" not in rle:
        raise ValueError(f"not a COCO RLE dict: {str(rle)[:80]}")
    height, width = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        if sum(counts) != height * width:
            raise ValueError(f"uncompressed RLE covers {sum(counts)} pixels, size says {height}x{width}")
        return mask_utils.frPyObjects(rle, height, width)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    if not isinstance(counts, (bytes, bytearray)):
        raise ValueError(f"RLE counts of type {type(counts).__name__}")
    return {"size": [height, width], "counts": bytes(counts)}


def decode_rle(rle: dict[str, Any] | list[dict[str, Any]] | None, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Decode any RLE variant to an (H, W) bool mask; ``None`` is an absent object (needs ``shape``).

    A list of RLEs (several objects on one frame) is reduced by logical OR. When ``shape`` is given, an RLE of
    another size raises ValueError.
    """
    if rle is None:
        if shape is None:
            raise ValueError("decode_rle(None) needs the frame shape")
        return np.zeros(shape, dtype=bool)
    if isinstance(rle, list):
        if not rle:
            if shape is None:
                raise ValueError("decode_rle([]) needs the frame shape")
            return np.zeros(shape, dtype=bool)
        out = None
        for item in rle:
            part = decode_rle(item, shape)
            out = part if out is None else (out | part)
        return out
    norm = _normalise(rle)
    size = tuple(int(v) for v in norm["size"])
    if shape is not None and size != tuple(shape):
        raise ValueError(f"RLE of size {size[0]}x{size[1]} for a {shape[0]}x{shape[1]} frame")
    try:
        decoded = mask_utils.decode(norm)
    except Exception as exc:  # pycocotools raises bare Exceptions on corrupt strings
        raise ValueError(f"corrupt RLE counts ({exc})") from exc
    if decoded.shape[:2] != size:
        raise ValueError(f"RLE decodes to {decoded.shape[:2]}, size says {size}")
    return decoded.astype(bool)


def rle_area(rle: dict[str, Any]) -> int:
    return int(mask_utils.area(_normalise(rle)))
