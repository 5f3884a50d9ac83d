"""Losses for multi-label learning with partial labels.

Target convention (docs/method.md#task-and-label-convention): a target tensor ``t`` of shape
(B, C) with values in [-1, 1]: ``-1`` = absent, ``0`` = unknown (ignored by every loss), a value
in (0, 1] = present, possibly soft (``1 - a`` after blending). The BCE target is ``max(t, 0)``;
the known mask is ``t != 0``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from sarb.errors import SarbError

NORMALIZATIONS = ("batch", "image")


def _masked_bce(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Element-wise BCE (B, C), zero on unknown entries, and the known mask (B, C) bool."""
    known_mask = targets != 0  # (B, C)
    soft = targets.clamp(min=0).to(logits.dtype)  # (B, C): max(t, 0), soft positives allowed
    bce = F.binary_cross_entropy_with_logits(logits, soft, reduction="none")  # (B, C)
    # where (not a product) so that an infinite BCE on an unknown entry cannot turn into NaN.
    return torch.where(known_mask, bce, torch.zeros_like(bce)), known_mask


def partial_bce(logits: Tensor, targets: Tensor, normalize: str = "batch") -> Tensor:
    """Partial binary cross-entropy over the known labels only (SARB, Pu et al. AAAI 2022, §5).

    ``l(x, t) = -[t log s(x) + (1 - t) log(1 - s(x))]`` with ``t = max(y, 0)``, summed over the
    known entries ``y != 0``, then

    - ``"batch"``: divided by the number of known entries of the whole batch (the authors'
      reference code; this produced the published numbers);
    - ``"image"``: averaged per image over its known entries, then over the images with at
      least one known entry (the paper's formula).

    logits, targets: (B, C). Returns a scalar; 0 (still connected to ``logits``) when no entry
    is known.
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
    bce, known_mask = _masked_bce(logits, targets)  # (B, C), (B, C)
    if normalize == "batch":
        n_known = known_mask.sum()  # ()
        return bce.sum() / n_known.clamp(min=1).to(bce.dtype)
    per_image_n = known_mask.sum(dim=1)  # (B,)
    per_image = bce.sum(dim=1) / per_image_n.clamp(min=1).to(bce.dtype)  # (B,)
    has_known = per_image_n > 0  # (B,)
    n_images = has_known.sum()  # ()
    total = torch.where(has_known, per_image, torch.zeros_like(per_image)).sum()  # ()
    return total / n_images.clamp(min=1).to(bce.dtype)


def durand_weight(
    known_fraction: Tensor, gamma: float = 1.0, g_at_01: float = 5.0, g_at_1: float = 1.0
) -> Tensor:
    """Normalisation ``g(p) = alpha p^gamma + beta`` of Durand et al. (CVPR 2019, partial-BCE).

    ``alpha`` and ``beta`` solve ``g(0.1) = g_at_01`` and ``g(1) = g_at_1``:
    ``alpha = (g_at_01 - g_at_1) / (0.1^gamma - 1)``, ``beta = g_at_1 - alpha``.
    With the defaults (gamma = 1): ``g(p) = -40/9 p + 49/9``, decreasing from 5.44 at p = 0.

    known_fraction: any shape, values in [0, 1]. Returns g of the same shape.
    """
    alpha = (g_at_01 - g_at_1) / (0.1**gamma - 1.0)
    beta = g_at_1 - alpha
    return alpha * known_fraction.pow(gamma) + beta


def partial_bce_durand(logits: Tensor, targets: Tensor) -> Tensor:
    """Partial-BCE of Durand et al. (CVPR 2019, "Learning a deep ConvNet for multi-label
    classification with partial labels").

    ``L = 1/N sum_n g(p_n) / C sum_{c known} l(x^n_c, y^n_c)`` with ``p_n`` the fraction of known
    labels of image n and ``g`` from :func:`durand_weight` (g(0.1) = 5, g(1) = 1, gamma = 1).
    An image without known labels contributes 0 (and still counts in the mean over N).

    logits, targets: (B, C). Returns a scalar.
    """
    bce, known_mask = _masked_bce(logits, targets)  # (B, C)
    num_classes = targets.shape[1]
    p = known_mask.sum(dim=1).to(bce.dtype) / num_classes  # (B,) known fraction per image
    per_image = durand_weight(p) / num_classes * bce.sum(dim=1)  # (B,)
    return per_image.mean()


CONTRASTIVE_PAIRS = ("reference", "all", "no-neg-neg")


def contrastive_loss(features: Tensor, targets: Tensor, negatives: str = "reference") -> Tensor:
    """Class-wise contrastive loss on category-specific features (SARB, Pu et al. AAAI 2022).

    For each class c and each unordered pair of images n < m whose labels of c are both known:
    ``1 - cos(x^n_c, x^m_c)`` if both are positive, ``1 + cos(x^n_c, x^m_c)`` otherwise. The
    loss is the mean over the terms kept; 0 (connected to ``features``) if none.

    ``negatives`` says which of the other (positive-negative, negative-negative) terms count:

    - ``"reference"`` (the authors' code, which produced the published numbers): with P the
      number of positive-positive terms of the whole batch (all classes), each of the
      positive-negative and the negative-negative sets keeps 2P terms drawn at random (without
      replacement; a set of at most 2P terms is kept whole) plus its P hardest (largest
      ``1 + cos``), so a term can count twice. With P = 0 every term counts.
    - ``"all"``: every known pair (the paper's text). Negative-negative terms then dominate, and
      ``1 + cos`` cannot be small for all pairs of negatives at once.
    - ``"no-neg-neg"``: ``"reference"`` without the negative-negative set: two negatives of a
      class are not pushed apart.

    features: (B, C, D); targets: (B, C). Returns a scalar. Never waits for the device.
    """
    x = F.normalize(features, dim=-1)  # (B, C, D), unit vectors
    cos = torch.einsum("ncd,mcd->cnm", x, x)  # (C, B, B)
    pos = (targets > 0).T  # (C, B)
    both_pos = pos[:, :, None] & pos[:, None, :]  # (C, B, B)
    per_pair = torch.where(both_pos, 1.0 - cos, 1.0 + cos)  # (C, B, B)
    count = contrastive_pair_counts(cos.detach(), targets, negatives)  # (C, B, B)
    total = count.sum().clamp(min=1)  # 0 / 1 = 0 when no pair
    return torch.where(count > 0, per_pair * count, torch.zeros_like(per_pair)).sum() / total


def contrastive_pair_counts(cos: Tensor, targets: Tensor, negatives: str) -> Tensor:
    """How often each term of :func:`contrastive_loss` counts: (C, B, B) floats, nonzero only for
    pairs n < m with both labels known. ``cos`` (C, B, B): the terms' cosines (for hardness);
    targets: (B, C)."""
    if negatives not in CONTRASTIVE_PAIRS:
        raise ValueError(f"negatives must be one of {CONTRASTIVE_PAIRS}, got {negatives!r}")
    b = targets.shape[0]
    known_mask = (targets != 0).T  # (C, B)
    pos = (targets > 0).T  # (C, B)
    upper = torch.ones(b, b, dtype=torch.bool, device=cos.device).triu(diagonal=1)  # (B, B)
    pairs = (known_mask[:, :, None] & known_mask[:, None, :] & upper).contiguous()  # (C, B, B)
    if negatives == "all":
        return pairs.to(cos.dtype)
    either_pos = pos[:, :, None] | pos[:, None, :]  # (C, B, B)
    both_pos = pairs & pos[:, :, None] & pos[:, None, :]
    negative_sets = [pairs & either_pos & ~both_pos]  # one positive, one negative
    if negatives == "no-neg-neg":
        pairs = pairs & either_pos
    else:
        negative_sets.append(pairs & ~either_pos)  # two negatives
    p = both_pos.sum()  # 0-d, stays on the device
    hardness = cos.flatten()
    count = both_pos.flatten().to(cos.dtype)
    for negative_set in (n.flatten() for n in negative_sets):
        hard = _top_k(hardness, negative_set, p)
        random = _top_k(torch.rand_like(hardness), negative_set, 2 * p)
        count = count + hard.to(cos.dtype) + random.to(cos.dtype)
    return torch.where(p > 0, count.view_as(cos), pairs.to(cos.dtype))


def _top_k(scores: Tensor, mask: Tensor, k: Tensor) -> Tensor:
    """Bool mask of the ``k`` (0-d tensor) highest ``scores`` (N,) among the ``mask`` entries."""
    order = torch.where(mask, scores, -torch.inf).argsort(descending=True)  # (N,)
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=order.device)
    return mask & (rank < k)


def assume_negative_bce(logits: Tensor, targets: Tensor, normalize: str = "batch") -> Tensor:
    """The naive baseline: every unknown label is taken as absent, then :func:`partial_bce`."""
    return partial_bce(logits, torch.where(targets == 0, -1.0, targets), normalize)


# --------------------------------------------------------------------------------------------
# The loss-based partial-label methods. One rule for all (written down in the README): where a
# paper defines a treatment of *unobserved* labels (single-positive data), it applies to the
# unknown entries; known negatives get plain BCE; known positives get the paper's positive term.
# A known entry with a soft target s = max(t, 0) (after blending) weighs the positive term by s
# and the negative one by 1 - s. Each is a mean over the B x C entries (ASL: over the known ones).
# --------------------------------------------------------------------------------------------


def _neg_log_p(logits: Tensor) -> Tensor:
    """``-log sigmoid(x)``, stable."""
    return F.softplus(-logits)


def _neg_log_1mp(logits: Tensor) -> Tensor:
    """``-log(1 - sigmoid(x))``, stable."""
    return F.softplus(logits)


def by_entry_kind(targets: Tensor, positive: Tensor, negative: Tensor, unknown: Tensor) -> Tensor:
    """The rule every loss-based method follows, per entry (B, C): on a known entry with soft
    target ``s = max(t, 0)``, ``s * positive + (1 - s) * negative``; elsewhere ``unknown``."""
    s = targets.clamp(min=0).to(positive.dtype)
    known = s * positive + (1 - s) * negative
    return torch.where(targets != 0, known, unknown)


def an_ls_loss(logits: Tensor, targets: Tensor, smoothing: float = 0.1) -> Tensor:
    """AN-LS (Cole et al., CVPR 2021): assume negative with label smoothing ``epsilon``.

    positive: ``(1 - e) (-log p) + e (-log(1 - p))``; unknown (assumed negative):
    ``(1 - e) (-log(1 - p)) + e (-log p)``; known negative: ``-log(1 - p)``.
    """
    pos, neg = _neg_log_p(logits), _neg_log_1mp(logits)
    positive = (1 - smoothing) * pos + smoothing * neg
    unknown = (1 - smoothing) * neg + smoothing * pos
    return by_entry_kind(targets, positive, neg, unknown).mean()


def wan_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """WAN (Cole et al., CVPR 2021): weak assume negative; an unknown entry is a negative with
    weight ``gamma = 1 / (C - 1)``; positives and known negatives are plain BCE."""
    gamma = 1.0 / max(logits.shape[1] - 1, 1)
    pos, neg = _neg_log_p(logits), _neg_log_1mp(logits)
    return by_entry_kind(targets, pos, neg, gamma * neg).mean()


def expected_positive_regularizer(probs: Tensor, expected: float) -> Tensor:
    """``(mean_n sum_c p_nc - k)^2 / C^2`` (Cole et al., CVPR 2021): the batch's mean number
    of predicted positives per image held near the expected number ``k``."""
    c = probs.shape[1]
    return (probs.sum(dim=1).mean() - expected) ** 2 / c**2


def epr_loss(logits: Tensor, targets: Tensor, expected: float) -> Tensor:
    """EPR (Cole et al., CVPR 2021): BCE on the known entries (a sum over the B x C entries,
    unknown ones contributing 0) + :func:`expected_positive_regularizer`."""
    pos, neg = _neg_log_p(logits), _neg_log_1mp(logits)
    bce = by_entry_kind(targets, pos, neg, torch.zeros_like(pos)).mean()
    return bce + expected_positive_regularizer(torch.sigmoid(logits), expected)


def asl_loss(
    logits: Tensor,
    targets: Tensor,
    gamma_pos: float = 0.0,
    gamma_neg: float = 4.0,
    clip: float = 0.05,
) -> Tensor:
    """ASL (Ridnik et al., ICCV 2021) over the known entries, averaged over them.

    positive: ``-(1 - p)^gamma_pos log p``; negative: ``-p_m^gamma_neg log(1 - p_m)`` with the
    shifted probability ``p_m = max(p - clip, 0)``; unknown entries: 0.
    """
    p = torch.sigmoid(logits)
    positive = (1 - p) ** gamma_pos * _neg_log_p(logits)
    p_m = (p - clip).clamp(min=0)
    negative = p_m**gamma_neg * -torch.log((1 - p_m).clamp(min=1e-8))
    per_entry = by_entry_kind(targets, positive, negative, torch.zeros_like(p))
    return per_entry.sum() / (targets != 0).sum().clamp(min=1).to(p.dtype)


def focal_margin_positive(logits: Tensor, margin: float = 1.0, gamma: float = 2.0) -> Tensor:
    """The focal-margin positive term of Zhang et al. (2021): ``-(1 - p_m)^gamma log p_m``,
    ``p_m = sigmoid(x - margin)``."""
    shifted = logits - margin
    return (1 - torch.sigmoid(shifted)) ** gamma * _neg_log_p(shifted)


def hill_loss(
    logits: Tensor, targets: Tensor, lam: float = 1.5, margin: float = 1.0, gamma: float = 2.0
) -> Tensor:
    """Hill (Zhang et al., "Simple and Robust Loss Design for Multi-Label Learning with Missing
    Labels", 2021): focal-margin positives; an unknown entry gets ``(lam - p) p^2``, which
    down-weights the likely missing positives (high p); known negatives: BCE."""
    p = torch.sigmoid(logits)
    positive = focal_margin_positive(logits, margin, gamma)
    return by_entry_kind(targets, positive, _neg_log_1mp(logits), (lam - p) * p**2).mean()


def expected_positives(labels: Any, given: float | None) -> float:
    """``k`` of EPR: ``given``, else estimated from partial labels (N, C) as the sum over classes
    of the positive rate among their known entries. Labels without any known negative (single
    positive labels) cannot estimate it: a one-line error asks for ``--expected-positives``."""
    if given is not None:
        return float(given)
    labels = np.asarray(labels)
    known = (labels != 0).sum(axis=0)
    if not (labels == -1).any():
        raise SarbError(
            "--loss epr needs --expected-positives K (the mean number of positives per image):"
            " these labels have no known negative to estimate it from"
        )
    rate = np.divide((labels == 1).sum(axis=0), known, out=np.zeros(labels.shape[1]),
                     where=known > 0)  # fmt: skip
    return float(rate.sum())


__all__ = [
    "an_ls_loss",
    "by_entry_kind",
    "asl_loss",
    "assume_negative_bce",
    "contrastive_loss",
    "durand_weight",
    "epr_loss",
    "expected_positive_regularizer",
    "expected_positives",
    "hill_loss",
    "partial_bce",
    "partial_bce_durand",
    "wan_loss",
]
