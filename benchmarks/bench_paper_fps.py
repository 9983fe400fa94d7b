"""Inference frames per second of the paper-size VideoGLaMM preset, baseline and + SPARROW, with random weights.

The paper reports 2.40 FPS for VideoGLaMM + SPARROW; the kit's goal is at least twice that. Speed depends on the
architecture, not on the weights' values, so the components are random, written in the released formats under the
paper component names (:mod:`sparrow.model.random_components`: Phi-3-mini-4k, CLIP ViT-L/14-336, InternVideo2-1B,
SAM2 Hiera-L, the 300-query Deformable-DETR proposer with its Hiera-L copy) and loaded by the paper preset's own loading code. ``--weights-root DIR`` and/or
``--paths FILE`` measure real components instead, found as the kit finds them (:func:`sparrow.paths.component_path`:
the paths file's entry, else ``DIR/<name>``); a component found nowhere stops the script with one line naming it.

Per variant, in one process: one warm-up ``predict`` on a random ``--frames`` x ``--height`` x ``--width`` video,
then ``--runs`` timed calls (CUDA synchronised); FPS = video frames / median seconds per call. A random LLM rarely
writes ``[SEG]``, so the answer is scripted through the real decoding (``[SEG]`` for the baseline, ``[BOX] [SEG]``
for SPARROW, then end of text): every call runs the encoders, the LLM prompt and answer steps, and for SPARROW the
proposer, the selector and the box prior filter, then SAM2 on every frame. A trained model's answers are a few
tokens longer (each a single KV-cache step). The LLM side runs in bf16 and SAM2 in fp32, as the kit runs them.

At ``--scale paper`` it needs a GPU (about 9 GB of disk for the random folders and 20 GB of GPU memory) and writes
``benchmarks/results/paper_fps_<device>.json``; ``--scale tiny`` runs the same path with small dimensions on a
CPU in seconds (what the test suite checks), and writes only where ``--out`` says.

Run: ``.venv/bin/python benchmarks/bench_paper_fps.py [--scale paper] [--frames 64] [--runs 3]``
"""

from __future__ import annotations

import argparse
import functools
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PROPAGATION_MODES = ("framewise", "memory_from_first", "memory_every_frame", "video_branch")  # = sparrow.model.config's
PAPER_FPS = 2.40  # VideoGLaMM + SPARROW, the paper's speed figure
GOAL_RATIO = 2.0


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device_name(device) -> str:
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def measure(cfg, device, frames: np.ndarray, runs: int, modes: tuple[str, ...] = ()) -> dict[str, dict]:
    """Seconds per ``predict`` call of the model built from ``cfg`` (median of ``runs`` after one warm-up), per
    propagation mode (``modes``; default: the config's), on one model instance."""
    from sparrow.model import SparrowModel

    model = SparrowModel.from_config(cfg).to(device).eval()
    out = {}
    for mode in modes or (cfg.propagation,):
        model.cfg = model.cfg.replace(propagation=mode)
        out[mode] = _measure_model(model, cfg, device, frames, runs)
    del model
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()
    return out


