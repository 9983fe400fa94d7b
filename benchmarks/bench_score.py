"""Scoring a DAVIS-2017-val-sized set, side by side in one run on the same masks, values checked equal:

1. J and F only, in memory, one process (CPU time of this process): the official per-frame functions
   (``db_eval_iou`` / ``db_eval_boundary``, the faithful copy in tests/fixtures/reference_davis.py) against
   ``sparrow.eval.jf.jf_per_frame``, object by object; every per-frame value compared (target |Δ| <= 1e-12).
2. From the PNG folders, end to end (wall time: PNG reads, J and F, per-object means): the kit per video through
   ``sparrow.eval.parallel.map_ordered`` with 1 and ``--workers`` processes, and the multiprocess vos-benchmark tool
   (hkchengrex/vos-benchmark, ``benchmark(..., num_processes=N)``) with 1 and as many processes; its per-object J and
   F means compared with the kit's.

Data (not timed): ``--videos`` (30) procedural, deterministic (``--seed``) videos of ``--frames`` (70) frames at
480x854 with 1-4 objects (DAVIS-2017 val: 30 videos, 69 frames and 2 objects per video on average), each object a
moving irregular shape and its prediction with the usual errors (see benchmarks/bench_jf.py), written as DAVIS index
PNGs: ``<root>/Annotations/480p/<video>/<frame>.png`` and ``<root>/results/<video>/<frame>.png``. The protocol is the
semi-supervised one of both tools: the first and last frame of each video are not scored.

vos-benchmark is not a dependency of the kit: pass a checkout with ``--vos-benchmark DIR`` (it needs numpy, Pillow,
tqdm, OpenCV and scikit-image, all in the kit's environment); without one, the script says why it was not run.

    .venv/bin/python benchmarks/bench_score.py --vos-benchmark /path/to/vos-benchmark
    .venv/bin/python benchmarks/bench_score.py --videos 4 --frames 12     # quick look
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from bench_jf import make_sequence  # noqa: E402

import sparrow  # noqa: E402,F401  (torchvision shim first)
from fixtures.reference_davis import ref_boundary, ref_iou  # noqa: E402
from sparrow.eval.jf import jf_per_frame, statistics  # noqa: E402
from sparrow.eval.parallel import map_ordered  # noqa: E402
from sparrow.eval.png import read_index_png, write_index_png  # noqa: E402

TOL = 1e-12


def make_video(rng: np.random.Generator, frames: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(GT labels, predicted labels), (T, H, W) uint8; every object of the GT is visible in the first scored frame."""
    n_objects = int(rng.integers(1, 5))
    gt = np.zeros((frames, height, width), np.uint8)
    pred = np.zeros((frames, height, width), np.uint8)
    for k in range(1, n_objects + 1):
        g, p, _ = make_sequence(rng, frames, height, width)
        gt[g != 0] = k  # later objects occlude earlier ones
        pred[p != 0] = k
    # Both tools take the objects from the GT; keep those present in the first scored frame, numbered 1..n.
    present = [k for k in range(1, n_objects + 1) if (gt[min(1, frames - 1)] == k).any()]
    lut = np.zeros(256, np.uint8)
    lut[present] = np.arange(1, len(present) + 1)
    return lut[gt], lut[pred]


def kit_video(task: tuple[str, str, str]) -> tuple[str, dict[int, tuple[float, float]]]:
    """One video from its PNG folders: {object: (100 * mean J, 100 * mean F)} over the scored frames."""
    gt_root, pred_root, video = task
    names = sorted(p.name for p in (Path(gt_root) / video).glob("*.png"))[1:-1]
    gt = np.stack([read_index_png(Path(gt_root) / video / n, f"{video}/{n}") for n in names])
    pred = np.stack([read_index_png(Path(pred_root) / video / n, f"{video}/{n}") for n in names])
    out = {}
    for k in np.unique(gt[gt != 0]).tolist():
        j, f = jf_per_frame(gt == k, pred == k)
        out[int(k)] = (100 * statistics(j)[0], 100 * statistics(f)[0])
    return video, out


