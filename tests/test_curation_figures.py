"""Notebook 01's building blocks: curated-set statistics, the paper comparison, hard-case counts, the example
picker, release curation that is reused, and the figures (statistics panels, curated montage, hard cases)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from sparrow.data.curate import ensure_curated_release
from sparrow.data.curated import CuratedDataset
from sparrow.data.records import ExpressionRecord, ObjectRecord, QARecord, VideoRecord
from sparrow.data.rle import encode_rle
from sparrow.data.statistics import (
    PAPER_CURATED,
    compute_statistics,
    example_expressions,
    hard_case_table,
    paper_comparison,
)
from sparrow.storage import DataError, atomic_write_json, write_jsonl
from sparrow.viz import GT_COLOR, curated_montage, hard_cases_figure, statistics_figure
from sparrow.viz.curation import (
    ABSENT_COLOR,
    GridRow,
    fit_mask,
    fit_width,
    grid_figure,
    key_frames,
    stacked_distribution,
)

H, W, T = 12, 16, 4


def _square(y0: int, x0: int, size: int = 4) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0 : y0 + size, x0 : x0 + size] = True
    return m


def _build(root: Path) -> Path:
    """Three sources: ``mevis`` (train with GT, valid_u released without it), ``vidstg`` (boxes only, a span),
    ``revos`` (one expression with an empty referent, as ReVOS has)."""
    videos, objects, expressions, qa = [], [], [], []
    layout = (("mevis", "m1", "train"), ("mevis", "m2", "valid_u"), ("vidstg", "v1", "train"), ("revos", "r1", "train"))
    for source, vid, split in layout:
        video_id = f"{source}/{vid}"
        paths = []
        for t in range(T):
            p = root / "frames" / source / vid / f"{t:05d}.png"
            p.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((H, W, 3), 200, np.uint8)).save(p)
            paths.append(str(p.relative_to(root)))
        videos.append(VideoRecord(video_id, source, split, paths, [f"{t:05d}" for t in range(T)], H, W, 6.0))
        for k, (y0, x0) in enumerate([(1, 1), (6, 10)], start=1):
            masks = [encode_rle(_square(y0, x0)) for _ in range(T)]
            boxes = [[x0, y0, x0 + 4, y0 + 4] for _ in range(T)]
            if source == "vidstg":
                masks = [None] * T
            objects.append(ObjectRecord(video_id, str(k), "square", masks, boxes))
        if split == "valid_u":
            expressions.append(ExpressionRecord(f"{video_id}/0", video_id, "the left square", [], "referring"))
        else:
            expressions.append(ExpressionRecord(f"{video_id}/0", video_id, "both squares", ["1", "2"], "referring"))
            expressions.append(
                ExpressionRecord(
                    f"{video_id}/1",
                    video_id,
                    "the right square",
                    ["2"],
                    "declarative" if source == "vidstg" else "referring",
                    [1, 3] if source == "vidstg" else None,
                )
            )
        if source == "revos":
            expressions.append(ExpressionRecord(f"{video_id}/2", video_id, "the triangle", [], "reasoning"))
        qa.append(QARecord(f"{video_id}/qa0", video_id, "Where is the right square?", "[BOX] [SEG].", ["2"]))
    write_jsonl(root / "videos.jsonl", (v.to_json() for v in videos))
    write_jsonl(root / "objects.jsonl", (o.to_json() for o in objects))
    write_jsonl(root / "expressions.jsonl", (e.to_json() for e in expressions))
    write_jsonl(root / "qa.jsonl", (q.to_json() for q in qa))
    truth = {"mevis": {"train": True, "valid_u": False}, "vidstg": {"train": True}, "revos": {"train": True}}
    atomic_write_json(root / "meta.json", {"sources": {s: {"ground_truth": g} for s, g in truth.items()}})
    return root


@pytest.fixture
def curated(tmp_path: Path) -> CuratedDataset:
    return CuratedDataset(_build(tmp_path / "cur"))


# -- statistics -----------------------------------------------------------------------------------------------------


def test_expressions_without_released_ground_truth_are_not_counted_as_zero_objects(curated) -> None:
    stats = compute_statistics(curated)
    assert stats.referents_unknown == {"mevis": 1}
    assert sorted(stats.objects_per_expression["mevis"]) == [1, 2]  # the valid_u one is left out
    assert sorted(stats.objects_per_expression["revos"]) == [0, 1, 2]  # a genuinely empty referent stays
    assert stats.per_source["mevis"]["expressions"] == 3  # still counted as an expression
    assert "vidstg" not in stats.mask_area_fraction or stats.mask_area_fraction["vidstg"] == []


def test_kinds_table_and_distribution_summary(curated) -> None:
    stats = compute_statistics(curated)
    kinds = stats.kinds_table()
    assert list(kinds.columns) == ["referring", "reasoning", "declarative"]  # EXPRESSION_KINDS order, used ones
    assert kinds.loc["vidstg", "declarative"] == 1 and kinds.loc["revos", "reasoning"] == 1
    assert kinds.loc["total"].sum() == sum(r["expressions"] for r in stats.per_source.values()) == 8
    summary = stats.distribution_summary()
    assert summary["frames_per_video"] == {"mean": 4.0, "median": 4.0, "min": 4.0, "max": 4.0}
    assert summary["objects_per_expression"]["mean"] == pytest.approx((1 + 2 + 1 + 2 + 0 + 1 + 2) / 7)
    assert summary["mask_area_fraction"]["max"] == pytest.approx(16 / (H * W))


def test_paper_comparison_says_when_the_data_is_not_the_papers(curated) -> None:
    stats = compute_statistics(curated)
    mini = paper_comparison(stats, real_data=False)
    assert list(mini.index) == ["videos", "qa_pairs", "sources"]
    assert mini.loc["videos", "paper"] == PAPER_CURATED["videos"][0] == 30646
    assert mini.loc["qa_pairs", "paper"] == 45231 and mini.loc["sources", "paper"] == 7
    assert mini.loc["videos", "this run"] == 4 and mini.loc["sources", "this run"] == 3
    assert all("not the paper's data" in d for d in mini["data"])
    assert set(paper_comparison(stats, real_data=True)["data"]) == {"real releases"}


def test_hard_case_table_counts_videos_per_source(tmp_path: Path) -> None:
    manifest = {
        "hard_cases": {"crossing": 2, "leaves": 1},
        "videos": {
            "mevis": [{"tags": ["crossing", "leaves", "crossing"]}, {"tags": []}],
            "revos": [{"tags": ["crossing"]}],
        },
    }
    atomic_write_json(tmp_path / "manifest.json", manifest)
    table = hard_case_table(tmp_path)
    assert table.loc["mevis"].to_dict() == {"videos": 2, "crossing": 1, "leaves": 1}  # a tag counts once per video
    assert table.loc["total"].to_dict() == {"videos": 3, "crossing": 2, "leaves": 1}
    with pytest.raises(DataError, match=r"empty.manifest\.json: no SPARROW-Mini manifest"):
        hard_case_table(tmp_path / "empty")
    atomic_write_json(tmp_path / "bad" / "manifest.json", {"videos": {}})
    with pytest.raises(DataError, match="lacks the 'hard_cases'"):
        hard_case_table(tmp_path / "bad")


def test_hard_case_table_agrees_with_the_generator_manifest(tmp_path: Path) -> None:
    from sparrow.data.synthetic import generate
    from sparrow.storage import read_json

    root = generate("smoke", 0, tmp_path / "gen")
    table = hard_case_table(root)
    assert table.loc["total"].drop("videos").to_dict() == read_json(root / "manifest.json")["hard_cases"]


def test_example_expressions_pick_known_nonempty_referents_deterministically(curated) -> None:
    picked = example_expressions(curated, per_source=1, seed=0)
    assert [e.video_id.split("/")[0] for e in picked] == ["mevis", "revos", "vidstg"]
    assert all(e.object_ids for e in picked)
    assert all(e.expression_id != "mevis/m2/0" for e in picked)
    assert picked == example_expressions(curated, per_source=1, seed=0)
    many = example_expressions(curated, per_source=5, seed=3)
    assert len(many) == 2 + 2 + 2  # every eligible expression, none twice


# -- release curation is reused -----------------------------------------------------------------------------------


def test_ensure_curated_release_curates_once_and_redoes_on_a_changed_request(tmp_path: Path) -> None:
    from sparrow.data.synthetic import generate

    root = generate("smoke", 0, tmp_path / "gen")
    out = tmp_path / "curated"
    sources = {"mevis": root / "mevis", "revos": str(root / "revos")}
    assert ensure_curated_release(sources, out) == out
    first = (out / "meta.json").stat().st_mtime_ns
    meta = CuratedDataset(out).meta
    assert meta["release_roots"] == {k: str(Path(v).resolve()) for k, v in sorted(sources.items())}
    assert ensure_curated_release(dict(reversed(list(sources.items()))), out) == out
    assert (out / "meta.json").stat().st_mtime_ns == first  # same request: reused
    ensure_curated_release(sources, out, splits=["train"])
    assert CuratedDataset(out).splits() == ["train"]
    assert (out / "meta.json").stat().st_mtime_ns != first
    with pytest.raises(ValueError, match="at least one source.*mevis"):
        ensure_curated_release({}, out)


# -- figures ------------------------------------------------------------------------------------------------------


def _canvas(fig: Figure) -> np.ndarray:
    return np.asarray(fig.axes[0].images[0].get_array())


def _texts(fig: Figure) -> list[tuple[str, str]]:
    from matplotlib.colors import to_hex

    return [(t.get_text(), to_hex(t.get_color())) for t in fig.axes[0].texts]


def test_statistics_figure_has_the_four_panels(curated) -> None:
    fig = statistics_figure(compute_statistics(curated), title="tiny")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "videos and Q&A pairs per source" and titles[1] == "frames per video"
    assert titles[2] == "objects per expression (1 without released ground truth left out)"
    notes = [t.get_text() for t in fig.axes[3].texts]
    assert any("vidstg" in n for n in notes)  # the source without masks is named, not silently missing
    fig.canvas.draw()


def test_stacked_distribution_bars_integers_and_bins_the_rest() -> None:
    colors = {"a": "C0", "b": "C1", "c": "C2"}
    fig = Figure()
    ax = fig.add_subplot()
    stacked_distribution(ax, {"a": [12, 12], "b": [12], "c": []}, colors, "frames")
    heights = [p.get_height() for p in ax.patches]
    assert sum(heights) == 3 and max(heights) == 2  # stacked: a (2) under b (1) at the one value
    assert len(ax.patches) == 2 * 7  # padded to seven integer slots so that one value is not the whole axis
    assert any("none in: c" in t.get_text() for t in ax.texts)
    ax2 = fig.add_subplot(2, 1, 2)
    stacked_distribution(ax2, {"a": np.linspace(0.001, 0.1, 50)}, colors, "area", bins=10, log_x=True)
    assert ax2.get_xscale() == "log" and len(ax2.patches) == 10


def test_key_frames_keep_every_visibility_change() -> None:
    visible = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    frames = key_frames(visible, 8)
    assert len(frames) == 8 and {0, 5, 6, 11} <= set(frames) and frames == sorted(frames)
    assert key_frames([1, 0, 1], 8) == [0, 1, 2]
    gaps = key_frames([1] * 6 + [0] + [1] + [0] + [1] * 3, 8)
    assert {5, 6, 7, 8, 9} <= set(gaps) and len(gaps) == 8


def test_fit_width_and_fit_mask() -> None:
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, 32:] = 255
    big = fit_width(image, 128)
    assert big.shape == (96, 128, 3) and set(np.unique(big)) == {0, 255}  # nearest: no blur when enlarging
    assert fit_width(np.zeros((720, 1280, 3), np.uint8), 150).shape == (84, 150, 3)
    mask = np.zeros((48, 64), bool)
    mask[10:20, 10:20] = True
    assert fit_mask(mask, (96, 128)).sum() == 400


def test_grid_figure_places_panels_one_to_one() -> None:
    red = np.zeros((20, 30, 3), np.uint8)
    red[..., 0] = 255
    fig = grid_figure([GridRow("row one\nsecond line", [red, red], ["a", "b"]), GridRow("row two", [red], ["c"])])
    canvas = _canvas(fig)
    assert fig.get_size_inches()[0] * 100 == pytest.approx(canvas.shape[1])
    assert ((canvas == [255, 0, 0]).all(axis=-1)).sum() == 3 * 20 * 30  # three red panels and nothing else red
    assert [t for t, _ in _texts(fig)] == ["row one\nsecond line", "a", "b", "row two", "c"]
    with pytest.raises(ValueError, match="same width"):
        grid_figure([GridRow("x", [red, np.zeros((20, 31, 3), np.uint8)], ["a", "b"])])


def test_curated_montage_outlines_referents_and_marks_the_span(curated) -> None:
    exp = next(e for e in curated.iter_expressions() if e.frame_span)
    fig = curated_montage(curated, [exp, curated.expressions("mevis/m1")[1]], num=4)
    canvas = _canvas(fig)
    assert (canvas == GT_COLOR).all(axis=-1).any()  # single referent: the ground-truth colour
    assert (canvas == (90, 90, 90)).all(axis=-1).any()  # 200-grey frames dimmed to 45 % outside the referent
    texts = dict(_texts(fig))
    assert texts["00000 (outside span)"] == "#8c8c8c" and texts["00001"] == "#000000"
    assert any(t.startswith("vidstg · train · declarative · referent 2 · frames [1, 3)") for t in texts)
    with pytest.raises(KeyError, match="refers to object"):
        curated_montage(curated, [ExpressionRecord("x", "mevis/m1", "ghost", ["9"], "referring")])


def test_hard_cases_figure_draws_every_example() -> None:
    from sparrow.data.synthetic import HARD_CASES, hard_case_examples

    examples = hard_case_examples("smoke", 0)
    fig = hard_cases_figure(examples, num=6)
    canvas = _canvas(fig)
    assert (canvas == GT_COLOR).all(axis=-1).sum() > 100
    texts = _texts(fig)
    headers = [t for t, _ in texts if ":" in t and "“" in t]
    assert len(headers) == len(HARD_CASES)
    absent = [(t, c) for t, c in texts if t.endswith("absent")]
    assert absent and all(c == ABSENT_COLOR for _, c in absent)
    assert len(fig.legends) == 1
    with pytest.raises(ValueError, match="no hard-case examples"):
        hard_cases_figure([])
