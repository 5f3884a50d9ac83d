"""Losses: partial BCE (both normalisations), Durand et al.'s partial-BCE, contrastive loss."""

import math

import pytest
import torch

from sarb.losses import contrastive_loss, durand_weight, partial_bce, partial_bce_durand


def _bce(x: float, t: float) -> float:
    s = 1.0 / (1.0 + math.exp(-x))
    return -(t * math.log(s) + (1.0 - t) * math.log(1.0 - s))


LOGITS = [[0.5, -1.0, 2.0, 0.0], [1.5, 0.3, -0.7, -2.0], [0.1, 0.2, 0.3, 0.4]]
TARGETS = [[1.0, -1.0, 0.0, 0.7], [0.0, 0.0, -1.0, 1.0], [0.0, 0.0, 0.0, 0.0]]


def _loop_reference(normalize: str) -> float:
    total, known, per_image = 0.0, 0, []
    for xs, ts in zip(LOGITS, TARGETS, strict=True):
        terms = [_bce(x, max(t, 0.0)) for x, t in zip(xs, ts, strict=True) if t != 0]
        total += sum(terms)
        known += len(terms)
        if terms:
            per_image.append(sum(terms) / len(terms))
    return total / known if normalize == "batch" else sum(per_image) / len(per_image)


@pytest.mark.parametrize("normalize", ["batch", "image"])
def test_partial_bce_matches_loop(normalize):
    logits = torch.tensor(LOGITS, dtype=torch.float64)
    loss = partial_bce(logits, torch.tensor(TARGETS, dtype=torch.float64), normalize)
    assert loss.item() == pytest.approx(_loop_reference(normalize), rel=1e-12)


def test_partial_bce_normalisations_differ():
    logits, targets = torch.tensor(LOGITS), torch.tensor(TARGETS)
    assert partial_bce(logits, targets, "batch") != pytest.approx(
        partial_bce(logits, targets, "image").item()
    )


@pytest.mark.parametrize("normalize", ["batch", "image"])
def test_unknown_entries_get_zero_gradient(normalize):
    logits = torch.tensor(LOGITS, requires_grad=True)
    targets = torch.tensor(TARGETS)
    partial_bce(logits, targets, normalize).backward()
    unknown = targets == 0
    assert torch.all(logits.grad[unknown] == 0)
    assert torch.all(logits.grad[~unknown] != 0)


def test_soft_target_is_soft_bce():
    logits = torch.tensor([[0.8, -0.4]], dtype=torch.float64)
    targets = torch.tensor([[0.3, 0.0]], dtype=torch.float64)
    assert partial_bce(logits, targets).item() == pytest.approx(_bce(0.8, 0.3), rel=1e-12)
    # a soft target is not clipped to 1: the loss is minimal at sigmoid(x) = t
    x = torch.tensor([[math.log(0.3 / 0.7)]], dtype=torch.float64, requires_grad=True)
    partial_bce(x, torch.tensor([[0.3]], dtype=torch.float64)).backward()
    assert abs(x.grad.item()) < 1e-12


def test_partial_bce_is_stable_for_large_logits():
    logits = torch.tensor([[200.0, -200.0]], requires_grad=True)
    loss = partial_bce(logits, torch.tensor([[-1.0, 1.0]]))
    loss.backward()
    assert loss.item() == pytest.approx(200.0)
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("normalize", ["batch", "image"])
def test_no_known_entry_gives_zero_with_graph(normalize):
    logits = torch.tensor([[1e4, -3.0], [0.2, 0.0]], requires_grad=True)
    loss = partial_bce(logits, torch.zeros(2, 2), normalize)
    assert loss.item() == 0.0
    assert loss.grad_fn is not None
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros(2, 2))


def test_partial_bce_rejects_unknown_normalisation():
    with pytest.raises(ValueError):
        partial_bce(torch.zeros(1, 1), torch.ones(1, 1), "class")


def test_durand_weight_anchor_points():
    g = durand_weight(torch.tensor([0.1, 1.0, 0.0, 0.55], dtype=torch.float64))
    assert g[0].item() == pytest.approx(5.0, abs=1e-12)
    assert g[1].item() == pytest.approx(1.0, abs=1e-12)
    assert g[2].item() == pytest.approx(49.0 / 9.0, abs=1e-12)
    assert g[3].item() == pytest.approx(-40.0 / 9.0 * 0.55 + 49.0 / 9.0, abs=1e-12)
    g2 = durand_weight(torch.tensor([0.1, 1.0], dtype=torch.float64), gamma=2.0)
    assert g2.tolist() == pytest.approx([5.0, 1.0], abs=1e-12)


