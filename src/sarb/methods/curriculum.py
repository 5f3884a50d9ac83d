"""Curriculum labelling (Durand, Mehrasa, Mori, "Learning a Deep ConvNet for Multi-label
Classification with Partial Labels", CVPR 2019, §4): partial-BCE + iterative pseudo-labels.

The ``curriculum`` preset is the ``partial-bce`` baseline (global pooling + linear classifier,
BCE over the known labels scaled by g(p)) with the ``curriculum`` augmentation. Every
``curriculum_every`` epochs from epoch ``curriculum_start`` on, the current model scores every
training image and the most confident still-unknown label entries become pseudo-labels
(Durand et al.'s "proportion" strategy). They accumulate across rounds and are part of the
checkpoint; a known label is never overwritten.
"""

from __future__ import annotations

import torch
from torch import Tensor


def select_pseudo_labels(probs: Tensor, labels: Tensor, pseudo: Tensor, fraction: float) -> Tensor:
    """One curriculum round: the pseudo-labels (N, C) after adding the most confident entries.

    probs: (N, C) probabilities; labels: (N, C) the partial labels in {1, -1, 0}; pseudo: (N, C)
    the pseudo-labels so far in {1, -1, 0}. Among the entries unknown in both, the
    ``round(fraction * #unknown)`` with the highest confidence ``|p - 0.5|`` become 1 if
    ``p >= 0.5`` else -1. ``fraction`` is relative to the entries still unknown at this round
    (ours: Durand et al. label a proportion theta of the unknown labels; taken of the remaining
    ones it never exhausts them), rounded to the nearest integer.
    """
    candidates = (labels == 0) & (pseudo == 0)  # (N, C)
    n_unknown = int(candidates.sum())
    k = min(int(fraction * n_unknown + 0.5), n_unknown)
    out = pseudo.clone()
    if k == 0:
        return out
    confidence = torch.where(candidates, (probs - 0.5).abs(), -1.0).flatten()  # (N*C,)
    chosen = confidence.topk(k).indices  # (k,) all candidates: their confidence is >= 0
    values = torch.where(probs.flatten()[chosen] >= 0.5, 1, -1).to(out.dtype)
    out.view(-1)[chosen] = values
    return out


__all__ = ["select_pseudo_labels"]
