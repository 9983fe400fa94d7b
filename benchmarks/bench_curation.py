"""Curation time and peak memory on SPARROW-Mini (goal: ``mini`` curated in under 60 s on 2 CPU cores).

Generation is timed separately and not counted (it is cached under ``SPARROW_HOME`` by ``ensure_generated``).
Curation runs in a fresh child process so that its peak resident memory (``ru_maxrss``) is its own; a second
child repeats it under ``tracemalloc`` for the peak of Python allocations (slower, so its time is not the
figure). Printed side by side: wall time, CPU time, per-source time, peak RSS, Python heap peak, and counts.

Run: ``.venv/bin/python benchmarks/bench_curation.py [--profile mini] [--seed 0] [--workers 2] [--fresh]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_S = 60.0


def _child(args: argparse.Namespace) -> None:
    import tracemalloc

    import sparrow  # noqa: F401  (torchvision shim first)
    from sparrow.data.curate import _manifest_sources, curate

    sources = _manifest_sources(Path(args.root))
    if args.trace:
        tracemalloc.start()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    baseline_mib = usage0.ru_maxrss / 1024  # after imports (torch comes with the package's shim)
    start = time.perf_counter()
    report = curate(sources, Path(args.out), seed=args.seed, workers=args.workers)
    wall = time.perf_counter() - start
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        "wall_s": wall,
        "cpu_s": (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime),
        "maxrss_mib": usage1.ru_maxrss / 1024,
        "baseline_rss_mib": baseline_mib,
        "python_peak_mib": tracemalloc.get_traced_memory()[1] / 2**20 if args.trace else None,
        "totals": report.totals,
        "per_source_s": {name: entry.get("seconds") for name, entry in report.to_json()["sources"].items()},
    }
    print(json.dumps(result))


def _run_child(root: Path, out: Path, seed: int, workers: int, trace: bool) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        "--root",
        str(root),
        "--out",
        str(out),
        "--seed",
        str(seed),
        "--workers",
        str(workers),
    ] + (["--trace"] if trace else [])
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="mini", choices=("smoke", "mini"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="frame-decoding threads of curate()")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="generate into a temporary folder (timed) instead of reusing the SPARROW_HOME cache",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return

    import sparrow  # noqa: F401
    from sparrow.data.synthetic import ensure_generated, generate, is_complete
    from sparrow.paths import data_dir

    with tempfile.TemporaryDirectory(prefix="sparrow-bench-curate-") as tmp:
        cached = not args.fresh and is_complete(data_dir(args.profile, args.seed), args.profile, args.seed)
        start = time.perf_counter()
        if args.fresh:
            root = generate(args.profile, args.seed, Path(tmp) / "generated")
        else:
            root = ensure_generated(args.profile, args.seed)
        generation_s = time.perf_counter() - start
        timed = _run_child(root, Path(tmp) / "timed", args.seed, args.workers, trace=False)
        traced = _run_child(root, Path(tmp) / "traced", args.seed, args.workers, trace=True)

    totals = timed["totals"]
    print(f"SPARROW-Mini {args.profile} (seed {args.seed}) at {root}")
    print(f"  generation: {generation_s:.1f} s {'(cached, reused)' if cached else '(generated now; not counted)'}")
    print(
        f"  curated: {totals['videos']} videos, {totals['frames']} frames, {totals['objects']} objects, "
        f"{totals['masks']} masks, {totals['expressions']} expressions, {totals['qa']} Q&A, "
        f"{totals['skipped']} skipped"
    )
    print(f"  machine: {os.cpu_count()} CPUs visible, curate workers={args.workers}")
    print(f"{'measure':<34}{'value':>12}")
    print(f"{'curation wall time (s)':<34}{timed['wall_s']:>12.2f}")
    print(f"{'curation CPU time (s)':<34}{timed['cpu_s']:>12.2f}")
    print(f"{'peak RSS of the process (MiB)':<34}{timed['maxrss_mib']:>12.1f}")
    print(f"{'  of which after imports (MiB)':<34}{timed['baseline_rss_mib']:>12.1f}")
    print(f"{'Python heap peak, tracemalloc (MiB)':<34}{traced['python_peak_mib']:>12.2f}")
    print(f"{'wall time under tracemalloc (s)':<34}{traced['wall_s']:>12.2f}")
    for name, seconds in timed["per_source_s"].items():
        print(f"{'  ' + name + ' (s)':<34}{seconds:>12.2f}")
    verdict = "met" if timed["wall_s"] < GOAL_S else "NOT met"
    print(f"goal: {args.profile} curated in < {GOAL_S:.0f} s -> {verdict} ({timed['wall_s']:.1f} s)")


if __name__ == "__main__":
    main()
