"""SPARROW-Mini generation time and size (goals: smoke < 5 s, mini well under 40 s on one core).

Generates ``smoke`` and ``mini`` into temporary folders, each in a fresh child process, and prints side by side:
wall time, CPU time of the process (generation is single-threaded, so CPU time is the one-core figure even on a
busy machine), seconds per source, size on disk (``du``-style, allocated blocks), number of files and videos.

Run: ``.venv/bin/python benchmarks/bench_synth.py [--seed 0] [--profiles smoke mini]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOALS_S = {"smoke": 5.0, "mini": 40.0}


def _child(profile: str, seed: int, out: str) -> None:
    import sparrow  # noqa: F401  (torchvision shim first, as everywhere in the kit)
    from sparrow.data.synthetic import generate

    timings: dict[str, float] = {}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    generate(profile, seed, out, timings=timings)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "per_source_s": timings}))


def _disk(root: Path) -> tuple[int, int, int]:
    files = blocks = apparent = 0
    for dirpath, _, names in os.walk(root):
        for name in names:
            st = os.stat(os.path.join(dirpath, name))
            files += 1
            blocks += st.st_blocks * 512
            apparent += st.st_size
    return files, blocks, apparent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profiles", nargs="+", default=["smoke", "mini"])
    parser.add_argument("--child", nargs=3, metavar=("PROFILE", "SEED", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]), args.child[2])
        return 0
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_synth_") as tmp:
        for profile in args.profiles:
            out = Path(tmp) / profile
            result = subprocess.run(
                [sys.executable, __file__, "--child", profile, str(args.seed), str(out)],
                check=True,
                capture_output=True,
                text=True,
            )
            stats = json.loads(result.stdout.strip().splitlines()[-1])
            files, disk, apparent = _disk(out)
            manifest = json.loads((out / "manifest.json").read_text())
            videos = sum(c["videos"] for splits in manifest["counts"].values() for c in splits.values())
            rows.append((profile, stats, files, disk, apparent, videos))
    print(
        f"{'profile':8s} {'wall s':>7s} {'cpu s':>7s} {'goal s':>7s} {'videos':>7s} {'files':>7s} "
        f"{'disk MiB':>9s} {'bytes MiB':>9s}"
    )
    for profile, stats, files, disk, apparent, videos in rows:
        print(
            f"{profile:8s} {stats['wall_s']:7.2f} {stats['cpu_s']:7.2f} {GOALS_S.get(profile, float('nan')):7.1f} "
            f"{videos:7d} {files:7d} {disk / 2**20:9.1f} {apparent / 2**20:9.1f}"
        )
    for profile, stats, *_ in rows:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in stats["per_source_s"].items())
        print(f"{profile} per source (wall s): {parts}")
    load1 = os.getloadavg()[0]
    print(
        f"load average at the end: {load1:.1f} on {os.cpu_count()} cores (wall time grows with it, CPU time much less)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