def _measure_model(model, cfg, device, frames: np.ndarray, runs: int) -> dict:
    import torch

    tok = model.tokenizer
    answer = ([model.box_token_id] if cfg.box else []) + [model.seg_token_id, tok.eos_token_id]
    real = type(model.llm).generate
    model.llm.generate = functools.partial(real, model.llm, forced=answer)  # one fixed answer per call
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    pred = model.predict(frames, "the person on the left")
    if not pred.seg_found or pred.masks.shape != frames.shape[:3]:
        raise RuntimeError(f"scripted answer gave no masks ({pred.answer!r}); the measurement would skip SAM2")
    seconds = []
    for _ in range(runs):
        _sync(device)
        start = time.perf_counter()
        model.predict(frames, "the person on the left")
        _sync(device)
        seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    out = {
        "seconds_per_call": median,
        "fps": frames.shape[0] / median,
        "runs": seconds,
        "parameters": int(sum(p.numel() for p in model.parameters())),
    }
    if device.type == "cuda":
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def run(args: argparse.Namespace) -> dict | None:
    import torch

    from sparrow.model import ModelConfig
    from sparrow.model.random_components import write_videoglamm_components

    real = bool(args.weights_root or args.paths)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if args.scale == "paper" and device.type != "cuda" and not args.allow_cpu:
        # `make bench` runs every script: on a machine without a GPU this one reports why it measured nothing.
        print(
            "skipped: the paper-size preset needs a GPU (about 20 GB); --scale tiny checks the path on a CPU, "
            "--allow-cpu insists"
        )
        return None
    if real:
        from sparrow.model.presets import paper_components

        cfg = ModelConfig.for_preset("videoglamm", "paper", weights_root=args.weights_root)
        for role, name in paper_components("videoglamm").items():
            if role != "sam_config":  # a config inside the sam2 package
                cfg.resolve(name)
    frames = np.random.default_rng(0).integers(0, 255, (args.frames, args.height, args.width, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        if not real:
            start = time.perf_counter()
            cfg = write_videoglamm_components(Path(tmp), args.scale, device if device.type == "cuda" else "cpu")
            print(f"random {args.scale}-size components written in {time.perf_counter() - start:.1f} s", flush=True)
        variants = {"baseline": cfg.replace(box=False), "sparrow": cfg.replace(box=True)}
        modes = tuple(args.propagation or ())
        results = {}
        for name, c in variants.items():
            for i, (mode, r) in enumerate(measure(c, device, frames, args.runs, modes).items()):
                results[name if i == 0 else f"{name}/{mode}"] = dict(r, propagation=mode)
    fps = results["sparrow"]["fps"]
    return {
        "benchmark": "bench_paper_fps",
        "preset": "videoglamm",
        "scale": args.scale,
        "weights": "local folders" if real else "random",
        "device": _device_name(device),
        "torch": torch.__version__,
        "video": [args.frames, args.height, args.width],
        "variants": results,
        "sparrow_over_baseline_time": results["sparrow"]["seconds_per_call"] / results["baseline"]["seconds_per_call"],
        "paper_fps": PAPER_FPS,
        "goal_fps": GOAL_RATIO * PAPER_FPS,
        "ratio_to_paper": fps / PAPER_FPS,
        "meets_goal": bool(fps >= GOAL_RATIO * PAPER_FPS) if args.scale == "paper" else None,
    }


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=("paper", "tiny"), default="paper")
    parser.add_argument("--device", default="auto", help="auto (a GPU when present), cuda, cuda:N or cpu")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--weights-root", default=None, help="real components: the weights root holding them")
    parser.add_argument("--paths", default=None, help="real components: a JSON file from component name to path")
    parser.add_argument("--workdir", default=None, help="where the random folders are written (default: tmp)")
    parser.add_argument("--allow-cpu", action="store_true", help="run the paper scale on a CPU anyway")
    parser.add_argument("--out", default=None, help="JSON path (default at paper scale: benchmarks/results/)")
    parser.add_argument(
        "--propagation",
        nargs="+",
        choices=PROPAGATION_MODES,
        help="SAM2 propagation modes to time on the same model (default: the preset's framewise); the first names "
        "the 'baseline'/'sparrow' entries, the others 'baseline/<mode>', 'sparrow/<mode>'",
    )
    args = parser.parse_args(argv)
    if min(args.frames, args.height, args.width, args.runs) < 1:
        parser.error("--frames, --height, --width and --runs must be >= 1")
    from sparrow.paths import weight_paths

    try:
        with weight_paths(args.paths):
            report = run(args)
    except FileNotFoundError as e:
        parser.error(str(e))
    if report is None:
        return None
    for name, r in report["variants"].items():
        print(f"{name:9s} {r['seconds_per_call']:8.3f} s per {args.frames}-frame call  {r['fps']:7.2f} FPS")
    print(
        f"device: {report['device']}; SPARROW / baseline time {report['sparrow_over_baseline_time']:.2f}x; "
        f"SPARROW {report['variants']['sparrow']['fps']:.2f} FPS = {report['ratio_to_paper']:.2f}x the paper's "
        f"{PAPER_FPS} FPS (goal {GOAL_RATIO:.0f}x{'' if args.scale == 'paper' else ', judged at paper scale only'})"
    )
    out = args.out
    if out is None and args.scale == "paper":
        slug = "".join(c if c.isalnum() else "_" for c in report["device"].lower()).strip("_")
        out = ROOT / "benchmarks" / "results" / f"paper_fps_{slug}.json"
    if out is not None:
        from sparrow.storage import atomic_write_json

        atomic_write_json(Path(out), report)
        print(f"written: {out}")
    return report


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
