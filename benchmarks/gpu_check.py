"""GPU readiness check: one run, under 8 minutes on one H100, one JSON under ``benchmarks/results/``.

Steps, each in its own process with its own time limit (a step that overruns is recorded as such, the others run):

1. ``fps``: paper-size VideoGLaMM baseline and + SPARROW inference with the released architecture in random
   weights (``bench_paper_fps.py --scale paper``: Phi-3-mini, CLIP ViT-L/14-336, InternVideo2-1B, SAM2 Hiera-L, the
   300-query Deformable-DETR proposer), framewise decoding and VideoGLaMM's SAM2 video predictor (``video_branch``)
   timed on the same loaded models. The paper: 2.40 FPS for + SPARROW; the goal is at least twice that.
2. ``jf``: the batched J&F path (``sparrow.eval.jf.jf_per_frame(device="cuda")``) against the CPU path on the same
   synthetic 480x854 masks: the values must be identical; both timed.
3. ``tsf``: the offline TSF pass per video at paper size (``bench_tsf.py --profile paper``) with a random-weight
   GroundingDINO at the released grounding-dino-tiny sizes (Swin-T, BERT-base text tower) and SAM2 Hiera-L in
   random weights on a synthetic 480x854 set: the compute of the real pass, to compare with the paper's ~6.2 s per
   video (2.16 GPU-days over ~30k videos, other hardware).

Without a CUDA device it stops at once with one line and exit status 2. Run: ``bash benchmarks/gpu_check.sh``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAPER_TSF_S_PER_VIDEO = 2.16 * 86400 / 30_000
BUDGET_S = 480.0
STEP_LIMITS_S = {"fps": 330.0, "jf": 45.0, "tsf": 90.0}
NO_GPU = "gpu_check: no CUDA device visible (torch.cuda.is_available() is False); run it on a machine with a GPU"


def _python() -> str:
    return sys.executable


def _run(cmd: list[str], limit: float, env: dict | None = None) -> tuple[int | None, str, float]:
    start = time.perf_counter()
    try:
        done = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=limit, env={**os.environ, **(env or {})}
        )
        out = done.stdout + done.stderr
        return done.returncode, out, time.perf_counter() - start
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return None, out, time.perf_counter() - start


def step_fps(tmp: Path, limit: float, frames: int, runs: int) -> dict:
    out = tmp / "fps.json"
    cmd = [_python(), "benchmarks/bench_paper_fps.py", "--scale", "paper", "--device", "cuda"]
    cmd += ["--frames", str(frames), "--runs", str(runs), "--workdir", str(tmp), "--out", str(out)]
    cmd += ["--propagation", "framewise", "video_branch"]
    rc, log, seconds = _run(cmd, limit)
    result: dict = {"seconds": seconds, "returncode": rc, "log_tail": log[-2000:]}
    if rc == 0 and out.is_file():
        result["report"] = json.loads(out.read_text())
    return result


def jf_compare(sequences: int, frames: int, height: int, width: int, device: str = "cuda") -> dict:
    """J&F of synthetic masks by the CPU path and the batched torch path on ``device``: times and equality."""
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_jf import make_sequence

    from sparrow.eval.jf import jf_per_frame

    rng = np.random.default_rng(0)
    data = [make_sequence(rng, frames, height, width)[:2] for _ in range(sequences)]
    jf_per_frame(*data[0], device=device)  # first-call costs (kernels, allocator) outside the timing
    times = {"cpu": 0.0, device: 0.0}
    max_diff = 0.0
    identical = True
    for gt, pred in data:
        start = time.perf_counter()
        j_cpu, f_cpu = jf_per_frame(gt, pred)
        times["cpu"] += time.perf_counter() - start
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        j_dev, f_dev = jf_per_frame(gt, pred, device=device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times[device] += time.perf_counter() - start
        identical &= bool(np.array_equal(j_cpu, j_dev) and np.array_equal(f_cpu, f_dev))
        max_diff = max(max_diff, float(np.abs(j_cpu - j_dev).max()), float(np.abs(f_cpu - f_dev).max()))
    return {
        "frame_pairs": sequences * frames,
        "size": [height, width],
        "seconds": times,
        "speedup": times["cpu"] / max(times[device], 1e-9),
        "identical": identical,
        "max_abs_difference": max_diff,
    }


def step_jf(tmp: Path, limit: float) -> dict:
    cmd = [_python(), str(Path(__file__)), "--jf-child", str(tmp / "jf.json")]
    rc, log, seconds = _run(cmd, limit)
    result: dict = {"seconds": seconds, "returncode": rc, "log_tail": log[-2000:]}
    if rc == 0 and (tmp / "jf.json").is_file():
        result["report"] = json.loads((tmp / "jf.json").read_text())
    return result


def random_paper_detector(out_dir: Path) -> Path:
    """An untrained GroundingDINO at grounding-dino-tiny's sizes (transformers' defaults: Swin-T, BERT-base) with
    the kit's offline word-level processor: the compute of the released detector, meaningless boxes."""
    import torch
    from transformers import GroundingDinoConfig, GroundingDinoForObjectDetection

    from sparrow.tsf.detection import build_processor, build_vocabulary

    vocab = build_vocabulary(["the person on the left", "a red car", "the dog running"])
    torch.manual_seed(0)
    GroundingDinoForObjectDetection(GroundingDinoConfig()).save_pretrained(out_dir)
    build_processor(vocab, 800).save_pretrained(out_dir)
    return out_dir


