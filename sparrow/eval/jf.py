"""Region similarity J and contour accuracy F, equal to the official DAVIS-2017 evaluation and much faster.

Definitions (``docs/evaluation.md`` §1-§4): ``db_eval_iou``, ``db_eval_boundary`` (``f_measure`` +
``_seg2bmap``) and ``db_statistics`` of davisvideochallenge/davis2017-evaluation @ ac7c43f. Every value returned
here comes from the same integer counts and the same float64 operations, in the same order, as the official
code, so the results are identical, not merely close; ``tests/test_eval_jf.py`` holds them to a faithful
per-frame re-implementation (``tests/fixtures/reference_davis.py``) and ``benchmarks/bench_jf.py`` measures the
speed-up.

Why it is fast, every step exact:

- Outside the bounding box of ``GT ∪ prediction`` (grown by one pixel) nothing is foreground or boundary, so each
  frame is cropped to that box (found from row sums of each mask, then the columns of the rows that hold
  foreground), and the crop is packed to bits at once.
- The crops of many frames are stacked as rows of 64-bit words (``gap`` zero rows apart, frames sorted by width)
  so that one array operation serves them all; a vertical step is a shift by whole rows.
- The official boundary map marks pixel (y, x) when the 2×2 block (y..y+1, x..x+1) is not constant, the image
  being extended by replication at the bottom and right (that is what its last-row / last-column overrides do):
  on 0/1 pixels, OR ≠ AND of the block, computed on the packed rows (the east neighbour of a word's last bit is
  the next word's first); the replicated row and column are written next to crops at the bottom and right
  borders, and the boundary pixels they create outside the image are cleared.
- For the dilation, boundary rows are cut into overlapping words: word c holds 64 consecutive columns, of which
  only the middle ``payload`` are counted; the halo bytes on each side are the neighbouring columns, so every
  horizontal step of the disk is a shift inside one word. Halos and payload are whole bytes, so that the words
  are one strided copy of the packed rows.
- The ``cv2.dilate`` by the ``skimage`` disk (pixels outside the image contributing nothing) is exact: the disk is
  a staircase of rectangles (rows dy0..dy1 x columns dx0..dx1; the taller, the narrower), each a horizontal run
  then a vertical one. Both runs grow by doubling (a run of L is ceil(log2 L) ORs of shifted copies), the
  horizontal one on the boundary words, and the vertical one on the running union, which the next rectangle's
  extra height grows before the next, wider rectangle joins it: about 36 array operations for the radius-8 disk
  of 480p frames instead of 49 for a column-by-column OR.
- Every count is a population count of words, the payload bits only, summed per frame.
- A disk wider than a word's halo (tolerance radius above 24 px, e.g. 4K frames at the default ``bound_th``) takes the
  per-frame path: the same crops, OpenCV's 2×2 morphological gradient, and a dilation by the disk's largest inner
  square whose misses are decided exactly with an integral image, rectangle by rectangle.

A batched torch path (``device=...``, :mod:`sparrow.eval.jf_torch`) computes the same integer counts with tensor
ops on any device; the float64 endings are shared, so it returns the same values.
"""

from __future__ import annotations

import math
import threading
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import cv2
import numpy as np

BOUND_TH = 0.008
_GRADIENT_KERNEL = np.ones((2, 2), np.uint8)


# ----------------------------------------------------------------------------------------------------------------
# Tolerance disk
# ----------------------------------------------------------------------------------------------------------------
def bound_radius(height: int, width: int, bound_th: float = BOUND_TH) -> float:
    """The tolerance radius in pixels: ``bound_th`` if >= 1, else ``ceil(bound_th * ||(H, W)||)`` in float64."""
    if not bound_th > 0:
        raise ValueError(f"bound_th must be positive, got {bound_th!r}")
    if bound_th >= 1:
        return bound_th
    return float(np.ceil(bound_th * np.linalg.norm((height, width))))


@dataclass(frozen=True)
class _Disk:
    """The dilation footprint as ``cv2.dilate`` applies it: ``dilate(src)(p) = max over offsets k of src(p + k)``.

    ``inner`` is the largest centred square inside it; ``rects`` (dy0, dy1, dx0, dx1, inclusive) are rectangles
    whose union is exactly the footprint; ``reach`` is the largest |offset|.
    """

    kernel: np.ndarray
    offsets: np.ndarray
    inner: np.ndarray
    rects: np.ndarray
    reach: int
    _corners: dict = field(default_factory=dict, compare=False, repr=False)

    def corners(self, stride: int) -> np.ndarray:
        """Integral-image offsets (bottom-right, top-right, bottom-left, top-left) of every rectangle, flattened."""
        cached = self._corners.get(stride)
        if cached is None:
            dy0, dy1, dx0, dx1 = self.rects.T
            cached = np.stack(
                [(dy1 + 1) * stride + dx1 + 1, dy0 * stride + dx1 + 1, (dy1 + 1) * stride + dx0, dy0 * stride + dx0],
                axis=1,
            ).reshape(-1)
            self._corners[stride] = cached
        return cached


