"""The ``sparrow`` command line.

    sparrow synth --profile PROFILE --seed N --out DIR       generate SPARROW-Mini in the real source layouts
    sparrow curate --source NAME=ROOT ... --out DIR          harmonise sources into one curated dataset
    sparrow reproduce --profile PROFILE --seed N             run every numbered notebook in order
    sparrow regen-expected --profile PROFILE [--notebook N]  rewrite reproductions/expected/<profile>/ from a fresh run

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


def _regen_expected(args: argparse.Namespace) -> int:
    from sparrow.notebook_tools import numbered_notebooks, run_notebook
    from sparrow.results import expected_path, write_expected

    notebooks = [Path(n) for n in args.notebook] or numbered_notebooks()
    with tempfile.TemporaryDirectory(prefix="sparrow-regen-") as tmp:
        for nb in notebooks:
            run = run_notebook(nb, args.profile, args.seed, out_dir=Path(tmp) / "executed", results_dir=Path(tmp))
            if run.results is None:
                print(f"{nb.name}: recorded nothing; no expectation written", file=sys.stderr)
                continue
            path = write_expected(run.results, expected_path(nb.stem, args.profile))
            print(f"{nb.name}: {run.seconds:.1f} s -> {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sparrow", description="SPARROW reproduction kit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="generate SPARROW-Mini in the real on-disk formats")
    p.add_argument("--profile", choices=PROFILES, default="mini")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=_synth)

    p = sub.add_parser("curate", help="harmonise dataset sources into one curated dataset", add_help=False)
    p.set_defaults(func=None, passthrough="curate")

    p = sub.add_parser("reproduce", help="run every numbered notebook in order")
    p.add_argument("--profile", choices=PROFILES, default="mini")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--notebook", action="append", default=[], help="run only these notebooks (repeatable)")
    p.set_defaults(func=_reproduce)

    p = sub.add_parser("regen-expected", help="rewrite the expected numbers of a profile from a fresh run")
    p.add_argument("--profile", choices=PROFILES, default="smoke")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--notebook", action="append", default=[], help="only these notebooks (repeatable)")
    p.set_defaults(func=_regen_expected)
    return parser


# Subcommands that own their argument parsing (their modules define ``main_<name>(argv)``).
_PASSTHROUGH = {
    "curate": ("sparrow.data.curate", "main_curate"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _PASSTHROUGH:
        import importlib

        module, func = _PASSTHROUGH[argv[0]]
        return int(getattr(importlib.import_module(module), func)(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
