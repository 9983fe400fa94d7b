"""Training and inference speed per host preset under ``mini``, optionally side by side with an older revision.

For each preset (videoglamm, unipixel, glus), in a fresh child process on the curated SPARROW-Mini:

- one training step per stage (data, collate, forward, backward, AdamW step) with the stage's mini batch size, on
  samples in a shuffled order as training draws them: the median over ``--steps`` steps after one warm-up step, wall
  and CPU time, and the mean CPU time of each part of the step. A few steps see almost no repeated video, so the
  frozen-SAM2 feature cache of the SPARROW stages rarely hits here: these are the per-step costs without it (the
  whole-variant times below include it);
- inference on held-out MeViS valid_u videos: ``predict`` once per expression, and ``predict_many`` once per video
  with all its expressions (the figure notebook 04's evaluation uses), in expressions per second of CPU time. A
  random model rarely writes ``[SEG]``, so every answer is scripted to ``[BOX] [SEG]`` and end of text, which runs
  the whole mask branch (proposals, selection, box prior filter, SAM2 decoding of every frame); a trained model's
  answers are longer (see the variant section);
- the child's peak resident memory.

Then, unless ``--no-variant``, whole variants of ``--variant-host`` with :func:`train_variant` into a temporary runs
folder: the baseline (host stage) and SPARROW (host, proposer, stage 1, stage 2), each in a fresh child, with the
wall and CPU time of each, their final losses, and inference of the trained SPARROW model with its own answers.

``--reference REV`` runs every child a second time on the ``sparrow`` package of git revision ``REV`` (extracted to
a temporary folder and put first on ``PYTHONPATH``) and prints the two side by side with CPU-time ratios; children of
the two revisions alternate, so machine load changes hit both. A revision without ``predict_many`` shows
``predict`` only in its column.

CPU time is the headline on a shared machine (other processes disturb it far less than wall time); ``--threads``
sets torch's intra-op threads in every child (default: torch's own choice, the number of cores).

Run: ``.venv/bin/python benchmarks/bench_train.py [--hosts ...] [--steps 5] [--reference REV] [--no-variant]``
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

GOAL_VARIANT_S = 180.0
PARTS = ("data", "collate", "forward", "backward", "optimizer")
ROOT = Path(__file__).resolve().parents[1]


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _script_answers(model, ids: list[int]) -> None:
    """Every answer becomes ``ids`` (teacher-forced through the model's real decoding where the API allows it)."""
    llm = model.llm
    if hasattr(type(llm), "generate") and "forced" in type(llm).generate.__code__.co_varnames:
        real = type(llm).generate
        llm.generate = lambda embeds, n, stops: real(llm, embeds, n, stops, forced=ids)
    else:  # revisions before predict_many: the answer ids, then one forward over prompt + answer
        llm.generate_greedy = lambda embeds, n, stops: list(ids)


def _inference(model, curated, videos: int) -> dict:
    """Expressions per CPU second of predict (one call per expression) and predict_many (one call per video)."""
    import warnings
    from collections import defaultdict

    try:
        from sparrow.experiments.validation import held_out_expressions
    except ImportError:  # a reference revision from before the experiments layer
        from sparrow.train.validation import held_out_expressions

    by_video: dict[str, list] = defaultdict(list)
    for exp in held_out_expressions(curated, "mevis", "valid_u", None):
        by_video[exp.video_id].append(exp)
    chosen = list(by_video)[:videos]
    frames = {v: curated.load_frames(v) for v in chosen}
    n = sum(len(by_video[v]) for v in chosen)
    out = {"expressions": n, "videos": len(chosen), "frames_per_video": int(frames[chosen[0]].shape[0])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.predict(frames[chosen[0]], "warm up")
        c0 = time.process_time()
        preds = [model.predict(frames[v], e.text) for v in chosen for e in by_video[v]]
        cpu = time.process_time() - c0
        out["predict_expr_per_s"] = n / cpu
        out["predict_fps"] = n * out["frames_per_video"] / cpu
        out["seg_found"] = sum(p.seg_found for p in preds) / n
        if hasattr(model, "predict_many"):
            c0 = time.process_time()
            many = [p for v in chosen for p in model.predict_many(frames[v], [e.text for e in by_video[v]])]
            out["predict_many_expr_per_s"] = n / (time.process_time() - c0)
            out["predict_many_identical"] = all(
                a.answer == b.answer and (a.masks_per_seg == b.masks_per_seg).all() for a, b in zip(preds, many)
            )
    return out


def _child_steps(host: str, steps: int, seed: int, curated_root: str, videos: int) -> dict:
    import torch

    import sparrow
    from sparrow.data.curated import CuratedDataset
    from sparrow.model import SparrowDataset

    try:
        from sparrow.model import MODEL_STAGES
    except ImportError:  # a reference revision from before the stage constants got distinct names
        from sparrow.model import STAGES as MODEL_STAGES
    from sparrow.train import TrainConfig, trainer
    from sparrow.train.variants import build_model, model_config

    fused_adamw = getattr(trainer, "_fused_adamw", lambda params: False)
    cfg = model_config(host, "mini", True, True, curated_root)
    t0 = time.perf_counter()
    model = build_model(cfg, seed)
    build_s = time.perf_counter() - t0
    dataset = SparrowDataset(curated_root, "train", cfg)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed)).tolist()
    out: dict = {
        "host": host,
        "package": str(Path(sparrow.__file__).parent),
        "build_s": build_s,
        "threads": torch.get_num_threads(),
        "stages": {},
    }
    position = 0
    for stage in MODEL_STAGES:
        model.configure_stage(stage)
        model.train()
        batch_size = TrainConfig.for_profile("mini", stage).batch_size
        collate = model.collator(stage)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4, fused=fused_adamw(params))  # as the revision's Trainer does
        walls, cpus, parts = [], [], {k: 0.0 for k in PARTS}
        for i in range(steps + 1):
            marks = [time.process_time()]
            w0 = time.perf_counter()
            items = [dataset[order[(position + j) % len(order)]] for j in range(batch_size)]
            position += batch_size
            marks.append(time.process_time())
            batch = collate(items)
            marks.append(time.process_time())
            loss = model(batch).loss
            marks.append(time.process_time())
            loss.backward()
            marks.append(time.process_time())
            opt.step()
            opt.zero_grad(set_to_none=True)
            marks.append(time.process_time())
            if i:  # the first step pays one-off costs (allocator, lazy initialisation)
                walls.append(time.perf_counter() - w0)
                cpus.append(marks[-1] - marks[0])
                for k, a, b in zip(PARTS, marks, marks[1:]):
                    parts[k] += (b - a) / steps
        out["stages"][stage] = {
            "batch_size": batch_size,
            "step_wall_s": statistics.median(walls),
            "step_cpu_s": statistics.median(cpus),
            "parts_cpu_s": parts,
        }
    model.eval()
    _script_answers(model, [model.box_token_id, model.seg_token_id, model.tokenizer.eos_token_id])
    out["inference"] = _inference(model, CuratedDataset(curated_root), videos)
    out["peak_rss_mib"] = _peak_rss_mib()
    return out


