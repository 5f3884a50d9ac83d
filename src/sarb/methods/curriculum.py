"""Curriculum labelling (Durand, Mehrasa, Mori, "Learning a Deep ConvNet for Multi-label
Classification with Partial Labels", CVPR 2019, §4): partial-BCE + iterative pseudo-labels.

The model is the ``partial-bce`` baseline (global pooling + linear classifier, BCE over the known
labels scaled by g(p)). Every ``curriculum_every`` epochs from epoch ``curriculum_start`` on, the
current model scores every training image and the most confident still-unknown label entries
become pseudo-labels (Durand et al.'s "proportion" strategy). They accumulate across rounds and
are part of the checkpoint; a known label is never overwritten.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from sarb import distributed
from sarb.methods.base import FeatureBatches, MethodContext, register
from sarb.methods.linear import LinearHead


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


@register(
    "curriculum",
    "Durand et al., CVPR 2019",
    "partial-BCE + pseudo-labels: the most confident unknown labels, added every epoch",
)
class CurriculumHead(LinearHead):
    """Durand et al.'s partial-BCE head plus a (N, C) buffer of accumulated pseudo-labels.

    ``targets`` fills the unknown entries of a batch's labels with the pseudo-labels of its rows,
    so the known proportion p of g(p) counts them too, as in Durand et al.
    """

    def __init__(self, ctx: MethodContext):
        super().__init__(ctx, "durand")
        cfg = ctx.config
        self.start, self.every = cfg.curriculum_start, cfg.curriculum_every
        self.fraction = cfg.curriculum_fraction
        n, c = ctx.train_labels.shape
        self.register_buffer("pseudo_labels", torch.zeros(n, c, dtype=torch.int8))  # {1, -1, 0}

    def _load_from_state_dict(
        self, state_dict: Mapping[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        """Take the stored pseudo-label matrix's shape: a model rebuilt without the training
        labels (``sarb.api.rebuild_model``) starts from a (1, C) placeholder."""
        stored = state_dict.get(prefix + "pseudo_labels")
        if torch.is_tensor(stored) and stored.shape != self.pseudo_labels.shape:
            self.pseudo_labels = self.pseudo_labels.new_zeros(stored.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def targets(self, index: Tensor, targets: Tensor) -> Tensor:
        """Known labels stay; unknown ones take the pseudo-label of their row (0 if none yet)."""
        pseudo = self.pseudo_labels[index].to(targets.dtype)  # (B, C)
        return torch.where(targets == 0, pseudo, targets)

    def on_epoch_start(self, epoch: int, train_batches: FeatureBatches) -> None:
        """A pseudo-labelling round at ``curriculum_start``, then every ``curriculum_every``."""
        if epoch >= self.start and (epoch - self.start) % self.every == 0:
            self.pseudo_label_round(train_batches)

    @torch.no_grad()
    def pseudo_label_round(self, train_batches: FeatureBatches) -> None:
        """Score the whole training split (rows in order) and add this round's pseudo-labels."""
        probs, labels = [], []
        for fmap, y in train_batches():
            probs.append(torch.sigmoid(self.forward(fmap).float()))
            labels.append(y)
        probs_t, labels_t = torch.cat(probs), torch.cat(labels)
        if distributed.active():  # each rank scored the rows rank, rank + world, ...
            probs_t, labels_t = distributed.gather_cat(probs_t), distributed.gather_cat(labels_t)
            n, world = len(self.pseudo_labels), torch.distributed.get_world_size()
            rows = torch.cat([torch.arange(r, n, world) for r in range(world)])
            order = torch.argsort(rows.to(probs_t.device))
            probs_t, labels_t = probs_t[order], labels_t[order]
        if probs_t.shape != self.pseudo_labels.shape:
            raise RuntimeError(
                f"curriculum: scored {tuple(probs_t.shape)} entries for a training split of "
                f"{tuple(self.pseudo_labels.shape)}"
            )
        pseudo = self.pseudo_labels.to(probs_t.device)
        new = select_pseudo_labels(probs_t, labels_t, pseudo, self.fraction)
        self.pseudo_labels.copy_(new.to(self.pseudo_labels.device))

    def logged_values(self) -> dict[str, float]:
        return {"pseudo_labels": int((self.pseudo_labels != 0).sum())}


__all__ = ["CurriculumHead", "select_pseudo_labels"]
