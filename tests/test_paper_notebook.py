"""Notebook 04 under ``paper``, run as someone with the released weights runs it (docs/released-weights.md §8), on
tiny stand-ins: the released-layout folders of ``tests/fixtures/released/`` converted with ``sparrow convert`` into
``$SPARROW_HOME/checkpoints/paper/<host>-<variant>``, the held-out splits of the six benchmarks written in their
official layouts and curated with ``sparrow curate`` into ``$SPARROW_HOME/curated/paper``, then the notebook
executed with papermill with nothing but ``profile="paper"`` injected.

The converted folders keep the paper preset's 512-token answer budget, which a random tiny LLM (it never emits its
end token) spends in full on every question; the test lowers it in the converted configs to keep the run short.
The numbers of random weights are not the paper's: what is checked is that every row with weights has a finite
number on every column with local ground truth, and that the rows without released weights are listed with why.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from fixtures.official_layouts import make_benchmark_releases
from fixtures.release_layouts import write_videoglamm_release
from sparrow.cli import main as sparrow_main
from sparrow.experiments.tables import UNRELEASED_REASONS, checkpoint_name
from sparrow.notebook_tools import run_notebook

pytestmark = pytest.mark.usefixtures("one_thread")

RELEASED = Path(__file__).parent / "fixtures" / "released"
NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_benchmark_tables.ipynb"
SCORED_LOCALLY = ("mevis_valid_u", "ref_davis17", "vidstg", "videogcg")  # the splits with public ground truth
SERVER_ONLY = ("mevis_valid", "ref_youtube_vos")
ANSWER_TOKENS = 8


def _convert(release: str, src: Path, out: Path, *extra: str) -> None:
    args = ["convert", "--release", release, "--src", str(src), "--out", str(out), "--dtype", "float32", *extra]
    assert sparrow_main(args) == 0, f"sparrow convert --release {release} failed"
    config = json.loads((out / "config.json").read_text())
    config["model"]["max_new_tokens"] = ANSWER_TOKENS
    (out / "config.json").write_text(json.dumps(config))


def _curate_benchmarks(root: Path, out: Path, *splits: str) -> None:
    sources = [f"--source={name}={path}" for name, path in make_benchmark_releases(root).items()]
    args = ["curate", *sources, "--splits", *splits, "valid", "valid_u", "test", "val", "--out", str(out)]
    assert sparrow_main(args) == 0


@pytest.fixture
def paper_home(tmp_path: Path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("SPARROW_HOME", str(home))
    checkpoints = home / "checkpoints" / "paper"
    # the tiny SAM2 of the fixtures at 256 px instead of its 1024: the same weights, a sixteenth of the encoder's work
    small_sam = tmp_path / "sam2_tiny_256.yaml"
    small_sam.write_text((RELEASED / "sam2_tiny.yaml").read_text().replace("image_size: 1024", "image_size: 256"))
    clip, sam = ["--clip", str(RELEASED / "clip")], ["--sam-config", str(small_sam)]
    tokenizer = ["--tokenizer", str(RELEASED / "tokenizer-fast")]
    videoglamm = write_videoglamm_release(RELEASED / "sparrow-finetune", tmp_path / "videoglamm-release")
    proposer = ["--proposer", str(RELEASED / "sparrow-det-pretrain" / "checkpoint-1")]  # the released proposer
    _convert(
        "sparrow", RELEASED / "sparrow-finetune", checkpoints / "videoglamm-sparrow", *clip, *sam, *tokenizer, *proposer
    )
    _convert("videoglamm", videoglamm, checkpoints / "videoglamm-baseline", *clip, *sam, *tokenizer)
    unipixel_sam = ["--sam-config", str(RELEASED / "sam2.1_bplus_tiny.yaml")]
    _convert("unipixel", RELEASED / "unipixel", checkpoints / "unipixel-baseline", *unipixel_sam)
    glus_tokenizer = ["--tokenizer", str(RELEASED / "glus-tokenizer-fast")]
    _convert("glus", RELEASED / "glus", checkpoints / "glus-baseline", *clip, *sam, *glus_tokenizer)
    _curate_benchmarks(tmp_path / "releases", home / "curated" / "paper", "train")  # MeViS train: + SPARROW rows
    return home


def test_rows_without_a_checkpoint_are_skipped_with_their_reason(tmp_path: Path) -> None:
    from sparrow.experiments.tables import TablePlan, find_paper_assets

    _curate_benchmarks(tmp_path / "releases", tmp_path / "curated")
    for name in ("videoglamm-baseline", "videoglamm-sparrow", "glus-baseline"):
        (tmp_path / "ck" / name).mkdir(parents=True)
        (tmp_path / "ck" / name / "model.safetensors").touch()
    assets = find_paper_assets(TablePlan.for_profile("paper"), tmp_path / "curated", tmp_path / "ck")
    assert assets.ok, assets.message
    assert set(assets.checkpoints) == {("videoglamm", "baseline"), ("videoglamm", "sparrow"), ("glus", "baseline")}
    assert {row: assets.skipped_rows[row] for row in UNRELEASED_REASONS} == UNRELEASED_REASONS
    assert "--release unipixel" in assets.skipped_rows[("unipixel", "baseline")]  # released, not converted yet
    assert "skipped rows:" in assets.message and "glus-sparrow: no released GLUS + SPARROW" in assets.message
    none = find_paper_assets(TablePlan.for_profile("paper"), tmp_path / "curated", tmp_path / "absent")
    assert not none.ok and "every checkpoint" in none.message and "videoglamm-sparrow: no converted" in none.message


def test_a_checkpoint_kept_elsewhere_is_found_through_the_weights_paths_file(tmp_path: Path, monkeypatch) -> None:
    from sparrow.experiments.tables import TablePlan, find_paper_assets

    _curate_benchmarks(tmp_path / "releases", tmp_path / "curated")
    (tmp_path / "disk" / "UniPixel-3B-kit").mkdir(parents=True)
    (tmp_path / "disk" / "UniPixel-3B-kit" / "model.safetensors").touch()
    paths = tmp_path / "disk" / "paths.json"
    paths.write_text(json.dumps({"unipixel-baseline": "UniPixel-3B-kit"}))
    monkeypatch.setenv("SPARROW_WEIGHT_PATHS", str(paths))
    assets = find_paper_assets(TablePlan.for_profile("paper"), tmp_path / "curated", tmp_path / "ck")
    assert assets.checkpoints == {("unipixel", "baseline"): tmp_path / "disk" / "UniPixel-3B-kit"}
    assert str(tmp_path / "ck" / "glus-baseline") in assets.skipped_rows[("glus", "baseline")]


@pytest.mark.slow
def test_notebook_04_runs_under_paper_on_converted_releases(paper_home: Path, tmp_path: Path) -> None:
    """Also trains UniPixel + SPARROW and GLUS + SPARROW from the converted baselines (2 steps per stage, the
    released proposer from videoglamm-sparrow) and records each one's cost estimated from 2 measured steps."""
    unreleased = {"paper_train_unreleased": True, "paper_train_steps": 2, "paper_estimate_steps": 2}
    run = run_notebook(
        NOTEBOOK, "paper", out_dir=tmp_path / "executed", results_dir=tmp_path / "results", extra_parameters=unreleased
    )
    assert run.results is not None
    recorded = {m["name"]: m for m in json.loads(run.results.read_text())["metrics"]}
    rows = {("unipixel", "baseline"), ("glus", "baseline"), ("videoglamm", "baseline"), ("videoglamm", "sparrow")}
    rows |= {("unipixel", "sparrow"), ("glus", "sparrow")}  # trained here
    for host in ("unipixel", "glus"):
        hours = recorded[f"training_estimate/{host}-sparrow/hours"]
        assert hours["value"] > 0 and "cpu" in hours["note"]
        assert recorded[f"training_estimate/{host}-sparrow/stage1/seconds_per_step"]["value"] > 0
        assert f"skipped/{host}-sparrow" not in recorded
    for host, variant in rows:
        for column in SCORED_LOCALLY:
            value = recorded[f"main/{host}/{variant}/{column}/mean"]["value"]
            assert value is not None and math.isfinite(value), (host, variant, column, value)
        for column in SERVER_ONLY:  # no public ground truth: the submission is written, the number not computed
            metric = recorded[f"main/{host}/{variant}/{column}/mean"]
            assert metric["value"] is None and "no public ground truth" in metric["note"]
    why = UNRELEASED_REASONS[("videoglamm", "tsf-only")]
    assert recorded["skipped/videoglamm-tsf-only"]["note"] == why
    assert recorded["ablation/tsf/mean"]["value"] is None
    assert recorded["ablation/tsf/mean"]["note"] == UNRELEASED_REASONS[("videoglamm", "tsf-only")]
    assert math.isfinite(recorded["ablation/box/mean"]["value"])
    assert "tsf_run" in recorded["ablation/tsf_test/mean"]["note"]
    text = run.executed.read_text()
    assert "skipped rows" in text and UNRELEASED_REASONS[("glus", "sparrow")] in text
    assert "unipixel-sparrow: stage1" in text  # the estimate, printed


