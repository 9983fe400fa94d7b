"""J and F: the kit (sparrow.eval.jf) against a faithful per-frame re-implementation of the official DAVIS-2017
functions (tests/fixtures/reference_davis.py), side by side in one run, on the same masks.

Default size: 30 sequences x 40 frames x 480x854 (1,200 frame pairs), one object per sequence as the official
evaluation scores objects one at a time. Object areas are log-uniform between 0.5 % and 20 % of the frame (DAVIS-2017
val objects are mostly a few per cent of the frame), irregular shapes that move, predictions with the usual errors
(scale, shift, shape; 5 % missed frames, 5 % frames with a false-positive blob), calibrated to J&F of about 0.8 like the
methods in the paper. Mask generation is not timed.

With ``--davis2017 DIR`` (a checkout of github.com/davisvideochallenge/davis2017-evaluation; not a dependency of the
kit) the official ``davis2017.metrics`` functions themselves are timed in the same loop as well, values checked equal.

Both sides run single-threaded (cv2.setNumThreads(1)) in this process. The headline ratio uses CPU time of this
process, which other processes on a shared machine disturb far less than wall time; wall time is printed too.

    .venv/bin/python benchmarks/bench_jf.py            # full size
    .venv/bin/python benchmarks/bench_jf.py --sequences 3 --frames 10
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import sparrow  # noqa: E402,F401  (torchvision shim first)
from fixtures.reference_davis import ref_boundary, ref_iou  # noqa: E402
from sparrow.eval.jf import contour_accuracy, jf_per_frame, region_similarity  # noqa: E402


def _shape(
    height: int, width: int, cy: float, cx: float, ry: float, rx: float, coefs: np.ndarray, phases: np.ndarray
) -> np.ndarray:
    """A star-shaped blob: an ellipse whose radius is modulated by a few angular harmonics."""
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    dy, dx = (yy - cy) / ry, (xx - cx) / rx
    limit = np.ones((height, width), np.float32)
    theta = np.arctan2(dy, dx)
    for k, (c, ph) in enumerate(zip(coefs, phases), start=2):
        limit += c * np.cos(k * theta + ph)
    return np.hypot(dy, dx) <= limit


def make_sequence(
    rng: np.random.Generator, frames: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, float]:
    area = float(np.exp(rng.uniform(np.log(0.005), np.log(0.20))))
    aspect = rng.uniform(0.5, 2.0)
    ry = np.sqrt(area * height * width / np.pi / aspect)
    rx = ry * aspect
    gt = np.zeros((frames, height, width), np.uint8)
    pred = np.zeros((frames, height, width), np.uint8)
    coefs = rng.uniform(0, 0.12, 7)
    phases = rng.uniform(0, 2 * np.pi, 7)
    bh, bw = int(2.8 * ry) + 4, int(2.8 * rx) + 4

    def variant(jitter: float, shift: float, shape_noise: float) -> np.ndarray:
        return _shape(
            bh,
            bw,
            bh / 2 + rng.normal(0, shift),
            bw / 2 + rng.normal(0, shift),
            ry * rng.uniform(1 - jitter, 1 + jitter),
            rx * rng.uniform(1 - jitter, 1 + jitter),
            coefs + rng.normal(0, shape_noise, 7),
            phases + rng.normal(0, shape_noise * 5, 7),
        )

    gts = [variant(0.03, 0.0, 0.01) for _ in range(3)]
    preds = [variant(0.10, 2.5, 0.03) for _ in range(3)]
    y0, x0 = rng.uniform(-bh / 4, height - 3 * bh / 4), rng.uniform(-bw / 4, width - 3 * bw / 4)
    vy, vx = rng.normal(0, 2), rng.normal(0, 3)
    for t in range(frames):
        oy, ox = int(y0 + vy * t), int(x0 + vx * t)
        ys, xs, ye, xe = max(oy, 0), max(ox, 0), min(oy + bh, height), min(ox + bw, width)
        if ye <= ys or xe <= xs:
            continue
        gt[t, ys:ye, xs:xe] = gts[t % 3][ys - oy : ye - oy, xs - ox : xe - ox]
        u = rng.random()
        if u < 0.05:
            continue  # missed frame
        pred[t, ys:ye, xs:xe] = preds[rng.integers(3)][ys - oy : ye - oy, xs - ox : xe - ox]
        if u > 0.95:
            cy, cx, r = rng.integers(0, height), rng.integers(0, width), int(rng.integers(3, 25))
            pred[t, max(cy - r, 0) : cy + r, max(cx - r, 0) : cx + r] = 1
    return gt, pred, area


def _official(path: str | None):
    """``(db_eval_iou, db_eval_boundary)`` of a davis2017-evaluation checkout, or the reason they cannot run."""
    if not path:
        return None, "no checkout given (--davis2017 DIR)"
    if not (Path(path) / "davis2017" / "metrics.py").is_file():
        return None, f"{path} is not a davis2017-evaluation checkout (no davis2017/metrics.py)"
    sys.path.insert(0, str(Path(path)))
    try:
        from davis2017.metrics import db_eval_boundary, db_eval_iou
    except ImportError as exc:
        return None, f"cannot import davis2017.metrics from {path}: {exc}"
    return (db_eval_iou, db_eval_boundary), ""


def _timed(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sequences", type=int, default=30)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=854)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--davis2017", default=None, help="a davis2017-evaluation checkout: time its functions too")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    official, why_not = _official(args.davis2017)
    rng = np.random.default_rng(args.seed)

    # Warm-up: imports (scikit-image) and first-call costs on both sides.
    g, p, _ = make_sequence(rng, 2, args.height, args.width)
    ref_iou(g, p), ref_boundary(g, p), jf_per_frame(g, p), region_similarity(g, p), contour_accuracy(g, p)

    cpu = {"ref_j": 0.0, "ref_f": 0.0, "ours": 0.0, "ours_sep": 0.0, "official": 0.0}
    wall = dict.fromkeys(cpu, 0.0)
    max_dj = max_df = 0.0
    sizes: list[tuple[float, float, float]] = []  # (area, reference cpu, ours cpu)
    stats = []
    for s in range(args.sequences):
        g, p, area = make_sequence(rng, args.frames, args.height, args.width)
        # Alternate the order so that neither side always finds the other's data in cache.
        runs = [("ref", None), ("ours", None), ("ours_sep", None)] + ([("official", None)] if official else [])
        if s % 2:
            runs.reverse()
        seq_ref = seq_ours = 0.0
        for name, _ in runs:
            if name == "ref":
                j_ref, c1, w1 = _timed(ref_iou, g, p)
                f_ref, c2, w2 = _timed(ref_boundary, g, p)
                cpu["ref_j"] += c1
                cpu["ref_f"] += c2
                wall["ref_j"] += w1
                wall["ref_f"] += w2
                seq_ref = c1 + c2
            elif name == "official":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # its J divides by empty unions
                    (j_off, c1, w1), (f_off, c2, w2) = _timed(official[0], g, p), _timed(official[1], g, p)
                cpu["official"] += c1 + c2
                wall["official"] += w1 + w2
            elif name == "ours":
                (j_ours, f_ours), c, w = _timed(jf_per_frame, g, p)
                cpu["ours"] += c
                wall["ours"] += w
                seq_ours = c
            else:
                (j_sep, c1, w1), (f_sep, c2, w2) = _timed(region_similarity, g, p), _timed(contour_accuracy, g, p)
                cpu["ours_sep"] += c1 + c2
                wall["ours_sep"] += w1 + w2
        max_dj = max(max_dj, float(np.abs(j_ref - j_ours).max()), float(np.abs(j_ref - j_sep).max()))
        max_df = max(max_df, float(np.abs(f_ref - f_ours).max()), float(np.abs(f_ref - f_sep).max()))
        if official:
            max_dj = max(max_dj, float(np.abs(j_off - j_ours).max()))
            max_df = max(max_df, float(np.abs(f_off - f_ours).max()))
        sizes.append((area, seq_ref, seq_ours))
        stats.append((float(np.mean(j_ref)), float(np.mean(f_ref))))

    n = args.sequences * args.frames
    ref_cpu = cpu["ref_j"] + cpu["ref_f"]
    ref_wall = wall["ref_j"] + wall["ref_f"]
    print(
        f"J and F on {args.sequences} sequences x {args.frames} frames x {args.height}x{args.width} "
        f"({n} frame pairs), single thread; mean J {np.mean([s[0] for s in stats]):.3f}, "
        f"mean F {np.mean([s[1] for s in stats]):.3f}"
    )
    print(f"{'':34s}{'CPU ms/frame':>14s}{'wall ms/frame':>15s}")
    print(f"{'reference J (db_eval_iou)':34s}{cpu['ref_j'] / n * 1e3:14.3f}{wall['ref_j'] / n * 1e3:15.3f}")
    print(f"{'reference F (db_eval_boundary)':34s}{cpu['ref_f'] / n * 1e3:14.3f}{wall['ref_f'] / n * 1e3:15.3f}")
    print(f"{'reference J + F':34s}{ref_cpu / n * 1e3:14.3f}{ref_wall / n * 1e3:15.3f}")
    print(f"{'sparrow jf_per_frame (J and F)':34s}{cpu['ours'] / n * 1e3:14.3f}{wall['ours'] / n * 1e3:15.3f}")
    print(
        f"{'sparrow region_similarity + contour':34s}{cpu['ours_sep'] / n * 1e3:14.3f}"
        f"{wall['ours_sep'] / n * 1e3:15.3f}"
    )
    print(
        f"speed-up, jf_per_frame:          {ref_cpu / cpu['ours']:.1f}x CPU time, {ref_wall / wall['ours']:.1f}x wall"
    )
    print(
        f"speed-up, the two functions:     {ref_cpu / cpu['ours_sep']:.1f}x CPU time, "
        f"{ref_wall / wall['ours_sep']:.1f}x wall"
    )
    if official:
        print(
            f"official davis2017.metrics (J + F): {cpu['official'] / n * 1e3:.3f} ms/frame CPU; jf_per_frame "
            f"{cpu['official'] / cpu['ours']:.1f}x faster; the reference takes {ref_cpu / cpu['official']:.2f}x its time"
        )
    else:
        print(f"official davis2017.metrics: not timed: {why_not}")
    order = np.argsort([a for a, _, _ in sizes])
    thirds = np.array_split(order, 3)
    for label, part in zip(("small", "medium", "large"), thirds):
        if len(part) == 0:
            continue
        areas = [sizes[i][0] for i in part]
        ratio = sum(sizes[i][1] for i in part) / max(sum(sizes[i][2] for i in part), 1e-12)
        print(f"  {label:6s} objects ({min(areas) * 100:.1f}-{max(areas) * 100:.1f} % of the frame): {ratio:.1f}x")
    print(f"max |J - reference J| = {max_dj:.3g}, max |F - reference F| = {max_df:.3g} (target <= 1e-12)")


if __name__ == "__main__":
    main()
