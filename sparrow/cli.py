"""The ``sparrow`` command line.

    sparrow synth --profile PROFILE --seed N --out DIR       generate SPARROW-Mini in the real source layouts
    sparrow curate --source NAME=ROOT ... --out DIR          harmonise sources into one curated dataset
    sparrow train --host HOST --profile PROFILE --stage STAGE|all [--tsf] [--box] [--out DIR]  train a stage or variant
    sparrow tsf --profile PROFILE --split SPLIT [--source SRC] [--detector DIR]  the offline TSF pass (also under torchrun)
    sparrow eval (--run DIR | --checkpoint DIR) [--benchmark KEY ...]  predict and score benchmarks, print the metrics
    sparrow score BENCHMARK --pred DIR --gt ROOT [--protocol P] [--workers N] [--json FILE]  score any predictions
    sparrow package mevis-valid|ref-youtube-vos --pred DIR --gt ROOT --out FILE.zip  the server zip, validated
    sparrow reproduce --profile PROFILE --seed N             run every numbered notebook in order
    sparrow pretrain --profile mini [--commit]               pretrain the tiny SAM2 and dense grounding (commit: as the kit's copies)
    sparrow regen-expected --profile PROFILE [--notebook N] [--from-results]  rewrite reproductions/expected/<profile>/
    sparrow promote-results --profile PROFILE                copy the run's results to reproductions/results/<profile>/
    sparrow convert --release sparrow|videoglamm --src DIR --out DIR [--clip DIR] ...  a released folder -> kit folder

``sparrow --paths FILE <command> ...`` takes paper component paths from FILE (see :mod:`sparrow.paths`).

Errors: a command that fails on its input (a missing or malformed file, a bad argument, a refused folder, a
diverging run) prints one line, ``sparrow <command>: error: <file or argument>: <problem>``, on stderr and exits
with status 2; ``sparrow --debug <command> ...`` lets the exception through with its traceback. This is done once,
in :func:`main`, for every command (:func:`user_errors` lists the exception types it covers).

Subcommands import their subsystem lazily so that ``sparrow --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from sparrow.profiles import PROFILES


def _synth(args: argparse.Namespace) -> int:
    from sparrow.data.synthetic import generate

    out = generate(args.profile, args.seed, Path(args.out))
    print(f"SPARROW-Mini ({args.profile}, seed {args.seed}) written to {out}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from sparrow.notebook_tools import reproduce

    reproduce(args.profile, args.seed, [Path(n) for n in args.notebook] or None)
    return 0


def _tsf(args: argparse.Namespace) -> int:
    from sparrow.data.curated import CuratedDataset
    from sparrow.tsf.pipeline import ensure_tsf, main_rank_first, profile_config
    from sparrow.tsf.runs import TSFRun
    from sparrow.tsf.sharding import init_shard

    shard = init_shard()
    with main_rank_first(shard):
        if args.curated:
            root = Path(args.curated)
            if not root.is_dir():
                raise FileNotFoundError(f"curated dataset folder not found: {root}")
        else:
            from sparrow.data.curate import ensure_curated

            root = ensure_curated(args.profile, args.seed)
        dataset = CuratedDataset(root)
        if args.source is not None and args.source not in dataset.sources():
            raise ValueError(f"{root}: no source {args.source!r} (it has {', '.join(dataset.sources())})")
        splits = dataset.splits(args.source)
        if args.split not in splits:
            raise ValueError(
                f"{root}: no split {args.split!r}"
                + (f" in source {args.source!r}" if args.source else "")
                + f" (it has {', '.join(splits)})"
            )
        config = profile_config(args.profile, root, args.box_source, args.detector, args.sam2_checkpoint)
    folder = ensure_tsf(
        args.profile,
        args.seed,
        args.split,
        args.source,
        config=config,
        curated_root=root,
        limit_videos=args.limit_videos,
    )
    if shard.is_main:
        counts = TSFRun(folder).counts
        print(
            f"TSF of {counts['expressions']} expressions in {counts['videos']} videos ({args.split}"
            f"{'/' + args.source if args.source else ''}): {folder}"
        )
        print("  " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def _eval(args: argparse.Namespace) -> int:
    import json

    from sparrow.eval.benchmarks import benchmarks_for
    from sparrow.eval.runner import (
        checkpoint_fingerprint,
        eval_root,
        evaluate_checkpoint,
        keyed_eval_dir,
        variant_eval_dir,
    )
    from sparrow.paths import runs_dir

    benchmarks = benchmarks_for(args.profile, args.benchmark or None)
    if args.all:
        benchmarks = tuple(b.replace(limit=None) for b in benchmarks)
    if args.curated:
        curated = Path(args.curated)
    else:
        from sparrow.data.curate import ensure_curated

        curated = ensure_curated(args.profile, args.seed)
    tsf_boxes = tsf_tag = None
    if args.tsf_run:
        from sparrow.eval.runner import tsf_boxes_from_run

        tsf_boxes, tsf_tag = tsf_boxes_from_run(args.tsf_run)
    if args.run:
        from sparrow.train.variants import RunResult

        run_dir = Path(args.run)
        if not (run_dir / "run.json").is_file():
            run_dir = runs_dir(args.profile) / args.run
        run = RunResult.load(run_dir)
        checkpoint, model_id = run.final_dir, checkpoint_fingerprint(run.final_dir)
        default = variant_eval_dir(run.profile, run.host, run.seed, run.name, model_id, tsf_tag)
    else:
        checkpoint = Path(args.checkpoint)
        model_id = checkpoint_fingerprint(checkpoint)
        default = keyed_eval_dir(eval_root(args.profile), checkpoint.resolve().name, model_id, tsf_tag)
    out = Path(args.out) if args.out else default
    results = evaluate_checkpoint(
        checkpoint,
        benchmarks,
        curated,
        out,
        tsf_boxes=tsf_boxes,
        tsf_tag=tsf_tag,
        show_progress=not args.quiet,
        device=args.device,
        model_id=model_id,
    )
    if args.json:
        print(json.dumps({k: r.to_json() for k, r in results.items()}, indent=2))
        return 0
    print(f"{checkpoint} on {curated}")
    for r in results.values():
        value = f"{r.value:.2f}" if r.value is not None else r.note
        unit = next(b.unit for b in benchmarks if b.key == r.key)
        print(
            f"  {r.title:<14} {r.metric:<5} {value}   ({r.units} {unit}, "
            f"[SEG] in {100 * (r.seg_found_rate or 0):.0f}% of answers, predictions {r.predictions})"
        )
        extra = {k: v for k, v in r.details.items() if isinstance(v, (int, float)) and v is not None}
        if extra:
            print(
                "                 "
                + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in extra.items())
            )
        for w in r.warnings:
            print(f"                 warning: {w}")
    return 0


def _score(args: argparse.Namespace) -> int:
    from sparrow.eval.score import score, tqdm_progress

    result = score(
        args.benchmark,
        args.pred,
        args.gt,
        protocol=args.protocol,
        workers=args.workers,
        progress=None if args.quiet else tqdm_progress,
        device=args.device,
        captions=args.captions,
        text_encoder=_text_encoder(args.text_encoder),
        clair_judge=_clair_judge(args),
    )
    print(f"{args.benchmark}: {args.pred}" + (f" against {args.gt}" if args.gt else ""))
    print(result.format_table())
    if result.missing:
        print(f"missing (scored 0): {', '.join(result.missing)}")
    if args.json:
        print(f"per-video and per-expression rows: {result.write_json(args.json)}")
    if args.figure:
        from sparrow.viz import save_figure, score_figure

        print(f"figure: {save_figure(score_figure(result), args.figure)}")
    return 0


def _text_encoder(folder: str | None):
    if folder is None:
        return None
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"--text-encoder {folder}: no such folder (a local bert-base-uncased)")
    from sparrow.eval.gcg import BertMeanEncoder

    return BertMeanEncoder(folder)


def _clair_judge(args: argparse.Namespace):
    if args.judge_url and args.judge_model_dir:
        raise ValueError("--judge-url and --judge-model-dir: give one CLAIR judge")
    if args.judge_url:
        from sparrow.eval.clair import OpenAICompatibleJudge

        return OpenAICompatibleJudge(args.judge_url, model=args.judge_model)
    if args.judge_model_dir:
        if not Path(args.judge_model_dir).is_dir():
            raise FileNotFoundError(f"--judge-model-dir {args.judge_model_dir}: no such folder")
        from sparrow.eval.clair import TransformersJudge

        return TransformersJudge(args.judge_model_dir)
    return None


def _package(args: argparse.Namespace) -> int:
    from sparrow.eval.package import SERVERS, package

    out = package(args.benchmark, args.pred, args.gt, args.out)
    print(f"{out}: {SERVERS[args.benchmark].title} submission for {SERVERS[args.benchmark].where}")
    return 0


def _regen_expected(args: argparse.Namespace) -> int:
    from sparrow.notebook_tools import numbered_notebooks, run_notebook
    from sparrow.paths import results_root
    from sparrow.results import expected_path, write_expected

    notebooks = [Path(n) for n in args.notebook] or numbered_notebooks()
    if args.from_results:
        # A finished `make reproduce` already recorded every number: write the expectations from it instead of
        # running the notebooks a second time.
        for nb in notebooks:
            results = results_root() / args.profile / f"{nb.stem}.json"
            if not results.is_file():
                print(f"sparrow regen-expected: error: {results}: no results of {nb.name}", file=sys.stderr)
                return 2
            print(f"{nb.name}: {results} -> {write_expected(results, expected_path(nb.stem, args.profile))}")
        return 0
    with tempfile.TemporaryDirectory(prefix="sparrow-regen-") as tmp:
        for nb in notebooks:
            run = run_notebook(nb, args.profile, args.seed, out_dir=Path(tmp) / "executed", results_dir=Path(tmp))
            if run.results is None:
                print(f"{nb.name}: recorded nothing; no expectation written", file=sys.stderr)
                continue
            path = write_expected(run.results, expected_path(nb.stem, args.profile))
            print(f"{nb.name}: {run.seconds:.1f} s -> {path}")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from sparrow.train.variants import pretrain_foundation

    for name, (folder, cpu) in pretrain_foundation(args.profile, args.seed, commit=args.commit).items():
        print(f"{name} of {args.profile} (data seed {args.seed}): {folder} ({cpu:.0f} CPU s)")
    return 0


def _promote_results(args: argparse.Namespace) -> int:
    from sparrow.results import promote

    for path in promote(args.profile, args.source):
        print(f"promoted: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparrow", description="SPARROW reproduction kit")
    parser.add_argument("--paths", help="JSON file from paper component name to path (before the command)")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (before the command)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="generate SPARROW-Mini in the real on-disk formats")
    p.add_argument("--profile", choices=PROFILES, default="mini")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_synth)

    p = sub.add_parser("curate", help="harmonise dataset sources into one curated dataset", add_help=False)
    p.set_defaults(func=None, passthrough="curate")

    p = sub.add_parser("train", help="train one SPARROW stage or a whole variant (also under torchrun)", add_help=False)
    p.set_defaults(func=None, passthrough="train")

    p = sub.add_parser("convert", help="convert a released SPARROW or VideoGLaMM folder", add_help=False)
    p.set_defaults(func=None, passthrough="convert")

    p = sub.add_parser("tsf", help="compute the offline TSF of a split (cached and resumable; shards under torchrun)")
    p.add_argument("--profile", choices=PROFILES, default="mini")
    p.add_argument("--split", required=True, help="split of the curated set, e.g. train or valid")
    p.add_argument("--source", help="keep one source's videos, e.g. ref-davis17 (default: every source)")
    p.add_argument("--seed", type=int, default=0, help="data seed of the curated SPARROW-Mini (without --curated)")
    p.add_argument("--curated", help="curated dataset folder (default: SPARROW-Mini of --profile/--seed)")
    p.add_argument(
        "--detector",
        help="GroundingDINO folder (required under paper; default under smoke/mini: the "
        "tiny detector, trained on first use)",
    )
    p.add_argument(
        "--box-source",
        choices=("detector", "ground_truth"),
        default="detector",
        help="keyframe box from the detector or the referent's ground truth (the oracle option)",
    )
    p.add_argument("--sam2-checkpoint", help="SAM2 weights of the sam2 tracker (the paper tracker)")
    p.add_argument("--limit-videos", type=int, help="only the first N videos of the split (sorted)")
    p.set_defaults(func=_tsf)

    p = sub.add_parser("eval", help="predict and score benchmarks for a trained run or a checkpoint folder")
    from sparrow.eval.benchmarks import COLUMNS  # light: no torch

    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--run", help="a trained run: its folder, or <host>-seed<N>/<variant> under the profile's runs")
    target.add_argument("--checkpoint", help="a SparrowModel.save_pretrained folder")
    p.add_argument("--profile", choices=PROFILES, default="mini")
    p.add_argument("--seed", type=int, default=0, help="data seed of the curated SPARROW-Mini (without --curated)")
    p.add_argument(
        "--benchmark", action="append", default=[], choices=COLUMNS, help="benchmark key (repeatable; default all six)"
    )
    p.add_argument("--curated", help="curated dataset folder (default: SPARROW-Mini of --profile/--seed)")
    p.add_argument(
        "--out",
        help="prediction folder root (default: $SPARROW_HOME/eval/<profile>/.../<name>-<key>, the key hashing the "
        "model's fingerprint)",
    )
    p.add_argument("--all", action="store_true", help="score every unit of each split, not the profile's subset")
    p.add_argument("--tsf-run", help="a finished TSF run folder: evaluate with TSF at test from its tracked boxes")
    p.add_argument("--device", help="torch device for the model (default: the CPU)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_eval)

    p = sub.add_parser("score", help="score a prediction folder against a benchmark's released ground truth")
    from sparrow.eval.score import BENCHMARKS  # light: no torch

    p.add_argument("benchmark", choices=list(BENCHMARKS))
    p.add_argument("--pred", required=True, help="prediction folder (<video>/<exp_id>/<frame>.png) or RLE JSON file")
    p.add_argument("--gt", help="ground-truth folder as released (docs/evaluation.md §10; not for videogcg)")
    p.add_argument("--protocol", help="Ref-DAVIS17: davis, expression or both (default both)")
    p.add_argument("--workers", type=int, default=1, help="processes scoring videos in parallel")
    p.add_argument("--device", help="torch device for the J/F counts, e.g. cuda (default: the CPU path)")
    p.add_argument("--json", help="write the tables with per-video and per-expression rows to this file")
    p.add_argument("--figure", help="write the per-video J&F bars and per-frame J/F strip to this image")
    p.add_argument("--captions", action="store_true", help="videogcg: METEOR and CIDEr too (needs Java)")
    p.add_argument("--text-encoder", help="videogcg: a local bert-base-uncased folder, for the phrase recall")
    p.add_argument("--judge-url", help="videogcg: CLAIR with an OpenAI-compatible server (key from OPENAI_API_KEY)")
    p.add_argument("--judge-model", default="gpt-3.5-turbo", help="videogcg: the model that --judge-url serves")
    p.add_argument("--judge-model-dir", help="videogcg: CLAIR with a local causal LM folder (transformers)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_score)

    p = sub.add_parser("package", help="validate a prediction folder and write the evaluation server's zip")
    from sparrow.eval.package import SERVERS

    p.add_argument("benchmark", choices=list(SERVERS))
    p.add_argument("--pred", required=True, help="prediction folder <video>/<exp_id>/<frame>.png")
    p.add_argument("--gt", required=True, help="the split folder holding meta_expressions.json (or the file)")
    p.add_argument("--out", required=True, help="zip file to write")
    p.set_defaults(func=_package)

    p = sub.add_parser("reproduce", help="run every numbered notebook in order")
    p.add_argument("--profile", choices=PROFILES, default="mini")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--notebook", action="append", default=[], help="run only these notebooks (repeatable)")
    p.set_defaults(func=_reproduce)

    p = sub.add_parser("pretrain", help="pretrain the tiny profiles' foundation: SAM2 and the dense grounding")
    p.add_argument("--profile", choices=[p for p in PROFILES if p != "paper"], default="mini")
    p.add_argument("--seed", type=int, default=0, help="data seed of the curated SPARROW-Mini it serves")
    p.add_argument(
        "--commit", action="store_true", help="write them to reproductions/weights/<profile>-sam2 and -grounding"
    )
    p.set_defaults(func=_pretrain)

    p = sub.add_parser("regen-expected", help="rewrite the expected numbers of a profile from a fresh run")
    p.add_argument("--profile", choices=PROFILES, default="smoke")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--notebook", action="append", default=[], help="only these notebooks (repeatable)")
    p.add_argument(
        "--from-results",
        action="store_true",
        help="write from the results of the last run ($SPARROW_HOME/results/<profile>/) instead of running",
    )
    p.set_defaults(func=_regen_expected)

    p = sub.add_parser("promote-results", help="make a run's recorded numbers the committed reference results")
    p.add_argument("--profile", choices=PROFILES, default="mini")
    p.add_argument(
        "--from", dest="source", help="the run's results root (default: $SPARROW_RESULTS, else $SPARROW_HOME/results)"
    )
    p.set_defaults(func=_promote_results)
    return parser


# Subcommands that own their argument parsing (their modules define ``main_<name>(argv)``).
_PASSTHROUGH = {
    "curate": ("sparrow.data.curate", "main_curate"),
    "train": ("sparrow.train.cli", "main_train"),
    "convert": ("sparrow.convert.cli", "main_convert"),
}


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that report a problem with the command's input, not a bug: one line each, no traceback.

    The kit raises :class:`sparrow.storage.DataError` (checkpoint, folder-lock and prediction-folder errors
    included) and ValueError for bad input, OSError subclasses for files, NonFiniteLossError (a
    FloatingPointError) for a diverging run; KeyError carries a sentence where a lookup names what is missing."""
    from sparrow.storage import DataError

    return (DataError, ValueError, OSError, FloatingPointError, KeyError, ImportError)


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    elif isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        text = exc.args[0]
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    from sparrow.paths import weight_paths

    argv = list(sys.argv[1:] if argv is None else argv)
    paths, debug = None, False
    while argv[:1] in (["--paths"], ["--debug"]):
        if argv[0] == "--debug":
            debug, argv = True, argv[1:]
        elif len(argv) > 1:
            paths, argv = argv[1], argv[2:]
            if not Path(paths).is_file():
                build_parser().error(f"--paths {paths}: no such file")
        else:
            break
    command = argv[0] if argv else ""
    try:
        # Set for the whole command, so that notebook kernels and training processes it starts inherit it.
        with weight_paths(paths):
            if command in _PASSTHROUGH:
                import importlib

                module, func = _PASSTHROUGH[command]
                return int(getattr(importlib.import_module(module), func)(argv[1:]) or 0)
            args = build_parser().parse_args(argv)
            return int(args.func(args) or 0)
    except user_errors() as exc:
        if debug:
            raise
        print(f"sparrow {command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"sparrow {command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
