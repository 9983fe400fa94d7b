"""Per-stage time of the offline TSF pass (goal: the whole pass over ``mini`` in under 5 minutes on 2 CPU cores).

``--profile mini`` (default; ``smoke`` works the same, in seconds): every split of the curated SPARROW-Mini,
computed from scratch into a temporary cache (nothing is served from an earlier run), with the profile's tiny
GroundingDINO (trained once by ``sparrow.tsf.detection.ensure_detector`` and cached; its training time is printed
separately: it is a one-off, not part of the pass), the appearance+motion tracker and the patch-mean crop encoder.
Printed side by side: seconds per stage (load, detect, track, crop, encode, kmeans, cache), their share, ms per
expression, the wall and CPU time of the pass, seconds per video, and the same pass split over two processes
under ``torchrun`` (``--ranks 2``, the way the pass uses both cores; each rank runs single-threaded).

The paper's figure (2.16 GPU-days for about 30k videos, about 6.2 s per video, with the real GroundingDINO,
CLDTracker and SAM2 masks at full resolution) is printed as context only: different hardware and model sizes.

``--profile paper --device cuda`` measures the paper-size configuration per video (crops at 336 px, SAM2
hiera-L tracker by default) and needs the component folders: ``--detector DIR`` (a GroundingDINO checkpoint
folder), optional ``--sam2-checkpoint FILE`` (without it SAM2 has random weights: the same compute, so the
timing holds, but the boxes are meaningless), optional ``--clip DIR`` (a CLIP vision tower folder for the crop
encoder; without it a patch-mean stand-in at 336 px), and ``--curated ROOT`` (a curated real dataset; without it
a synthetic 480x854 set, 48 frames a video, is generated). When CUDA or a folder is missing it prints why and
skips; ``--device cpu`` runs the same path on CPU to check the plumbing (its time is not the paper's figure).

Run: ``.venv/bin/python benchmarks/bench_tsf.py [--profile mini] [--ranks 1 2] [--splits train valid ...]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_S = 300.0
PAPER_GPU_DAYS = 2.16
PAPER_VIDEOS = 30_000
PAPER_S_PER_VIDEO = PAPER_GPU_DAYS * 86400 / PAPER_VIDEOS  # = sparrow.tsf.runs.PAPER_SECONDS_PER_VIDEO


def _pass(
    splits: list[str] | None,
    home: str,
    device: str | None = None,
    config_json: str | None = None,
    curated: str | None = None,
    clip: str | None = None,
    limit_videos: int | None = None,
) -> dict:
    """One whole pass in this process (under torchrun: this rank's share, merged)."""
    import torch

    import sparrow  # noqa: F401  (torchvision shim first)

    os.environ["SPARROW_HOME"] = home
    from sparrow.data.curated import CuratedDataset
    from sparrow.tsf.cache import TSFStore
    from sparrow.tsf.encoder import PatchMeanEncoder
    from sparrow.tsf.pipeline import TIMING_STAGES, TSFConfig, run_tsf
    from sparrow.tsf.sharding import launched_world_size

    config = TSFConfig(**_config_from_json(config_json)) if config_json else None
    root = Path(curated)
    dataset = CuratedDataset(root)
    encoder = (
        _encoder(clip, config.crop_size, device)
        if clip
        else PatchMeanEncoder(config.crop_size, patch=14 if config.crop_size % 14 == 0 else 8, device=device or "cpu")
    )
    store = TSFStore(Path(home) / "entries")
    seconds = {stage: 0.0 for stage in TIMING_STAGES}
    counts: dict[str, int] = {}
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for split in splits or dataset.splits():
        report = run_tsf(
            root, split, config, encoder, store=store, out_dir=Path(home) / "runs" / split, limit_videos=limit_videos
        )
        for stage, value in report.timings.items():
            seconds[stage] += value
        for name, value in report.counts.items():
            counts[name] = counts.get(name, 0) + value
    if device == "cuda":
        torch.cuda.synchronize()
    return {
        "wall_s": time.perf_counter() - wall0,
        "cpu_s": time.process_time() - cpu0,
        "seconds": seconds,
        "counts": counts,
        "world": launched_world_size(),
        "threads": torch.get_num_threads(),
    }


def _config_from_json(text: str) -> dict:
    from sparrow.tsf.detection import DetectorConfig
    from sparrow.tsf.tracking import TrackerConfig

    data = json.loads(text)
    data["detector"] = DetectorConfig(**data["detector"])
    tracker = data["tracker"]
    tracker["scales"] = tuple(tracker["scales"])
    data["tracker"] = TrackerConfig(**tracker)
    data["expression_kinds"] = tuple(data["expression_kinds"])
    return data


def _encoder(clip_dir: str, crop_size: int, device: str | None):
    """A CLIP vision tower as the crop encoder (mean over patch tokens), for the paper-size timing."""
    import torch
    from transformers import CLIPVisionModel

    model = CLIPVisionModel.from_pretrained(clip_dir).to(device or "cpu").eval()
    mean = torch.tensor([0.4815, 0.4578, 0.4082], device=model.device).view(1, 3, 1, 1)
    std = torch.tensor([0.2686, 0.2613, 0.2758], device=model.device).view(1, 3, 1, 1)

    class ClipCrops:
        fingerprint = f"clip:{Path(clip_dir).name}"

        def __init__(self):
            self.crop_size = crop_size

        @torch.no_grad()
        def __call__(self, crops):
            crops = (crops.to(model.device) - mean) / std
            return model(pixel_values=crops).last_hidden_state[:, 1:].mean(dim=1)

    return ClipCrops()


def _child(args: list[str], env: dict, ranks: int) -> dict:
    launcher = (
        [sys.executable]
        if ranks == 1
        else [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(ranks)]
    )
    proc = subprocess.run(launcher + [__file__, "--child", *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"child failed:\n{proc.stderr[-4000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[0][len("RESULT ") :])


def _table(results: dict[str, dict]) -> None:
    from sparrow.tsf.pipeline import TIMING_STAGES

    names = list(results)
    first = results[names[0]]
    expressions = max(1, first["counts"].get("computed", 0))
    print(f"\n{'stage':<8}" + "".join(f"{n + ' s':>16}{'share':>7}" for n in names) + f"{'ms/expr (1st)':>15}")
    for stage in TIMING_STAGES:
        row = f"{stage:<8}"
        for name in names:
            seconds = results[name]["seconds"][stage]
            total = sum(results[name]["seconds"].values()) or 1.0
            row += f"{seconds:>16.2f}{100 * seconds / total:>6.1f}%"
        print(row + f"{1000 * first['seconds'][stage] / expressions:>15.2f}")
    print(f"{'sum':<8}" + "".join(f"{sum(r['seconds'].values()):>16.2f}{'':>7}" for r in results.values()))
    print(f"{'wall':<8}" + "".join(f"{r['wall_s']:>16.2f}{'':>7}" for r in results.values()))
    print(f"{'cpu':<8}" + "".join(f"{r['cpu_s']:>16.2f}{'':>7}" for r in results.values()) + "  (rank 0's process)")


def _curated_paper(args, home: Path) -> Path:
    """A curated set for the paper-size timing: ``--curated``, else a small synthetic 480x854, 48-frame one."""
    if args.curated:
        return Path(args.curated)
    from dataclasses import replace

    from sparrow.data.curate import _manifest_sources, curate
    from sparrow.data.synthetic.config import SynthConfig
    from sparrow.data.synthetic.generator import _generate_into

    cfg = replace(SynthConfig.for_profile("smoke"), height=480, width=854, num_frames=args.synthetic_frames)
    _generate_into(cfg, args.seed, home / "generated")
    curate(_manifest_sources(home / "generated"), home / "curated", seed=args.seed)
    return home / "curated"


def main_paper(args) -> int:
    import torch

    if args.device not in ("cuda", "cpu"):
        print(
            "SKIP paper-size TSF timing: give --device cuda (the paper's figure is per GPU; --device cpu only "
            "checks the plumbing)"
        )
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "SKIP paper-size TSF timing: no CUDA device on this machine (the figure is per GPU; run this on a "
            "GPU machine with --device cuda)"
        )
        return 0
    missing = []
    if not args.detector or not (Path(args.detector) / "config.json").is_file():
        missing.append(f"--detector {args.detector} (a GroundingDINO folder with config.json)")
    if args.sam2_checkpoint and not Path(args.sam2_checkpoint).is_file():
        missing.append(f"--sam2-checkpoint {args.sam2_checkpoint}")
    if args.clip and not (Path(args.clip) / "config.json").is_file():
        missing.append(f"--clip {args.clip} (no config.json)")
    if args.curated and not (Path(args.curated) / "videos.jsonl").is_file():
        missing.append(f"--curated {args.curated} (no videos.jsonl)")
    if missing:
        print("SKIP paper-size TSF timing: missing component(s): " + "; ".join(missing))
        return 0
    from dataclasses import asdict, replace

    from sparrow.tsf.pipeline import TSFConfig

    config = TSFConfig.for_profile("paper", device=args.device)
    config = replace(
        config,
        detector=replace(config.detector, checkpoint_dir=str(Path(args.detector).resolve())),
        tracker=replace(config.tracker, sam2_checkpoint=args.sam2_checkpoint, sam2_config=args.sam2_config),
    )
    with tempfile.TemporaryDirectory(prefix="bench-tsf-paper-") as tmp:
        curated = _curated_paper(args, Path(tmp))
        print(
            f"paper-size TSF pass on {curated} ({args.device}; SAM2 "
            f"{'weights ' + args.sam2_checkpoint if args.sam2_checkpoint else 'RANDOM weights: timing only'}; "
            f"encoder {'CLIP ' + args.clip if args.clip else 'patch-mean stand-in at 336 px'})"
        )
        child = [
            "--profile",
            "paper",
            "--seed",
            str(args.seed),
            "--home",
            tmp,
            "--curated",
            str(curated),
            "--config-json",
            json.dumps(asdict(config)),
            "--device",
            args.device,
        ]
        if args.splits:
            child += ["--splits", *args.splits]
        if args.clip:
            child += ["--clip", args.clip]
        if args.limit_videos:
            child += ["--limit-videos", str(args.limit_videos)]
        result = _child(child, dict(os.environ), 1)
    _table({"paper": result})
    videos = max(1, result["counts"].get("computed_videos", 0))
    print(
        f"\n{result['counts'].get('computed', 0)} expressions in {videos} videos: "
        f"{result['wall_s'] / videos:.2f} s per video on {args.device} "
        f"(paper: {PAPER_S_PER_VIDEO:.1f} s per video = {PAPER_GPU_DAYS} GPU-days / ~{PAPER_VIDEOS} videos, "
        "with CLDTracker and SAM2 masks; sizes and hardware differ)"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="mini", choices=["smoke", "mini", "paper"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--splits", nargs="+", default=None, help="splits to pass over (default: every split)")
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2], help="process counts to compare")
    parser.add_argument("--device", default=None, help="paper: cuda (or cpu to check the plumbing)")
    parser.add_argument("--detector", default=None, help="paper: GroundingDINO checkpoint folder")
    parser.add_argument("--sam2-checkpoint", default=None, help="paper: SAM2 checkpoint ({'model': state_dict})")
    parser.add_argument("--sam2-config", default="configs/sam2.1/sam2.1_hiera_l.yaml")
    parser.add_argument("--clip", default=None, help="paper: CLIP vision tower folder for the crop encoder")
    parser.add_argument("--curated", default=None, help="paper: a curated real dataset")
    parser.add_argument("--limit-videos", type=int, default=None, help="at most this many videos per split")
    parser.add_argument("--synthetic-frames", type=int, default=48, help="paper without --curated: frames per video")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--home", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--config-json", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = _pass(
            args.splits, args.home, args.device, args.config_json, args.curated, args.clip, args.limit_videos
        )
        if int(os.environ.get("RANK", "0")) == 0:
            print("RESULT " + json.dumps(result), flush=True)
        return 0
    if args.profile == "paper":
        return main_paper(args)

    from dataclasses import asdict

    import sparrow  # noqa: F401
    from sparrow.data.curate import ensure_curated
    from sparrow.data.curated import CuratedDataset
    from sparrow.tsf.pipeline import profile_config
    from sparrow.tsf.quality import read_detector_training

    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{v:.1f}' for v in os.getloadavg())} (other processes share the cores: compare columns)"
    )
    curated = ensure_curated(args.profile, args.seed)
    started = time.perf_counter()
    config = profile_config(args.profile, curated)  # trains the tiny detector on first use
    training = read_detector_training(config.detector.checkpoint_dir)
    print(
        f"tiny GroundingDINO: {config.detector.checkpoint_dir} ({training.steps} steps, trained in "
        f"{training.wall_s:.0f} s once; {time.perf_counter() - started:.0f} s to find or train it now)"
    )
    dataset = CuratedDataset(curated)
    splits = args.splits or dataset.splits()
    videos = sum(1 for s in splits for _ in dataset.iter_videos(split=s))
    print(
        f"pass: splits {', '.join(splits)} of {curated} ({videos} videos), tracker {config.tracker.kind}, "
        f"crops {config.crop_size} px, K={config.k}"
    )
    results = {}
    for ranks in args.ranks:
        with tempfile.TemporaryDirectory(prefix="bench-tsf-") as tmp:
            child = [
                "--profile",
                args.profile,
                "--seed",
                str(args.seed),
                "--home",
                tmp,
                "--curated",
                str(curated),
                "--config-json",
                json.dumps(asdict(config)),
                "--splits",
                *splits,
            ]
            if args.limit_videos:
                child += ["--limit-videos", str(args.limit_videos)]
            env = dict(os.environ, OMP_NUM_THREADS="1")
            results[f"{ranks} proc"] = _child(child, env, ranks)
    _table(results)
    first = results[next(iter(results))]
    computed, computed_videos = first["counts"].get("computed", 0), max(1, first["counts"].get("computed_videos", 0))
    print(
        f"\n{computed} expressions, {computed_videos} videos; fallbacks: "
        + ", ".join(
            f"{name} {first['counts'].get(name, 0)}"
            for name in ("no_detection", "lost_track", "short_video", "no_target", "lost_crop_frames")
        )
    )
    for name, result in results.items():
        verdict = "meets" if result["wall_s"] <= GOAL_S else "MISSES"
        print(
            f"{name}: wall {result['wall_s']:.1f} s ({verdict} the {GOAL_S:.0f} s goal), "
            f"{result['wall_s'] / computed_videos:.3f} s per video, {result['wall_s'] / max(1, computed) * 1000:.1f} "
            f"ms per expression"
        )
    print(
        f"context only: the paper's offline TSF took {PAPER_GPU_DAYS} GPU-days for ~{PAPER_VIDEOS} videos, about "
        f"{PAPER_S_PER_VIDEO:.1f} s per video on a GPU with the real GroundingDINO, CLDTracker and SAM2 at full "
        "resolution; this pass uses tiny models on 128-px videos on CPU, so the ratio says nothing about either"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
