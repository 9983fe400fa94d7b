"""TSF K-means against an independent numpy transcription of the released algorithm (docs/design.md §4.3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparrow.tsf.kmeans import tsf_kmeans


def reference_select(x: np.ndarray, k: int, iters: int) -> list[int]:
    """The released steps written out with numpy and Python loops (indices of the chosen samples)."""
    n = x.shape[0]
    k = max(1, min(k, n))
    if n <= k:
        return list(range(n))
    x = x.astype(np.float32)
    init = [int(np.round(v)) for v in np.linspace(0, n - 1, k, dtype=np.float32)]  # numpy rounds half to even too
    centres = x[init].copy()
    for _ in range(max(1, iters)):
        assign = []
        for row in x:
            d = [float(np.sqrt(((row - c) ** 2).sum())) for c in centres]
            assign.append(int(np.argmin(d)))  # first minimum = lowest index
        new = centres.copy()
        for c in range(k):
            members = [i for i, a in enumerate(assign) if a == c]
            if members:
                new[c] = x[members].mean(axis=0)
        done = np.allclose(new, centres, atol=1e-4, rtol=1e-4)
        centres = new
        if done:
            break
    return [int(np.argmin([np.sqrt(((row - c) ** 2).sum()) for row in x])) for c in centres]


@pytest.mark.parametrize("seed", range(12))
def test_matches_reference_on_random_features(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 20))
    # clustered data with a few exact duplicates, so ties and empty clusters occur
    centres = rng.normal(size=(3, 6)) * 4
    x = centres[rng.integers(0, 3, size=n)] + rng.normal(scale=0.3, size=(n, 6))
    x[-1] = x[0]
    result = tsf_kmeans(torch.tensor(x, dtype=torch.float32), k=4, iters=8)
    assert result.indices.tolist() == reference_select(x, 4, 8)
    assert torch.equal(result.vectors, torch.tensor(x, dtype=torch.float32)[result.indices])


def test_returns_every_vector_when_n_at_most_k():
    x = torch.arange(9, dtype=torch.float64).reshape(3, 3)
    result = tsf_kmeans(x, k=4)
    assert result.vectors is x  # unchanged, original dtype
    assert result.indices.tolist() == [0, 1, 2] and result.iterations == 0
    single = tsf_kmeans(x[:1], k=0)  # k is clamped to at least 1
    assert single.indices.tolist() == [0]


def test_initial_centres_round_half_to_even():
    # n=4, k=3: linspace(0, 3, 3) = 0, 1.5, 3 -> 0, 2, 3 (not 0, 1, 3). With 1 iteration and points far apart,
    # the medoids are the initial samples when each is its own cluster's nearest point.
    x = torch.tensor([[0.0], [10.0], [10.5], [30.0]])
    result = tsf_kmeans(x, k=3, iters=1)
    # centre 1 starts at x[2]=10.5 and gathers 10.0 and 10.5 -> mean 10.25 -> nearest sample: 10.0 and 10.5 are
    # both exactly 0.25 away and the tie goes to the lower index
    assert result.indices.tolist() == [0, 1, 3]
    assert result.indices.tolist() == reference_select(x.numpy(), 3, 1)


def test_empty_cluster_keeps_its_centre_and_duplicate_medoids_are_allowed():
    # all samples identical: every sample goes to centre 0 (ties -> lowest index), the others stay empty
    x = torch.ones(6, 2)
    result = tsf_kmeans(x, k=4, iters=8)
    assert result.indices.tolist() == [0, 0, 0, 0]
    assert result.assignments.tolist() == [0] * 6
    assert result.iterations == 1  # nothing moved: allclose stops after the first round


def test_early_stop_and_centroid_option():
    # pairs half a unit apart (exact in float32), so each pair's two samples tie for its centre
    x = torch.tensor([[0.0, 0.0], [0.5, 0.0], [5.0, 5.0], [5.5, 5.0], [9.0, 0.0], [9.0, 0.5], [0.0, 9.0], [0.5, 9.0]])
    medoid = tsf_kmeans(x, k=4, iters=8)
    assert medoid.iterations < 8
    assert sorted(medoid.indices.tolist()) == [0, 2, 4, 6]  # exact ties go to the lower index
    centroid = tsf_kmeans(x, k=4, iters=8, select="centroid")
    assert centroid.indices.tolist() == [-1] * 4
    expected = torch.stack([x[i : i + 2].mean(0) for i in (0, 2, 4, 6)])
    assert torch.allclose(centroid.vectors.sort(dim=0).values, expected.sort(dim=0).values)


def test_zero_iterations_still_run_the_released_single_round():
    x = torch.tensor([[0.0], [1.0], [2.0], [10.0], [11.0]])
    # k=2 starts at x[0] and x[4]; one round moves the centres to 1.0 and 10.5, whose nearest samples are 1 and 3
    assert tsf_kmeans(x, k=2, iters=0).indices.tolist() == [1, 3] == reference_select(x.numpy(), 2, 0)
    assert tsf_kmeans(x, k=2, iters=0).iterations == 1


def test_medoids_keep_the_input_graph():
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    result = tsf_kmeans(x, k=3)
    assert result.vectors.requires_grad and not result.centres.requires_grad
    result.vectors.sum().backward()
    assert x.grad.sum(dim=1).gt(0).sum() == len(set(result.indices.tolist()))


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="expects \\(n, D\\)"):
        tsf_kmeans(torch.zeros(4), k=2)
    with pytest.raises(ValueError, match="select"):
        tsf_kmeans(torch.zeros(5, 2), select="mean")


@pytest.mark.gpu
def test_same_choice_on_gpu():
    x = torch.randn(16, 64, generator=torch.Generator().manual_seed(0))
    assert tsf_kmeans(x.cuda(), 4).indices.cpu().tolist() == tsf_kmeans(x, 4).indices.tolist()
