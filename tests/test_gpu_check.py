"""benchmarks/gpu_check.sh without a GPU: one clear line and a non-zero exit, at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"


def test_without_a_gpu_it_fails_fast_with_one_line(tmp_path):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHON=sys.executable)
    start = time.perf_counter()
    done = subprocess.run(
        ["bash", str(SCRIPT), "--out", str(tmp_path / "r.json")], capture_output=True, text=True, env=env
    )
    assert time.perf_counter() - start < 30
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "gpu_check: no CUDA device visible (torch.cuda.is_available() is False); run it on a machine with a GPU"
    ]
    assert not (tmp_path / "r.json").exists()
