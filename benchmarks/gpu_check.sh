#!/usr/bin/env bash
# GPU readiness check: paper-size FPS (framewise and memory propagation), batched J&F on the GPU against the CPU
# path, TSF cost per video; one JSON under benchmarks/results/ (benchmarks/gpu_check.py). Fits 8 minutes on one
# H100; without a GPU it stops at once with one line and exit status 2.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY="$(command -v python3)"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" benchmarks/gpu_check.py "$@"
