"""``sparrow convert``: a released folder -> a kit checkpoint folder (docs/released-weights.md §4)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparrow.convert.converter import (
    GAMMA_POLICIES,
    RELEASES,
    SLIDING_WINDOW_POLICIES,
    ConversionError,
    ConvertOptions,
    save_failed_report,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sparrow convert",
        description="Convert a released SPARROW, VideoGLaMM, UniPixel or GLUS folder into a kit checkpoint folder.",
    )
    p.add_argument("--release", required=True, choices=RELEASES)
    p.add_argument("--src", required=True, type=Path, help="the released folder (config.json, weights, tokenizer)")
    p.add_argument("--out", required=True, type=Path, help="the kit checkpoint folder to write")
    p.add_argument(
        "--clip",
        type=Path,
        help="the CLIP folder the export drops: clip-vit-large-patch14-336 (sparrow, videoglamm), -patch14 (glus)",
    )
    p.add_argument("--internvideo2", type=Path, help="the InternVideo2-stage2_1b-224p-f4.pt file")
    p.add_argument(
        "--internvideo2-heads",
        type=int,
        help="the InternVideo2 file's attention heads (default: the paper preset's 16 for a 1408-wide encoder)",
    )
    p.add_argument("--proposer", type=Path, help="a sparrow-det-pretrain checkpoint-* folder (sparrow only)")
    p.add_argument(
        "--gamma",
        choices=GAMMA_POLICIES,
        default="official",
        help="roi_fusion_gamma: the official loader's 0.1 (default) or the stored value",
    )
    p.add_argument(
        "--fuser-gamma",
        choices=("official", "stored"),
        default="official",
        help="glus: the memory-encoder layer scale the official loader leaves (default) or the stored values",
    )
    p.add_argument(
        "--sliding-window",
        choices=SLIDING_WINDOW_POLICIES,
        default="official",
        help="Phi-3 sliding window: the keys the release's transformers 4.41 attends (default) or the stored value",
    )
    p.add_argument(
        "--sam-config", type=Path, help="SAM2 yaml (default: sam2's sam2_hiera_l.yaml; unipixel: sam2.1_hiera_b+.yaml)"
    )
    p.add_argument(
        "--tokenizer",
        type=Path,
        help="a tokenizer.json folder with the same vocabulary, for environments without sentencepiece",
    )
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="LLM dtype (default: the preset's)")
    p.add_argument(
        "--precision",
        choices=("mixed", "float16", "bfloat16"),
        default="mixed",
        help="mixed (default): the LLM in --dtype, SAM2 and the box modules float32; float16 / bfloat16: every "
        "module in that dtype and inference under autocast, as the released evaluation's --precision",
    )
    p.add_argument(
        "--propagation",
        choices=("framewise", "memory_from_first", "memory_every_frame", "video_branch"),
        help="SAM2 propagation at inference (default: the host's own); video_branch: VideoGLaMM's documented "
        "evaluation (its SAM2 video predictor)",
    )
    return p


def main_convert(argv: list[str]) -> int:
    from sparrow.convert.converter import convert, write_converted
    from sparrow.convert.reader import ReleaseError

    args = build_parser().parse_args(argv)
    opts = ConvertOptions(
        release=args.release,
        src=args.src,
        clip=args.clip,
        internvideo2=args.internvideo2,
        internvideo2_heads=args.internvideo2_heads,
        proposer=args.proposer,
        gamma=args.gamma,
        sliding_window=args.sliding_window,
        sam_config=args.sam_config,
        tokenizer=args.tokenizer,
        dtype=args.dtype,
        precision=args.precision,
        propagation=args.propagation,
        fuser_gamma=args.fuser_gamma,
    )
    try:
        converted = convert(opts)
    except ConversionError as exc:
        print(exc.report.format())
        path = save_failed_report(exc.report, args.out)
        print(f"sparrow convert: error: {args.src}: unexplained keys (full report: {path})", file=sys.stderr)
        return 2
    except (ReleaseError, ValueError, FileNotFoundError) as exc:
        print(f"sparrow convert: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(converted.report.format())
    out = write_converted(converted, args.out)
    print(f"{args.release} release {args.src} -> {out} (report: {out / 'conversion-report.txt'})")
    return 0
