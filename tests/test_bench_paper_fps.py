"""The paper-size FPS benchmark's path, run at tiny scale on the CPU (the paper scale needs a GPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

import sparrow  # noqa: F401  (torchvision shim first)
from sparrow.storage import read_json

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_paper_fps.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_paper_fps", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pytestmark = pytest.mark.usefixtures("one_thread")


def test_tiny_scale_measures_both_variants_through_the_paper_loader(tmp_path):
    out = tmp_path / "fps.json"
    report = load_bench().main(
        [
            "--scale",
            "tiny",
            "--device",
            "cpu",
            "--frames",
            "3",
            "--height",
            "24",
            "--width",
            "32",
            "--runs",
            "1",
            "--workdir",
            str(tmp_path),
            "--out",
            str(out),
            "--propagation",
            "framewise",
            "video_branch",
        ]
    )
    assert read_json(out) == report
    variants = report["variants"]
    assert set(variants) == {"baseline", "sparrow", "baseline/video_branch", "sparrow/video_branch"}
    assert variants["sparrow"]["propagation"] == "framewise"
    assert variants["sparrow/video_branch"]["propagation"] == "video_branch"
    base, sparrow_ = report["variants"]["baseline"], report["variants"]["sparrow"]
    for r in (base, sparrow_):
        assert r["seconds_per_call"] > 0 and r["fps"] == pytest.approx(3 / r["seconds_per_call"])
    # the dual prompt adds the proposer, the selector and the ROI helper to the same loaded components
    assert sparrow_["parameters"] > base["parameters"]
    assert report["meets_goal"] is None and report["device"].startswith("CPU")
    assert report["ratio_to_paper"] == pytest.approx(sparrow_["fps"] / 2.40)
    assert not any(p.name != "fps.json" for p in tmp_path.iterdir()), "random component folders left behind"


def test_paper_scale_without_a_gpu_says_so_and_measures_nothing(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert load_bench().main(["--scale", "paper", "--workdir", str(tmp_path)]) is None
    assert "skipped: the paper-size preset needs a GPU" in capsys.readouterr().out
    assert not any(tmp_path.iterdir())


def test_real_components_missing_stop_with_one_line_naming_the_component(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        load_bench().main(["--weights-root", str(tmp_path / "empty"), "--device", "cpu", "--allow-cpu"])
    assert info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    missing = tmp_path / "empty" / "Phi-3-mini-4k-instruct"
    assert f"component 'Phi-3-mini-4k-instruct' not found at {missing}" in last
