"""sparrow.eval.jf against the faithful re-implementation of the official DAVIS-2017 functions (tests/fixtures).

Edge cases from docs/evaluation.md §3 with their official values, then randomised masks of many kinds and sizes (1x1 to
1080x1920), with and without void, several tolerances, the statistics, bad input and the torch path.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import sparrow  # noqa: F401
from fixtures.reference_davis import ref_boundary, ref_f_measure, ref_iou, ref_seg2bmap, ref_statistics
from sparrow.eval.jf import (
    _disk,
    bound_radius,
    contour_accuracy,
    jf_per_frame,
    region_similarity,
    statistics,
)

TOL = 1e-12


def _check(gt, pred, void=None, bound_th=0.008):
    """Both J and F, both APIs, against the reference; returns the reference values."""
    j_ref = np.atleast_1d(np.asarray(ref_iou(gt, pred, void), dtype=np.float64))
    f_ref = np.atleast_1d(np.asarray(ref_boundary(gt, pred, void, bound_th=bound_th), dtype=np.float64))
    j, f = jf_per_frame(gt, pred, void, bound_th=bound_th)
    assert np.abs(j - j_ref).max() <= TOL, (j, j_ref)
    assert np.abs(f - f_ref).max() <= TOL, (f, f_ref)
    j2 = np.atleast_1d(region_similarity(gt, pred, void))
    f2 = np.atleast_1d(contour_accuracy(gt, pred, void, bound_th=bound_th))
    assert np.abs(j2 - j_ref).max() <= TOL
    assert np.abs(f2 - f_ref).max() <= TOL
    return j_ref, f_ref


# ----------------------------------------------------------------------------------------------------------------
# The reference itself reproduces the official facts of docs/evaluation.md §2.1-§3
# ----------------------------------------------------------------------------------------------------------------
def test_reference_boundary_facts():
    m = np.zeros((9, 11), bool)
    m[4, 5] = True
    assert set(zip(*np.nonzero(ref_seg2bmap(m)))) == {(4, 5), (4, 4), (3, 5), (3, 4)}
    m[:] = False
    m[0, 0] = True
    assert set(zip(*np.nonzero(ref_seg2bmap(m)))) == {(0, 0)}
    m[:] = False
    m[-1, -1] = True
    assert set(zip(*np.nonzero(ref_seg2bmap(m)))) == {(7, 9), (7, 10), (8, 9)}
    assert not ref_seg2bmap(np.ones((9, 11), bool)).any()
    assert not ref_seg2bmap(np.ones((1, 1), bool)).any()


@pytest.mark.parametrize(
    "shape, radius",
    [
        ((480, 854), 8),
        ((480, 640), 7),
        ((360, 640), 6),
        ((720, 1280), 12),
        ((1080, 1920), 18),
        ((1024, 1024), 12),
        ((256, 256), 3),
        ((32, 48), 1),
        ((17, 23), 1),
        ((1, 1), 1),
        ((75, 100), 1),
        ((300, 400), 4),
    ],
)
def test_radius_table(shape, radius):
    assert bound_radius(*shape) == radius


def test_disk_footprint_is_skimage_disk():
    d = _disk(8.0)
    assert d.kernel.shape == (17, 17) and int(d.kernel.sum()) == 197
    assert int(_disk(7.0).kernel.sum()) == 149 and int(_disk(1.0).kernel.sum()) == 5
    # The rectangles cover exactly the footprint.
    cover = np.zeros((2 * d.reach + 1,) * 2, bool)
    for dy0, dy1, dx0, dx1 in d.rects:
        cover[dy0 + d.reach : dy1 + d.reach + 1, dx0 + d.reach : dx1 + d.reach + 1] = True
    assert np.array_equal(cover, d.kernel.astype(bool))


# ----------------------------------------------------------------------------------------------------------------
# Edge cases (docs/evaluation.md §3): official values, and equality with the reference
# ----------------------------------------------------------------------------------------------------------------
H, W = 480, 854


def _frame(*slices):
    m = np.zeros((H, W), np.uint8)
    for s in slices:
        m[s] = 1
    return m


EDGE_CASES = {
    "both empty": (_frame(), _frame(), 1.0, 1.0),
    "gt empty, pred blob": (_frame(), _frame((slice(100, 150), slice(200, 260))), 0.0, 0.0),
    "gt blob, pred empty": (_frame((slice(100, 150), slice(200, 260))), _frame(), 0.0, 0.0),
    "both full": (np.ones((H, W), np.uint8), np.ones((H, W), np.uint8), 1.0, 1.0),
    "gt full, pred full minus one pixel": (np.ones((H, W), np.uint8), 1 - _frame((200, 300)), None, 0.0),
    "gt empty, pred full": (_frame(), np.ones((H, W), np.uint8), 0.0, 1.0),
    "gt top half, pred full": (_frame((slice(0, H // 2),)), np.ones((H, W), np.uint8), 0.5, 0.0),
    "one pixel, identical": (_frame((200, 300)), _frame((200, 300)), 1.0, 1.0),
    "one pixel, shifted 1": (_frame((200, 300)), _frame((200, 301)), 0.0, 1.0),
    "one pixel, shifted 10": (_frame((200, 300)), _frame((200, 310)), 0.0, 0.0),
}


@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_edge_cases(name):
    gt, pred, j_expected, f_expected = EDGE_CASES[name]
    j, f = _check(gt, pred)
    if j_expected is not None:
        assert j[0] == pytest.approx(j_expected, abs=1e-15)
    assert f[0] == pytest.approx(f_expected, abs=1e-15)
    assert region_similarity(gt, pred) == j[0]  # a single frame gives a float
    assert isinstance(contour_accuracy(gt, pred), float)


def test_full_minus_one_pixel_j():
    gt, pred, _, _ = EDGE_CASES["gt full, pred full minus one pixel"]
    assert region_similarity(gt, pred) == pytest.approx(1 - 1 / (H * W))


def test_one_by_one_image():
    j, f = _check(np.ones((1, 1), np.uint8), np.zeros((1, 1), np.uint8))
    assert j[0] == 0.0 and f[0] == 1.0


def test_corners_and_borders():
    """Lone pixels and lines at each corner / border: top-left and bottom-right behave differently."""
    frames = []
    for y, x in [(0, 0), (0, W - 1), (H - 1, 0), (H - 1, W - 1)]:
        frames.append((_frame((y, x)), _frame((y, x))))
        frames.append((_frame((y, x)), _frame((abs(y - 3), abs(x - 3)))))
    for s in [
        (slice(0, H // 2),),
        (slice(H // 2, H),),
        (slice(None), slice(0, W // 2)),
        (slice(None), slice(W // 2, W)),
        (0,),
        (H - 1,),
        (slice(None), 0),
        (slice(None), W - 1),
    ]:
        frames.append((_frame(s), _frame((slice(0, H // 3),))))
        frames.append((_frame(s), _frame(s)))
    gt = np.stack([a for a, _ in frames])
    pred = np.stack([b for _, b in frames])
    _check(gt, pred)


@pytest.mark.parametrize("shape", [(75, 100), (300, 400)])
def test_integer_radius_sizes(shape):
    """0.008 * ||(H, W)|| is an integer here: ceil must not round it up.

    A lone pixel's boundary is its 2x2 block up-left; moved right by d, the farthest pair is d apart and the
    nearest d - 1: F = 1 for d <= r, 0.5 for d = r + 1, 0 beyond.
    """
    h, w = shape
    r = int(bound_radius(h, w))
    gt = np.zeros((3, h, w), np.uint8)
    pred = np.zeros((3, h, w), np.uint8)
    gt[:, h // 2, w // 2] = 1
    for i, d in enumerate((r, r + 1, r + 2)):
        pred[i, h // 2, w // 2 + d] = 1
    _, f = _check(gt, pred)
    assert list(f) == [1.0, 0.5, 0.0]


def test_void_pixels():
    rng = np.random.default_rng(3)
    gt = np.zeros((4, 60, 80), np.uint8)
    pred = np.zeros((4, 60, 80), np.uint8)
    gt[:, 10:40, 10:50] = 1
    pred[:, 12:44, 8:47] = 1
    void = np.zeros((4, 60, 80), bool)
    void[0, 20:30, :] = True  # void cuts both masks: new boundaries appear at its edges
    void[1] = rng.random((60, 80)) < 0.1
    void[2] = True  # everything void: empty union
    j, f = _check(gt, pred, void)
    assert j[2] == 1.0 and f[2] == 1.0
    j_novoid, _ = _check(gt, pred)
    assert j[0] != j_novoid[0]


# ----------------------------------------------------------------------------------------------------------------
# Randomised masks of many kinds and sizes
# ----------------------------------------------------------------------------------------------------------------
def _blob(rng, h, w):
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(rng.random((h, w)), sigma=max(1.0, min(h, w) / 8))
    return (noise > np.quantile(noise, rng.uniform(0.3, 0.9))).astype(np.uint8)


def _random_mask(rng, h, w):
    kind = rng.integers(12)
    m = np.zeros((h, w), np.uint8)
    if kind == 0:
        return m
    if kind == 1:
        return np.ones((h, w), np.uint8)
    if kind == 2:
        return (rng.random((h, w)) < rng.uniform(0.05, 0.95)).astype(np.uint8)  # salt and pepper
    if kind == 3:
        m[rng.integers(h), rng.integers(w)] = 1  # one pixel
        return m
    if kind == 4:
        m[rng.integers(h), :] = 1 if rng.random() < 0.5 else 0
        m[:, rng.integers(w)] = 1  # one-pixel lines
        return m
    if kind == 5:
        yy, xx = np.mgrid[:h, :w]
        m[(yy + xx + rng.integers(2)) % 2 == 0] = 1  # checkerboard
        return m
    if kind == 6:
        y0, x0 = rng.integers(h), rng.integers(w)
        m[y0:, x0:] = 1  # touches bottom and right
        return m
    if kind == 7:
        y1, x1 = rng.integers(1, h + 1), rng.integers(1, w + 1)
        m[:y1, :x1] = 1  # touches top and left
        return m
    if kind == 8:
        yy, xx = np.mgrid[:h, :w]
        cy, cx, r = rng.integers(h), rng.integers(w), rng.uniform(1, max(2.0, max(h, w) / 2))
        d = np.hypot(yy - cy, xx - cx)
        return ((d <= r) & (d > r - rng.uniform(1, 3))).astype(np.uint8)  # ring
    return _blob(rng, h, w)


def _perturb(rng, m):
    """A prediction: the mask moved, thickened/thinned, with some noise, or unrelated."""
    import cv2

    kind = rng.integers(6)
    if kind == 0:
        return m.copy()
    if kind == 1:
        dy, dx = rng.integers(-12, 13, 2)
        return np.roll(m, (dy, dx), axis=(0, 1))
    if kind == 2:
        k = np.ones((int(rng.integers(1, 6)),) * 2, np.uint8)
        return cv2.dilate(m, k) if rng.random() < 0.5 else cv2.erode(m, k)
    if kind == 3:
        noise = rng.random(m.shape) < 0.02
        return (m ^ noise).astype(np.uint8)
    if kind == 4:
        return np.roll(m, (int(rng.integers(-40, 41)), int(rng.integers(-40, 41))), axis=(0, 1))
    return _random_mask(rng, *m.shape)


SIZES = [(1, 1), (1, 9), (9, 1), (2, 3), (3, 2), (17, 23), (31, 47), (32, 48), (75, 100), (97, 131), (120, 90)]


@pytest.mark.parametrize("shape", SIZES)
def test_random_small(shape):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    h, w = shape
    gt = np.stack([_random_mask(rng, h, w) for _ in range(40)])
    pred = np.stack([_perturb(rng, m) for m in gt])
    _check(gt, pred)
    void = rng.random((40, h, w)) < 0.05
    _check(gt, pred, void)


@pytest.mark.parametrize("bound_th", [0.004, 0.02, 0.1, 1, 2, 1.5, 3.0])
def test_random_other_tolerances(bound_th):
    rng = np.random.default_rng(int(bound_th * 1000))
    gt = np.stack([_random_mask(rng, 60, 90) for _ in range(24)])
    pred = np.stack([_perturb(rng, m) for m in gt])
    _check(gt, pred, bound_th=bound_th)


@pytest.mark.parametrize(
    "shape, frames", [((300, 400), 6), ((480, 854), 6), ((479, 853), 4), ((720, 1280), 2), ((1080, 1920), 1)]
)
def test_random_large(shape, frames):
    rng = np.random.default_rng(shape[0])
    h, w = shape
    gt = np.stack([_blob(rng, h, w) if i % 2 else _random_mask(rng, h, w) for i in range(frames)])
    pred = np.stack([_perturb(rng, m) for m in gt])
    _check(gt, pred)


def test_values_not_just_zero_or_one():
    """The random tests exercise intermediate values (not only the conventions)."""
    rng = np.random.default_rng(7)
    gt = np.stack([_blob(rng, 80, 120) for _ in range(10)])
    pred = np.stack([_perturb(rng, m) for m in gt])
    j, f = _check(gt, pred)
    assert ((f > 0) & (f < 1)).sum() >= 3 and ((j > 0) & (j < 1)).sum() >= 3


def test_input_types_equivalent():
    """bool, 0/1, 0/255, float 0/1 and integer labels of one object all mean the same mask."""
    rng = np.random.default_rng(11)
    gt = np.stack([_blob(rng, 50, 70) for _ in range(5)])
    pred = np.stack([_perturb(rng, m) for m in gt])
    j0, f0 = jf_per_frame(gt, pred)
    for conv in (
        lambda a: a.astype(bool),
        lambda a: a * 255,
        lambda a: a.astype(np.float32),
        lambda a: a.astype(np.int64) * 7,
        lambda a: np.asfortranarray(a),
    ):
        j, f = jf_per_frame(conv(gt), conv(pred))
        assert np.array_equal(j, j0) and np.array_equal(f, f0)
    # A 0/255 prediction mixed with a 0/1 GT (PNG reads) takes the normalising path.
    j, f = jf_per_frame(gt, pred * 255)
    assert np.array_equal(j, j0) and np.array_equal(f, f0)
    torch = pytest.importorskip("torch")
    j, f = jf_per_frame(torch.from_numpy(gt), torch.from_numpy(pred))
    assert np.array_equal(j, j0) and np.array_equal(f, f0)


def test_reference_f_measure_argument_order():
    """F is symmetric up to precision/recall; the official call passes the prediction first to f_measure."""
    gt = _frame((slice(100, 200), slice(100, 300)))
    pred = _frame((slice(100, 200), slice(100, 300)), (slice(300, 310), slice(500, 520)))
    assert contour_accuracy(gt, pred) == ref_f_measure(pred, gt)


# ----------------------------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------------------------
def _same(a, b):
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= TOL


@pytest.mark.parametrize("n", list(range(1, 41)) + [50, 64, 100, 127, 128, 200, 254, 255, 256, 257, 300, 513])
def test_statistics_match_reference(n):
    rng = np.random.default_rng(n)
    values = rng.random(n)
    if n > 3:
        values[rng.integers(n)] = np.nan
    ours = statistics(values)
    ref = ref_statistics(values)
    assert all(_same(float(a), float(b)) for a, b in zip(ours, ref)), (ours, ref)


def test_statistics_bins_documented():
    v = np.arange(8, dtype=float)  # N = 8: bins [0:3] and [5:8]
    assert statistics(v)[2] == pytest.approx(np.mean(v[0:3]) - np.mean(v[5:8]))
    assert statistics(np.array([0.7]))[2] == 0.0
    assert statistics(np.array([0.5, 0.51]))[1] == 0.5  # recall is strictly > 0.5
    assert math.isnan(statistics(np.full(300, 0.5))[2])  # uint8 wrap: empty last bin


# ----------------------------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------------------------
def test_bad_input():
    m = np.zeros((3, 10, 12), np.uint8)
    with pytest.raises(ValueError, match="shape mismatch"):
        jf_per_frame(m, np.zeros((3, 10, 13), np.uint8))
    with pytest.raises(ValueError, match="void"):
        jf_per_frame(m, m, np.zeros((3, 10, 13), bool))
    with pytest.raises(ValueError, match=r"\(H, W\) or \(T, H, W\)"):
        jf_per_frame(np.zeros((2, 3, 10, 12)), np.zeros((2, 3, 10, 12)))
    with pytest.raises(ValueError, match="empty sequence"):
        jf_per_frame(np.zeros((0, 10, 12), np.uint8), np.zeros((0, 10, 12), np.uint8))
    nan = np.zeros((3, 10, 12), np.float32)
    nan[2, 4, 5] = np.nan
    with pytest.raises(ValueError, match=r"non-finite.*frame 2, pixel \(y=4, x=5\)"):
        jf_per_frame(m, nan)
    labels = np.zeros((3, 10, 12), np.uint8)
    labels[1, 2, 2], labels[1, 5, 5] = 1, 2
    with pytest.raises(ValueError, match=r"not a binary mask.*frame 1"):
        jf_per_frame(labels, m)
    soft = np.zeros((3, 10, 12), np.float64)
    soft[0, 1, 1], soft[0, 1, 2] = 0.3, 0.9
    with pytest.raises(ValueError, match="not a binary mask"):
        contour_accuracy(m, soft)
    with pytest.raises(ValueError, match="bound_th"):
        contour_accuracy(m, m, bound_th=0)


# ----------------------------------------------------------------------------------------------------------------
# Torch path: same values as the CPU path (CPU here; a GPU when present)
# ----------------------------------------------------------------------------------------------------------------
def test_torch_path_equals_cpu_path():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    gt = np.stack([_random_mask(rng, 45, 67) for _ in range(30)])
    pred = np.stack([_perturb(rng, m) for m in gt])
    void = rng.random(gt.shape) < 0.03
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for v in (None, void):
            j0, f0 = jf_per_frame(gt, pred, v)
            j1, f1 = jf_per_frame(gt, pred, v, device=device)
            assert np.array_equal(j0, j1) and np.array_equal(f0, f1)
        j1, f1 = jf_per_frame(torch.from_numpy(gt).to(device), torch.from_numpy(pred * 255).to(device), device=device)
        assert np.array_equal(jf_per_frame(gt, pred)[1], f1)
    with pytest.raises(ValueError, match="binary"):
        jf_per_frame(gt, pred * rng.integers(1, 3, pred.shape), device="cpu")


# ----------------------------------------------------------------------------------------------------------------
# The packed CPU path: chunks, the per-frame path for wide tolerances, threads
# ----------------------------------------------------------------------------------------------------------------
def test_many_small_chunks_keep_frame_order(monkeypatch):
    """Frames are grouped by crop width and cut into chunks; the values still come back in frame order."""
    import sparrow.eval.jf as jf

    rng = np.random.default_rng(21)
    gt = np.stack([_blob(rng, 90, 140) if i % 3 else _random_mask(rng, 90, 140) for i in range(18)])
    pred = np.stack([_perturb(rng, m) for m in gt])
    monkeypatch.setattr(jf, "_CHUNK_WORDS", 64)  # about one frame per chunk
    _check(gt, pred)


def test_tolerance_wider_than_a_word_uses_the_per_frame_path():
    import sparrow.eval.jf as jf

    assert jf._packing(8.0) is not None and jf._packing(30.0) is None
    rng = np.random.default_rng(22)
    gt = np.stack([_random_mask(rng, 70, 90) for _ in range(8)])
    pred = np.stack([_perturb(rng, m) for m in gt])
    _check(gt, pred, bound_th=30)


def test_threads_share_nothing():
    """Scratch buffers are per thread: concurrent calls give the values of sequential ones."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(23)
    sets = []
    for shape in [(120, 160), (90, 200), (200, 120), (64, 64)]:
        gt = np.stack([_blob(rng, *shape) for _ in range(6)])
        sets.append((gt, np.stack([_perturb(rng, m) for m in gt])))
    expected = [jf_per_frame(g, p) for g, p in sets]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda s: jf_per_frame(*s), sets * 3))
    for (j0, f0), (j1, f1) in zip(expected * 3, got):
        assert np.array_equal(j0, j1) and np.array_equal(f0, f1)


