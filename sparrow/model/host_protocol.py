"""Inference protocols: the frame sampling and query wording each host's own evaluation uses, by name
(``ModelConfig.protocol``, saved with every checkpoint and so recorded with its results).

- ``kit``: the smoke and mini presets' rule for every host (``linspace`` LLM frames padded by repetition; GLUS
  context frames at the segment centres; the phrase lower-cased, its trailing dot removed);
- ``unipixel``: :mod:`sparrow.model.unipixel_protocol` (its ``arange`` frame rule, no padding; its query rule);
- ``unipixel-native``: the same rules inside UniPixel's whole inference (its Qwen2.5-VL video input and SAM2 video
  tracking, :class:`sparrow.model.unipixel_protocol.NativeVideo`): converted UniPixel releases;
- ``glus``: :mod:`sparrow.model.glus_protocol` (the middle context clip, GLUS's phrase rule; GLUS's own per-frame
  video loop for a model without the dual prompt).

The peculiarities live in the host modules; this module only names them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sparrow.data.indices import linspace_truncated_padded
from sparrow.model import glus_protocol, unipixel_protocol
from sparrow.model.frames import segment_centres


def _kit_phrase(text: str) -> str:
    return text.strip().lower().rstrip(".")


@dataclass(frozen=True)
class Protocol:
    name: str
    llm_frames: Callable[[int, int], list[int]]  # (frames in the video, frames wanted) -> indices
    context_frames: Callable[[int, int], list[int]]  # GLUS's global context frames
    phrase: Callable[[str], str]  # the referring text as it enters the question template


PROTOCOLS: dict[str, Protocol] = {
    "kit": Protocol("kit", linspace_truncated_padded, segment_centres, _kit_phrase),
    "unipixel": Protocol("unipixel", unipixel_protocol.llm_frames, segment_centres, unipixel_protocol.query),
    "unipixel-native": Protocol(
        "unipixel-native", unipixel_protocol.llm_frames, segment_centres, unipixel_protocol.query
    ),
    "glus": Protocol("glus", linspace_truncated_padded, glus_protocol.context_frames, glus_protocol.glus_phrase),
}


def protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown inference protocol {name!r}; choose one of {', '.join(PROTOCOLS)}") from None