def test_unreleased_rows_say_why_they_are_not_trained(tmp_path: Path) -> None:
    from sparrow.experiments.tables import TablePlan, UnreleasedTraining, find_paper_assets, measure_main

    _curate_benchmarks(tmp_path / "releases", tmp_path / "curated")
    (tmp_path / "ck" / "glus-baseline").mkdir(parents=True)
    (tmp_path / "ck" / "glus-baseline" / "model.safetensors").touch()
    (tmp_path / "ck" / "glus-baseline" / "config.json").write_text('{"model": {}}')
    plan = TablePlan("paper", 0, (0,), ("glus",), ())  # no benchmark: nothing is loaded or scored
    assets = find_paper_assets(plan, tmp_path / "curated", tmp_path / "ck")
    main = measure_main(plan, assets, unreleased=UnreleasedTraining())
    note = main.details["skipped_rows"]["glus-sparrow"]
    assert note.startswith(UNRELEASED_REASONS[("glus", "sparrow")]) and "and videoglamm-sparrow checkpoints" in note
    assert measure_main(plan, assets).details["skipped_rows"]["glus-sparrow"] == UNRELEASED_REASONS[("glus", "sparrow")]
    with pytest.raises(ValueError, match="estimate_steps"):
        UnreleasedTraining(estimate_steps=1)


def test_training_from_a_converted_host_refuses_missing_inputs(tmp_path: Path) -> None:
    from sparrow.model import ModelConfig
    from sparrow.model.checkpoint import CheckpointError
    from sparrow.train.variants import train_from_checkpoint

    host = tmp_path / "glus-baseline"
    with pytest.raises(CheckpointError, match="no model.safetensors"):
        train_from_checkpoint(host, tmp_path / "curated", tmp_path / "runs")
    host.mkdir()
    (host / "model.safetensors").touch()
    (host / "config.json").write_text(json.dumps({"model": ModelConfig.for_preset("glus", "smoke").to_json()}))
    with pytest.raises(ValueError, match="released proposer"):
        train_from_checkpoint(host, tmp_path / "curated", tmp_path / "runs")
