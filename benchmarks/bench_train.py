"""Training and inference speed per host preset under ``mini`` (goal: one mini variant trains in <= 3 minutes).

For each preset (videoglamm, unipixel, glus), in a fresh child process on the curated SPARROW-Mini:

- the time of one training step (forward, backward, AdamW step) per stage, with the stage's mini batch size, as the
  median over ``--steps`` steps after one warm-up step; wall time and the process's CPU time (on a busy machine
  CPU time / 2 cores is closer to what an idle machine would take);
- inference frames per second of ``model.predict`` over whole held-out MeViS valid_u videos (median of a few);
- the child's peak resident memory (model build, the training steps and inference together).

Then, unless ``--no-variant``, the wall time of training whole variants with :func:`train_variant` into a temporary
runs folder: the baseline (host stage) and SPARROW (host, proposer, stage 1, stage 2), each in a fresh child.

Run: ``.venv/bin/python benchmarks/bench_train.py [--hosts videoglamm unipixel glus] [--steps 3] [--no-variant]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

GOAL_VARIANT_S = 180.0
STAGES = ("host", "proposer", "stage1", "stage2")


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child_steps(host: str, steps: int, seed: int) -> dict:
    import sparrow  # noqa: F401  (torchvision shim first)
    import torch

    from sparrow.data.curate import ensure_curated
    from sparrow.model import SparrowDataset
    from sparrow.train import TrainConfig
    from sparrow.train.validation import held_out_expressions
    from sparrow.train.variants import build_model, model_config

    curated_root = ensure_curated("mini", seed)
    cfg = model_config(host, "mini", True, True, curated_root)
    t0 = time.perf_counter()
    model = build_model(cfg, seed)
    build_s = time.perf_counter() - t0
    dataset = SparrowDataset(curated_root, "train", cfg)
    out: dict = {"host": host, "build_s": build_s, "threads": torch.get_num_threads(), "stages": {}}
    for stage in STAGES:
        model.configure_stage(stage)
        model.train()
        batch_size = TrainConfig.for_profile("mini", stage).batch_size
        collate = model.collator(stage)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        walls, cpus = [], []
        for i in range(steps + 1):
            batch = collate([dataset[(i * batch_size + j) % len(dataset)] for j in range(batch_size)])
            w0, c0 = time.perf_counter(), time.process_time()
            loss = model(batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i:  # the first step pays one-off costs (allocator, lazy initialisation)
                walls.append(time.perf_counter() - w0)
                cpus.append(time.process_time() - c0)
        out["stages"][stage] = {"batch_size": batch_size, "step_wall_s": statistics.median(walls),
                                "step_cpu_s": statistics.median(cpus)}
    from sparrow.data.curated import CuratedDataset

    curated = CuratedDataset(curated_root)
    model.eval()
    fps = []
    for exp in held_out_expressions(curated, "mevis", "valid_u", 4):
        frames = curated.load_frames(exp.video_id)
        w0 = time.perf_counter()
        model.predict(frames, exp.text)
        fps.append(len(frames) / (time.perf_counter() - w0))
    out["inference_fps"] = statistics.median(fps[1:])  # the first call warms up
    out["frames_per_video"] = int(len(frames))
    out["peak_rss_mib"] = _peak_rss_mib()
    return out


def _child_variant(host: str, tsf: bool, box: bool, seed: int, runs_root: str) -> dict:
    import sparrow  # noqa: F401

    from sparrow.data.curate import ensure_curated
    from sparrow.train import train_variant

    curated_root = ensure_curated("mini", seed)
    w0, c0 = time.perf_counter(), time.process_time()
    run = train_variant(host, "mini", seed, tsf=tsf, box=box, curated_root=curated_root, show_progress=False,
                        runs_root=runs_root)
    return {"variant": run.name, "wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0,
            "steps": {s: r.steps for s, r in run.stages.items()},
            "stage_wall_s": {s: r.wall_s for s, r in run.stages.items()}, "peak_rss_mib": _peak_rss_mib()}


def _run_child(*args: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", nargs="+", default=["videoglamm", "unipixel", "glus"])
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per stage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-variant", action="store_true", help="skip the whole-variant wall times")
    parser.add_argument("--variant-host", default="videoglamm")
    parser.add_argument("--child-steps", nargs=3, metavar=("HOST", "STEPS", "SEED"), help=argparse.SUPPRESS)
    parser.add_argument("--child-variant", nargs=5, metavar=("HOST", "TSF", "BOX", "SEED", "ROOT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_steps:
        host, steps, seed = args.child_steps
        print(json.dumps(_child_steps(host, int(steps), int(seed))))
        return 0
    if args.child_variant:
        host, tsf, box, seed, root = args.child_variant
        print(json.dumps(_child_variant(host, tsf == "1", box == "1", int(seed), root)))
        return 0

    print(f"bench_train: mini profile, {os.cpu_count()} CPU cores, {platform.machine()}, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    print(f"{'preset':<11} {'stage':<9} {'batch':>5} {'step wall s':>11} {'step cpu s':>10}")
    summary = []
    for host in args.hosts:
        res = _run_child("--child-steps", host, str(args.steps), str(args.seed))
        for stage, row in res["stages"].items():
            print(f"{host:<11} {stage:<9} {row['batch_size']:>5} {row['step_wall_s']:>11.3f} {row['step_cpu_s']:>10.3f}")
        summary.append(res)
    print(f"\n{'preset':<11} {'infer FPS':>9} {'frames/video':>12} {'peak RSS MiB':>12} {'build s':>8}")
    for res in summary:
        print(f"{res['host']:<11} {res['inference_fps']:>9.2f} {res['frames_per_video']:>12} "
              f"{res['peak_rss_mib']:>12.0f} {res['build_s']:>8.2f}")
    if not args.no_variant:
        print(f"\nwhole variants ({args.variant_host}, mini), goal <= {GOAL_VARIANT_S:.0f} s each:")
        with tempfile.TemporaryDirectory(prefix="bench_train_") as root:
            for tsf, box in ((False, False), (True, True)):
                res = _run_child("--child-variant", args.variant_host, str(int(tsf)), str(int(box)),
                                 str(args.seed), root)
                # The SPARROW run reuses the baseline's host stage from the same runs folder, so its own process
                # trains only the later stages; the variant's cost is the sum of its stages, host included.
                total = sum(res["stage_wall_s"].values())
                ok = "meets" if total <= GOAL_VARIANT_S else "MISSES"
                parts = ", ".join(f"{stage} {res['steps'][stage]} steps {wall:.1f} s"
                                  for stage, wall in res["stage_wall_s"].items())
                print(f"  {res['variant']:<9} {total:7.1f} s for {sum(res['steps'].values())} steps ({parts})"
                      f" -> {ok} the goal; this process: wall {res['wall_s']:.1f} s, cpu {res['cpu_s']:.1f} s, "
                      f"peak RSS {res['peak_rss_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
