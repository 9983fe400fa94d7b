"""The curated dataset's records: the contract between curation and everything that reads it.

A curated dataset is a folder of JSON Lines files (``videos.jsonl``, ``objects.jsonl``, ``expressions.jsonl``,
``qa.jsonl``) plus ``meta.json`` and ``report.json``. Conventions fixed here, once:

- ``video_id`` is ``"<source>/<id>"``; ``object_id`` is always a str.
- ``frame_paths`` are relative to the curated folder (``os.path.relpath``), so a curated set and the sources it
  points at can move together; :meth:`sparrow.data.curated.CuratedDataset.frame_path` resolves them.
- masks are COCO RLE dicts with ``counts`` as str, or None where the object is absent;
- boxes are ``[x0, y0, x1, y1]`` in pixels with an **exclusive** max (``x1 = max column + 1``), or None;
- ``frame_span`` is ``[start, end)`` in frame positions, or None for the whole video;
- a grounded caption (kind ``caption``) is plain text whose ``phrases`` are character spans
  ``{"start", "end", "object_ids"}`` (``text[start:end]`` is the phrase, ``[start, end)``, in text order, not
  overlapping); a phrase with several ids refers to their union. Every other expression has ``phrases`` None.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

EXPRESSION_KINDS = ("referring", "reasoning", "caption", "declarative", "interrogative")
SPLITS = ("train", "valid", "valid_u", "val", "test")


def submission_names(video_id: str, expression_id: str) -> tuple[str, str]:
    """(video, expression) as the source dataset names them: the folder names of the evaluation servers' layout
    ``<video>/<expression>/`` (``"mevis/abc"``, ``"mevis/abc/3"`` -> ``("abc", "3")``)."""
    video = video_id.split("/", 1)[1] if "/" in video_id else video_id
    if expression_id.startswith(video_id + "/"):
        exp = expression_id[len(video_id) + 1 :]
    else:
        exp = expression_id.rsplit("/", 1)[-1]
    return video, exp


def _from_dict(cls, row: dict[str, Any]):
    names = {f.name for f in fields(cls)}
    missing = [n for n in names if n not in row and not _has_default(cls, n)]
    if missing:
        raise KeyError(f"{cls.__name__} record lacks {', '.join(sorted(missing))}")
    return cls(**{k: v for k, v in row.items() if k in names})


def _has_default(cls, name: str) -> bool:
    from dataclasses import MISSING

    f = next(f for f in fields(cls) if f.name == name)
    return f.default is not MISSING or f.default_factory is not MISSING


@dataclass
class VideoRecord:
    video_id: str
    source: str
    split: str
    frame_paths: list[str]
    frame_names: list[str]
    height: int
    width: int
    fps: float

    @property
    def num_frames(self) -> int:
        return len(self.frame_paths)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> VideoRecord:
        return _from_dict(cls, row)


@dataclass
class ObjectRecord:
    video_id: str
    object_id: str
    category: str
    masks: list[dict | None]
    boxes: list[list[float] | None]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> ObjectRecord:
        return _from_dict(cls, row)


@dataclass
class ExpressionRecord:
    expression_id: str
    video_id: str
    text: str
    object_ids: list[str]
    kind: str
    frame_span: list[int] | None = None
    phrases: list[dict[str, Any]] | None = None

    def phrase_list(self) -> list[tuple[str, list[str]]]:
        """(phrase text, object ids) of each span of a grounded caption, in text order ([] for other kinds)."""
        return [(self.text[p["start"] : p["end"]], list(p["object_ids"])) for p in self.phrases or []]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> ExpressionRecord:
        return _from_dict(cls, row)


@dataclass
class QARecord:
    qa_id: str
    video_id: str
    question: str
    answer: str
    object_ids: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> QARecord:
        return _from_dict(cls, row)