def test_partial_bce_durand_matches_loop():
    logits = torch.tensor(LOGITS, dtype=torch.float64)
    loss = partial_bce_durand(logits, torch.tensor(TARGETS, dtype=torch.float64))
    c = len(LOGITS[0])
    per_image = []
    for xs, ts in zip(LOGITS, TARGETS, strict=True):
        terms = [_bce(x, max(t, 0.0)) for x, t in zip(xs, ts, strict=True) if t != 0]
        p = len(terms) / c
        g = -40.0 / 9.0 * p + 49.0 / 9.0
        per_image.append(g / c * sum(terms))
    assert loss.item() == pytest.approx(sum(per_image) / len(per_image), rel=1e-12)


def test_contrastive_hand_case():
    # class 0: images 0, 1 positive with identical vectors, image 2 negative and orthogonal,
    # image 3 unknown (excluded although it is anti-parallel to image 0).
    # class 1: images 0, 1 both negative, vectors anti-parallel; images 2, 3 unknown.
    e0, e1 = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    features = torch.stack(
        [
            torch.stack([e0, e1]),
            torch.stack([2 * e0, -e1]),
            torch.stack([e1, e0]),
            torch.stack([-e0, e0]),
        ]
    )  # (B=4, C=2, D=2)
    targets = torch.tensor([[1.0, -1.0], [1.0, -1.0], [-1.0, 0.0], [0.0, 0.0]])
    # pairs: c0 (0,1) pos-pos cos 1 -> 0; (0,2) cos 0 -> 1; (1,2) cos 0 -> 1;
    #        c1 (0,1) neg-neg cos -1 -> 1 + (-1) = 0.   4 pairs, total 2.
    loss = contrastive_loss(features.requires_grad_(), targets, negatives="all")
    assert loss.item() == pytest.approx(0.5, abs=1e-6)
    loss.backward()
    assert torch.all(features.grad[3] == 0)  # image 3 has no known label
    assert torch.all(features.grad[2, 1] == 0)  # unknown entry


def test_contrastive_soft_positive_counts_as_positive():
    features = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]])
    assert contrastive_loss(features, torch.tensor([[0.5], [1.0]])).item() == pytest.approx(0.0)
    assert contrastive_loss(features, torch.tensor([[-1.0], [1.0]])).item() == pytest.approx(2.0)


def test_contrastive_without_pairs_is_zero_with_graph():
    features = torch.randn(3, 2, 4, requires_grad=True)
    targets = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, -1.0]])  # no class known twice
    loss = contrastive_loss(features, targets)
    assert loss.item() == 0.0 and loss.grad_fn is not None
    loss.backward()
    assert torch.isfinite(features.grad).all() and torch.all(features.grad == 0)


def test_reference_pairs_keep_positives_2p_random_and_p_hardest_of_each_negative_kind() -> None:
    from sarb.losses import contrastive_pair_counts

    torch.manual_seed(0)
    b = 8
    # class 0: images 0-1 positive (P = 1 over the batch), 2-7 negative; class 1: all negative
    targets = torch.full((b, 2), -1.0)
    targets[:2, 0] = 1.0
    cos = torch.rand(2, b, b) * 0.5
    cos[0, 0, 5] = 0.9  # the hardest positive-negative pair
    cos[1, 3, 4] = 0.95  # the hardest negative-negative pair
    for _ in range(5):  # the random part changes, the rule does not
        count = contrastive_pair_counts(cos, targets, "reference")
        assert count[0, 0, 1] == 1  # the positive pair
        pos_neg = count[0, :2, 2:]  # (2, 6): one of the two images positive
        neg_neg = torch.cat([count[0, 2:, 2:].flatten(), count[1].flatten()])
        assert pos_neg.sum() == 3 and neg_neg.sum() == 3  # 2P random + P hardest each
        assert count[0, 0, 5] >= 1 and count[1, 3, 4] >= 1  # the hardest are always kept
        assert count.tril().sum() == 0  # pairs n < m only
        without = contrastive_pair_counts(cos, targets, "no-neg-neg")
        assert without[0, :2, 2:].sum() == 3 and without[0, 2:, 2:].sum() == without[1].sum() == 0


def test_reference_pairs_small_sets_whole_and_no_positive_pair_means_all() -> None:
    from sarb.losses import contrastive_pair_counts

    targets = torch.tensor([[1.0], [1.0], [-1.0]])  # P = 1; pos-neg set of 2; no neg-neg
    cos = torch.tensor([[[0.0, 0.1, 0.5], [0.0, 0.0, 0.2], [0.0, 0.0, 0.0]]])
    count = contrastive_pair_counts(cos, targets, "reference")
    # both pos-neg pairs (a set of at most 2P is kept whole) and the hardest once more
    assert count.tolist() == [[[0.0, 1.0, 2.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]]
    no_pos = torch.tensor([[1.0, -1.0], [-1.0, -1.0], [-1.0, 0.0]])  # no class has 2 positives
    cos = torch.rand(2, 3, 3)
    assert torch.equal(
        contrastive_pair_counts(cos, no_pos, "reference"),
        contrastive_pair_counts(cos, no_pos, "all"),
    )
    features = torch.randn(3, 2, 4)
    assert contrastive_loss(features, no_pos) == contrastive_loss(features, no_pos, "all")
