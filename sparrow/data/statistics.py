"""Statistics of a curated dataset: the per-source table and the distributions notebook 01 plots.

The paper's curated set is described by three numbers (abstract and project page): 30,646 videos, 45,231 Q&A pairs,
7 sources. :data:`PAPER_CURATED` keeps them with their source so that a ``paper``-profile curation can be set beside
them (:func:`paper_comparison`). :func:`hard_case_table` counts SPARROW-Mini's hard cases per source from the
generator's manifest; :meth:`CurationStatistics.phrases_table` summarises the grounded captions' phrases per
source; :func:`example_expressions` and :func:`hard_case_figure_examples` pick what notebook 01
shows; :func:`recorded_numbers` lists every number it records.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sparrow.data.curated import CuratedDataset
from sparrow.data.records import EXPRESSION_KINDS, ExpressionRecord
from sparrow.data.rle import rle_area
from sparrow.storage import DataError, read_json

if TYPE_CHECKING:
    import pandas as pd

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
    # Expressions of splits released without ground truth (e.g. Ref-YouTube-VOS test): their ``object_ids == []``
    # means "unknown", so they are counted here and kept out of ``objects_per_expression``.
    referents_unknown: dict[str, int] = field(default_factory=dict)
    # Grounded captions per source: the number of ids of each phrase, one list per caption.
    phrase_ids: dict[str, list[list[int]]] = field(default_factory=dict)

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

    def kinds_table(self):
        """Expressions per kind (referring, reasoning, caption, declarative, interrogative) and source, with a
        total row, as a pandas DataFrame."""
        import pandas as pd

        kinds = [k for k in EXPRESSION_KINDS if any(k in row for row in self.expression_kinds.values())]
        frame = pd.DataFrame.from_dict(self.expression_kinds, orient="index").reindex(columns=kinds)
        frame = frame.sort_index().fillna(0)
        frame.loc["total"] = frame.sum(numeric_only=True)
        return frame.astype(int)

    def phrases_table(self):
        """Grounded captions per source (and in total): captions, phrases, phrases per caption, multi-id phrases
        (one phrase naming several objects, their union) and objects per phrase, as a pandas DataFrame (no rows
        when no source has grounded captions)."""
        import pandas as pd

        def row(captions: list[list[int]]) -> dict[str, float]:
            sizes = [n for caption in captions for n in caption]
            return {
                "captions": len(captions),
                "phrases": len(sizes),
                "phrases_per_caption": len(sizes) / len(captions) if captions else 0.0,
                "multi_id_phrases": sum(n > 1 for n in sizes),
                "objects_per_phrase": sum(sizes) / len(sizes) if sizes else 0.0,
            }

        rows = {source: row(captions) for source, captions in sorted(self.phrase_ids.items())}
        if rows:
            rows["total"] = row([c for captions in self.phrase_ids.values() for c in captions])
        else:
            return pd.DataFrame(columns=list(row([])))
        frame = pd.DataFrame.from_dict(rows, orient="index")
        return frame.astype({"captions": int, "phrases": int, "multi_id_phrases": int})

    def distribution_summary(self) -> dict[str, dict[str, float]]:
        """:func:`summarise` of each distribution pooled over the sources (the numbers beside the plots)."""
        pooled = {
            "frames_per_video": self.frames_per_video,
            "objects_per_expression": self.objects_per_expression,
            "mask_area_fraction": self.mask_area_fraction,
        }
        return {
            name: summarise([v for values in per_source.values() for v in values])
            for name, per_source in pooled.items()
        }


def compute_statistics(dataset: CuratedDataset | str) -> CurationStatistics:
    """One streaming pass over the curated records; masks are measured on their RLE without decoding."""
    ds = dataset if isinstance(dataset, CuratedDataset) else CuratedDataset(dataset)
    stats = CurationStatistics()
    no_truth = _splits_without_ground_truth(ds.meta)
    split_of: dict[str, str] = {}
    rows: dict[str, Counter] = defaultdict(Counter)
    source_of: dict[str, str] = {}
    pixels: dict[str, int] = {}
    for video in ds.iter_videos():
        source_of[video.video_id] = video.source
        split_of[video.video_id] = video.split
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
        if (source, split_of[exp.video_id]) in no_truth:
            stats.referents_unknown[source] = stats.referents_unknown.get(source, 0) + 1
        else:
            stats.objects_per_expression.setdefault(source, []).append(len(exp.object_ids))
        stats.expression_kinds.setdefault(source, Counter())[exp.kind] += 1
        if exp.phrases:
            stats.phrase_ids.setdefault(source, []).append([len(ids) for _, ids in exp.phrase_list()])
    for qa in ds.iter_qa():
        rows[source_of[qa.video_id]]["qa_pairs"] += 1
    base = ("videos", "expressions", "qa_pairs", "objects", "masks", "frames")
    for source, counter in sorted(rows.items()):
        split_keys = sorted(k for k in counter if k.startswith("videos_"))
        stats.per_source[source] = {k: int(counter[k]) for k in base + tuple(split_keys)}
    stats.expression_kinds = {s: dict(c) for s, c in stats.expression_kinds.items()}
    return stats


def _splits_without_ground_truth(meta: dict) -> set[tuple[str, str]]:
    """(source, split) pairs that ``meta.json`` marks as released without masks or boxes."""
    sources = meta.get("sources") if isinstance(meta, dict) else None
    if not isinstance(sources, dict):
        return set()
    return {
        (name, split)
        for name, entry in sources.items()
        if isinstance(entry, dict)
        for split, known in (entry.get("ground_truth") or {}).items()
        if known is False
    }


def summarise(values: list[float]) -> dict[str, float]:
    """Mean, median, min and max of a distribution, for recording next to a histogram."""
    if not values:
        return {"mean": 0.0, "median": 0.0, "min": 0.0, "max": 0.0}
    arr = np.asarray(values, dtype=float)
    return {
        "mean": float(arr.mean()),
        "median": float(np.median(arr)),
        "min": float(arr.min()),
        "max": float(arr.max()),
    }


def paper_comparison(stats: CurationStatistics, real_data: bool):
    """The paper's three headline numbers beside this curation's, as a DataFrame (one row per quantity).

    ``real_data`` says whether the curated sources are the real releases; for SPARROW-Mini the ``data`` column
    says plainly that the numbers are not comparable.
    """
    import pandas as pd

    totals = stats.totals
    data = "real releases" if real_data else "SPARROW-Mini (synthetic, not the paper's data)"
    rows = {
        name: {"paper": value, "this run": totals[name], "data": data, "paper source": source}
        for name, (value, source) in PAPER_CURATED.items()
    }
    return pd.DataFrame.from_dict(rows, orient="index")


def hard_case_table(generated_root: str | Path):
    """Videos per hard case and source of a SPARROW-Mini generation (from its ``manifest.json``), as a
    DataFrame with a ``videos`` column (all videos of the source) and a total row."""
    import pandas as pd

    path = Path(generated_root) / "manifest.json"
    if not path.is_file():
        raise DataError(f"{path}: no SPARROW-Mini manifest (hard cases are known only for generated data)")
    manifest = read_json(path)
    cases = list(manifest.get("hard_cases") or {})
    videos = manifest.get("videos")
    if not cases or not isinstance(videos, dict):
        raise DataError(f"{path}: lacks the 'hard_cases' and per-source 'videos' entries of a SPARROW-Mini manifest")
    rows = {}
    for source, records in sorted(videos.items()):
        counts = Counter(tag for record in records for tag in set(record.get("tags", ())))
        rows[source] = {"videos": len(records), **{case: counts.get(case, 0) for case in cases}}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.loc["total"] = frame.sum(numeric_only=True)
    return frame.astype(int)


def example_expressions(dataset: CuratedDataset | str, per_source: int = 1, seed: int = 0) -> list[ExpressionRecord]:
    """``per_source`` expressions of every source, drawn with ``seed`` among those with known, non-empty referents
    (sources in name order), for a montage of the curated set."""
    ds = dataset if isinstance(dataset, CuratedDataset) else CuratedDataset(dataset)
    no_truth = _splits_without_ground_truth(ds.meta)
    # Only (source, split) per video, not the records with their frame lists, so that memory stays small.
    where = {v.video_id: (v.source, v.split) for v in ds.iter_videos()}
    eligible: dict[str, list[ExpressionRecord]] = defaultdict(list)
    for exp in ds.iter_expressions():
        if exp.object_ids and where[exp.video_id] not in no_truth:
            eligible[where[exp.video_id][0]].append(exp)
    rng = np.random.default_rng(seed)
    picked = []
    for source in sorted(eligible):
        pool = eligible[source]
        take = rng.choice(len(pool), size=min(per_source, len(pool)), replace=False)
        picked.extend(pool[int(i)] for i in sorted(take))
    return picked


def hard_case_figure_examples(profile: str, seed: int) -> list[dict]:
    """:func:`sparrow.data.synthetic.hard_case_examples` at the SPARROW-Mini size of ``profile``: SPARROW-Mini has
    no ``paper`` size, so ``paper`` draws its examples at ``mini`` size."""
    from sparrow.data.synthetic import hard_case_examples
    from sparrow.profiles import check_profile

    return hard_case_examples("smoke" if check_profile(profile) == "smoke" else "mini", seed)


def recorded_numbers(
    stats: CurationStatistics,
    report: Mapping[str, Any],
    profile: str,
    real_data: bool,
    hard_cases: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """Every number notebook 01 records, as keyword arguments of :meth:`sparrow.results.Recorder.add`.

    ``report`` is the curation report (``CuratedDataset.report``), ``hard_cases`` the :func:`hard_case_table` of
    a SPARROW-Mini generation (None for real releases). The paper's headline values sit beside the totals only
    when ``real_data`` says that the real releases were curated; otherwise the note says why they are not
    comparable.
    """
    out: list[dict[str, Any]] = []
    totals = stats.totals
    for name, (paper, quote) in PAPER_CURATED.items():
        if real_data:
            out.append(
                {
                    "name": name,
                    "value": totals[name],
                    "unit": "count",
                    "paper": paper,
                    "paper_source": "SPARROW paper, curated dataset statistics",
                    "note": quote,
                }
            )
        else:
            out.append(
                {
                    "name": name,
                    "value": totals[name],
                    "unit": "count",
                    "note": f"SPARROW-Mini ({profile}) is not the paper's data (paper: {paper:,})",
                }
            )
    out += _frame_numbers(stats.table(), "count", "table")
    out += _frame_numbers(stats.kinds_table(), "expressions", "kinds")
    out += _plain_numbers(report["totals"], "items", "report/")
    out += _plain_numbers(stats.referents_unknown, "expressions", "referents_unknown/")
    if stats.phrase_ids:  # only where grounded captions were curated
        # row by row as dicts: iterrows() would turn the count columns into floats beside the ratio columns
        for source, row in stats.phrases_table().to_dict(orient="index").items():
            out += _plain_numbers(row, "", f"phrases/{source}/")
    for name, summary in stats.distribution_summary().items():
        out += _plain_numbers(summary, "", f"distribution/{name}/")
    if hard_cases is not None:
        out += _frame_numbers(hard_cases, "videos", "hard_cases")
    return out


def _frame_numbers(frame: pd.DataFrame, unit: str, prefix: str) -> list[dict[str, Any]]:
    """One number per cell of a per-source DataFrame, named ``<prefix>/<row>/<column>``."""
    return [
        number
        for row, values in frame.iterrows()
        for number in _plain_numbers(values.to_dict(), unit, f"{prefix}/{row}/")
    ]


def _plain_numbers(values: Mapping[str, Any], unit: str, prefix: str) -> list[dict[str, Any]]:
    # numpy scalars become Python numbers, as the results JSON stores them
    return [
        {"name": f"{prefix}{key}", "value": value.item() if hasattr(value, "item") else value, "unit": unit}
        for key, value in values.items()
    ]
