"""Recording numbers, comparing with expectations, atomic storage."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sparrow.results import Recorder, compare, write_expected
from sparrow.storage import DataError, atomic_open, iter_jsonl, read_json, write_jsonl


def _record(tmp: Path, values: dict) -> Path:
    rec = Recorder("99_example", profile="smoke", seed=3)
    for name, value in values.items():
        rec.add(name, value, unit="x")
    return rec.save(tmp)


def test_recorder_writes_provenance(tmp_path: Path) -> None:
    rec = Recorder("notebooks/99_example.ipynb", profile="smoke", seed=3)
    rec.add("count", 4, unit="videos")
    rec.add("jf", 0.5, unit="J&F", paper=76.8, paper_source="Table 1")
    path = rec.save(tmp_path)
    data = json.loads(path.read_text())
    assert path == tmp_path / "smoke" / "99_example.json"
    assert data["profile"] == "smoke" and data["seed"] == 3 and data["notebook"] == "99_example"
    assert {"torch", "numpy"} <= set(data["versions"])
    assert data["device"].startswith(("cpu", "cuda"))
    assert data["metrics"][1] == {
        "name": "jf",
        "value": 0.5,
        "unit": "J&F",
        "paper": 76.8,
        "paper_source": "Table 1",
        "note": None,
    }


def test_recorder_refuses_bad_numbers() -> None:
    rec = Recorder("99_example", profile="smoke", seed=0)
    rec.add("a", 1)
    with pytest.raises(ValueError, match="twice"):
        rec.add("a", 2)
    with pytest.raises(ValueError, match="nan"):
        rec.add("b", math.nan)
    with pytest.raises(ValueError, match="source"):
        rec.add("c", 1.0, paper=2.0)
    with pytest.raises(ValueError, match="unknown profile"):
        Recorder("x", profile="large", seed=0)


def test_compare_reports_drift_missing_and_unexpected(tmp_path: Path) -> None:
    first = _record(tmp_path / "a", {"n": 10, "score": 0.5, "gone": 1})
    expected = write_expected(first, tmp_path / "expected.json")
    assert compare(first, expected).ok
    spec = json.loads(expected.read_text())
    spec["metrics"]["score"]["abs_tol"] = 0.01
    spec["metrics"]["score"]["why"] = "seed spread"
    expected.write_text(json.dumps(spec))
    second = _record(tmp_path / "b", {"n": 11, "score": 0.505, "new": 2})
    drift = compare(second, expected)
    text = str(drift)
    assert not drift.ok and len(drift.problems) == 3
    assert "n: recorded 11, expected 10 (delta +1)" in text
    assert "gone: expected 1 but was not recorded" in text
    assert "new: recorded 2 but has no expectation" in text
    # Regeneration keeps the hand-set tolerance and its reason.
    write_expected(second, expected)
    assert json.loads(expected.read_text())["metrics"]["score"] == {
        "value": 0.505,
        "abs_tol": 0.01,
        "rel_tol": 1e-06,
        "why": "seed spread",
    }


def test_info_numbers_are_shown_never_asserted(tmp_path: Path) -> None:
    first = _record(tmp_path / "a", {"n": 10, "wall_s": 12.5})
    expected = write_expected(first, tmp_path / "expected.json")
    spec = json.loads(expected.read_text())
    spec["metrics"]["wall_s"].update(info=True, why="wall time")
    expected.write_text(json.dumps(spec))
    drift = compare(_record(tmp_path / "b", {"n": 10, "wall_s": 9000.0}), expected)
    assert drift.ok and drift.info == ["wall_s: recorded 9000.0 (stored 12.5) [wall time]"]
    assert "not compared (info):\n  - wall_s: recorded 9000.0" in str(drift)
    # An info number must still be recorded; the asserted ones still fail.
    drift = compare(_record(tmp_path / "c", {"n": 11}), expected)
    assert sorted(drift.problems) == [
        "n: recorded 11, expected 10 (delta +1) within abs 0 / rel 0 [count or label: exact]",
        "wall_s: expected 12.5 but was not recorded",
    ]
    # Regeneration keeps the flag; entries without it are written as before.
    write_expected(_record(tmp_path / "d", {"n": 12, "wall_s": 3.0}), expected)
    metrics = json.loads(expected.read_text())["metrics"]
    assert metrics["wall_s"] == {"value": 3.0, "abs_tol": 1e-09, "rel_tol": 1e-06, "why": "wall time", "info": True}
    assert "info" not in metrics["n"]


def test_the_recorded_wall_times_are_info_only() -> None:
    from sparrow.results import expected_path, load_expected

    for profile in ("smoke", "mini"):
        expected = load_expected(expected_path("04_benchmark_tables", profile))
        info = sorted(name for name, spec in expected.items() if spec.info)
        assert info == ["time/eval_s", "time/notebook_s", "time/train_s"], profile
        assert all(spec.abs_tol < 1e3 for spec in expected.values()), f"{profile}: a tolerance that cannot fail"


def test_atomic_open_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as handle:
            handle.write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.json"]


def test_atomic_write_survives_sigkill(tmp_path: Path) -> None:
    """A writer killed mid-write leaves the previous complete file in place."""
    target = tmp_path / "big.jsonl"
    write_jsonl(target, [{"i": 0}])
    code = (
        "import sys, time; from sparrow.storage import write_jsonl\n"
        "def rows():\n    for i in range(10**9):\n        if i == 1000: print('writing', flush=True)\n"
        "        yield {'i': i}\n"
        f"write_jsonl({str(target)!r}, rows())\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert list(iter_jsonl(target)) == [{"i": 0}]


def test_read_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "truncated.json"
    bad.write_text('{"videos": {"a": ')
    with pytest.raises(DataError, match=r"truncated\.json: invalid JSON at line 1"):
        read_json(bad)
    latin = tmp_path / "latin.json"
    latin.write_bytes('{"exp": "caf\xe9"}'.encode("latin-1"))
    with pytest.raises(DataError, match=r"latin\.json: not valid utf-8"):
        read_json(latin)
    lines = tmp_path / "rows.jsonl"
    lines.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(DataError, match=r"rows\.jsonl:2"):
        list(iter_jsonl(lines))
