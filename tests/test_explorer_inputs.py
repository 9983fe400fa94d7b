"""Notebook 05's parameters: explicit folders pass through untouched, "auto" asks the notebooks' outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparrow.experiments import explorer_inputs
from sparrow.experiments.explorer_inputs import ExplorerInputs, notebook_outputs, resolve_inputs


def test_explicit_folders_compute_nothing(monkeypatch, tmp_path: Path) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("notebook_outputs must not run when no parameter is 'auto'")

    monkeypatch.setattr(explorer_inputs, "notebook_outputs", fail)
    got = resolve_inputs("smoke", 0, tmp_path / "b", None, tmp_path / "t", "mevis/v", "mevis/v/1")
    assert got.predictions == {"baseline": tmp_path / "b"}
    assert got.tracks == tmp_path / "t"
    assert (got.video_id, got.expression_id) == ("mevis/v", "mevis/v/1")
    assert resolve_inputs("smoke", 0, None, None, None).predictions == {}


def test_auto_mixes_with_explicit_values(monkeypatch, tmp_path: Path) -> None:
    found = ExplorerInputs(
        "mevis_valid_u",
        {"baseline": tmp_path / "nb04-b", "SPARROW": tmp_path / "nb04-s"},
        tmp_path / "tracks",
        "mevis/x",
        "mevis/x/0",
    )
    monkeypatch.setattr(explorer_inputs, "notebook_outputs", lambda profile, seed: found)
    got = resolve_inputs("smoke", 0, "auto", tmp_path / "mine", None)
    assert got.predictions == {"baseline": tmp_path / "nb04-b", "SPARROW": tmp_path / "mine"}
    assert got.tracks is None
    assert (got.video_id, got.expression_id) == ("mevis/x", "mevis/x/0")
    chosen = resolve_inputs("smoke", 0, "auto", "auto", "auto", video_id="mevis/y")
    assert (chosen.video_id, chosen.expression_id) == ("mevis/y", None)


def test_only_server_layout_benchmarks() -> None:
    with pytest.raises(ValueError, match="server-layout"):
        notebook_outputs("smoke", 0, benchmark="ref_davis17")
