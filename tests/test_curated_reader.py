"""The curated-record contract: RLE variants, the reader, and the statistics notebook 01 reports."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sparrow.data.boxes import mask_to_box
from sparrow.data.curated import CuratedDataset
from sparrow.data.records import ExpressionRecord, ObjectRecord, QARecord, VideoRecord
from sparrow.data.rle import decode_rle, encode_rle, rle_area
from sparrow.data.statistics import compute_statistics
from sparrow.storage import DataError, atomic_write_json, write_jsonl


def _mask(h: int, w: int, box: tuple[int, int, int, int]) -> np.ndarray:
    m = np.zeros((h, w), bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = True
    return m


def test_rle_variants_decode_to_the_same_mask() -> None:
    m = _mask(7, 9, (2, 1, 5, 6))
    compressed = encode_rle(m)
    assert isinstance(compressed["counts"], str)
    as_bytes = {"size": compressed["size"], "counts": compressed["counts"].encode()}
    # Uncompressed counts: column-major run lengths starting with background.
    flat = m.flatten(order="F").astype(int)
    runs, current, length = [], 0, 0
    for v in flat:
        if v == current:
            length += 1
        else:
            runs.append(length)
            current, length = v, 1
    runs.append(length)
    uncompressed = {"size": [7, 9], "counts": runs}
    for variant in (compressed, as_bytes, uncompressed):
        assert np.array_equal(decode_rle(variant), m)
    other = _mask(7, 9, (0, 0, 1, 1))
    assert np.array_equal(decode_rle([compressed, encode_rle(other)]), m | other)
    assert not decode_rle(None, (7, 9)).any()
    assert rle_area(compressed) == m.sum()


def test_rle_errors_are_clear() -> None:
    rle = encode_rle(_mask(4, 4, (0, 0, 2, 2)))
    with pytest.raises(ValueError, match="RLE of size 4x4 for a 5x4 frame"):
        decode_rle(rle, (5, 4))
    with pytest.raises(ValueError, match="covers 3 pixels"):
        decode_rle({"size": [2, 2], "counts": [1, 2]})
    with pytest.raises(ValueError, match="needs the frame shape"):
        decode_rle(None)


def test_mask_to_box_uses_an_exclusive_max() -> None:
    assert mask_to_box(_mask(10, 10, (2, 3, 5, 9))) == [2.0, 3.0, 5.0, 9.0]
    assert mask_to_box(np.zeros((4, 4), bool)) is None
    one = np.zeros((4, 4), bool)
    one[3, 3] = True
    assert mask_to_box(one) == [3.0, 3.0, 4.0, 4.0]


def build_tiny_curated(root: Path) -> Path:
    """Two sources, three videos; one multi-object expression; one absent-object frame."""
    frames_dir = root / "frames"
    videos, objects, expressions, qa = [], [], [], []
    for source, vid, n in (("mevis", "aaaaaaaaaaaa", 3), ("mevis", "bbbbbbbbbbbb", 2), ("tracking", "seq1", 4)):
        video_id = f"{source}/{vid}"
        paths = []
        for t in range(n):
            p = frames_dir / source / vid / f"{t:05d}.jpg"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((6, 8, 3), 40 * t, np.uint8)).save(p)
            paths.append(str(p.relative_to(root)))
        videos.append(VideoRecord(video_id, source, "train", paths, [f"{t:05d}" for t in range(n)], 6, 8, 6.0))
        for k, box in enumerate([(0, 0, 2, 2), (4, 2, 8, 6)], start=1):
            masks = [encode_rle(_mask(6, 8, box)) for _ in range(n)]
            if k == 2:
                masks[0] = None
            objects.append(
                ObjectRecord(
                    video_id,
                    str(k),
                    "square",
                    masks,
                    [None if m is None else mask_to_box(decode_rle(m)) for m in masks],
                )
            )
        expressions.append(ExpressionRecord(f"{video_id}/0", video_id, "both squares", ["1", "2"], "referring"))
        expressions.append(ExpressionRecord(f"{video_id}/1", video_id, "the right square", ["2"], "referring"))
        qa.append(
            QARecord(
                f"{video_id}/qa0",
                video_id,
                "Can you segment the right square in this video?",
                "Sure, [BOX] [SEG].",
                ["2"],
            )
        )
    write_jsonl(root / "videos.jsonl", (v.to_json() for v in videos))
    write_jsonl(root / "objects.jsonl", (o.to_json() for o in objects))
    write_jsonl(root / "expressions.jsonl", (e.to_json() for e in expressions))
    write_jsonl(root / "qa.jsonl", (q.to_json() for q in qa))
    atomic_write_json(root / "meta.json", {"sources": ["mevis", "tracking"]})
    return root


def test_reader_resolves_frames_and_unions_referents(tmp_path: Path) -> None:
    ds = CuratedDataset(build_tiny_curated(tmp_path / "cur"))
    assert ds.sources() == ["mevis", "tracking"]
    frames = ds.load_frames("tracking/seq1")
    assert frames.shape == (4, 6, 8, 3) and frames[2].max() in (79, 80, 81)
    exp = ds.expressions("mevis/aaaaaaaaaaaa")[0]
    union = ds.expression_masks(exp)
    assert union.shape == (3, 6, 8)
    assert union[0].sum() == 4 and union[1].sum() == 4 + 16
    with pytest.raises(KeyError, match="no video"):
        ds.video("mevis/zzz")


def test_reader_names_missing_files(tmp_path: Path) -> None:
    root = build_tiny_curated(tmp_path / "cur")
    (root / "qa.jsonl").unlink()
    with pytest.raises(DataError, match="missing qa.jsonl"):
        CuratedDataset(root)
    root = build_tiny_curated(tmp_path / "cur2")
    ds = CuratedDataset(root)
    victim = ds.frame_path(ds.video("mevis/bbbbbbbbbbbb"), 1)
    victim.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"00001\.jpg: cannot read frame 1 of mevis/bbbbbbbbbbbb"):
        ds.load_frames("mevis/bbbbbbbbbbbb")


def test_statistics_count_every_record(tmp_path: Path) -> None:
    stats = compute_statistics(build_tiny_curated(tmp_path / "cur"))
    assert stats.per_source["mevis"] == {
        "videos": 2,
        "expressions": 4,
        "qa_pairs": 2,
        "objects": 4,
        "masks": 8,
        "frames": 5,
        "videos_train": 2,
    }
    assert stats.totals == {
        "videos": 3,
        "expressions": 6,
        "qa_pairs": 3,
        "objects": 6,
        "masks": 15,
        "frames": 9,
        "sources": 2,
    }
    assert sorted(stats.objects_per_expression["tracking"]) == [1, 2]
    assert stats.frames_per_video["mevis"] == [3, 2]
    assert min(stats.mask_area_fraction["tracking"]) == pytest.approx(4 / 48)
    table = stats.table()
    assert table.loc["total", "videos"] == 3 and table.loc["tracking", "masks"] == 7


def _with_grounded_caption(root: Path) -> Path:
    """The tiny set plus a grounded caption on the tracking video: a two-id phrase and a one-id phrase."""
    from sparrow.data.sources.base import grounded_caption

    extra = grounded_caption("tracking/seq1", "2", "[both squares](1, 2) sit left of [the right square](2)")
    with open(root / "expressions.jsonl", "a") as handle:
        for exp in extra:
            handle.write(json.dumps(exp.to_json()) + "\n")
    return root


def test_reader_exposes_phrase_spans_and_their_masks(tmp_path: Path) -> None:
    from sparrow.data.qa_templates import marked_text

    ds = CuratedDataset(_with_grounded_caption(build_tiny_curated(tmp_path / "cur")))
    caption, *phrases = [e for e in ds.expressions("tracking/seq1") if e.expression_id.startswith("tracking/seq1/2")]
    assert caption.text == "both squares sit left of the right square"
    assert caption.phrases == [
        {"start": 0, "end": 12, "object_ids": ["1", "2"]},
        {"start": 25, "end": 41, "object_ids": ["2"]},
    ]
    assert marked_text(caption) == "[both squares](1, 2) sit left of [the right square](2)"
    assert [(p.expression_id, p.text, p.object_ids) for p in phrases] == [
        ("tracking/seq1/2/p0", "both squares", ["1", "2"]),
        ("tracking/seq1/2/p1", "the right square", ["2"]),
    ]
    both, right = ds.phrase_masks(caption)
    np.testing.assert_array_equal(both, ds.object_masks("tracking/seq1", "1") | ds.object_masks("tracking/seq1", "2"))
    np.testing.assert_array_equal(right, ds.object_masks("tracking/seq1", "2"))
    assert ds.expressions("tracking/seq1")[0].phrases is None  # other kinds have no spans


def test_unmark_collapses_whitespace_and_keeps_spans_on_the_kept_text() -> None:
    from sparrow.data.qa_templates import unmark

    text, phrases = unmark("  [ a  red car ](1)  passes\n[two trucks](2,3).")
    assert text == "a red car passes two trucks."
    assert [(text[p["start"] : p["end"]], p["object_ids"]) for p in phrases] == [
        ("a red car", ["1"]),
        ("two trucks", ["2", "3"]),
    ]


def test_phrase_spans_that_break_the_contract_are_named() -> None:
    from sparrow.data.curate import phrase_problem

    def caption(text: str, phrases, ids=("1", "2")) -> ExpressionRecord:
        return ExpressionRecord("s/v/0", "s/v", text, list(ids), "caption", None, phrases)

    good = [{"start": 0, "end": 5, "object_ids": ["1"]}, {"start": 10, "end": 15, "object_ids": ["1", "2"]}]
    assert phrase_problem(caption("a dog near a cat", good)) is None
    assert "markup" in phrase_problem(caption("[a dog](1) runs", None))
    assert "after the previous one" in phrase_problem(caption("a dog near a cat", good[::-1]))
    assert "not inside the text" in phrase_problem(caption("a dog", [{"start": 0, "end": 9, "object_ids": ["1"]}]))
    assert "not among the caption's referents" in phrase_problem(
        caption("a dog near a cat", [{"start": 0, "end": 5, "object_ids": ["7"]}])
    )
    referring = ExpressionRecord("s/v/1", "s/v", "a dog", ["1"], "referring", None, good[:1])
    assert "only captions have them" in phrase_problem(referring)


def test_phrase_statistics_per_source(tmp_path: Path) -> None:
    stats = compute_statistics(_with_grounded_caption(build_tiny_curated(tmp_path / "cur")))
    table = stats.phrases_table()
    assert list(table.index) == ["tracking", "total"]
    row = table.loc["tracking"]
    assert (row["captions"], row["phrases"], row["multi_id_phrases"]) == (1, 2, 1)
    assert row["phrases_per_caption"] == 2.0 and row["objects_per_phrase"] == 1.5
    assert stats.expression_kinds["tracking"] == {"referring": 4, "caption": 1}


def test_a_non_finite_box_is_named_by_the_reader(tmp_path: Path) -> None:
    root = build_tiny_curated(tmp_path / "cur")
    rows = [json.loads(line) for line in (root / "objects.jsonl").read_text().splitlines()]
    rows[4]["boxes"][2] = [1.0, float("nan"), 3.0, 4.0]
    (root / "objects.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"objects\.jsonl: video tracking/seq1 object 1 frame 2: box \[1\.0, nan"):
        CuratedDataset(root).objects("tracking/seq1")
