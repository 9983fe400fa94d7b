"""``sparrow train``: one training stage, or a whole variant, from the command line.

    sparrow train --host videoglamm --profile mini --stage stage1 --tsf --box --out DIR [--init DIR]
    sparrow train --host videoglamm --profile mini --stage all --tsf --box [--out RUNS_ROOT]

A single stage starts from ``--init`` (a ``save_pretrained`` folder, e.g. the previous stage's ``final/``; host
weights are accepted for a variant with the dual prompt, whose extra modules then start fresh) or from a fresh
model, and writes its checkpoints, loss log and ``final/`` weights to ``--out``. ``--stage all`` trains every stage
of the variant (:func:`sparrow.train.variants.train_variant`) under ``--out`` (default
``$SPARROW_HOME/runs/<profile>``). Both resume from the last checkpoint unless ``--no-resume``.

Multi-process: launch the same command under ``torchrun --standalone --nproc_per_node N -m sparrow.cli train ...``
or ``accelerate launch [--config_file sparrow/train/accelerate_configs/<name>.yaml] -m sparrow.cli train ...``
(on a CPU-only machine: ``accelerate launch --multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no
--dynamo_backend no``, not ``--cpu``, which starts a single process).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sparrow.model.config import MODEL_STAGES
from sparrow.profiles import PROFILES, get_profile

# The training stack (torch, the model, accelerate) is imported inside the functions that run it, so that
# `sparrow train --help` and `sparrow --help` stay fast.


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sparrow train", description="train one SPARROW stage or a whole variant")
    p.add_argument("--host", choices=("videoglamm", "unipixel", "glus"), default="videoglamm")
    p.add_argument("--profile", choices=PROFILES, default="mini")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stage", choices=MODEL_STAGES + ("all",), required=True)
    p.add_argument("--tsf", action="store_true", help="TSF tokens in stage-1 training")
    p.add_argument("--box", action="store_true", help="the dual [BOX]/[SEG] prompt with proposer guidance")
    p.add_argument("--out", default=None, help="run folder (one stage) or runs root (--stage all)")
    p.add_argument("--init", default=None, help="start a single stage from these weights (save_pretrained folder)")
    p.add_argument("--data", default=None, help="curated dataset folder (default: SPARROW-Mini of profile/seed)")
    p.add_argument("--max-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="per process")
    p.add_argument("--grad-accum", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--no-resume", action="store_true", help="clear the run folder and start over")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _overrides(args: argparse.Namespace) -> dict:
    names = {
        "max_steps": args.max_steps,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "lr": args.lr,
        "checkpoint_every": args.checkpoint_every,
    }
    return {k: v for k, v in names.items() if v is not None}


def _curated_root(args: argparse.Namespace) -> Path:
    if args.data is not None:
        return Path(args.data)
    from sparrow.data.curate import ensure_curated
    from sparrow.distributed import process_state

    # Generating the data is not safe to run twice at once: the first process builds it, the others wait.
    with process_state().main_process_first():
        return Path(ensure_curated(args.profile, args.seed))


def _train_one_stage(args: argparse.Namespace, curated_root: Path) -> dict:
    from sparrow.model import SparrowDataset, SparrowModel
    from sparrow.train.config import TrainConfig
    from sparrow.train.sam_pretrain import load_pretrained_sam
    from sparrow.train.trainer import Trainer
    from sparrow.train.variants import build_model, load_host_weights, model_config, pretrained_sam

    if args.out is None:
        raise ValueError("--out is required for a single stage")
    cfg = model_config(args.host, args.profile, args.tsf, args.box, curated_root)
    if args.init is not None:
        init = SparrowModel.from_pretrained(args.init)
        if init.cfg.box == cfg.box and init.cfg.tsf == cfg.tsf:
            model = init
        else:
            model = build_model(init.cfg.replace(tsf=args.tsf, box=args.box), args.seed)
            load_host_weights(model, args.init)
        cfg = model.cfg
    else:
        model = build_model(cfg, args.seed)
        sam_weights, _ = pretrained_sam(cfg, curated_root, show_progress=not args.no_progress)
        if sam_weights is not None:  # as in train_variant: a tiny SAM2 starts from the kit's pretraining
            load_pretrained_sam(model.pixel_decoder.sam, sam_weights)
    model.configure_stage(args.stage, fold_lora=args.init is not None and args.stage in ("stage1", "stage2"))
    train_cfg = TrainConfig.for_profile(
        args.profile, args.stage, host=args.host, seed=args.seed, show_progress=not args.no_progress, **_overrides(args)
    )
    dataset = SparrowDataset(
        curated_root, "train", cfg, gcg_share=get_profile(args.profile).train.gcg_share_for(args.stage)
    )
    result = Trainer(
        model,
        dataset,
        train_cfg,
        args.out,
        collate_fn=model.collator(args.stage),
        extra={"host": args.host, "init": args.init},
    ).train(resume=not args.no_resume)
    return {
        "stage": result.stage,
        "steps": result.steps,
        "final": str(result.final_dir),
        "loss_log": str(result.loss_log),
        "final_losses": result.final_losses,
        "resumed_from": result.resumed_from,
        "processes": result.world_size,
    }


def _train_all(args: argparse.Namespace, curated_root: Path) -> dict:
    from sparrow.train.variants import train_variant

    overrides = _overrides(args)
    run = train_variant(
        args.host,
        args.profile,
        args.seed,
        args.tsf,
        args.box,
        curated_root=curated_root,
        show_progress=not args.no_progress,
        runs_root=args.out,
        train_overrides={s: overrides for s in MODEL_STAGES} if overrides else None,
    )
    return {
        "variant": run.name,
        "run_dir": str(run.run_dir),
        "final": str(run.final_dir),
        "steps": {s: r.steps for s, r in run.stages.items()},
        "final_losses": run.final_losses,
    }


def main_train(argv: list[str] | None = None) -> int:
    """Entry point of ``sparrow train`` (wired into :mod:`sparrow.cli`, which turns the errors it raises into one
    line on stderr)."""
    args = build_parser().parse_args(argv)
    if args.init is not None and args.stage == "all":
        raise ValueError("--init applies to a single stage, not --stage all")
    curated_root = _curated_root(args)
    summary = _train_all(args, curated_root) if args.stage == "all" else _train_one_stage(args, curated_root)
    from sparrow.distributed import process_state

    if process_state().is_main_process:
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main_train())
