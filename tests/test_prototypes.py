"""Batched K-means and the PLRB class prototypes (SARB §5)."""

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

from sarb.methods.prototypes import batched_kmeans, class_prototypes


def _blobs(centres: torch.Tensor, per_cluster: int, std: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    pts = centres[:, None, :] + std * torch.randn(
        centres.shape[0], per_cluster, centres.shape[1], generator=gen
    )
    pts = pts.reshape(-1, centres.shape[1])
    return pts[torch.randperm(pts.shape[0], generator=gen)]


def _match_error(found: torch.Tensor, truth: torch.Tensor) -> float:
    """Largest distance between a true centre and its nearest found centre, checking that
    the nearest-centre matching is a permutation."""
    dist = torch.cdist(truth, found)  # (k, k)
    nearest = dist.argmin(dim=1)
    assert len(set(nearest.tolist())) == truth.shape[0]
    return float(dist.min(dim=1).values.max())


def _grouped_problem():
    k, d = 4, 3
    gen = torch.Generator().manual_seed(123)
    truths = [20.0 * torch.randn(k, d, generator=gen) for _ in range(3)]
    sizes = [30, 60, 45]  # points per cluster: groups of 120, 240, 180 points
    groups = [
        _blobs(tr, s, 0.1, seed=i) for i, (tr, s) in enumerate(zip(truths, sizes, strict=True))
    ]
    counts = torch.tensor([g.shape[0] for g in groups])
    padded = torch.full((3, int(counts.max()), d), 1e6)  # padding far away: must be ignored
    for i, g in enumerate(groups):
        padded[i, : g.shape[0]] = g
    return padded, counts, truths, k


def test_kmeans_recovers_separated_centres_in_several_groups():
    padded, counts, truths, k = _grouped_problem()
    centres, valid = batched_kmeans(padded, counts, k, generator=torch.Generator().manual_seed(0))
    assert centres.shape == (3, k, 3) and valid.all()
    for i in range(3):
        assert _match_error(centres[i], truths[i]) < 0.1


def test_kmeans_same_seed_same_output():
    padded, counts, _, k = _grouped_problem()
    a = batched_kmeans(padded, counts, k, generator=torch.Generator().manual_seed(7))
    b = batched_kmeans(padded, counts, k, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_kmeans_small_and_empty_groups():
    d, k = 2, 10
    pts = torch.full((3, 50, d), 7.0)
    pts[0] = torch.randn(50, d)
    small = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    pts[1, :3] = small
    counts = torch.tensor([50, 3, 0])
    centres, valid = batched_kmeans(pts, counts, k, generator=torch.Generator().manual_seed(0))
    assert valid[0].all()
    assert valid[1].tolist() == [True] * 3 + [False] * 7
    assert torch.equal(centres[1, :3], small)
    assert torch.all(centres[1, 3:] == 0)
    assert not valid[2].any() and torch.all(centres[2] == 0)


def test_kmeans_fewer_points_than_k_in_every_group():
    pts = torch.arange(12, dtype=torch.float32).reshape(2, 3, 2)  # N = 3 < k = 5
    centres, valid = batched_kmeans(pts, torch.tensor([3, 1]), 5)
    assert valid.sum(1).tolist() == [3, 1]
    assert torch.equal(centres[0, :3], pts[0]) and torch.equal(centres[1, 0], pts[1, 0])


def test_kmeans_duplicate_points_do_not_crash():
    pts = torch.ones(1, 20, 2)  # 20 identical points, k = 4
    centres, valid = batched_kmeans(pts, torch.tensor([20]), 4)
    assert valid.all() and torch.equal(centres, torch.ones(1, 4, 2))


def test_kmeans_rejects_bad_counts():
    with pytest.raises(ValueError):
        batched_kmeans(torch.zeros(2, 5, 2), torch.tensor([6, 1]), 2)


def test_kmeans_inertia_close_to_sklearn():
    gen = torch.Generator().manual_seed(5)
    truth = 3.0 * torch.randn(8, 5, generator=gen)
    pts = _blobs(truth, 50, 1.0, seed=9)  # overlapping clusters: a non-trivial problem
    k = 8
    centres, _ = batched_kmeans(
        pts[None],
        torch.tensor([pts.shape[0]]),
        k,
        iters=100,
        generator=torch.Generator().manual_seed(0),
    )
    ours = float(torch.cdist(pts, centres[0]).min(dim=1).values.pow(2).sum())
    ref = KMeans(n_clusters=k, n_init=10, random_state=0).fit(pts.numpy().astype(np.float64))
    assert ours <= 1.05 * ref.inertia_


def test_class_prototypes_use_only_known_positives():
    n, c, d, k = 40, 3, 2, 2
    labels = torch.full((n, c), -1.0)
    labels[::3] = 0.0  # unknown rows
    features = torch.full((n, c, d), -999.0)  # negatives / unknowns: must never appear
    features[::3] = 555.0
    # class 0: positives at two values; class 1: one positive; class 2: none
    pos0 = torch.arange(1, n, 3)
    labels[pos0, 0] = 1.0
    features[pos0, 0] = torch.where((pos0 % 2 == 0)[:, None], 1.0, -1.0) * torch.ones(d)
    labels[2, 1] = 1.0
    features[2, 1] = torch.tensor([4.0, 5.0])
    protos, valid = class_prototypes(features, labels, k=k, seed=0)
    assert protos.shape == (c, k, d) and valid.shape == (c, k)
    assert valid.tolist() == [[True, True], [True, False], [False, False]]
    got0 = sorted(protos[0].tolist())
    assert got0 == [[-1.0, -1.0], [1.0, 1.0]]
    assert protos[1, 0].tolist() == [4.0, 5.0]
    used = protos[valid]
    assert not torch.isin(used, torch.tensor([-999.0, 555.0])).any()


def test_class_prototypes_seeded():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(100, 4, 6, generator=gen)
    labels = torch.where(torch.rand(100, 4, generator=gen) < 0.4, 1.0, 0.0)
    a = class_prototypes(features, labels, k=5, seed=3)
    b = class_prototypes(features, labels, k=5, seed=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[1].all()


def _plain_lloyd(x: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Textbook Lloyd on one group from the given centres until no assignment changes (an empty
    cluster keeps its centre). Returns (centres, number of centre updates)."""
    assign, updates = None, 0
    while True:
        new = ((centres * centres).sum(1)[:, None] - 2 * centres @ x.T).argmin(0)  # (N,)
        if assign is not None and torch.equal(new, assign):
            return centres, updates
        assign, updates = new, updates + 1
        for j in range(centres.shape[0]):
            if (assign == j).any():
                centres[j] = x[assign == j].mean(0)


def test_kmeans_groups_leaving_the_batch_end_where_plain_lloyd_ends():
    """Groups converge after different numbers of iterations and leave the batch; with tol=0
    each ends exactly where plain Lloyd from the same k-means++ centres (iters=0) ends."""
    gen = torch.Generator().manual_seed(3)
    g, n, k = 6, 300, 5
    pts = torch.rand(g, n, 2, generator=gen, dtype=torch.float64)
    pts[:3] = 0.02 * pts[:3] + torch.randint(0, k, (3, n, 1), generator=gen)  # easy: 5 clumps
    counts = torch.tensor([300, 200, 300, 250, 300, 4])  # the last group keeps its 4 points
    init, _ = batched_kmeans(pts, counts, k, iters=0, generator=torch.Generator().manual_seed(0))
    got, valid = batched_kmeans(
        pts, counts, k, iters=1000, tol=0.0, generator=torch.Generator().manual_seed(0)
    )
    updates = set()
    for i in range(g - 1):
        ref, n_updates = _plain_lloyd(pts[i, : counts[i]], init[i].clone())
        torch.testing.assert_close(got[i], ref)
        updates.add(n_updates)
    assert len(updates) > 2  # the groups did stop at different iterations
    assert valid[-1].tolist() == [True] * 4 + [False] and torch.equal(got[-1, :4], pts[-1, :4])


def test_kmeans_tolerance_stop_reaches_sklearn_inertia():
    """scikit-learn's stop rule (centre shift <= tol x mean feature variance) ends slowly
    converging groups early: within 2% of the inertia of running until no label changes, and
    within 5% of scikit-learn's per-group KMeans (same rule, n_init=1)."""
    g, n, k = 6, 1000, 8
    pts = torch.rand(g, n, 2, generator=torch.Generator().manual_seed(4))  # uniform: slow Lloyd
    counts = torch.full((g,), n)

    def inertia(centres: torch.Tensor) -> float:
        return float(torch.cdist(pts.double(), centres.double()).min(-1).values.square().sum())

    def ours(**kw) -> float:
        gen = torch.Generator().manual_seed(0)
        return inertia(batched_kmeans(pts, counts, k, iters=1000, generator=gen, **kw)[0])

    tol_stop, converged = ours(), ours(tol=0.0)
    ref = sum(KMeans(k, n_init=1, random_state=0).fit(p.double().numpy()).inertia_ for p in pts)
    assert converged < tol_stop <= 1.02 * converged  # the tolerance did stop some group early
    assert tol_stop <= 1.05 * ref


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_kmeans_half_precision_points_are_clustered_in_float32(dtype):
    padded, counts, _, k = _grouped_problem()
    half = padded.clamp(max=1e4).to(dtype)  # padding: still far, but finite in float16
    got, valid = batched_kmeans(half, counts, k, generator=torch.Generator().manual_seed(0))
    ref, _ = batched_kmeans(half.float(), counts, k, generator=torch.Generator().manual_seed(0))
    assert got.dtype == dtype and valid.all() and torch.equal(got, ref.to(dtype))
