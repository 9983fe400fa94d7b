"""UniPixel's own evaluation protocol (``unipixel/eval/infer_seg.py``, ``unipixel/utils/io.py``): how it samples the
LLM frames and words a referring query. Used when ``ModelConfig.protocol == "unipixel"`` (the paper preset and
converted UniPixel checkpoints); :mod:`sparrow.model.host_protocol` dispatches.
"""

from __future__ import annotations

import numpy as np

ARTICLES = ("the ", "an ", "a ")


def llm_frames(num_available: int, n: int) -> list[int]:
    """``arange(0, T, (T - 1) / (n - 1))[:n].round()`` when the video is longer than ``n``; else every frame (no
    padding: a short video gives the LLM fewer frames)."""
    if n <= 0 or num_available <= n:
        return list(range(num_available))
    if n == 1:
        return [0]
    step = (num_available - 1) / (n - 1)
    return np.arange(0, num_available, step)[:n].round().astype(int).tolist()


def query(text: str) -> str:
    """The query as UniPixel words it: dots stripped at both ends, the first letter lower-cased, then each leading
    article of ``the ``/``an ``/``a `` removed in that order (the template already says "the")."""
    q = text.strip(".")
    if q:
        q = q[0].lower() + q[1:]
    for article in ARTICLES:
        if q.startswith(article):
            q = q[len(article) :]
    return q
