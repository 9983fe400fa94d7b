"""Does a mini host follow its referring text? Today's recipe and the location channel, side by side.

For each host in ``--hosts`` (default VideoGLaMM) and each variant in ``--variants`` (default the baseline), two
models are trained with :func:`sparrow.train.train_variant` on the curated SPARROW-Mini into a runs folder of their
own (``--runs``, default a temporary folder), both from the same SAM2 box-prompt pretraining:

- ``today``: the profile's hosts without the location channel (``location_channel=False``);
- ``location``: the same with the location channel (``location_channel=True``): the dense grounding pretrained
  once per dataset (:mod:`sparrow.train.grounding_pretrain`, its CPU time reported on its own line, as it is
  shared by every host, variant and seed) gives SAM2 a box prompt per frame.

Each trained model then predicts every expression of the held-out MeViS ``valid_u`` videos (``--videos``, default
all) with ``predict_many``, and the script prints, per model: referent accuracy and its case count, predicted and
ground-truth pair IoU (:mod:`sparrow.eval.text_dependence`), mean J&F over the expressions (per-frame J and F of
:func:`sparrow.eval.jf.jf_per_frame`, averaged over frames, then (J + F) / 2) and the training CPU time of the
variant's own stages (process CPU seconds, which other processes on a shared machine disturb far less than wall
time; the shared SAM2 pretraining is excluded from both; a run found already trained in ``--runs`` reads 0).

Run: ``.venv/bin/python benchmarks/bench_text_following.py [--hosts videoglamm unipixel glus]
[--variants baseline sparrow] [--recipes today location] [--videos N] [--threads 1] [--runs DIR]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

RECIPES = {"today": False, "location": True}
VARIANTS = {"baseline": (False, False), "sparrow": (True, True)}


def _cpu() -> float:
    return time.process_time()


def evaluate(model, curated, videos: int | None) -> dict:
    """Referent accuracy, pair IoU and mean J&F of ``model`` on MeViS valid_u (first ``videos`` videos)."""
    from sparrow.eval.jf import jf_per_frame
    from sparrow.eval.text_dependence import TextMask, text_dependence_of

    groups, jf = [], []
    ids = [v.video_id for v in curated.iter_videos(source="mevis", split="valid_u")][:videos]
    for video_id in ids:
        expressions = curated.expressions(video_id)
        frames = curated.load_frames(video_id)
        predictions = model.predict_many(frames, [e.text for e in expressions])
        masks = []
        for exp, pred in zip(expressions, predictions):
            truth = curated.expression_masks(exp)
            masks.append(TextMask(tuple(exp.object_ids), pred.masks, truth))
            j, f = jf_per_frame(truth, pred.masks)
            jf.append(100.0 * (float(np.mean(j)) + float(np.mean(f))) / 2)
        groups.append(masks)
    r = text_dependence_of(groups)
    return {
        "videos": len(ids),
        "expressions": len(jf),
        "referent_accuracy": r.referent_accuracy,
        "referent_cases": r.referent_cases,
        "pair_iou": r.predicted_pair_iou,
        "ground_truth_pair_iou": r.ground_truth_pair_iou,
        "jf": float(np.mean(jf)) if jf else None,
    }


def _fmt(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", nargs="+", default=["videoglamm"])
    parser.add_argument("--variants", nargs="+", default=["baseline"], choices=sorted(VARIANTS))
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--seed", type=int, default=0, help="training seed (the data seed is 0)")
    parser.add_argument("--videos", type=int, default=None, help="MeViS valid_u videos to score (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--runs", type=Path, default=None, help="runs folder (default: a temporary one)")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from sparrow.data.curate import ensure_curated
    from sparrow.data.curated import CuratedDataset, records_fingerprint
    from sparrow.train import train_variant
    from sparrow.train.trainer import TrainResult
    from sparrow.train.variants import model_config, pretrained_grounding, pretrained_sam

    curated_root = ensure_curated("mini", 0)
    curated = CuratedDataset(curated_root)
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs or Path(tmp)
        base = model_config(args.hosts[0], "mini", False, False, curated_root, location_channel=True)
        start = _cpu()
        pretrained_sam(base, curated_root, runs_root=runs / "today")
        sam_cpu = _cpu() - start
        shared = runs / "location" / "sam2-pretrain"  # both recipes start from the one SAM2 pretraining
        if not shared.exists():
            shared.parent.mkdir(parents=True, exist_ok=True)
            try:
                shared.symlink_to((runs / "today" / "sam2-pretrain").resolve(), target_is_directory=True)
            except FileExistsError:
                pass  # another bench process sharing --runs linked it first
        rows = []
        grounding_cpu = grounding_wall = 0.0
        for recipe, location in [(r, RECIPES[r]) for r in args.recipes]:
            if location:
                start = _cpu()
                folder, _ = pretrained_grounding(
                    base, curated_root, records_fingerprint(curated_root), runs_root=runs / "location"
                )
                grounding_cpu = _cpu() - start
                trained = folder.parent / "train_result.json"  # absent for the committed copy
                grounding_wall = TrainResult.load(folder.parent).wall_s if trained.is_file() else 0.0
            for host, variant in [(h, v) for h in args.hosts for v in args.variants]:
                tsf, box = VARIANTS[variant]
                start = _cpu()
                run = train_variant(
                    host,
                    "mini",
                    args.seed,
                    tsf=tsf,
                    box=box,
                    curated_root=curated_root,
                    show_progress=False,
                    runs_root=runs / recipe,
                    location_channel=location,
                )
                train_cpu = _cpu() - start
                start = _cpu()
                scores = evaluate(run.load_model(), curated, args.videos)
                rows.append(
                    dict(host=host, variant=variant, recipe=recipe, train_cpu=train_cpu, eval_cpu=_cpu() - start)
                    | scores
                )
                print(f"done {host} {variant} {recipe}", flush=True)
    print(f"\nshared pretraining (once per dataset): SAM2 box prompts {sam_cpu:.0f} CPU s (excluded below)")
    print(
        f"{'':39}dense grounding {grounding_cpu:.0f} CPU s in this process (0: found trained or committed), "
        f"{grounding_wall:.0f} s wall when it trained (location recipe only)"
    )
    head = (
        f"{'host':<11} {'variant':<9} {'recipe':<9} {'ref acc':>7} {'cases':>5} {'pair IoU':>8} {'GT pair':>7} "
        f"{'J&F':>5} {'train CPU s':>11} {'eval CPU s':>10}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['host']:<11} {r['variant']:<9} {r['recipe']:<9} {_fmt(r['referent_accuracy']):>7} "
            f"{r['referent_cases']:>5} {_fmt(r['pair_iou']):>8} {_fmt(r['ground_truth_pair_iou']):>7} "
            f"{_fmt(r['jf'], 1):>5} {r['train_cpu']:>11.0f} {r['eval_cpu']:>10.0f}"
        )
    print(
        f"(MeViS valid_u: {rows[0]['videos']} videos, {rows[0]['expressions']} expressions; ref acc <= 0.5: text-blind)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
