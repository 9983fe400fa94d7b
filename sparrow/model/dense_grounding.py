"""Dense grounding: a referring text scored against every cell of every SAM2 frame, and the location it gives SAM2.

The real hosts start from components pretrained to ground words in pixels (CLIP's visual vocabulary, the hosts'
own referring/grounding pretraining, SA-1B for SAM2); the tiny mini components start from random weights, and a
tiny host trained for minutes draws the same mask whatever the text (docs/design.md §14). This module is the mini
stand-in for that grounding ability, kept apart from the host so that it can be pretrained once per curated dataset
(:mod:`sparrow.train.grounding_pretrain`) and shared by every host, variant and training seed.

- visual side: a small convolutional encoder over each SAM2 frame at ``input_size`` px, whose input channels carry
  what the generator's texts name: colour (RGB), motion (differences to the neighbouring frames at a few offsets),
  position (x, y) and time (the frame's place in the clip);
- text side: the words of the referring text (a word vocabulary of the curated texts), attention-pooled into one
  query;
- matching: the query modulates the cell features (FiLM: per-channel scale and shift) and a 1x1 head scores every
  cell, giving grounding logits (B, T, h, w) with h = w = ``input_size / 4``.

The location channel turns those logits into what the box-prompt-pretrained SAM2 follows: per frame, the extent of
each connected region of cells above ``threshold`` (:func:`location_boxes`), box prompts beside the ``[SEG]``
token (one box per region, so that a referent of several objects gets one box per object). It replaces the
single ``[SEG]`` state regressing a location, which a tiny LLM does not learn in minutes, by a dense matching that
does (as SPARROW's own ``[BOX]`` path scores a query against every proposal).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sparrow.model.config import GroundingSpec

PAD_WORD = 0  # word id of padding and of words outside the vocabulary


def text_words(text: str) -> list[str]:
    """Lower-case alphabetic words of ``text`` (the grounding vocabulary's unit)."""
    return re.findall(r"[a-z]+", text.lower())


def grounding_vocabulary(texts: Sequence[str]) -> tuple[str, ...]:
    """Every word of ``texts``, sorted (word id = position + 1; 0 is padding / unknown)."""
    return tuple(sorted({w for t in texts for w in text_words(t)}))


def _shift(x: torch.Tensor, k: int) -> torch.Tensor:
    """Frame ``t + k`` for every ``t`` of ``x`` (T, ...), clamped at the clip's ends."""
    index = (torch.arange(x.shape[0], device=x.device) + k).clamp(0, x.shape[0] - 1)
    return x[index]


def grounding_inputs(frames: torch.Tensor, spec: GroundingSpec) -> torch.Tensor:
    """(T, C, s, s) encoder input of one clip's frames (T, 3, H, W) in [0, 1]: RGB, motion, y, x, time."""
    x = F.interpolate(frames.float(), size=(spec.input_size, spec.input_size), mode="area")
    t, _, h, w = x.shape
    grey = x.mean(1, keepdim=True)
    first, *rest = spec.motion_offsets
    motion = [_shift(x, first) - _shift(x, -first)] + [_shift(grey, k) - _shift(grey, -k) for k in rest]
    ys = torch.linspace(-1, 1, h, device=x.device).view(1, 1, h, 1).expand(t, 1, h, w)
    xs = torch.linspace(-1, 1, w, device=x.device).view(1, 1, 1, w).expand(t, 1, h, w)
    tt = torch.linspace(-1, 1, t, device=x.device).view(t, 1, 1, 1).expand(t, 1, h, w)
    return torch.cat([x] + motion + [ys, xs, tt], 1)


def input_channels(spec: GroundingSpec) -> int:
    return 3 + 3 + (len(spec.motion_offsets) - 1) + 3


class DenseGrounding(nn.Module):
    """Grounding logits (B, T, h, w) of referring texts on SAM2 frames (module docstring)."""

    def __init__(self, spec: GroundingSpec):
        super().__init__()
        self.spec = spec
        self._ids = {w: i + 1 for i, w in enumerate(spec.vocabulary)}
        d = spec.dim
        self.encoder = nn.Sequential(
            nn.Conv2d(input_channels(spec), d // 2, 3, 2, 1),
            nn.GELU(),
            nn.Conv2d(d // 2, d, 3, 2, 1),
            nn.GELU(),
            nn.Conv2d(d, d, 3, 1, 1),
            nn.GELU(),
            nn.Conv2d(d, d, 3, 1, 2, dilation=2),
            nn.GELU(),
        )
        self.words = nn.Embedding(len(spec.vocabulary) + 1, d, padding_idx=PAD_WORD)
        self.word_weight = nn.Linear(d, 1)
        self.film = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 2 * d))
        self.head = nn.Sequential(nn.Conv2d(d, d, 1), nn.GELU(), nn.Conv2d(d, 1, 1))

    def word_ids(self, texts: Sequence[str]) -> torch.Tensor:
        """(B, max_words) word ids of ``texts`` (unknown words and padding: 0)."""
        n = self.spec.max_words
        rows = []
        for text in texts:
            ids = [self._ids.get(w, PAD_WORD) for w in text_words(text)][:n]
            rows.append(ids + [PAD_WORD] * (n - len(ids)))
        return torch.tensor(rows, dtype=torch.long, device=self.words.weight.device)

    def query(self, word_ids: torch.Tensor) -> torch.Tensor:
        """(B, 2 * dim) FiLM scale and shift of each text."""
        e = self.words(word_ids)
        weights = self.word_weight(e).squeeze(-1).masked_fill(word_ids == PAD_WORD, -1e4).softmax(-1)
        return self.film((weights.unsqueeze(-1) * e).sum(1))

    def forward(self, inputs: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """Logits (E, T, h, w) of E ``texts`` on one clip's ``inputs`` (T, C, s, s) from :func:`grounding_inputs`
        (the clip is encoded once, whatever the number of texts)."""
        features = self.encoder(inputs.to(self.words.weight.dtype))  # (T, d, h, w)
        scale, shift = self.query(self.word_ids(texts))[:, None, :, None, None].chunk(2, 2)  # (E, 1, d, 1, 1)
        fused = F.gelu(features.unsqueeze(0) * (1 + scale) + shift)
        e, t = fused.shape[:2]
        return self.head(fused.flatten(0, 1)).view(e, t, *features.shape[-2:])

    def ground(self, frames: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """Logits (E, T, h, w) of ``texts`` on one clip's ``frames`` (T, 3, H, W) in [0, 1]."""
        return self(grounding_inputs(frames, self.spec), texts)


def location_boxes(logits: torch.Tensor, threshold: float, max_boxes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame of ``logits`` (T, h, w): the normalised xyxy extents (T, K, 4) of the connected regions (8-connected)
    of cells whose probability exceeds ``threshold``, the ``max_boxes`` largest first, and which are real (T, K)
    (K = the most regions of a frame, at most ``max_boxes``; padding boxes are the whole frame, unused)."""
    from scipy import ndimage

    t, h, w = logits.shape
    on = (logits.detach().float().sigmoid() > threshold).cpu().numpy()
    per_frame = []
    for frame in on:
        labels, n = ndimage.label(frame, structure=np.ones((3, 3), dtype=bool))
        regions = ndimage.find_objects(labels)
        sizes = ndimage.sum_labels(frame, labels, range(1, n + 1)) if n else []
        order = sorted(range(n), key=lambda i: (-sizes[i], i))[:max_boxes]
        per_frame.append(
            [
                [regions[i][1].start / w, regions[i][0].start / h, regions[i][1].stop / w, regions[i][0].stop / h]
                for i in order
            ]
        )
    k = max(1, max(len(b) for b in per_frame))
    boxes = torch.tensor([0.0, 0.0, 1.0, 1.0]).repeat(t, k, 1)
    valid = torch.zeros(t, k, dtype=torch.bool)
    for i, frame_boxes in enumerate(per_frame):
        if frame_boxes:
            boxes[i, : len(frame_boxes)] = torch.tensor(frame_boxes)
            valid[i, : len(frame_boxes)] = True
    return boxes.to(logits.device), valid.to(logits.device)
