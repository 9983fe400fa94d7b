"""TSF K-means: pick K representative crop embeddings out of the n crops of one target.

The one implementation: the offline pass (:mod:`sparrow.tsf.pipeline`) and the model's TSF tokens (training and
TSF at test) both call :func:`tsf_kmeans`; it imports only torch. The released algorithm (docs/design.md §4.3,
``arch.py::_kmeans_select_representatives``), kept exact:

1. ``k = max(1, min(K, n))``; if ``n <= k`` every vector is returned unchanged (fewer than K TSF tokens).
2. float32; initial centres are the samples at ``round(linspace(0, n - 1, k))`` (torch rounds half to even).
3. ``max(1, iters)`` rounds, the released loop bound (``iters=0`` still runs one round): assign each sample to
   its nearest centre (L2 ``cdist``; ``argmin`` breaks ties to the lowest centre index); a centre moves to the
   mean of its members, an empty cluster keeps its centre; stop early once the new centres are ``allclose`` to
   the old (``atol = rtol = 1e-4``), keeping the new ones.
4. Per centre, in centre order, the nearest actual sample (medoid-like): two centres may pick the same sample.

``select="centroid"`` returns the centres themselves instead (an option the paper text allows; not released).
Everything is torch on the input's device, so it runs on a GPU when the features live there. The clustering sees
detached features; the returned medoid vectors are rows of the input and keep its autograd graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

Selection = Literal["medoid", "centroid"]


@dataclass(frozen=True)
class KMeansResult:
    """What TSF K-means chose.

    ``vectors`` are the TSF embeddings in centre order, in the input's dtype. ``indices[j]`` is the sample that
    centre j picked (``-1`` for centroids, which are not samples). ``assignments`` is each sample's final
    cluster, ``centres`` the final float32 centres and ``iterations`` the rounds actually run; when ``n <= k``
    no clustering happens, ``indices`` is ``0..n-1`` and ``iterations`` is 0.
    """

    vectors: torch.Tensor
    indices: torch.Tensor
    assignments: torch.Tensor
    centres: torch.Tensor
    iterations: int


def tsf_kmeans(x: torch.Tensor, k: int = 4, iters: int = 8, select: Selection = "medoid") -> KMeansResult:
    """Cluster ``x`` (n, D) into ``k`` groups and return K representatives (see the module docstring)."""
    if select not in ("medoid", "centroid"):
        raise ValueError(f"select must be 'medoid' or 'centroid', got {select!r}")
    if x.ndim != 2:
        raise ValueError(f"TSF K-means expects (n, D) features, got shape {tuple(x.shape)}")
    n = int(x.shape[0])
    device = x.device
    if n == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return KMeansResult(x, empty, empty, x.float(), 0)
    k = max(1, min(int(k), n))
    if n <= k:
        every = torch.arange(n, device=device)
        return KMeansResult(x, every, every, x.float(), 0)

    x32 = x.detach().float()
    init = torch.linspace(0, n - 1, steps=k, device=device).round().long()
    centres = x32[init]
    rounds = 0
    for _ in range(max(1, int(iters))):
        rounds += 1
        assign = torch.cdist(x32, centres, p=2).argmin(dim=1)
        new_centres = centres.clone()
        for cid in range(k):
            members = assign == cid
            if members.any():
                new_centres[cid] = x32[members].mean(dim=0)
        converged = torch.allclose(new_centres, centres, atol=1e-4, rtol=1e-4)
        centres = new_centres
        if converged:
            break
    assignments = torch.cdist(x32, centres, p=2).argmin(dim=1)
    if select == "centroid":
        return KMeansResult(
            centres.to(x.dtype), torch.full((k,), -1, dtype=torch.long, device=device), assignments, centres, rounds
        )
    picked = torch.cdist(centres, x32, p=2).argmin(dim=1)
    return KMeansResult(x[picked], picked, assignments, centres, rounds)