def _child_variant(host: str, tsf: bool, box: bool, seed: int, curated_root: str, runs_root: str, videos: int) -> dict:
    import sparrow  # noqa: F401
    from sparrow.data.curated import CuratedDataset
    from sparrow.train import train_variant

    w0, c0 = time.perf_counter(), time.process_time()
    run = train_variant(
        host, "mini", seed, tsf=tsf, box=box, curated_root=curated_root, show_progress=False, runs_root=runs_root
    )
    out = {
        "variant": run.name,
        "wall_s": time.perf_counter() - w0,
        "cpu_s": time.process_time() - c0,
        "steps": {s: r.steps for s, r in run.stages.items()},
        "stage_wall_s": {s: r.wall_s for s, r in run.stages.items()},
        "final_losses": run.final_losses,
    }
    if tsf and box:
        out["inference"] = _inference(run.load_model(), CuratedDataset(curated_root), videos)
    out["peak_rss_mib"] = _peak_rss_mib()
    return out


def _run_child(env_path: str | None, threads: int | None, *args: str) -> dict:
    env = dict(os.environ)
    if env_path is not None:
        env["PYTHONPATH"] = env_path + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _extract(rev: str, into: Path) -> Path:
    """The ``sparrow`` package of git revision ``rev``, unpacked under ``into``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "sparrow"], capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"git archive {rev}: {archive.stderr.decode().strip()}")
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def _ratio(old: float | None, new: float | None) -> str:
    return f"{old / new:5.2f}x" if old and new else "     "


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", nargs="+", default=["videoglamm", "unipixel", "glus"])
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per stage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--videos", type=int, default=8, help="held-out MeViS valid_u videos for inference")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads in every child")
    parser.add_argument("--reference", metavar="REV", help="also run the sparrow package of this git revision")
    parser.add_argument("--no-variant", action="store_true", help="skip the whole-variant wall times")
    parser.add_argument("--variant-host", default="videoglamm")
    parser.add_argument("--child-steps", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument("--child-variant", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_steps:
        host, steps, seed, root, videos = args.child_steps
        print(json.dumps(_child_steps(host, int(steps), int(seed), root, int(videos))))
        return 0
    if args.child_variant:
        host, tsf, box, seed, root, runs, videos = args.child_variant
        print(json.dumps(_child_variant(host, tsf == "1", box == "1", int(seed), root, runs, int(videos))))
        return 0

    sys.path.insert(0, str(ROOT))
    from sparrow.data.curate import ensure_curated

    curated_root = str(ensure_curated("mini", args.seed))  # made once here: a child never (re)generates data
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    try:
        versions: list[tuple[str, str | None]] = [("new", None)]
        if args.reference:
            versions.insert(0, (f"ref {args.reference}", str(_extract(args.reference, tmp / "reference"))))
        _report(args, versions, curated_root, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _report(args, versions, curated_root: str, tmp: Path) -> None:
    from sparrow.model.config import MODEL_STAGES

    names = [v for v, _ in versions]
    print(
        f"bench_train: mini profile, {os.cpu_count()} CPU cores, {platform.machine()}, torch threads "
        f"{args.threads or 'default'}, load average {os.getloadavg()[0]:.1f} at start"
    )
    results: dict[str, dict[str, dict]] = {}
    for k, host in enumerate(args.hosts):
        order = versions if k % 2 == 0 else versions[::-1]
        results[host] = {
            name: _run_child(
                path,
                args.threads,
                "--child-steps",
                host,
                str(args.steps),
                str(args.seed),
                curated_root,
                str(args.videos),
            )
            for name, path in order
        }
    for name in names:
        print(f"  {name}: package {results[args.hosts[0]][name]['package']}")
    print(
        f"\ntraining step, median of {args.steps} (CPU s; wall s in brackets)"
        + ("" if len(names) == 1 else f"; speedup = {names[0]} CPU / {names[-1]} CPU")
    )
    print(
        f"{'preset':<11} {'stage':<9} {'batch':>5} "
        + " ".join(f"{n[:16]:>17}" for n in names)
        + ("  speedup" if len(names) > 1 else "")
        + f"   {names[-1]} parts (CPU ms: "
        + ", ".join(PARTS)
        + ")"
    )
    for host, by in results.items():
        for stage in MODEL_STAGES:
            rows = [by[n]["stages"][stage] for n in names]
            cells = " ".join(f"{r['step_cpu_s']:>7.3f} ({r['step_wall_s']:>7.3f})" for r in rows)
            parts = " ".join(f"{1000 * rows[-1]['parts_cpu_s'][p]:.0f}" for p in PARTS)
            ratio = f"  {_ratio(rows[0]['step_cpu_s'], rows[-1]['step_cpu_s'])}" if len(names) > 1 else ""
            print(f"{host:<11} {stage:<9} {rows[-1]['batch_size']:>5} {cells}{ratio}   {parts}")
    print(f"\ninference, scripted answers, {args.videos} MeViS valid_u videos (expressions per CPU second)")
    print(
        f"{'preset':<11} "
        + " ".join(f"{n[:14] + ' predict':>22}" for n in names)
        + f" {names[-1][:10] + ' predict_many':>24}  speedup  identical  peak RSS MiB"
    )
    for host, by in results.items():
        infs = [by[n]["inference"] for n in names]
        many = infs[-1].get("predict_many_expr_per_s")
        cells = " ".join(f"{i['predict_expr_per_s']:>14.1f} ({i['predict_fps']:>4.0f} FPS)" for i in infs)
        print(
            f"{host:<11} {cells} {many:>24.1f}  {_ratio(many, infs[0]['predict_expr_per_s'])}  "
            f"{str(infs[-1].get('predict_many_identical')):>9}  "
            + " / ".join(f"{by[n]['peak_rss_mib']:.0f}" for n in names)
        )
    print(
        "  (speedup: predict_many of the last column over predict of the first; "
        f"{infs[-1]['expressions']} expressions on {infs[-1]['videos']} videos of {infs[-1]['frames_per_video']} "
        "frames for the last preset)"
    )
    if args.no_variant:
        return
    print(f"\nwhole variants ({args.variant_host}, mini), goal <= {GOAL_VARIANT_S:.0f} s each:")
    for index, (name, path) in enumerate(versions):
        runs = tmp / f"runs-{index}"
        for tsf, box in ((False, False), (True, True)):
            res = _run_child(
                path,
                args.threads,
                "--child-variant",
                args.variant_host,
                str(int(tsf)),
                str(int(box)),
                str(args.seed),
                curated_root,
                str(runs),
                str(args.videos),
            )
            # The SPARROW run reuses the baseline's host stage from the same runs folder, so its own process
            # trains only the later stages; the variant's cost is the sum of its stages, host included.
            total = sum(res["stage_wall_s"].values())
            ok = "meets" if total <= GOAL_VARIANT_S else "MISSES"
            parts = ", ".join(
                f"{stage} {res['steps'][stage]} steps {wall:.1f} s" for stage, wall in res["stage_wall_s"].items()
            )
            losses = ", ".join(f"{k} {v:.4f}" for k, v in sorted(res["final_losses"].items()) if v)
            print(
                f"  [{name}] {res['variant']:<9} {total:7.1f} s wall for {sum(res['steps'].values())} steps "
                f"({parts}) -> {ok} the goal; this process: wall {res['wall_s']:.1f} s, CPU {res['cpu_s']:.1f} s, "
                f"peak RSS {res['peak_rss_mib']:.0f} MiB; final losses: {losses}"
            )
            inf = res.get("inference")
            if inf:
                many = inf.get("predict_many_expr_per_s")
                print(
                    f"  [{name}] trained SPARROW inference ({inf['videos']} videos, its own answers, [SEG] in "
                    f"{100 * inf['seg_found']:.0f}%): predict {inf['predict_expr_per_s']:.1f} expr/s "
                    f"({inf['predict_fps']:.0f} FPS)"
                    + (f", predict_many {many:.1f} expr/s (identical: {inf['predict_many_identical']})" if many else "")
                )


if __name__ == "__main__":
    raise SystemExit(main())