def _vos_benchmark(path: str | None):
    """vos-benchmark's ``benchmark`` function, or the reason it cannot run here."""
    if not path:
        return None, "no checkout given (--vos-benchmark DIR, a clone of github.com/hkchengrex/vos-benchmark)"
    if not (Path(path) / "vos_benchmark" / "benchmark.py").is_file():
        return None, f"{path} is not a vos-benchmark checkout (no vos_benchmark/benchmark.py)"
    sys.path.insert(0, str(Path(path)))
    try:
        from vos_benchmark.benchmark import benchmark
    except ImportError as exc:
        return None, f"cannot import vos_benchmark from {path}: {exc}"
    return benchmark, ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=30)
    parser.add_argument("--frames", type=int, default=70)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vos-benchmark", default=os.environ.get("VOS_BENCHMARK"), help="a vos-benchmark checkout")
    parser.add_argument("--keep", help="write the PNG set here and keep it (default: a temporary folder)")
    args = parser.parse_args()
    if args.frames < 3:
        parser.error("--frames must be at least 3 (the first and last frame are not scored)")
    cv2.setNumThreads(1)
    benchmark, why_not = _vos_benchmark(args.vos_benchmark)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        gt_root, pred_root = root / "Annotations" / "480p", root / "results"
        rng = np.random.default_rng(args.seed)
        videos = [f"video{i:03d}" for i in range(args.videos)]

        # 1. In memory, per object: the official per-frame functions against the kit.
        ref_cpu = kit_cpu = 0.0
        max_dj = max_df = 0.0
        pairs = 0
        cuda = _cuda()
        gpu_cpu = gpu_wall = 0.0
        g, p = make_video(rng, 3, args.height, args.width)
        ref_iou(g == 1, p == 1), ref_boundary(g == 1, p == 1), jf_per_frame(g == 1, p == 1)  # first-call costs
        for video in videos:
            gt, pred = make_video(rng, args.frames, args.height, args.width)
            for t in range(args.frames):
                write_index_png(gt_root / video / f"{t:05d}.png", gt[t])
                write_index_png(pred_root / video / f"{t:05d}.png", pred[t])
            for k in np.unique(gt[1:-1][gt[1:-1] != 0]).tolist():
                gk, pk = gt[1:-1] == k, pred[1:-1] == k
                c = time.process_time()
                j_ref, f_ref = ref_iou(gk, pk), ref_boundary(gk, pk)
                ref_cpu += time.process_time() - c
                c = time.process_time()
                j, f = jf_per_frame(gk, pk)
                kit_cpu += time.process_time() - c
                max_dj = max(max_dj, float(np.abs(j - j_ref).max()))
                max_df = max(max_df, float(np.abs(f - f_ref).max()))
                pairs += len(j)
                if cuda:
                    c, w = time.process_time(), time.perf_counter()
                    jg, fg = jf_per_frame(gk, pk, device="cuda")
                    gpu_cpu, gpu_wall = gpu_cpu + time.process_time() - c, gpu_wall + time.perf_counter() - w
                    max_dj = max(max_dj, float(np.abs(jg - j_ref).max()))
                    max_df = max(max_df, float(np.abs(fg - f_ref).max()))

        print(
            f"DAVIS-sized synthetic set: {args.videos} videos x {args.frames} frames x {args.height}x{args.width}, "
            f"{pairs} scored object-frames; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
        )
        print("1. J and F in memory, one process (CPU time)")
        print(f"   official per-frame functions   {ref_cpu / pairs * 1e3:8.3f} ms per object-frame")
        print(
            f"   sparrow jf_per_frame            {kit_cpu / pairs * 1e3:8.3f} ms per object-frame   "
            f"{ref_cpu / kit_cpu:5.1f}x faster"
        )
        if cuda:
            print(
                f"   sparrow jf_per_frame cuda       {gpu_wall / pairs * 1e3:8.3f} ms per object-frame wall "
                f"({torch_device_name()}), {ref_cpu / gpu_wall:5.1f}x"
            )
        else:
            print("   GPU path (device='cuda'): not measured, no CUDA device on this machine")
        print(f"   max |J - official| = {max_dj:.3g}, max |F - official| = {max_df:.3g} (target <= {TOL:g})")

        # 2. End to end from the PNG folders.
        tasks = [(str(gt_root), str(pred_root), v) for v in videos]
        print(
            f"2. From the PNG folders, end to end, {len(videos)} videos (wall time; CPU = this process and its "
            "workers; load = 1-min load average before the run)"
        )
        runs = {}
        for workers in (1, args.workers):
            runs["sparrow", workers] = _timed(lambda w=workers: dict(map_ordered(kit_video, tasks, workers=w)))
        if benchmark is not None:
            for workers in (1, args.workers):
                runs["vos-benchmark", workers] = _timed(
                    lambda w=workers: benchmark([str(gt_root)], [str(pred_root)], num_processes=w, verbose=False)[3][0]
                )
        for (tool, workers), (_, wall, cpu, load) in runs.items():
            label = f"{tool}, {workers} {'process' if workers == 1 else 'processes'}"
            line = f"   {label:28s} {wall:7.2f} s wall {cpu:7.2f} s CPU  (load {load:.1f})"
            if workers > 1:
                one = runs[tool, 1][1]
                line += f"   scaling {one / wall:.2f}x ({one / wall / workers:.0%} of linear)"
            if tool == "vos-benchmark":
                line += f"   sparrow {wall / runs['sparrow', workers][1]:.1f}x faster at equal workers"
            print(line)
        if benchmark is None:
            print(f"   vos-benchmark: not run: {why_not}")
            return
        kit, vos = runs["sparrow", 1][0], runs["vos-benchmark", args.workers][0]
        diff = 0.0
        for video in videos:
            iou, boundary = vos[video]
            if set(iou) != set(kit[video]):
                raise SystemExit(f"{video}: objects differ: vos-benchmark {sorted(iou)}, sparrow {sorted(kit[video])}")
            for k, (jm, fm) in kit[video].items():
                diff = max(diff, abs(jm - iou[k]), abs(fm - boundary[k]))
                assert runs["sparrow", args.workers][0][video][k] == (jm, fm)
        print(f"   max |per-object mean J or F (x100), sparrow - vos-benchmark| = {diff:.3g}")


def _timed(run):
    """(result, wall s, CPU s of this process and of its finished workers, load average before)."""
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    result = run()
    wall = time.perf_counter() - wall
    gc.collect()  # vos-benchmark leaves its pool to be collected: reap the workers so that their CPU time counts
    for child in multiprocessing.active_children():
        child.join(10)
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(a.ru_utime + a.ru_stime - b.ru_utime - b.ru_stime for a, b in zip(after, before))
    return result, wall, cpu, load


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def torch_device_name() -> str:
    import torch

    return torch.cuda.get_device_name()


if __name__ == "__main__":
    main()
