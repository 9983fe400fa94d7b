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
the cells above ``threshold`` (:func:`location_boxes`), a box prompt beside the ``[SEG]`` token. It replaces the
single ``[SEG]`` state regressing a location, which a tiny LLM does not learn in minutes, by a dense matching that
does (as SPARROW's own ``[BOX]`` path scores a query against every proposal).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

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


def location_boxes(logits: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame of ``logits`` (T, h, w): the normalised xyxy extent (T, 4) of the cells whose probability exceeds
    ``threshold``, and whether the frame has any (T,) (a frame without one gets the whole frame, unused)."""
    t, h, w = logits.shape
    on = logits.detach().sigmoid() > threshold
    valid = on.flatten(1).any(1)
    rows, cols = on.any(2), on.any(1)  # (T, h), (T, w)
    ry = torch.arange(h, device=logits.device)
    rx = torch.arange(w, device=logits.device)
    big = max(h, w) + 1
    y0 = torch.where(rows, ry, big).min(1).values
    y1 = torch.where(rows, ry, -1).max(1).values + 1
    x0 = torch.where(cols, rx, big).min(1).values
    x1 = torch.where(cols, rx, -1).max(1).values + 1
    boxes = torch.stack([x0 / w, y0 / h, x1 / w, y1 / h], 1).float()
    whole = torch.tensor([0.0, 0.0, 1.0, 1.0], device=logits.device)
    return torch.where(valid[:, None], boxes, whole), valid