@lru_cache(maxsize=64)
def _disk(radius: float) -> _Disk:
    from skimage.morphology import disk

    kernel = disk(radius).astype(np.uint8)
    if kernel.size == 0 or not kernel.any():
        raise ValueError(f"empty tolerance disk for radius {radius!r}")
    # cv2.dilate's default anchor is the kernel centre (size // 2), also for the even sizes that a non-integer
    # radius gives.
    ys, xs = np.nonzero(kernel)
    offsets = np.stack([ys - kernel.shape[0] // 2, xs - kernel.shape[1] // 2], axis=1).astype(np.int64)
    present = {(int(dy), int(dx)) for dy, dx in offsets}
    half = -1
    while all((dy, dx) in present for dy in range(-half - 1, half + 2) for dx in range(-half - 1, half + 2)):
        half += 1
    if half < 0:
        raise ValueError(f"tolerance disk of radius {radius!r} does not contain its centre")
    # Each footprint row as runs of columns; one rectangle per distinct run, spanning every consecutive row whose
    # own runs contain it: each rectangle lies inside the footprint and each row is covered by its own runs.
    runs: dict[int, list[tuple[int, int]]] = {}
    for dy in sorted({int(d) for d in offsets[:, 0]}):
        cols = np.sort(offsets[offsets[:, 0] == dy, 1])
        cut = np.flatnonzero(np.diff(cols) > 1)
        runs[dy] = list(zip(np.r_[cols[0], cols[cut + 1]].tolist(), np.r_[cols[cut], cols[-1]].tolist()))

    def holds(dy: int, run: tuple[int, int]) -> bool:
        return any(a <= run[0] and run[1] <= b for a, b in runs.get(dy, ()))

    rects = set()
    for dy, row in runs.items():
        for run in row:
            lo, hi = dy, dy
            while holds(lo - 1, run):
                lo -= 1
            while holds(hi + 1, run):
                hi += 1
            rects.add((lo, hi, run[0], run[1]))
    return _Disk(
        kernel=kernel,
        offsets=offsets,
        inner=np.ones((2 * half + 1, 2 * half + 1), np.uint8),
        rects=np.array(sorted(rects), np.int64),
        reach=int(np.abs(offsets).max()),
    )


# ----------------------------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------------------------
def to_numpy(x: Any, name: str) -> np.ndarray:
    """An array from a numpy array, a torch tensor or a nested sequence."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object:
        raise ValueError(f"{name}: not a numeric mask array")
    return arr


def _where(index: np.ndarray, ndim: int) -> str:
    if ndim == 3:
        return f"frame {int(index[0])}, pixel (y={int(index[1])}, x={int(index[2])})"
    return f"pixel (y={int(index[0])}, x={int(index[1])})"


def binary_mask(arr: np.ndarray, name: str) -> np.ndarray:
    """A C-contiguous uint8 0/1 array from a mask whose non-zero pixels are foreground.

    A mask must be binary: bool, or numbers taking at most one non-zero value (0/1, 0/255, ...). NaN or infinity,
    and two different non-zero values (a label map, soft probabilities), raise ValueError naming the frame.
    """
    if arr.dtype == bool:
        return np.ascontiguousarray(arr).view(np.uint8)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name}: masks must be bool or numeric, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        finite = np.isfinite(arr)
        if not finite.all():
            where = np.argwhere(~finite)[0]
            raise ValueError(f"{name}: non-finite value {arr[tuple(where)]} at {_where(where, arr.ndim)}")
    nonzero = arr != 0
    if nonzero.any():
        value = arr[tuple(np.argwhere(nonzero)[0])]
        other = nonzero & (arr != value)
        if other.any():
            where = np.argwhere(other)[0]
            raise ValueError(
                f"{name}: not a binary mask: values {value!r} and {arr[tuple(where)]!r} at "
                f"{_where(where, arr.ndim)} (pass one object's mask, e.g. labels == k, or threshold soft masks)"
            )
    return nonzero.view(np.uint8)


@dataclass
class _Masks:
    gt: np.ndarray  # (T, H, W) uint8, C-contiguous
    pred: np.ndarray
    void: np.ndarray | None  # (T, H, W) uint8 0/1
    single: bool
    checked: bool  # values known to be 0/1 (else uint8 of unknown range, verified frame by frame)


def _prepare(gt: Any, pred: Any, void: Any | None) -> _Masks:
    g = to_numpy(gt, "gt")
    p = to_numpy(pred, "pred")
    if g.shape != p.shape:
        raise ValueError(f"shape mismatch: gt {g.shape} vs pred {p.shape}")
    if g.ndim not in (2, 3):
        raise ValueError(f"masks must be (H, W) or (T, H, W), got shape {g.shape}")
    if 0 in g.shape:
        what = "empty sequence (no frames)" if g.ndim == 3 and g.shape[0] == 0 else "empty frame"
        raise ValueError(f"{what}: shape {g.shape}")
    single = g.ndim == 2
    if single:
        g, p = g[None], p[None]
    v = None
    if void is not None:
        v = to_numpy(void, "void")
        if v.shape != (g.shape[1:] if single else g.shape):
            raise ValueError(f"shape mismatch: void {v.shape} vs masks {g.shape[1:] if single else g.shape}")
        if v.dtype.kind == "f" and np.isnan(v).any():
            raise ValueError("void: NaN values")
        v = np.ascontiguousarray(v).view(np.uint8) if v.dtype == bool else (v != 0).view(np.uint8)
        if single:
            v = v[None]
    # uint8 masks (PNG reads, 0/1 stacks) are used as they are and checked per frame on their crop, which is
    # cheaper than a pass over the whole stack; anything else is converted here.
    checked = [True, True]
    masks = []
    for i, (arr, name) in enumerate(((g, "gt"), (p, "pred"))):
        if arr.dtype == np.uint8 and v is None:
            masks.append(np.ascontiguousarray(arr))
            checked[i] = False
        else:
            masks.append(binary_mask(arr, name))
    return _Masks(masks[0], masks[1], v, single, all(checked))


# ----------------------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------------------
def region_similarity(gt: Any, pred: Any, void: Any | None = None) -> np.ndarray | float:
    """J per frame (official ``db_eval_iou(gt, pred, void)``): ``|P∧G∧¬V| / |(P∨G)∧¬V|``, 1 on an empty union.

    ``gt``, ``pred`` (and ``void``) are (T, H, W) or (H, W) masks, any non-zero pixel being foreground. Returns a
    float64 array of T values, or a float for a single frame.
    """
    masks = _prepare(gt, pred, void)
    counts = _counts(masks, BOUND_TH, want_f=False)
    j = _finish_j(counts[0], counts[1])
    return float(j[0]) if masks.single else j


def contour_accuracy(gt: Any, pred: Any, void: Any | None = None, bound_th: float = BOUND_TH) -> np.ndarray | float:
    """F per frame (official ``db_eval_boundary(gt, pred, void, bound_th)``); see the module docstring."""
    masks = _prepare(gt, pred, void)
    counts = _counts(masks, bound_th, want_f=True)
    f = _finish_f(*counts[2:])
    return float(f[0]) if masks.single else f


def jf_per_frame(
    gt: Any, pred: Any, void: Any | None = None, bound_th: float = BOUND_TH, device: Any | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """J and F per frame in one pass over the masks; two (T,) float64 arrays (length 1 for an (H, W) frame).

    ``device`` (a torch device or its name, e.g. ``"cuda"``) selects the batched torch path, which gives the same
    values as the default CPU path.
    """
    if device is not None:
        from sparrow.eval.jf_torch import jf_counts_torch

        inter, union, n_fg, n_gt, m_fg, m_gt = jf_counts_torch(gt, pred, void, bound_th, device)
    else:
        inter, union, n_fg, n_gt, m_fg, m_gt = _counts(_prepare(gt, pred, void), bound_th, want_f=True)
    return _finish_j(inter, union), _finish_f(n_fg, n_gt, m_fg, m_gt)


def statistics(per_frame: Any, n_bins: int = 4) -> tuple[float, float, float]:
    """(mean, recall, decay) of one object's per-frame J or F, as the official ``db_statistics``.

    Mean and recall (fraction of frames > 0.5, strict) ignore NaN. Decay = mean of the first bin minus mean of the
    last, with 4 bins whose edges ``round(linspace(1, N, 5) + 1e-10) - 1`` are cast to uint8 and shared between
    neighbouring bins. As in the official code under NumPy 2 the uint8 arithmetic wraps: from N = 256 frames on,
    the last bin is empty and the decay is NaN (under NumPy 1.26 the official decay is finite at N = 256).
    """
    values = np.asarray(per_frame, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"statistics needs a non-empty 1-D per-frame vector, got shape {values.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(values)
        recall = np.nanmean(values > 0.5)
        edges = (np.round(np.linspace(1, len(values), n_bins + 1) + 1e-10) - 1).astype(np.uint8)
        bins = [values[int(edges[i]) : (int(edges[i + 1]) + 1) % 256] for i in range(n_bins)]
        decay = np.nanmean(bins[0]) - np.nanmean(bins[n_bins - 1])
    return float(mean), float(recall), float(decay)


# ----------------------------------------------------------------------------------------------------------------
# Float64 endings shared by every path: the official operations, in the official order
# ----------------------------------------------------------------------------------------------------------------
def _finish_j(inter: Any, union: Any) -> np.ndarray:
    inter = np.asarray(inter, dtype=np.int64)
    union = np.asarray(union, dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        j = inter / union
    j[union == 0] = 1
    return j


def _finish_f(n_fg: Any, n_gt: Any, m_fg: Any, m_gt: Any) -> np.ndarray:
    """n_fg/n_gt: boundary pixels of prediction/GT; m_fg/m_gt: those within the tolerance of the other boundary."""
    n_fg, n_gt, m_fg, m_gt = (np.asarray(a, dtype=np.int64) for a in (n_fg, n_gt, m_fg, m_gt))
    precision = np.ones(n_fg.shape)
    recall = np.ones(n_fg.shape)
    recall[(n_fg == 0) & (n_gt > 0)] = 0
    precision[(n_fg > 0) & (n_gt == 0)] = 0
    both = (n_fg > 0) & (n_gt > 0)
    precision[both] = m_fg[both] / n_fg[both]
    recall[both] = m_gt[both] / n_gt[both]
    total = precision + recall
    f = np.zeros(n_fg.shape)
    ok = total != 0
    f[ok] = 2 * precision[ok] * recall[ok] / total[ok]
    return f


# ----------------------------------------------------------------------------------------------------------------
# CPU counting
# ----------------------------------------------------------------------------------------------------------------
class _Unchecked(Exception):
    """A uint8 mask holds values other than 0 and 1: normalise it and count again."""


def _counts(masks: _Masks, bound_th: float, want_f: bool):
    height, width = masks.gt.shape[1:]
    packing = _packing(bound_radius(height, width, bound_th))
    try:
        if packing is not None:
            return _count_packed(masks, packing, want_f)
        return _count_frames(masks, bound_th, want_f)
    except _Unchecked:
        masks.gt = binary_mask(masks.gt, "gt")
        masks.pred = binary_mask(masks.pred, "pred")
        masks.checked = True
        return _counts(masks, bound_th, want_f)


def _count_frames(masks: _Masks, bound_th: float, want_f: bool):
    """Integer counts per frame: J's intersection and union, F's boundary sizes and matched boundary pixels.

    Frame by frame, so that everything a frame needs stays in cache while it is processed.
    """
    g, p, v = masks.gt, masks.pred, masks.void
    frames, height, width = g.shape
    inter = np.zeros(frames, np.int64)
    union = np.zeros(frames, np.int64)
    n_fg = np.zeros(frames, np.int64)
    n_gt = np.zeros(frames, np.int64)
    m_fg = np.zeros(frames, np.int64)
    m_gt = np.zeros(frames, np.int64)
    disk = _disk(bound_radius(height, width, bound_th)) if want_f else None
    for t in range(frames):
        g_t, p_t = g[t], p[t]
        if v is not None:
            # On 0/1 uint8 saturating subtraction is "and not": void pixels are removed before anything else.
            g_t = cv2.subtract(g_t, v[t])
            p_t = cv2.subtract(p_t, v[t])
        either = cv2.bitwise_or(g_t, p_t)
        x, y, w, h = cv2.boundingRect(either)
        if w == 0:
            continue  # both empty: J = 1 (empty union), F = 1 (both boundaries empty)
        # One pixel of margin where the image allows: a mask's boundary reaches one pixel above and left of it,
        # and the crop's last row/column is then either empty or the image border, so that the 2x2 gradient
        # with replicated borders gives the official boundary map inside the crop.
        y0, y1 = max(y - 1, 0), min(y + h + 1, height)
        x0, x1 = max(x - 1, 0), min(x + w + 1, width)
        either_c = either[y0:y1, x0:x1]
        n_u = cv2.countNonZero(either_c)
        if not masks.checked and cv2.sumElems(either_c)[0] != n_u:
            raise _Unchecked
        g_c, p_c = g_t[y0:y1, x0:x1], p_t[y0:y1, x0:x1]
        n_g = cv2.countNonZero(g_c)
        n_p = cv2.countNonZero(p_c)
        inter[t] = n_g + n_p - n_u
        union[t] = n_u
        if disk is None:
            continue
        b_g = cv2.morphologyEx(
            g_c, cv2.MORPH_GRADIENT, _GRADIENT_KERNEL, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE
        )
        b_p = cv2.morphologyEx(
            p_c, cv2.MORPH_GRADIENT, _GRADIENT_KERNEL, anchor=(0, 0), borderType=cv2.BORDER_REPLICATE
        )
        n_gt[t] = nb_g = cv2.countNonZero(b_g)
        n_fg[t] = nb_p = cv2.countNonZero(b_p)
        if nb_g and nb_p:
            m_fg[t] = _matched(b_p, nb_p, b_g, disk)  # prediction boundary near the GT one
            m_gt[t] = _matched(b_g, nb_g, b_p, disk)
    return inter, union, n_fg, n_gt, m_fg, m_gt


def _matched(b_from: np.ndarray, n_from: int, b_to: np.ndarray, disk: _Disk) -> int:
    """How many non-zero pixels of ``b_from`` have a non-zero pixel of ``b_to`` within the disk."""
    sure = cv2.dilate(b_to, disk.inner)
    unsure = cv2.subtract(b_from, sure)
    n_unsure = cv2.countNonZero(unsure)
    if n_unsure == 0:
        return n_from
    idx = _flat_nonzero(unsure)
    h, w = b_to.shape
    r = disk.reach
    # Zero border of the reach: no rectangle leaves the integral image, and outside pixels count as empty.
    integral = cv2.integral(cv2.copyMakeBorder(b_to, r, r, r, r, cv2.BORDER_CONSTANT, value=0)).reshape(-1)
    stride = w + 2 * r + 1
    ys, xs = np.divmod(idx, w)
    cells = (ys + r) * stride + (xs + r)
    corners = integral[cells[:, None] + disk.corners(stride)].reshape(idx.size, -1, 4)
    sums = corners[:, :, 0] - corners[:, :, 1] - corners[:, :, 2] + corners[:, :, 3]
    return n_from - n_unsure + int(np.count_nonzero((sums > 0).any(axis=1)))


def _flat_nonzero(a: np.ndarray) -> np.ndarray:
    """Flat indices of the non-zero pixels of a contiguous uint8 0/1 array (sparse: scans packed words)."""
    flat = a.reshape(-1)
    packed = np.packbits(flat)
    whole = packed.size // 8 * 8
    words = packed[:whole].view(np.uint64)
    hot = (words != 0).nonzero()[0]
    bits = np.unpackbits(words[hot].view(np.uint8)).view(bool).nonzero()[0]
    idx = hot[bits >> 6] * 64 + (bits & 63)
    if whole < packed.size:
        tail = np.unpackbits(packed[whole:]).view(bool).nonzero()[0] + whole * 8
        idx = np.concatenate([idx, tail[tail < flat.size]])
    return idx


# ----------------------------------------------------------------------------------------------------------------
# Packed counting: 64 pixels of a row per machine word, many frames per array operation
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Packing:
    """How a row is cut into overlapping 64-bit words so that every horizontal shift stays inside one word.

    Word ``c`` of a row holds the columns ``c * payload - left ... + 63`` (bit ``i`` = column ``+ i``); only the
    ``payload`` bits after the ``left`` halo bits are counted. The halos hold the neighbouring columns, so a shift
    by up to ``left`` bits one way and ``right`` the other never needs the next word. ``stairs`` is the
    footprint as rectangles (dy0, dy1, dx0, dx1), tallest (and narrowest) first, each one's rows inside the one
    before and its columns around them. ``gap`` zero rows separate frames.
    """

    left: int
    payload: int
    gap: int
    stairs: tuple[tuple[int, int, int, int], ...]
    payload_mask: np.uint64


_MIN_PAYLOAD = 8


@lru_cache(maxsize=64)
def _packing(radius: float) -> _Packing | None:
    """The word layout for a tolerance disk, or None when the disk is too wide for it (the per-frame path then)."""
    offsets = _disk(radius).offsets
    # Whole bytes: rows packed by np.packbits are cut into place byte by byte, and word c starts at byte
    # c * payload / 8 of a packed row.
    left = -(-max(0, -int(offsets[:, 1].min())) // 8) * 8
    right = -(-max(0, int(offsets[:, 1].max())) // 8) * 8
    payload = 64 - left - right
    if payload < _MIN_PAYLOAD:
        return None
    gap = max(int(np.abs(offsets[:, 0]).max()), 2)
    return _Packing(left, payload, gap, _stairs(offsets), np.uint64(((1 << payload) - 1) << left))


def _stairs(offsets: np.ndarray) -> tuple[tuple[int, int, int, int], ...]:
    """The footprint as a staircase of rectangles (dy0, dy1, dx0, dx1), tallest first: for each distinct column
    run of rows, the columns whose run holds it. A disk's column runs are single and nested, so each rectangle's
    rows lie inside the previous one's and its columns around the previous one's, and their union is the
    footprint."""
    runs = {}
    for dx in sorted({int(d) for d in offsets[:, 1]}):
        dys = offsets[offsets[:, 1] == dx, 0]
        lo, hi = int(dys.min()), int(dys.max())
        if dys.size != hi - lo + 1:
            raise AssertionError("footprint column with a hole")
        runs[dx] = (lo, hi)
    stairs = []
    for lo, hi in sorted(set(runs.values()), key=lambda r: r[0] - r[1]):
        cols = [dx for dx, (a, b) in runs.items() if a <= lo and hi <= b]
        if len(cols) != cols[-1] - cols[0] + 1:
            raise AssertionError("footprint columns holding a run are not contiguous")
        if stairs and not (stairs[-1][0] <= lo and hi <= stairs[-1][1]):
            raise AssertionError("footprint column runs are not nested")
        stairs.append((lo, hi, cols[0], cols[-1]))
    return tuple(stairs)


class _Buffers(threading.local):
    """Scratch arrays reused from call to call: fresh large arrays cost a page fault per 4 KiB on first touch."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: Any = np.uint64) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        raw = self.arrays.get(name)
        if raw is None or raw.size < nbytes:
            raw = self.arrays[name] = np.empty(max(nbytes, 1), np.uint8)
        return raw[:nbytes].view(dtype).reshape(shape)


_BUFFERS = _Buffers()
# Words per chunk of frames: about 256 KiB per array, so that the dozen arrays of the dilation stay in cache.
_CHUNK_WORDS = 1 << 15
_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def _popcount(words: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Set bits of a 2-D uint64 array in each band of rows starting at ``starts``, as int64."""
    if hasattr(np, "bitwise_count"):
        bits = np.bitwise_count(words).reshape(-1)
        per_word = words.shape[1]
    else:  # NumPy < 2
        bits = _POPCOUNT8[words.view(np.uint8)].reshape(-1)
        per_word = words.shape[1] * 8
    return np.add.reduceat(bits, starts * per_word, dtype=np.int64)


@dataclass
class _Box:
    """One frame's crop (rows y0..y1, columns x0..x1), its packed masks and its place in a chunk."""

    t: int
    y0: int
    y1: int
    x0: int
    x1: int
    gt: np.ndarray  # the crop's rows from column max(first, 0) to x1, np.packbits little-endian
    pred: np.ndarray
    first: int  # column of bit 0 of the packed words (a multiple of 8)
    mass: int  # sum of both masks' values: |GT| + |prediction| when they are 0/1
    words: int = 0  # words per row
    row: int = 0  # first row in the chunk


def _boxes(masks: _Masks, height: int, width: int, left: int) -> list[_Box]:
    """Crop of each non-empty frame: the bounding box of GT ∪ prediction grown by one pixel where the image allows.

    A mask's boundary reaches one pixel above and left of it, and the crop's last row/column is then either empty
    or the image border (where the official rule replicates it). The crop is packed to bits right away, from the
    column ``first`` (a multiple of 8, ``left`` or more before the crop: the halo) or from column 0.
    """
    g, p = masks.gt, masks.pred
    # Row sums of every frame: one streaming pass over each mask (faster than frame by frame); then, per frame,
    # the columns over the rows that hold foreground only.
    row_sums = [cv2.reduce(m.reshape(-1, width), 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S) for m in (g, p)]
    all_sums = (row_sums[0] + row_sums[1]).reshape(g.shape[0], height, 1)
    masses = [0] * g.shape[0] if masks.checked else all_sums.sum(axis=(1, 2), dtype=np.int64).tolist()
    boxes = []
    for t in range(g.shape[0]):
        sums = all_sums[t]
        rows = sums[:, 0].nonzero()[0]
        if rows.size == 0:
            continue  # both empty: J = 1 (empty union), F = 1 (both boundaries empty)
        top, bottom = int(rows[0]), int(rows[-1]) + 1
        band = np.bitwise_or.reduce(g[t, top:bottom], axis=0) | np.bitwise_or.reduce(p[t, top:bottom], axis=0)
        columns = band.nonzero()[0]
        west, east = int(columns[0]), int(columns[-1]) + 1
        y0, y1, x0, x1 = max(top - 1, 0), min(bottom + 1, height), max(west - 1, 0), min(east + 1, width)
        first = (x0 - left) // 8 * 8
        start = max(first, 0)
        packed = [np.packbits(m[t, y0:y1, start:x1], axis=1, bitorder="little") for m in (g, p)]
        boxes.append(_Box(t, y0, y1, x0, x1, *packed, first=first, mass=masses[t]))
    return boxes


def _count_packed(masks: _Masks, packing: _Packing, want_f: bool):
    """The integer counts of :func:`_count_frames`, frames grouped by crop width and processed a chunk at a time."""
    frames, height, width = masks.gt.shape
    if masks.void is not None:
        # On 0/1 uint8, AND with NOT void: void pixels are removed before anything else.
        keep = np.bitwise_xor(masks.void, 1)
        masks = _Masks(np.bitwise_and(masks.gt, keep), np.bitwise_and(masks.pred, keep), None, masks.single, True)
    counts = np.zeros((6, frames), np.int64)
    boxes = _boxes(masks, height, width, packing.left)
    for box in boxes:
        box.words = -(-(box.x1 - box.first - packing.left) // packing.payload)
    boxes.sort(key=lambda b: b.words)
    chunk: list[_Box] = []
    rows = packing.gap
    for box in boxes:
        more = box.y1 - box.y0 + packing.gap
        if chunk and (rows + more) * box.words > _CHUNK_WORDS:
            _count_chunk(masks, packing, chunk, rows, want_f, counts)
            chunk, rows = [], packing.gap
        box.row = rows
        chunk.append(box)
        rows += more
    if chunk:
        _count_chunk(masks, packing, chunk, rows, want_f, counts)
    return tuple(counts)


def _count_chunk(masks: _Masks, pk: _Packing, boxes: list[_Box], rows: int, want_f: bool, counts: np.ndarray):
    """Counts of the frames of one chunk: their crops stacked as rows of words, ``gap`` zero rows between them."""
    height, width = masks.gt.shape[1:]
    n_words = boxes[-1].words
    # Plain packed rows: bit i of the row is column first + i. The words hold every bit that a halo word reads,
    # and one spare word (zero in the masks) that none reads.
    n_plain = ((n_words - 1) * pk.payload + 63) // 64 + 2
    plain = {}
    for name in ("gt", "pred"):
        q = _BUFFERS.get("plain_" + name, (rows, n_plain))
        q.fill(0)
        q8 = q.view(np.uint8)
        for b in boxes:
            bits = getattr(b, name)
            at = max(b.first, 0) // 8 - b.first // 8  # byte of the words where the packed crop starts
            q8[b.row : b.row + b.y1 - b.y0, at : at + bits.shape[1]] = bits
        plain[name] = q
    starts = np.array([b.row for b in boxes])
    ts = np.array([b.t for b in boxes])
    both = _BUFFERS.get("tmp", (rows, n_plain))
    np.bitwise_and(plain["gt"], plain["pred"], out=both)
    counts[0, ts] = _popcount(both, starts)
    np.bitwise_or(plain["gt"], plain["pred"], out=both)
    counts[1, ts] = _popcount(both, starts)
    if not masks.checked and not np.array_equal(counts[0, ts] + counts[1, ts], [b.mass for b in boxes]):
        # Packing keeps any non-zero value as 1: |GT| + |prediction| = intersection + union for 0/1 masks only,
        # a larger value makes the masks' sum exceed it.
        raise _Unchecked
    if not want_f:
        return
    # The official rule replicates the last row and column at the bottom and right image borders.
    bottom = [b for b in boxes if b.y1 == height]
    for b in boxes:
        if b.x1 != width:
            continue
        col = b.x1 - b.first
        rr = slice(b.row, b.row + b.y1 - b.y0)
        for q in plain.values():
            q[rr, col // 64] |= ((q[rr, (col - 1) // 64] >> np.uint64((col - 1) % 64)) & np.uint64(1)) << np.uint64(
                col % 64
            )
    if bottom:
        last = np.array([b.row + b.y1 - b.y0 - 1 for b in bottom])
        for q in plain.values():
            q[last + 1] = q[last]
    # Boundary pixels that the replication or the zeros around the image create outside it: the row above a crop
    # at the top border, the replicated row, and columns -1 and W in the halos.
    outside_rows = [b.row - 1 for b in boxes if b.y0 == 0] + [b.row + b.y1 - b.y0 for b in bottom]
    edge = []
    for b in boxes:
        # Only a crop at the left border (mask pixels in column 0) or at the right one (the replicated column)
        # has boundary pixels outside the image; elsewhere the zeros around the crop are the image's own.
        if b.x0 == 0 or b.x1 == width:
            keep = []
            for c in range(n_words):
                lo = min(max(-(b.first + c * pk.payload), 0), 64)
                hi = min(max(width - (b.first + c * pk.payload), 0), 64)
                keep.append(((1 << hi) - 1) & ~((1 << lo) - 1))
            edge.append((slice(b.row - 1, b.row + b.y1 - b.y0 + 1), np.array(keep, np.uint64)))
    boundary = {}
    for name, q in plain.items():
        bnd = _halo_words(_boundary_words(q), pk, n_words, "bnd_" + name)
        if outside_rows:
            bnd[np.array(outside_rows)] = 0
        for rr, keep in edge:
            bnd[rr] &= keep
        boundary[name] = bnd
    pay = pk.payload_mask
    tmp = _BUFFERS.get("tmp", (rows, n_words))
    for i, (name, other) in enumerate((("pred", "gt"), ("gt", "pred"))):
        np.bitwise_and(boundary[name], pay, out=tmp)
        counts[2 + i, ts] = _popcount(tmp, starts)
        np.bitwise_and(tmp, _dilate_words(boundary[other], pk), out=tmp)
        counts[4 + i, ts] = _popcount(tmp, starts)


def _halo_words(plain: np.ndarray, pk: _Packing, n_words: int, name: str) -> np.ndarray:
    """Word c of each row: the 64 bits of the plain row starting at bit c * payload (byte c * payload / 8)."""
    rows = plain.shape[0]
    if plain.shape[1] * 8 < (n_words - 1) * pk.payload // 8 + 8 or not plain.flags.c_contiguous:
        raise ValueError("plain rows too short for the words")
    out = _BUFFERS.get(name, (rows, n_words))
    # Unaligned 8-byte reads at a stride of payload / 8 bytes: numpy copies them like any strided view.
    words = np.lib.stride_tricks.as_strided(plain, shape=(rows, n_words), strides=(plain.strides[0], pk.payload // 8))
    np.copyto(out, words)
    return out


def _boundary_words(x: np.ndarray) -> np.ndarray:
    """The official boundary map on plain packed rows (bit i + 1 is the east neighbour of bit i, across words): a
    2x2 block (y..y+1, x..x+1) that is not constant; OR != AND for 0/1 pixels.

    The rows are processed as one flat run of words: the last word of a row takes its east carry from the next
    row, which only that word's top bit sees, and no halo word reads a row's last word (see ``_count_chunk``)."""
    both_or = _BUFFERS.get("bnd_or", x.shape)
    both_and = _BUFFERS.get("bnd_and", x.shape)
    np.bitwise_or(x[:-1], x[1:], out=both_or[:-1])
    np.bitwise_and(x[:-1], x[1:], out=both_and[:-1])
    both_or[-1] = both_and[-1] = x[-1]
    east = _BUFFERS.get("bnd_east", (x.size,))
    carry = _BUFFERS.get("bnd_carry", (x.size - 1,))
    for block, op in ((both_or.reshape(-1), np.bitwise_or), (both_and.reshape(-1), np.bitwise_and)):
        np.right_shift(block, np.uint64(1), out=east)
        np.left_shift(block[1:], np.uint64(63), out=carry)
        np.bitwise_or(east[:-1], carry, out=east[:-1])
        op(block, east, out=block)
    np.bitwise_xor(both_or, both_and, out=both_or)
    return both_or


def _dilate_words(b: np.ndarray, pk: _Packing) -> np.ndarray:
    """``cv2.dilate`` of the boundary words by the disk (exact on the payload bits), as a (rows, words) view.

    With the rectangles R_1..R_K of ``pk.stairs`` (tallest first), the dilation is
    ``V_K(... V_2(V_1(H_1 b) | H_2 b) ... | H_K b)``: H_k is R_k's run of columns, V_k the rows R_k has beyond
    R_{k+1} (R_K: all its rows), so that rectangle k's term is grown by exactly its own rows. The horizontal runs
    grow one from the next on a running OR of b; the union is kept ``pad`` rows down a taller buffer, so that the
    one-sided vertical runs never leave it (each moves the union up by the rows it adds above), and ``tail`` zero
    rows below the image, which the runs read as the zeros outside it.
    """
    rows = b.shape[0]
    pad = max(0, -min(s[0] for s in pk.stairs))
    tail = max(s[1] - s[0] for s in pk.stairs)  # the longest step of a one-sided run
    union = _BUFFERS.get("dil_union", (pad + rows + tail, b.shape[1]))
    spare = _BUFFERS.get("dil_spare", union.shape)
    run = _BUFFERS.get("dil_run", b.shape)
    shifted = _BUFFERS.get("dil_tmp", b.shape)
    union[:pad] = 0
    # Rows below pad + rows are never written but with zeros (a row there ORs rows further down), in either buffer.
    union[pad + rows :] = 0
    spare[pad + rows :] = 0
    top = pad  # union row of image row 0
    covered = 0  # the running OR: run[x] = OR of b over columns x .. x + covered (bit i + d = column + d)
    for k, (dy0, dy1, dx0, dx1) in enumerate(pk.stairs):
        while covered < dx1 - dx0:
            step = min(covered + 1, dx1 - dx0 - covered)
            np.right_shift(b if covered == 0 else run, np.uint64(step), out=shifted)
            np.bitwise_or(b if covered == 0 else run, shifted, out=run)
            covered += step
        term = b if covered == 0 else run
        # H_k b: column x takes run's column x + dx0.
        if dx0 > 0:
            term = np.right_shift(term, np.uint64(dx0), out=shifted)
        elif dx0 < 0:
            term = np.left_shift(term, np.uint64(-dx0), out=shifted)
        if k == 0:
            union[top : top + rows] = term
        else:
            np.bitwise_or(union[top : top + rows], term, out=union[top : top + rows])
        lo, hi = (dy0 - pk.stairs[k + 1][0], dy1 - pk.stairs[k + 1][1]) if k + 1 < len(pk.stairs) else (dy0, dy1)
        # Grow every row of the union by rows lo..hi: a one-sided run of hi - lo + 1 rows, read downwards, is the
        # union -lo rows up.
        length, have = hi - lo + 1, 1
        while have < length:
            step = min(have, length - have)
            n = pad + rows
            np.bitwise_or(union[:n], union[step : n + step], out=spare[:n])
            union, spare = spare, union
            have += step
        top += lo
    return union[top : top + rows]
