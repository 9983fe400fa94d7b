"""Every subcommand reports a problem with its input in one line on stderr, naming the file or argument, and exits
non-zero; ``sparrow --debug`` shows the traceback instead."""

from __future__ import annotations

import json

import pytest

from fixtures.toydata import write_toy_curated
from sparrow.cli import main
from sparrow.model import CheckpointError, ModelConfig


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_curated(tmp_path_factory.mktemp("toy"), videos=2, frames=4)


@pytest.fixture(scope="module")
def bad_checkpoint(tmp_path_factory):
    """A checkpoint folder whose config.json turns TSF off with a string (a truthy value if read unchecked)."""
    folder = tmp_path_factory.mktemp("bad") / "final"
    folder.mkdir()
    model = {**ModelConfig.for_preset("videoglamm", "smoke").to_json(), "tsf": "false"}
    (folder / "config.json").write_text(json.dumps({"model": model, "stage": "stage2"}))
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    return folder


def _cases(tmp, toy, bad):
    missing = tmp / "missing"
    (tmp / "a-file").write_text("x")
    (tmp / "run").mkdir(exist_ok=True)
    (tmp / "run" / "run.json").write_text("{ cut")
    return [
        (["synth", "--profile", "smoke", "--out", str(tmp / "a-file")], str(tmp / "a-file")),
        (["train", "--stage", "stage1", "--profile", "smoke", "--data", str(missing), "--out", str(tmp / "o")], str(missing)),
        (["train", "--stage", "stage1", "--profile", "smoke", "--data", str(toy), "--init", str(missing), "--out", str(tmp / "o")], str(missing)),
        (["train", "--stage", "stage1", "--profile", "smoke", "--data", str(toy), "--init", str(bad), "--out", str(tmp / "o")], "field 'tsf' must be true/false"),
        (["train", "--stage", "stage1", "--profile", "smoke", "--data", str(toy)], "--out is required"),
        (["train", "--stage", "all", "--profile", "smoke", "--data", str(toy), "--init", str(bad)], "--init applies to a single stage"),
        (["eval", "--checkpoint", str(missing), "--curated", str(toy), "--profile", "smoke"], str(missing)),
        (["eval", "--run", str(tmp / "run"), "--curated", str(toy), "--profile", "smoke"], f"{tmp / 'run' / 'run.json'}: invalid JSON"),
        (["eval", "--checkpoint", str(bad), "--curated", str(missing), "--profile", "smoke"], str(missing)),
        (["eval", "--checkpoint", str(bad), "--curated", str(toy), "--tsf-run", str(missing), "--profile", "smoke"], str(missing)),
        (["tsf", "--split", "valid", "--curated", str(missing), "--profile", "smoke"], str(missing)),
        (["regen-expected", "--profile", "smoke", "--notebook", str(missing / "01.ipynb"), "--from-results"], "no results"),
    ]  # fmt: skip


def test_input_errors_are_one_line_naming_the_file(tmp_path, toy, bad_checkpoint, capsys):
    for argv, names in _cases(tmp_path, toy, bad_checkpoint):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(f"sparrow {argv[0]}: error: ") and err.count("\n") == 1, (argv, err)
        assert names in err, (argv, err)


def test_debug_shows_the_traceback(tmp_path, toy, bad_checkpoint):
    with pytest.raises(CheckpointError, match="field 'tsf' must be true/false"):
        main(["--debug", "train", "--stage", "stage1", "--profile", "smoke", "--data", str(toy), "--init",
              str(bad_checkpoint), "--out", str(tmp_path / "o")])  # fmt: skip
