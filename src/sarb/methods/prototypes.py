"""Class prototypes for PLRB (SARB, Pu et al. AAAI 2022; SPEC §5): K-means per class.

``P_c`` = K centres of the category-specific features x^n_c of the training images whose label
c is KNOWN positive. All classes are clustered at once (one batched K-means over padded groups),
on the features' device, seeded through a ``torch.Generator``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _sq_dists(x: Tensor, sq_x: Tensor, centres: Tensor) -> Tensor:
    """Squared distances ||a||^2 - 2ab + ||b||^2: x (G, N, D), sq_x (G, N), centres (G, M, D)
    -> (G, N, M), clamped at 0 (the expansion can round slightly below)."""
    sq_c = (centres * centres).sum(dim=-1)  # (G, M)
    d = torch.baddbmm(sq_x[:, :, None] + sq_c[:, None, :], x, centres.transpose(1, 2), alpha=-2.0)
    return d.clamp_(min=0.0)


def batched_kmeans(
    points: Tensor,
    counts: Tensor,
    k: int,
    iters: int = 30,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """K-means with k centres for G groups at once (the per-class prototypes of SPEC §5).

    Group g uses its first ``counts[g]`` points, ``points[g, :counts[g]]``; the rest is padding.
    Initialisation: greedy k-means++ (Arthur & Vassilvitskii 2007: each new centre is the best,
    by potential ``sum_n min_j ||x_n - c_j||^2``, of ``2 + floor(ln k)`` candidates drawn with
    probability proportional to ``D(x)^2``). Then Lloyd iterations: assign each point to its
    nearest centre, move each centre to the mean of its points; an empty cluster keeps its
    previous centre; stop early when no assignment changes (or after ``iters`` iterations).

    A group with ``counts[g] <= k`` points gets exactly those points as centres (in their order)
    and the remaining ``k - counts[g]`` slots are invalid (zeros); a group without points is all
    invalid (the reference K-means crashes on classes with fewer than K points, SPEC §9).

    points: (G, N, D) float; counts: (G,) long in [0, N]; ``generator`` on the points' device
    (None: the global RNG). Returns (centres (G, k, D) in the points' dtype, valid (G, k) bool).
    No Python loop over groups; the number of random draws does not depend on the data.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    g, n, d = points.shape
    device = points.device
    counts = counts.to(device=device, dtype=torch.long)
    if counts.shape != (g,):
        raise ValueError(f"counts must have shape ({g},), got {tuple(counts.shape)}")
    if g > 0 and (int(counts.min()) < 0 or int(counts.max()) > n):
        raise ValueError(f"counts must be in [0, {n}]")
    x = points if points.dtype in (torch.float32, torch.float64) else points.float()
    if n < k:  # pad so that a small group's points can serve as its k centre slots
        x = torch.cat([x, x.new_zeros(g, k - n, d)], dim=1)
    n_pad = x.shape[1]
    rows = torch.arange(g, device=device)  # (G,)
    is_point = torch.arange(n_pad, device=device)[None, :] < counts[:, None]  # (G, N')
    point_w = is_point.to(x.dtype)  # (G, N')
    # multinomial rejects all-zero rows: an empty group draws from a dummy uniform row.
    uniform_w = torch.where((counts > 0)[:, None], point_w, 1.0)  # (G, N')
    sq_x = (x * x).sum(dim=-1)  # (G, N')

    # --- greedy k-means++ initialisation -------------------------------------------------
    centres = x.new_zeros(g, k, d)  # (G, k, D)
    first = torch.multinomial(uniform_w, 1, generator=generator).squeeze(1)  # (G,)
    centres[:, 0] = x[rows, first]
    closest = _sq_dists(x, sq_x, centres[:, :1]).squeeze(2)  # (G, N') D(x)^2 to the chosen set
    trials = 2 + int(math.log(k))
    for j in range(1, k):
        w = closest * point_w  # (G, N')
        # all remaining points coincide with chosen centres (or no points): draw uniformly
        w = torch.where(w.sum(dim=1, keepdim=True) > 0, w, uniform_w)
        cand = torch.multinomial(w, trials, replacement=True, generator=generator)  # (G, L)
        cand_x = x[rows[:, None], cand]  # (G, L, D)
        cand_closest = torch.minimum(closest[:, :, None], _sq_dists(x, sq_x, cand_x))  # (G,N',L)
        potential = (cand_closest * point_w[:, :, None]).sum(dim=1)  # (G, L)
        best = potential.argmin(dim=1)  # (G,)
        centres[:, j] = cand_x[rows, best]
        closest = cand_closest[rows, :, best]  # (G, N')

    # --- Lloyd iterations ----------------------------------------------------------------
    slots = torch.arange(k, device=device)  # (k,)
    assign = None
    for _ in range(iters):
        new_assign = _sq_dists(x, sq_x, centres).argmin(dim=2)  # (G, N')
        new_assign = torch.where(is_point, new_assign, -1)  # padding belongs to no cluster
        if assign is not None and torch.equal(new_assign, assign):
            break
        assign = new_assign
        member = (assign[:, :, None] == slots).to(x.dtype)  # (G, N', k)
        sums = torch.bmm(member.transpose(1, 2), x)  # (G, k, D)
        sizes = member.sum(dim=1)  # (G, k)
        means = sums / sizes.clamp(min=1.0)[:, :, None]  # (G, k, D)
        centres = torch.where((sizes > 0)[:, :, None], means, centres)  # empty: keep previous

    # --- groups with at most k points: the points themselves ----------------------------
    small = counts <= k  # (G,)
    valid = torch.where(small[:, None], slots[None, :] < counts[:, None], True)  # (G, k)
    centres = torch.where(small[:, None, None], x[:, :k], centres)
    centres = torch.where(valid[:, :, None], centres, torch.zeros_like(centres))
    return centres.to(points.dtype), valid


def class_prototypes(
    features: Tensor, labels: Tensor, k: int = 10, seed: int = 0, iters: int = 30
) -> tuple[Tensor, Tensor]:
    """PLRB prototypes ``P_c`` (SPEC §5): K-means centres of the features x^n_c of the images
    whose label c is KNOWN positive (``labels[n, c] == 1``; unknown and negative rows never
    count).

    features: (N, C, D); labels: (N, C) in {1, -1, 0}. The known positives are gathered into a
    padded (C, maxN, D) tensor class by class (no Python loop over images) and clustered by
    :func:`batched_kmeans` with a ``torch.Generator`` seeded with ``seed`` on the features'
    device. Returns (prototypes (C, k, D), valid (C, k) bool).
    """
    _, c, d = features.shape
    labels = labels.to(features.device)
    pos = labels == 1  # (N, C)
    cls, img = pos.T.nonzero(as_tuple=True)  # (P,), (P,): sorted by class, then image
    counts = pos.sum(dim=0)  # (C,)
    starts = torch.cumsum(counts, dim=0) - counts  # (C,) first index of each class in cls
    rank = torch.arange(cls.numel(), device=features.device) - starts[cls]  # (P,) slot in class
    max_n = int(counts.max()) if c > 0 else 0
    padded = features.new_zeros(c, max(max_n, 1), d)  # (C, maxN, D)
    padded[cls, rank] = features[img, cls]
    generator = torch.Generator(device=features.device).manual_seed(seed)
    return batched_kmeans(padded, counts, k, iters=iters, generator=generator)


__all__ = ["batched_kmeans", "class_prototypes"]
