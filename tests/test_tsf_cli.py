"""``sparrow tsf``: the offline pass from the command line (cached, resumable), with one-line errors."""

from __future__ import annotations

import pytest

from fixtures.toydata import write_toy_curated
from sparrow.cli import main
from sparrow.tsf.runs import TSFRun


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_curated(tmp_path_factory.mktemp("toy"), videos=2, frames=6)


def test_sparrow_tsf_computes_a_run_and_finds_it_again(toy, capsys):
    argv = ["tsf", "--profile", "smoke", "--split", "valid", "--curated", str(toy), "--box-source", "ground_truth"]
    assert main(argv) == 0
    first = capsys.readouterr().out.splitlines()
    folder = first[0].rsplit(": ", 1)[1]
    run = TSFRun(folder)
    assert run.counts["expressions"] == 4 and run.counts["computed"] == 4
    assert "computed 4" in first[1]
    assert main(argv) == 0  # a finished run is found in the cache, not recomputed
    assert capsys.readouterr().out.splitlines()[0] == first[0]
    assert main([*argv, "--source", "toy", "--limit-videos", "1"]) == 0
    assert TSFRun(capsys.readouterr().out.splitlines()[0].rsplit(": ", 1)[1]).counts["videos"] == 1


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--split", "test"], "no split 'test' (it has train, valid)"),
        (["--split", "valid", "--source", "davis"], "no source 'davis' (it has toy)"),
        (["--split", "valid", "--detector", "/no/such/folder"], "detector folder not found: /no/such/folder"),
        (["--split", "valid", "--profile", "paper"], "under 'paper' give the local GroundingDINO folder"),
    ],
)
def test_bad_arguments_give_one_line_errors(toy, capsys, extra, message):
    assert main(["tsf", "--profile", "smoke", "--curated", str(toy), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparrow tsf: error: ") and message in err and err.count("\n") == 1


def test_missing_curated_folder_and_bad_choices(tmp_path, capsys):
    assert main(["tsf", "--profile", "smoke", "--split", "valid", "--curated", str(tmp_path / "none")]) == 2
    assert "curated dataset folder not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["tsf", "--profile", "smoke", "--split", "valid", "--box-source", "oracle"])
    assert exit_info.value.code == 2 and "invalid choice: 'oracle'" in capsys.readouterr().err
