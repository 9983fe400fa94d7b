"""Where a run writes (SPARROW_HOME, SPARROW_RESULTS), where paper components are found, and promoting results."""

from __future__ import annotations

import json

import pytest

from sparrow import paths
from sparrow.model.config import ModelConfig
from sparrow.model.presets import paper_components
from sparrow.results import promote
from sparrow.storage import read_json

PHI3 = "Phi-3-mini-4k-instruct"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SPARROW_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPARROW_RESULTS", raising=False)
    monkeypatch.delenv(paths.WEIGHT_PATHS_ENV, raising=False)
    return tmp_path / "home"


def test_results_go_under_sparrow_home_unless_sparrow_results_says_otherwise(home, tmp_path, monkeypatch):
    assert paths.results_root() == home.resolve() / "results"
    monkeypatch.setenv("SPARROW_RESULTS", str(tmp_path / "elsewhere"))
    assert paths.results_root() == (tmp_path / "elsewhere").resolve()
    assert paths.reference_results_root().parts[-2:] == ("reproductions", "results")


def test_component_resolution_order(home, tmp_path, monkeypatch):
    weights = home / "weights"
    (weights / PHI3).mkdir(parents=True)
    assert paths.component_path(PHI3) == weights / PHI3  # the default layout
    (weights / "mine" / "phi").mkdir(parents=True)
    (weights / "paths.json").write_text(json.dumps({PHI3: "mine/phi"}))
    assert paths.component_path(PHI3) == weights / "mine" / "phi"  # the file's entry, relative to the file
    other = tmp_path / "other.json"
    (tmp_path / "phi-elsewhere").mkdir()
    other.write_text(json.dumps({PHI3: str(tmp_path / "phi-elsewhere")}))
    with paths.weight_paths(other):
        assert paths.component_path(PHI3) == tmp_path / "phi-elsewhere"  # --paths FILE beats paths.json
    assert paths.WEIGHT_PATHS_ENV not in __import__("os").environ
    assert paths.component_path(str(weights / PHI3)) == weights / PHI3  # an explicit path as given
    explicit = tmp_path / "root"
    (explicit / PHI3).mkdir(parents=True)
    assert paths.component_path(PHI3, explicit) == explicit / PHI3  # an explicit weights root


def test_a_missing_component_is_one_line_naming_it_and_where_it_looked(home):
    with pytest.raises(FileNotFoundError) as info:
        paths.component_path(PHI3)
    message = str(info.value)
    assert "\n" not in message and repr(PHI3) in message
    assert str(home.resolve() / "weights" / PHI3) in message and "paths.json" in message
    (home / "weights").mkdir(parents=True)
    (home / "weights" / "paths.json").write_text(json.dumps({PHI3: "/nowhere/phi3"}))
    with pytest.raises(FileNotFoundError, match=r"'Phi-3-mini-4k-instruct' not found at /nowhere/phi3 \(entry in "):
        paths.component_path(PHI3)


def test_the_paper_preset_finds_its_components_through_the_paths_file(home, tmp_path):
    cfg = ModelConfig.for_preset("glus", "paper")
    assert cfg.llm.path == paper_components("glus")["llm"] == "lisa-7b-llama"  # names, not locations
    (tmp_path / "lisa").mkdir()
    (home / "weights").mkdir(parents=True)
    (home / "weights" / "paths.json").write_text(json.dumps({"lisa-7b-llama": str(tmp_path / "lisa")}))
    assert cfg.resolve(cfg.llm.path) == tmp_path / "lisa"
    with pytest.raises(FileNotFoundError, match="clip-vit-large-patch14"):
        cfg.resolve(cfg.vision.path)


def test_the_cli_refuses_a_missing_paths_file(tmp_path, capsys):
    from sparrow.cli import main

    with pytest.raises(SystemExit):
        main(["--paths", str(tmp_path / "absent.json"), "reproduce"])
    assert "absent.json: no such file" in capsys.readouterr().err


def _run(root, profile="mini", notebooks=("01_a", "02_b")):
    folder = root / profile
    folder.mkdir(parents=True)
    for nb in notebooks:
        (folder / f"{nb}.json").write_text(json.dumps({"notebook": nb, "profile": profile, "metrics": []}))
    (folder / "timings.json").write_text(json.dumps({"profile": profile, "notebooks": {nb: 1.0 for nb in notebooks}}))
    return folder


def test_promote_swaps_the_reference_folder_whole(tmp_path):
    run = _run(tmp_path / "run")
    reference = tmp_path / "reference"
    (reference / "mini").mkdir(parents=True)
    (reference / "mini" / "00_stale.json").write_text("{}")
    promoted = promote("mini", tmp_path / "run", reference)
    assert [p.name for p in promoted] == ["01_a.json", "02_b.json", "timings.json"]
    for p in promoted:
        assert p.read_bytes() == (run / p.name).read_bytes()
    assert sorted(p.name for p in reference.iterdir()) == ["mini"]  # no staging folders left


def test_promote_refuses_a_partial_run_and_leaves_the_reference_alone(tmp_path):
    run = _run(tmp_path / "run")
    (run / "02_b.json").unlink()
    reference = tmp_path / "reference"
    (reference / "mini").mkdir(parents=True)
    (reference / "mini" / "01_a.json").write_text('{"old": 1}')
    with pytest.raises(ValueError, match="promote one whole run"):
        promote("mini", tmp_path / "run", reference)
    assert read_json(reference / "mini" / "01_a.json") == {"old": 1}
    with pytest.raises(FileNotFoundError, match="timings.json"):
        promote("smoke", tmp_path / "run", reference)
