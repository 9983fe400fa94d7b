"""The one mask-to-box rule and the three index samplers, against the formulas each user wrote out before."""

import numpy as np
import pytest
import torch

from sparrow.data.boxes import frame_boxes, mask_box, mask_to_box
from sparrow.data.indices import (
    evenly_spread,
    linspace_rounded_unique,
    linspace_truncated,
    linspace_truncated_padded,
)


def _masks(seed: int = 0, count: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = [np.zeros((7, 9), bool)]
    for _ in range(count):
        h, w = rng.integers(1, 30, size=2)
        out.append(rng.random((h, w)) < rng.choice([0.01, 0.1, 0.5]))
    return out


def test_numpy_boxes_follow_each_rule() -> None:
    for mask in _masks():
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if rows.size == 0:
            assert mask_box(mask) is None and mask_to_box(mask) is None
            continue
        h, w = mask.shape
        assert mask_box(mask) == (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
        assert mask_to_box(mask) == [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
        assert mask_box(mask, inclusive=True) == (cols[0], rows[0], cols[-1], rows[-1])
        assert mask_box(mask, normalised=True) == (cols[0] / w, rows[0] / h, (cols[-1] + 1) / w, (rows[-1] + 1) / h)
        assert all(type(v) is float for v in mask_box(mask, normalised=True))


def test_torch_boxes_match_the_float32_formula() -> None:
    for mask in _masks(1):
        target = torch.from_numpy(mask.astype(np.float32))
        target[0, 0] = -1.0  # an ignored pixel is never positive
        positive = target > 0
        idx = positive.nonzero()
        if idx.numel() == 0:
            assert mask_box(target, ignore_index=-1) is None
            continue
        h, w = mask.shape
        y, x = idx[:, 0].float(), idx[:, 1].float()
        expected = torch.stack([x.min() / w, y.min() / h, (x.max() + 1) / w, (y.max() + 1) / h]).clamp(0, 1)
        got = mask_box(target, normalised=True, ignore_index=-1)
        assert got.dtype == torch.float32 and torch.equal(got, expected)
        assert torch.equal(mask_box(positive), torch.stack([x.min(), y.min(), x.max() + 1, y.max() + 1]))


def test_union_takes_any_mask_of_the_stack() -> None:
    stack = np.zeros((3, 6, 8), bool)
    stack[0, 1, 2] = stack[2, 4, 6] = True
    assert mask_box(stack, union=True) == (2.0, 1.0, 7.0, 5.0)
    assert torch.equal(mask_box(torch.from_numpy(stack), union=True), torch.tensor([2.0, 1.0, 7.0, 5.0]))
    with pytest.raises(ValueError, match="union=True"):
        mask_box(stack)


def test_frame_boxes_match_the_vectorised_rule() -> None:
    rng = np.random.default_rng(2)
    masks = rng.random((6, 10, 12)) < 0.05
    masks[3] = False
    t, h, w = masks.shape
    expected = np.full((t, 4), np.nan, dtype=np.float32)
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    present = rows.any(axis=1)
    y0, x0 = rows.argmax(axis=1), cols.argmax(axis=1)
    y1, x1 = h - rows[:, ::-1].argmax(axis=1), w - cols[:, ::-1].argmax(axis=1)
    expected[present] = np.stack([x0, y0, x1, y1], axis=1)[present]
    np.testing.assert_array_equal(frame_boxes(masks), expected)


@pytest.mark.parametrize("total", [0, 1, 2, 3, 7, 16, 17, 40, 101])
@pytest.mark.parametrize("n", [1, 2, 5, 8, 16, 33])
def test_samplers_follow_their_rules(total: int, n: int) -> None:
    truncated = np.linspace(0, total - 1, min(n, total), dtype=int).tolist() if total else []
    assert linspace_truncated(total, n) == truncated
    if total:
        padded = linspace_truncated_padded(total, n)
        assert len(padded) == n and padded[: min(n, total)] == truncated and set(padded[total:]) <= {total - 1}
    rounded = sorted({int(round(v)) for v in np.linspace(0, total - 1, n)}) if total > n else list(range(total))
    assert linspace_rounded_unique(total, n) == rounded
    items = [f"x{i}" for i in range(total)]
    assert evenly_spread(items, n) == [items[i] for i in rounded]
    assert evenly_spread(items, None) == items


def test_samplers_at_the_edges() -> None:
    assert linspace_truncated(40, 16)[:3] == [0, 2, 5]
    assert linspace_truncated_padded(3, 5) == [0, 1, 2, 2, 2]
    assert linspace_rounded_unique(10, 4) == [0, 3, 6, 9]
    with pytest.raises(ValueError, match="at least one frame"):
        linspace_truncated_padded(0, 4)
