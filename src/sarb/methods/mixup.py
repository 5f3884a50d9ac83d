"""IP-Mixup and FM-Mixup: the mixup baselines of SARB's ablation (Pu et al., AAAI 2022, Table 2).

mixup (Zhang, Cisse, Dauphin, Lopez-Paz, "mixup: Beyond Empirical Risk Minimization", ICLR 2018)
trains on convex combinations ``lam * u_n + (1 - lam) * u_perm(n)`` of pairs of examples of the
batch and of their label vectors, with one ``lam ~ Beta(alpha, alpha)`` per batch (alpha = 1 by
default: lam uniform in (0, 1)). As in Zhang et al., the model trains on the mixed batch only.
The ``ip-mixup`` augmentation mixes the images (pixel space, before the backbone); ``fm-mixup``
mixes the backbone's feature maps. The SARB paper's ablation uses both with the pooled linear
head ("without category-specific features") and the partial BCE over known labels.

Mixing two *partial* label vectors (:func:`mix_targets`), per class, with the BCE targets
t = 1 (present) or 0 (absent): the mixed entry is known only where BOTH entries are known, and
its BCE target is ``lam * t1 + (1 - lam) * t2``. Where either is unknown the mixed target is not
determined (an unknown entry could be 0 or 1, so the mixture could be anything in an interval of
width lam or 1 - lam), hence unknown: guessing it would inject label noise that the partial BCE
exists to avoid. In the loss convention of :mod:`sarb.losses`: present + present -> 1, absent +
absent -> -1, present (image 1) + absent (image 2) -> ``lam`` (a soft positive with BCE target
lam), absent + present -> ``1 - lam``, anything with an unknown -> 0.
"""

from __future__ import annotations

import torch
from torch import Tensor


def mix_targets(t1: Tensor, t2: Tensor, lam: float | Tensor) -> Tensor:
    """Mixed partial targets (B, C) of ``lam`` x ``t1`` + ``(1 - lam)`` x ``t2`` (module doc).

    t1, t2: (B, C) in the loss convention (-1 absent, 0 unknown, (0, 1] present, soft allowed).
    Known where both are known; there the BCE target is ``lam * max(t1, 0) + (1 - lam) *
    max(t2, 0)``, encoded as that value when it is > 0 and as -1 (absent) when it is 0.
    """
    known_mask = (t1 != 0) & (t2 != 0)
    bce = lam * t1.clamp(min=0) + (1 - lam) * t2.clamp(min=0)  # (B, C) BCE target in [0, 1]
    value = torch.where(bce > 0, bce, torch.full_like(bce, -1.0))
    return torch.where(known_mask, value, torch.zeros_like(value))


def sample_lambda(alpha: float) -> float:
    """lam ~ Beta(alpha, alpha), drawn from torch's global RNG (seeded, checkpointed)."""
    a = torch.tensor(float(alpha))
    return float(torch.distributions.Beta(a, a).sample())


def mixup(inputs: Tensor, targets: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """Mix every example with a random partner of the batch: (B, ...) and (B, C) -> mixed.

    One ``lam`` for the batch and a random permutation for the partners, as Zhang et al.
    """
    lam = sample_lambda(alpha)
    perm = torch.randperm(inputs.shape[0]).to(inputs.device)
    mixed = lam * inputs + (1 - lam) * inputs[perm]
    return mixed, mix_targets(targets, targets[perm], lam)


__all__ = ["mix_targets", "mixup", "sample_lambda"]
