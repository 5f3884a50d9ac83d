"""Losses for multi-label learning with partial labels.

Target convention (SPEC §1, §5): a target tensor ``t`` of shape (B, C) with values in [-1, 1]:
``-1`` = absent, ``0`` = unknown (ignored by every loss), a value in (0, 1] = present, possibly
soft (``1 - a`` after blending). The BCE target is ``max(t, 0)``; the known mask is ``t != 0``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from sarb.registry import Registry

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


def contrastive_loss(features: Tensor, targets: Tensor, negatives: str = "all") -> Tensor:
    """Class-wise contrastive loss on category-specific features (SARB, Pu et al. AAAI 2022, §5).

    For each class c and each unordered pair of images n < m whose labels of c are both known:
    ``1 - cos(x^n_c, x^m_c)`` if both are positive, ``1 + cos(x^n_c, x^m_c)`` otherwise.
    Averaged over all the pairs used (across classes); 0 (connected to ``features``) if none.

    ``negatives="all"`` uses every such pair (SPEC §5). ``"sampled"`` follows the authors' code:
    per class, with P positive pairs, only the P hardest other pairs (highest cosine) and 2P
    random ones count, so that the many pairs of two negatives do not swamp the positives.

    features: (B, C, D); targets: (B, C). Returns a scalar.
    """
    b = features.shape[0]
    x = F.normalize(features, dim=-1)  # (B, C, D), unit vectors
    cos = torch.einsum("ncd,mcd->cnm", x, x)  # (C, B, B)
    known_mask = (targets != 0).T  # (C, B)
    pos = (targets > 0).T  # (C, B)
    upper = torch.ones(b, b, dtype=torch.bool, device=features.device).triu(diagonal=1)  # (B, B)
    pairs = known_mask[:, :, None] & known_mask[:, None, :] & upper  # (C, B, B), n < m, both known
    both_pos = pos[:, :, None] & pos[:, None, :]  # (C, B, B)
    per_pair = torch.where(both_pos, 1.0 - cos, 1.0 + cos)  # (C, B, B)
    if negatives == "sampled":
        pairs = _sample_negative_pairs(cos.detach(), pairs, both_pos & pairs)
    elif negatives != "all":
        raise ValueError(f"negatives must be 'all' or 'sampled', got {negatives!r}")
    n_pairs = pairs.sum().clamp(min=1).to(cos.dtype)  # no host sync; 0 / 1 = 0 when no pair
    return torch.where(pairs, per_pair, torch.zeros_like(per_pair)).sum() / n_pairs


def _sample_negative_pairs(cos: Tensor, pairs: Tensor, positive: Tensor) -> Tensor:
    """Keep, per class, the positive pairs, the P hardest other pairs and 2P random others.

    cos, pairs, positive: (C, B, B); P = the class's number of positive pairs. Vectorised over
    classes by ranking each class's candidates (hardness, then a random key).
    """
    c = cos.shape[0]
    neg = (pairs & ~positive).reshape(c, -1)  # (C, B*B) candidate negative pairs
    n_pos = positive.reshape(c, -1).sum(1, keepdim=True)  # (C, 1)

    def first(scores: Tensor, mask: Tensor, k: Tensor) -> Tensor:
        """mask of the k highest ``scores`` among ``mask`` entries, per row."""
        order = torch.where(mask, scores, -torch.inf).argsort(dim=1, descending=True)
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(order.shape[1],
                                                device=order.device).expand_as(order))  # fmt: skip
        return mask & (rank < k)

    hard = first(cos.reshape(c, -1), neg, n_pos)  # (C, B*B)
    rand = first(torch.rand_like(cos).reshape(c, -1), neg & ~hard, 2 * n_pos)
    return positive | (hard | rand).reshape_as(pairs)


def assume_negative_bce(logits: Tensor, targets: Tensor, normalize: str = "batch") -> Tensor:
    """The naive baseline: every unknown label is taken as absent, then :func:`partial_bce`."""
    return partial_bce(logits, torch.where(targets == 0, -1.0, targets), normalize)


Loss = Callable[[Tensor, Tensor], Tensor]
"""A method's loss: ``loss(logits (B, C), targets (B, C)) -> scalar``."""
LOSSES: Registry[Loss] = Registry("loss", "--loss")
"""``LOSSES.create(name, cfg)``: the loss of ``--loss name`` with its settings from ``cfg``."""
LOSSES.register("partial-bce", summary="BCE over the known labels (SSGRL, SARB)")(
    lambda cfg: functools.partial(partial_bce, normalize=cfg.bce_normalize)
)
LOSSES.register("partial-bce-durand", summary="known-label BCE scaled by g(p) (Durand et al.)")(
    lambda cfg: partial_bce_durand
)
LOSSES.register("assume-negative", summary="unknown labels taken as absent")(
    lambda cfg: functools.partial(assume_negative_bce, normalize=cfg.bce_normalize)
)


__all__ = [
    "LOSSES",
    "assume_negative_bce",
    "contrastive_loss",
    "durand_weight",
    "partial_bce",
    "partial_bce_durand",
]
