"""Shared pieces of the SPARROW-Mini writers: image encoders, the DAVIS palette, ids and the writer protocol.

Files are written with plain ``open``: a whole generation happens in a temporary folder that is renamed into
place at the end (see :func:`sparrow.data.synthetic.generate`), so no single file needs its own atomic rename.
Encoders are deterministic (PIL with fixed options), which is what makes the same seed give byte-identical trees.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from sparrow.data.synthetic.config import SynthConfig
from sparrow.data.synthetic.expressions import World
from sparrow.data.synthetic.scene import SceneRules


@lru_cache(maxsize=1)
def davis_palette() -> bytes:
    """The 256-colour palette of DAVIS / PASCAL VOC annotations (index 1 = dark red, 2 = dark green, ...)."""
    palette = bytearray()
    for index in range(256):
        r = g = b = 0
        value = index
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        palette += bytes((r, g, b))
    return bytes(palette)


def _png(image: Image.Image, compress_level: int = 6) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def jpeg_bytes(frame: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame, mode="RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def png_rgb_bytes(frame: np.ndarray) -> bytes:
    # The background grain makes zlib's higher levels slow for little gain on 128-px frames.
    return _png(Image.fromarray(frame, mode="RGB"), compress_level=1)


def png_binary_bytes(mask: np.ndarray) -> bytes:
    """Grayscale (mode L) 0/255 mask, the TSF / GCG convention."""
    return _png(Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L"))


def png_palette_bytes(indices: np.ndarray) -> bytes:
    """Palette (mode P) PNG whose raw pixel values are the object ids, the YouTube-VOS / DAVIS convention."""
    image = Image.fromarray(indices.astype(np.uint8), mode="P")
    image.putpalette(davis_palette())
    return _png(image)


def write_bytes(path: Path, data: bytes) -> None:
    # Folders are created on the first miss only: a mkdir per file doubles the system calls of a generation.
    try:
        handle = open(path, "wb")
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "wb")
    with handle:
        handle.write(data)


def write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    write_bytes(path, text.encode(encoding))


def write_json(path: Path, obj: Any, indent: int | None = None) -> None:
    text = json.dumps(obj, indent=indent, ensure_ascii=False, separators=None if indent else (",", ":"))
    write_text(path, text + "\n")


def hex_id(rng: np.random.Generator, length: int) -> str:
    return "".join("0123456789abcdef"[int(v)] for v in rng.integers(0, 16, size=length))


def digit_id(rng: np.random.Generator, length: int) -> str:
    return str(int(rng.integers(1, 10))) + "".join(str(int(v)) for v in rng.integers(0, 10, size=length - 1))


def unique(make, used: set[str]) -> str:
    """Draw ids with ``make()`` until one is new (collisions are rare; the loop keeps ids unique regardless)."""
    while True:
        value = make()
        if value not in used:
            used.add(value)
            return value


@dataclass
class Written:
    """What a writer reports for one video, for the manifest."""

    key: str
    split: str
    scenario: str
    tags: tuple[str, ...]
    expressions: int
    objects: int


@dataclass
class SplitCounts:
    videos: int = 0
    expressions: int = 0
    objects: int = 0
    frames: int = 0

    def add(self, expressions: int, objects: int, frames: int) -> None:
        self.videos += 1
        self.expressions += expressions
        self.objects += objects
        self.frames += frames


@dataclass
class SourceWriter:
    """Base of the per-format writers.

    The driver asks :meth:`plan` which (split, count) to generate, draws a scene for each with
    :attr:`scenarios` and :attr:`rules`, calls :meth:`annotate` (``None`` rejects the scene and the driver draws
    another) and then :meth:`write`. :meth:`finish` writes the split-level files (meta JSON).
    """

    out: Path
    cfg: SynthConfig
    counts: dict[str, SplitCounts] = field(default_factory=dict)

    name: ClassVar[str] = "source"
    root: ClassVar[str] = "source"
    scenarios: ClassVar[tuple[str, ...]] = ("free",)
    rules: ClassVar[SceneRules] = SceneRules()

    def __post_init__(self) -> None:
        """Per-writer state (subclasses extend)."""

    @property
    def base(self) -> Path:
        return self.out / self.root

    def plan(self) -> list[tuple[str, int]]:
        raise NotImplementedError

    def rules_for(self, split: str) -> SceneRules:
        return self.rules

    def scenarios_for(self, split: str) -> tuple[str, ...]:
        return self.scenarios

    def annotate(self, world: World, rng: np.random.Generator, split: str):
        raise NotImplementedError

    def write(self, split: str, index: int, world: World, annotation, rng: np.random.Generator) -> Written:
        raise NotImplementedError

    def finish(self) -> None:
        return None

    def count(self, split: str, expressions: int, objects: int, frames: int) -> None:
        self.counts.setdefault(split, SplitCounts()).add(expressions, objects, frames)
