"""Loaders for the referential video releases, one module per on-disk format.

``REGISTRY`` maps each source NAME of ``sparrow curate --source NAME=ROOT`` to its :class:`SourceSpec`:
``mevis``, ``ref-youtube-vos``, ``ref-davis17``, ``revos``, ``tracking``, ``vidstg``, ``hcstvg``, ``videogcg``.
Every loader streams :class:`VideoBundle` objects (see :mod:`sparrow.data.sources.base`).
"""

from sparrow.data.sources import (  # noqa: F401  (importing a loader module registers it)
    hcstvg,
    mevis,
    ref_davis17,
    ref_youtube_vos,
    revos,
    tracking,
    videogcg,
    vidstg,
)
from sparrow.data.sources.base import (
    REGISTRY,
    FrameExtraction,
    ItemError,
    LoadContext,
    Provenance,
    SourceSpec,
    VideoBundle,
    get_source,
)

SOURCE_NAMES = tuple(REGISTRY)

__all__ = [
    "REGISTRY",
    "SOURCE_NAMES",
    "FrameExtraction",
    "ItemError",
    "LoadContext",
    "Provenance",
    "SourceSpec",
    "VideoBundle",
    "get_source",
]
