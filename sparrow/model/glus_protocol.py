"""GLUS's own evaluation protocol (``inference_iter.py``): which frames are its global context. Used when
``ModelConfig.protocol == "glus"`` (the paper preset and converted GLUS checkpoints); :mod:`sparrow.model.host_protocol`
dispatches.
"""

from __future__ import annotations

import math

import numpy as np


def context_clips(num_available: int, n: int) -> list[list[int]]:
    """Every candidate context clip: the video cut at ``linspace(0, T, n + 1)`` (int), clip i taking
    ``min(cut_j + i, cut_{j+1} - 1)`` from each of the n parts."""
    cuts = np.linspace(0, num_available, n + 1, dtype=int)
    return [[int(min(cuts[j] + i, cuts[j + 1] - 1)) for j in range(n)] for i in range(math.ceil(num_available / n))]


def context_frames(num_available: int, n: int) -> list[int]:
    """The middle clip (``len // 2``), the one fixed set of context frames GLUS uses for the whole video."""
    clips = context_clips(num_available, n)
    return clips[len(clips) // 2]