@pytest.mark.parametrize("radius", [1.0, 1.5, 2.5, 3.0, 8.0, 12.0, 18.0])
def test_packed_dilation_is_the_disk(radius):
    """The word dilation equals cv2.dilate with the skimage disk (not a square), also for even-sized disks."""
    import cv2

    import sparrow.eval.jf as jf

    pk = jf._packing(radius)
    rng = np.random.default_rng(int(radius * 10))
    rows, n_words = 60, 3
    used = (n_words - 1) * pk.payload + 64  # the columns the words hold
    b = np.zeros((rows, -(-used // 64) * 64 + 64), np.uint8)
    b[:, :used] = rng.random((rows, used)) < 0.02
    plain = np.packbits(b, axis=1, bitorder="little").view("<u8")
    dilated = jf._dilate_words(jf._halo_words(plain, pk, n_words, "test_words"), pk)
    bits = np.unpackbits(dilated.view(np.uint8).reshape(rows, n_words, 8), axis=2, bitorder="little")
    expected = cv2.dilate(b, jf._disk(radius).kernel)  # pixels outside the image contribute nothing
    for c in range(n_words):
        first = c * pk.payload + pk.left  # word c's payload: columns first ... first + payload - 1
        assert np.array_equal(bits[:, c, pk.left : pk.left + pk.payload], expected[:, first : first + pk.payload])


@pytest.mark.parametrize("radius", [1.0, 1.5, 3.0, 8.0, 12.0])
def test_torch_dilation_is_the_disk(radius):
    """The torch path's dilation (max-pools over the disk's rectangles) equals cv2.dilate with the disk."""
    import cv2

    torch = pytest.importorskip("torch")
    from sparrow.eval.jf_torch import _dilate

    disk = _disk(radius)
    rng = np.random.default_rng(int(radius * 10) + 1)
    b = rng.random((3, 50, 70)) < 0.003  # sparse: the disk's missing corners show
    got = _dilate(torch.from_numpy(b), disk.rects, disk.reach, torch.float32).numpy()
    for i in range(3):
        assert np.array_equal(got[i], cv2.dilate(b[i].astype(np.uint8), disk.kernel).astype(bool))
    square = cv2.dilate(b[0].astype(np.uint8), np.ones_like(disk.kernel)).astype(bool)
    assert radius < 2 or not np.array_equal(got[0], square)


@pytest.mark.gpu
def test_cuda_path_equals_cpu_path_at_davis_size():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    gt = np.stack([_blob(rng, 480, 854) if i % 2 else _random_mask(rng, 480, 854) for i in range(8)])
    pred = np.stack([_perturb(rng, m) for m in gt])
    void = rng.random(gt.shape) < 0.01
    for v in (None, void):
        j0, f0 = jf_per_frame(gt, pred, v)
        j1, f1 = jf_per_frame(torch.from_numpy(gt).cuda(), torch.from_numpy(pred).cuda(), v, device="cuda")
        assert np.array_equal(j0, j1) and np.array_equal(f0, f1)
