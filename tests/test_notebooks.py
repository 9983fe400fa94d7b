"""The notebook regression harness.

Every ``notebooks/NN_*.ipynb`` is executed with papermill (profile injected, outputs into a temporary folder) and
every number it records is compared with ``reproductions/expected/<profile>/<notebook>.json``. ``smoke`` runs in
``make test``; ``mini`` runs under the ``slow`` marker (``make test-mini``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sparrow.notebook_tools import has_outputs, numbered_notebooks, run_notebook
from sparrow.results import compare, expected_path

NOTEBOOKS = numbered_notebooks()
ALL_NOTEBOOKS = sorted(Path(__file__).resolve().parents[1].joinpath("notebooks").rglob("*.ipynb"))


def _run_and_compare(notebook: Path, profile: str, tmp_path: Path) -> None:
    expected = expected_path(notebook.stem, profile)
    run = run_notebook(notebook, profile, seed=0, out_dir=tmp_path / "executed", results_dir=tmp_path / "results")
    assert run.results is not None, f"{notebook.name} recorded no numbers (its last cell must save a Recorder)"
    assert expected.is_file(), (
        f"{notebook.name}: no expectation file {expected}; "
        f"run `make regen-expected PROFILE={profile}` and commit it with the reason"
    )
    drift = compare(run.results, expected)
    assert drift.ok, str(drift)


@pytest.mark.regression
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_notebook_smoke(notebook: Path, tmp_path: Path) -> None:
    _run_and_compare(notebook, "smoke", tmp_path)


@pytest.mark.slow
@pytest.mark.regression
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[n.stem for n in NOTEBOOKS])
def test_notebook_mini(notebook: Path, tmp_path: Path) -> None:
    _run_and_compare(notebook, "mini", tmp_path)


def test_there_are_numbered_notebooks() -> None:
    assert NOTEBOOKS, "no notebooks/NN_*.ipynb found"
    numbers = [n.name[:2] for n in NOTEBOOKS]
    assert len(set(numbers)) == len(numbers), f"two notebooks share a number: {numbers}"


@pytest.mark.parametrize("notebook", ALL_NOTEBOOKS, ids=[n.stem for n in ALL_NOTEBOOKS])
def test_committed_without_outputs(notebook: Path) -> None:
    assert not has_outputs(notebook), f"{notebook} has outputs; run `make strip-notebooks`"


@pytest.mark.parametrize("notebook", ALL_NOTEBOOKS, ids=[n.stem for n in ALL_NOTEBOOKS])
def test_notebook_conventions(notebook: Path) -> None:
    """docs/conventions.md: header, one literal parameters cell, no helper functions, results recorded last."""
    import ast

    nb = json.loads(notebook.read_text(encoding="utf-8"))
    cells = nb["cells"]
    assert nb["metadata"].get("kernelspec", {}).get("language") == "python", "kernelspec needs a language"
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).lstrip().startswith("#"), (
        "the first cell is a markdown header"
    )
    header = "".join(cells[0]["source"]).lower()
    assert "smoke" in header and "mini" in header, "the header states the runtime per profile"
    code = [c for c in cells if c["cell_type"] == "code"]
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and tagged[0] is code[0], "exactly one parameters cell, the first code cell"
    for stmt in ast.parse("".join(tagged[0]["source"])).body:
        assert isinstance(stmt, ast.Assign), "the parameters cell holds assignments only"
        ast.literal_eval(stmt.value)
    names = {t.id for stmt in ast.parse("".join(tagged[0]["source"])).body for t in stmt.targets}
    assert {"profile", "seed"} <= names, "parameters include profile and seed"
    for cell in code:
        tree = ast.parse("".join(cell["source"]))
        defined = [
            n
            for n in ast.walk(tree)
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
        ]
        assert not defined, f"helper functions/classes belong in the sparrow package, not the notebook: {defined}"
    if notebook in NOTEBOOKS:
        last = "".join(code[-1]["source"])
        assert "Recorder" in last and ".save(" in last, "the last cell records the reported numbers"
