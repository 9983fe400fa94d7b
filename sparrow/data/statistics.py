"""Statistics of a curated dataset: the per-source table and the distributions notebook 01 plots.

The paper's curated set is described by three numbers (abstract and project page): 30,646 videos, 45,231 Q&A pairs,
7 sources. :data:`PAPER_CURATED` keeps them with their source so that a ``paper``-profile curation can be set beside
them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from sparrow.data.curated import CuratedDataset
from sparrow.data.rle import rle_area

PAPER_CURATED = {
    "videos": (30646, "SPARROW abstract / project page: 'curated referential video dataset of 30,646 videos'"),
    "qa_pairs": (45231, "SPARROW abstract / project page: '45,231 Q&A pairs'"),
    "sources": (7, "SPARROW project page: 'harmonizing 7 diverse sources'"),
}


@dataclass
class CurationStatistics:
    """Counts per source plus the raw distributions behind the notebook's histograms."""

    per_source: dict[str, dict[str, int]] = field(default_factory=dict)
    frames_per_video: dict[str, list[int]] = field(default_factory=dict)
    objects_per_expression: dict[str, list[int]] = field(default_factory=dict)
    mask_area_fraction: dict[str, list[float]] = field(default_factory=dict)
    expression_kinds: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def totals(self) -> dict[str, int]:
        keys = ("videos", "expressions", "qa_pairs", "objects", "masks", "frames")
        return {k: sum(row[k] for row in self.per_source.values()) for k in keys} | {"sources": len(self.per_source)}

    def table(self):
        """Per-source counts as a pandas DataFrame (one row per source, plus a total row)."""
        import pandas as pd

        frame = pd.DataFrame.from_dict(self.per_source, orient="index").sort_index().fillna(0)
        frame.loc["total"] = frame.sum(numeric_only=True)
        return frame.astype(int)


def compute_statistics(dataset: CuratedDataset | str) -> CurationStatistics:
    """One streaming pass over the curated records; masks are measured on their RLE without decoding."""
    ds = dataset if isinstance(dataset, CuratedDataset) else CuratedDataset(dataset)
    stats = CurationStatistics()
    rows: dict[str, Counter] = defaultdict(Counter)
    source_of: dict[str, str] = {}
    pixels: dict[str, int] = {}
    for video in ds.iter_videos():
        source_of[video.video_id] = video.source
        pixels[video.video_id] = video.height * video.width
        rows[video.source]["videos"] += 1
        rows[video.source]["frames"] += video.num_frames
        rows[video.source][f"videos_{video.split}"] += 1
        stats.frames_per_video.setdefault(video.source, []).append(video.num_frames)
    for obj in ds.iter_objects():
        source = source_of[obj.video_id]
        rows[source]["objects"] += 1
        areas = stats.mask_area_fraction.setdefault(source, [])
        for rle in obj.masks:
            if rle is not None:
                rows[source]["masks"] += 1
                areas.append(rle_area(rle) / pixels[obj.video_id])
    for exp in ds.iter_expressions():
        source = source_of[exp.video_id]
        rows[source]["expressions"] += 1
        stats.objects_per_expression.setdefault(source, []).append(len(exp.object_ids))
        stats.expression_kinds.setdefault(source, Counter())[exp.kind] += 1
    for qa in ds.iter_qa():
        rows[source_of[qa.video_id]]["qa_pairs"] += 1
    base = ("videos", "expressions", "qa_pairs", "objects", "masks", "frames")
    for source, counter in sorted(rows.items()):
        split_keys = sorted(k for k in counter if k.startswith("videos_"))
        stats.per_source[source] = {k: int(counter[k]) for k in base + tuple(split_keys)}
    stats.expression_kinds = {s: dict(c) for s, c in stats.expression_kinds.items()}
    return stats


def summarise(values: list[float]) -> dict[str, float]:
    """Mean, median, min and max of a distribution, for recording next to a histogram."""
    if not values:
        return {"mean": 0.0, "median": 0.0, "min": 0.0, "max": 0.0}
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "median": float(np.median(arr)), "min": float(arr.min()), "max": float(arr.max())}
