"""`sparrow reproduce` runs notebooks in order and writes their times beside the results."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from sparrow.notebook_tools import TIMINGS_FILE, numbered_notebooks, reproduce, strip_outputs
from sparrow.results import promote


def _notebook(path: Path, value: int) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('profile = "mini"\nseed = 0')
    params.metadata["tags"] = ["parameters"]
    record = nbformat.v4.new_code_cell(
        "from sparrow.results import Recorder\n"
        f"rec = Recorder({path.stem!r}, profile=profile, seed=seed)\nrec.add('answer', seed + {value})\nrec.save()"
    )
    nb.cells = [params, record]
    nbformat.write(nb, path)
    return path


def test_reproduce_runs_in_order_and_writes_timings(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    _notebook(folder / "02_second.ipynb", 2)
    _notebook(folder / "01_first.ipynb", 1)
    results = tmp_path / "results"
    monkeypatch.setenv("SPARROW_RESULTS", str(results))
    runs = reproduce("smoke", 3, numbered_notebooks(folder))
    assert [r.notebook for r in runs] == ["01_first", "02_second"]
    timings = json.loads((results / "smoke" / TIMINGS_FILE).read_text())
    assert list(timings["notebooks"]) == ["01_first", "02_second"]
    assert timings["total_s"] >= 0 and timings["seed"] == 3
    recorded = json.loads((results / "smoke" / "02_second.json").read_text())
    assert [m["value"] for m in recorded["metrics"]] == [5]
    promoted = promote("smoke", results, tmp_path / "reference")  # the reference takes exactly this run
    assert [p.name for p in promoted] == ["01_first.json", "02_second.json", TIMINGS_FILE]
    assert strip_outputs(runs[0].executed) and not strip_outputs(runs[0].executed)


def test_regen_expected_from_results_writes_the_runs_numbers(tmp_path: Path, monkeypatch, capsys) -> None:
    from sparrow import cli, results
    from sparrow.results import Recorder, load_expected

    monkeypatch.setenv("SPARROW_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(
        results, "expected_path", lambda stem, profile: tmp_path / "expected" / profile / f"{stem}.json"
    )
    nb = _notebook(tmp_path / "01_first.ipynb", 1)
    rec = Recorder("01_first", profile="mini", seed=0)
    rec.add("answer", 41.5)
    rec.save()
    assert cli.main(["regen-expected", "--profile", "mini", "--notebook", str(nb), "--from-results"]) == 0
    assert load_expected(tmp_path / "expected" / "mini" / "01_first.json")["answer"].value == 41.5
    missing = _notebook(tmp_path / "02_second.ipynb", 2)
    assert cli.main(["regen-expected", "--profile", "mini", "--notebook", str(missing), "--from-results"]) == 2
    assert "no results of 02_second.ipynb" in capsys.readouterr().err
