"""Class prototypes for PLRB (SARB, Pu et al. AAAI 2022): K-means per class.

``P_c`` = K centres of the category-specific features x^n_c of the training images whose label
c is KNOWN positive. All classes are clustered at once (one batched K-means over padded groups),
on the features' device, seeded through a ``torch.Generator``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _rows(x: Tensor, idx: Tensor) -> Tensor:
    """``x[g, idx[g]]`` for every group: x (G, N, D) contiguous, idx (G, L) -> (G, L, D)."""
    g, n, d = x.shape
    flat = (idx + torch.arange(g, device=x.device)[:, None] * n).view(-1)  # (G*L,)
    return x.view(g * n, d).index_select(0, flat).view(g, idx.shape[1], d)


def _point_dists(x: Tensor, sq_x: Tensor, idx: Tensor) -> Tensor:
    """Squared distances from every point to the points ``idx`` of its group: x (G, N, D),
    sq_x (G, N) = ||x||^2, idx (G, L) -> (G, N, L) as ||a||^2 - 2ab + ||b||^2, clamped at 0
    (the expansion can round slightly below, and these are sampling weights)."""
    sq = sq_x[:, :, None] + sq_x.gather(1, idx)[:, None, :]  # (G, N, L)
    return sq.baddbmm_(x, _rows(x, idx).mT, alpha=-2.0).clamp_(min=0.0)


def batched_kmeans(
    points: Tensor,
    counts: Tensor,
    k: int,
    iters: int = 30,
    generator: torch.Generator | None = None,
    tol: float = 1e-4,
) -> tuple[Tensor, Tensor]:
    """K-means with k centres for G groups at once (the per-class prototypes of PLRB).

    Group g uses its first ``counts[g]`` points, ``points[g, :counts[g]]``; the rest is padding.
    Initialisation: greedy k-means++ (Arthur & Vassilvitskii 2007: each new centre is the best,
    by potential ``sum_n min_j ||x_n - c_j||^2``, of ``2 + floor(ln k)`` candidates drawn with
    probability proportional to ``D(x)^2``). Then Lloyd iterations: move each centre to the mean
    of its points (an empty cluster keeps its previous centre), reassign each point to its
    nearest centre. A group stops, as in scikit-learn, when no assignment changes or when its
    centres moved by at most ``tol`` times its mean per-feature variance (sum of squared
    shifts); stopped groups leave the batch, and at most ``iters`` iterations run.

    A group with ``counts[g] <= k`` points gets exactly those points as centres (in their order)
    and the remaining ``k - counts[g]`` slots are invalid (zeros); a group without points is all
    invalid (the reference K-means crashes on classes with fewer than K points).

    points: (G, N, D) float (float16/bfloat16 are clustered in float32); counts: (G,) long in
    [0, N]; ``generator`` on the points' device (None: the global RNG). Returns (centres (G, k, D)
    in the points' dtype, valid (G, k) bool). No Python loop over groups; the number of random
    draws does not depend on the data; one host sync per Lloyd iteration (two when the batch
    shrinks).
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
    x = x.contiguous()
    n_pad = x.shape[1]
    is_point = torch.arange(n_pad, device=device)[None, :] < counts[:, None]  # (G, N')
    # multinomial rejects all-zero rows: an empty group draws from a dummy uniform row.
    uniform_w = (is_point | (counts == 0)[:, None]).to(x.dtype)  # (G, N')
    sq_x = torch.linalg.vector_norm(x, dim=-1).square_()  # (G, N')

    # --- greedy k-means++ initialisation; also yields the first assignment ----------------
    chosen = torch.multinomial(uniform_w, 1, generator=generator)  # (G, j) chosen point indices
    closest = torch.where(is_point, _point_dists(x, sq_x, chosen)[:, :, 0], 0.0)  # (G, N') D^2
    assign = torch.zeros(g, n_pad, dtype=torch.long, device=device)  # (G, N') nearest centre
    trials = 2 + int(math.log(k))
    for j in range(1, k):
        # all remaining points coincide with chosen centres (or no points): draw uniformly
        w = torch.where(closest.sum(dim=1, keepdim=True) > 0, closest, uniform_w)  # (G, N')
        cand = torch.multinomial(w, trials, replacement=True, generator=generator)  # (G, L)
        dist = _point_dists(x, sq_x, cand)  # (G, N', L)
        best = torch.minimum(closest[:, :, None], dist).sum(dim=1).argmin(dim=1)  # (G,)
        dist = dist.gather(2, best[:, None, None].expand(g, n_pad, 1)).squeeze(2)  # (G, N')
        assign = torch.where(dist < closest, j, assign)
        closest = torch.minimum(closest, dist)
        chosen = torch.cat([chosen, cand.gather(1, best[:, None])], dim=1)
    centres = _rows(x, chosen)  # (G, k, D)

    # --- Lloyd iterations on the groups still moving ------------------------------------
    slots = torch.arange(k, device=device)  # (k,)
    sq_mean = torch.where(is_point, sq_x, 0.0).sum(dim=1) / counts.clamp(min=1)  # (G,)
    var = torch.zeros_like(sq_mean)  # (G,) total variance, set by the first iteration
    assign = torch.where(is_point, assign, k)  # (G, N'); padding: k, in no cluster
    rows, xa = torch.arange(g, device=device), x  # (A,) the groups in the batch, their points
    live = counts > k  # (A,) still moving; groups with at most k points keep their points
    for it in range(iters):
        n_live = int(live.sum())  # host sync
        if n_live == 0:
            break
        if 2 * n_live <= len(rows):  # drop the stopped groups: copies n_live groups' points
            keep = live.nonzero().squeeze(1)
            rows, xa, assign, live = rows[keep], xa.index_select(0, keep), assign[keep], live[keep]
        # one-hot bmm rather than index_add_: deterministic on CUDA (no atomics)
        member = (assign[:, None, :] == slots[:, None]).to(x.dtype)  # (A, k, N')
        sizes = member.sum(dim=2, keepdim=True)  # (A, k, 1)
        sums = torch.bmm(member, xa)  # (A, k, D)
        if it == 0:  # every point is in one cluster: the sums add up to its group's sum
            cnt = counts[rows].clamp(min=1)[:, None]  # (A, 1)
            var[rows] = sq_mean[rows] - (sums.sum(dim=1) / cnt).square().sum(dim=1)
        old = centres[rows]  # (A, k, D)
        new = torch.where((sizes > 0) & live[:, None, None], sums / sizes.clamp(min=1.0), old)
        centres[rows] = new  # empty clusters and stopped groups keep their centres
        scores = torch.baddbmm(new.square().sum(-1)[:, :, None], new, xa.mT, alpha=-2.0)
        # min().indices: argmin's first-index ties, several times faster over dim 1 on CPU
        new_assign = torch.where(is_point[rows], scores.min(dim=1).indices, k)  # (A, N')
        # scikit-learn's stop: no assignment changed, or shift <= tol x mean feature variance
        moved = (new - old).square().sum(dim=(1, 2)) > tol / d * var[rows]  # (A,)
        live &= moved & (new_assign != assign).any(dim=1)
        assign = new_assign

    # --- groups with at most k points: the points themselves ----------------------------
    small = counts <= k  # (G,)
    valid = torch.where(small[:, None], slots[None, :] < counts[:, None], True)  # (G, k)
    centres = torch.where(small[:, None, None], x[:, :k], centres)
    centres = torch.where(valid[:, :, None], centres, torch.zeros_like(centres))
    return centres.to(points.dtype), valid


def class_prototypes(
    features: Tensor, labels: Tensor, k: int = 10, seed: int = 0, iters: int = 30
) -> tuple[Tensor, Tensor]:
    """PLRB prototypes ``P_c`` (docs/method.md#blending): K-means centres of the features x^n_c
    of the images whose label c is KNOWN positive (``labels[n, c] == 1``; unknown and negative
    rows never count).

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