def step_tsf(tmp: Path, limit: float, videos: int) -> dict:
    start = time.perf_counter()
    detector = tmp / "detector"
    rc, log, _ = _run([_python(), str(Path(__file__)), "--detector-child", str(detector)], limit / 3)
    if rc != 0:
        return {"seconds": time.perf_counter() - start, "returncode": rc, "log_tail": log[-2000:]}
    cmd = [_python(), "benchmarks/bench_tsf.py", "--profile", "paper", "--device", "cuda"]
    cmd += ["--detector", str(detector), "--limit-videos", str(videos), "--splits", "train"]
    rc, log, _ = _run(cmd, limit - (time.perf_counter() - start))
    result: dict = {"seconds": time.perf_counter() - start, "returncode": rc, "log_tail": log[-2000:]}
    found = re.findall(r"([0-9.]+) s per video on cuda", log)
    if rc == 0 and found:
        per_video = float(found[-1])
        result["report"] = {
            "seconds_per_video": per_video,
            "paper_seconds_per_video": PAPER_TSF_S_PER_VIDEO,
            "ratio_to_paper": per_video / PAPER_TSF_S_PER_VIDEO,
            "weights": "random (GroundingDINO grounding-dino-tiny sizes, SAM2 Hiera-L)",
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48, help="frames of the FPS video (480x854)")
    parser.add_argument("--runs", type=int, default=2, help="timed predict calls per variant and mode")
    parser.add_argument("--tsf-videos", type=int, default=2)
    parser.add_argument("--steps", nargs="+", default=list(STEP_LIMITS_S), choices=list(STEP_LIMITS_S))
    parser.add_argument("--out", default=None, help="JSON path (default: benchmarks/results/gpu_check_<gpu>.json)")
    parser.add_argument("--jf-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--detector-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print(NO_GPU, file=sys.stderr)
        return 2
    import sparrow  # noqa: F401  (its torchvision shim before any transformers import)

    if args.jf_child:
        Path(args.jf_child).write_text(json.dumps(jf_compare(8, 40, 480, 854)))
        return 0
    if args.detector_child:
        random_paper_detector(Path(args.detector_child))
        return 0
    gpu = torch.cuda.get_device_name(0)
    report: dict = {"benchmark": "gpu_check", "gpu": gpu, "torch": torch.__version__, "budget_s": BUDGET_S}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for name in args.steps:
            left = BUDGET_S - (time.perf_counter() - start)
            limit = min(STEP_LIMITS_S[name], left)
            if limit < 10:
                report[name] = {"skipped": f"{left:.0f} s of the {BUDGET_S:.0f} s budget left"}
                continue
            print(f"gpu_check: {name} (limit {limit:.0f} s)", flush=True)
            work = Path(tmp) / name
            work.mkdir()
            if name == "fps":
                report[name] = step_fps(work, limit, args.frames, args.runs)
            elif name == "jf":
                report[name] = step_jf(work, limit)
            else:
                report[name] = step_tsf(work, limit, args.tsf_videos)
            if report[name].get("returncode") is None:
                report[name]["timed_out"] = True
    report["total_seconds"] = time.perf_counter() - start
    out = Path(args.out) if args.out else RESULTS / f"gpu_check_{re.sub(r'[^A-Za-z0-9]+', '_', gpu)}.json"
    from sparrow.storage import atomic_write_json

    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, report)
    print(summary(report))
    print(f"gpu_check: written {out}")
    return 0 if all(report.get(n, {}).get("report") for n in args.steps) else 1


def summary(report: dict) -> str:
    lines = [f"GPU: {report['gpu']}"]
    fps = report.get("fps", {}).get("report")
    if fps:
        for name, r in fps["variants"].items():
            lines.append(f"  {name:28s} {r['fps']:7.2f} FPS")
        lines.append(f"  paper {fps['paper_fps']} FPS, goal {fps['goal_fps']:.2f}; meets goal: {fps['meets_goal']}")
    jf = report.get("jf", {}).get("report")
    if jf:
        lines.append(f"  J&F batched GPU vs CPU: identical={jf['identical']}, {jf['speedup']:.1f}x faster")
    tsf = report.get("tsf", {}).get("report")
    if tsf:
        lines.append(
            f"  TSF {tsf['seconds_per_video']:.2f} s per video (paper ~{tsf['paper_seconds_per_video']:.1f} s)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
