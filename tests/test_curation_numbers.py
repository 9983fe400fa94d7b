"""What notebook 01 records: the key naming scheme of ``sparrow.data.statistics.recorded_numbers`` (the expectation
files are keyed by it), its paper values and units, on hand-built statistics."""

from __future__ import annotations

import pandas as pd
import pytest

from sparrow.data import statistics
from sparrow.data.statistics import PAPER_CURATED, CurationStatistics, recorded_numbers
from sparrow.results import Recorder


def _stats() -> CurationStatistics:
    row = {"videos": 2, "expressions": 3, "qa_pairs": 4, "objects": 5, "masks": 6, "frames": 7}
    return CurationStatistics(
        per_source={"mevis": {**row, "videos_train": 2}, "vidstg": {**row, "videos_train": 1, "videos_test": 1}},
        frames_per_video={"mevis": [3, 4], "vidstg": [5]},
        objects_per_expression={"mevis": [1, 2]},
        mask_area_fraction={"mevis": [0.5]},
        expression_kinds={"mevis": {"referring": 3}, "vidstg": {"interrogative": 2, "declarative": 1}},
        referents_unknown={"vidstg": 3},
    )


def _hard_cases() -> pd.DataFrame:
    frame = pd.DataFrame.from_dict({"mevis": {"videos": 2, "crossing": 1}}, orient="index")
    frame.loc["total"] = frame.sum(numeric_only=True)
    return frame.astype(int)


REPORT = {"totals": {"kept": 9, "skipped": 1}, "sources": {}}


def test_names_follow_the_results_scheme_in_recording_order():
    names = [n["name"] for n in recorded_numbers(_stats(), REPORT, "smoke", real_data=False, hard_cases=_hard_cases())]
    table = [
        f"table/{s}/{c}"
        for s in ("mevis", "vidstg", "total")
        for c in ("videos", "expressions", "qa_pairs", "objects", "masks", "frames", "videos_train", "videos_test")
    ]
    kinds = [
        f"kinds/{s}/{k}" for s in ("mevis", "vidstg", "total") for k in ("referring", "declarative", "interrogative")
    ]
    distributions = [
        f"distribution/{d}/{s}"
        for d in ("frames_per_video", "objects_per_expression", "mask_area_fraction")
        for s in ("mean", "median", "min", "max")
    ]
    assert names == [
        "videos",
        "qa_pairs",
        "sources",
        *table,
        *kinds,
        "report/kept",
        "report/skipped",
        "referents_unknown/vidstg",
        *distributions,
        "hard_cases/mevis/videos",
        "hard_cases/mevis/crossing",
        "hard_cases/total/videos",
        "hard_cases/total/crossing",
    ]
    assert len(set(names)) == len(names)


def test_values_and_units_are_plain_numbers():
    numbers = {
        n["name"]: n for n in recorded_numbers(_stats(), REPORT, "mini", real_data=False, hard_cases=_hard_cases())
    }
    assert numbers["videos"]["value"] == 4 and numbers["sources"]["value"] == 2
    assert numbers["table/vidstg/videos_test"] == {"name": "table/vidstg/videos_test", "value": 1, "unit": "count"}
    assert numbers["table/mevis/videos_test"]["value"] == 0  # a split a source lacks counts 0
    assert numbers["table/total/videos_train"]["value"] == 3
    assert numbers["kinds/total/interrogative"]["unit"] == "expressions"
    assert numbers["report/kept"] == {"name": "report/kept", "value": 9, "unit": "items"}
    assert numbers["referents_unknown/vidstg"]["unit"] == "expressions"
    assert numbers["distribution/frames_per_video/mean"] == {
        "name": "distribution/frames_per_video/mean",
        "value": 4.0,
        "unit": "",
    }
    assert numbers["hard_cases/total/crossing"] == {"name": "hard_cases/total/crossing", "value": 1, "unit": "videos"}
    assert all(type(n["value"]) in (int, float) for n in numbers.values())


def test_phrase_statistics_are_recorded_per_source_when_captions_were_curated():
    stats = _stats()
    stats.phrase_ids = {"videogcg": [[2, 1], [1]]}
    numbers = {n["name"]: n["value"] for n in recorded_numbers(stats, REPORT, "smoke", real_data=False)}
    columns = ("captions", "phrases", "phrases_per_caption", "multi_id_phrases", "objects_per_phrase")
    assert [n for n in numbers if n.startswith("phrases/")] == [
        f"phrases/{s}/{c}" for s in ("videogcg", "total") for c in columns
    ]
    assert numbers["phrases/videogcg/phrases"] == 3 and numbers["phrases/total/multi_id_phrases"] == 1
    assert type(numbers["phrases/videogcg/captions"]) is int  # counts stay ints beside the ratio columns
    assert numbers["phrases/videogcg/phrases_per_caption"] == 1.5
    assert numbers["phrases/videogcg/objects_per_phrase"] == pytest.approx(4 / 3)


def test_paper_values_only_beside_real_releases():
    mini = {n["name"]: n for n in recorded_numbers(_stats(), REPORT, "mini", real_data=False)}
    assert "paper" not in mini["videos"]
    assert mini["videos"]["note"] == "SPARROW-Mini (mini) is not the paper's data (paper: 30,646)"
    real = {n["name"]: n for n in recorded_numbers(_stats(), REPORT, "paper", real_data=True)}
    for name, (paper, quote) in PAPER_CURATED.items():
        assert real[name]["paper"] == paper and real[name]["note"] == quote
        assert real[name]["paper_source"] == "SPARROW paper, curated dataset statistics"
    assert not any(n.startswith("hard_cases/") for n in real)


def test_every_number_goes_into_a_recorder():
    rec = Recorder("01_dataset_curation", profile="smoke", seed=0)
    for number in recorded_numbers(_stats(), REPORT, "smoke", real_data=True, hard_cases=_hard_cases()):
        rec.add(**number)
    assert len(rec.metrics) == 3 + 24 + 9 + 2 + 1 + 12 + 4


@pytest.mark.parametrize(("profile", "drawn"), [("smoke", "smoke"), ("mini", "mini"), ("paper", "mini")])
def test_hard_case_figure_examples_draw_at_a_sparrow_mini_size(monkeypatch, profile, drawn):
    import sparrow.data.synthetic as synthetic

    monkeypatch.setattr(synthetic, "hard_case_examples", lambda size, seed: [(size, seed)])
    assert statistics.hard_case_figure_examples(profile, 3) == [(drawn, 3)]
    with pytest.raises(ValueError):
        statistics.hard_case_figure_examples("large", 0)
