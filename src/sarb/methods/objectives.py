"""The losses a method can train with (``--loss``): one module shape for all of them.

``loss(logits (B, C), targets (B, C), index (B,), epoch, primary) -> scalar``. ``index`` are the
dataset rows of the batch, ``epoch`` is 0-based, and ``primary`` is False for the extra branches
of blending augmentations (same images, blended features), where a loss with per-image state
reads it but never changes it. The maths of the stateless losses lives in :mod:`sarb.losses`;
the losses with state or a schedule are here:

- ``splc`` (Zhang et al., 2021): from epoch ``splc_start``, an unknown entry with
  ``p > splc_tau`` is taken as a positive; focal-margin positives, focal negatives.
- ``ll-r``, ``ll-ct``, ``ll-cp`` (Kim et al., "Large Loss Matters in Weakly Supervised Multi-Label
  Classification", CVPR 2022): assume negative, then from the second epoch the k largest losses
  of unknown entries of the batch are rejected (ll-r), or corrected to a positive target for
  the step (ll-ct), or for good (ll-cp: the correction is per-image state, checkpointed).
  ``k = ceil(B C rate)`` with ``rate = ll_delta * epoch`` (ll-r, ll-ct) or ``ll_delta`` (ll-cp).
- ``role`` (Cole et al., CVPR 2021): a label estimate per training image and class, learned
  jointly with the classifier (learning rate x ``role_lr_mult``), checkpointed.
- ``em`` (Zhou et al., ECCV 2022): entropy maximisation on unknown labels with asymmetric
  pseudo-labelling of soft negatives, checkpointed (:class:`EntropyMaximization`).

Every loss follows the rule of :mod:`sarb.losses` for known negatives and soft targets.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sarb import distributed
from sarb.losses import (
    an_ls_loss,
    asl_loss,
    assume_negative_bce,
    by_entry_kind,
    epr_loss,
    expected_positive_regularizer,
    expected_positives,
    hill_loss,
    partial_bce,
    partial_bce_durand,
    wan_loss,
)
from sarb.methods.augmentations import FeatureBatches, score_training_split
from sarb.registry import Registry


class Loss(nn.Module):
    """A method's loss; ``lr_mult`` scales the learning rate of its own parameters."""

    lr_mult = 1.0
    #: whether it reads ``epoch``; the others get 0, so that a compiled step never guards on
    #: (and recompiles for) the epoch
    scheduled = False

    def on_epoch_start(self, epoch: int, head: nn.Module, train_batches: FeatureBatches) -> None:
        """Before each training epoch (EM's asymmetric pseudo-labelling)."""

    def forward(
        self, logits: Tensor, targets: Tensor, index: Tensor, epoch: int, primary: bool = True
    ) -> Tensor:
        raise NotImplementedError


class FunctionLoss(Loss):
    """A loss without state: ``fn(logits, targets)``."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor]):
        super().__init__()
        self.fn = fn

    def forward(
        self, logits: Tensor, targets: Tensor, index: Tensor, epoch: int, primary: bool = True
    ) -> Tensor:
        return self.fn(logits, targets)


class SPLC(Loss):
    """Self-paced loss correction (Zhang et al., 2021), module docstring."""

    scheduled = True

    def __init__(self, tau: float, start: int, margin: float, gamma: float):
        super().__init__()
        self.tau, self.start, self.margin, self.gamma = tau, start, margin, gamma

    def forward(
        self, logits: Tensor, targets: Tensor, index: Tensor, epoch: int, primary: bool = True
    ) -> Tensor:
        p = torch.sigmoid(logits)
        unknown = targets == 0
        corrected = unknown & (p > self.tau) if epoch >= self.start else torch.zeros_like(unknown)
        shifted = logits - self.margin
        margin_pos = (1 - torch.sigmoid(shifted)) ** self.gamma * F.softplus(-shifted)
        corrected_pos = (1 - p) ** self.gamma * F.softplus(-logits)  # a correction: no margin
        focal_neg = p**self.gamma * F.softplus(logits)
        unknown_loss = torch.where(corrected, corrected_pos, focal_neg)
        return by_entry_kind(targets, margin_pos, F.softplus(logits), unknown_loss).mean()


class LargeLoss(Loss):
    """LL-R, LL-Ct and LL-Cp (Kim et al., CVPR 2022), module docstring. ``scheme``: ``reject``,
    ``temporary`` or ``permanent``; ``delta``: the rejection rate step as a fraction.

    Under torchrun each process ranks the entries of its own shard of the batch (k scaled to
    the shard), so a run on N processes is close to, not bit-identical with, one on one; LL-Cp's
    corrections are gathered from every process at each step.
    """

    scheduled = True

    def __init__(self, scheme: str, delta: float, num_images: int, num_classes: int):
        super().__init__()
        self.scheme, self.delta = scheme, delta
        if scheme == "permanent":  # entries corrected to positive, for good: (N, C)
            corrected = torch.zeros(num_images, num_classes, dtype=torch.bool)
            self.register_buffer("corrected", corrected)

    def rate(self, epoch: int) -> float:
        """The fraction of the batch's B x C entries rejected or corrected at ``epoch``."""
        if epoch == 0:
            return 0.0
        return self.delta if self.scheme == "permanent" else self.delta * epoch

    def forward(
        self, logits: Tensor, targets: Tensor, index: Tensor, epoch: int, primary: bool = True
    ) -> Tensor:
        if self.scheme == "permanent":
            targets = torch.where(self.corrected[index] & (targets == 0), 1.0, targets)
        unknown = targets == 0
        neg = F.softplus(logits)  # -log(1 - p): unknown entries are assumed negative
        per_entry = by_entry_kind(targets, F.softplus(-logits), neg, neg)
        k = min(math.ceil(targets.numel() * self.rate(epoch)), targets.numel())
        if k == 0:
            return per_entry.mean()
        ranked = torch.where(unknown, per_entry.detach(), -torch.inf).flatten()
        top = ranked.topk(k)
        chosen = torch.zeros_like(ranked, dtype=torch.bool)
        chosen[top.indices] = torch.isfinite(top.values)  # only unknown entries are chosen
        chosen = chosen.view_as(targets)  # (B, C): the k largest unknown-entry losses
        if self.scheme == "reject":
            per_entry = torch.where(chosen, 0.0, per_entry)
        else:  # corrected to a positive target
            per_entry = torch.where(chosen, F.softplus(-logits), per_entry)
        if self.scheme == "permanent" and primary:  # no host sync in one process
            rows = distributed.gather_cat(index)
            self.corrected[rows] |= distributed.gather_cat(chosen.to(torch.uint8)).bool()
        return per_entry.mean()

    def extra_repr(self) -> str:
        return f"scheme={self.scheme}, delta={self.delta}"


def _inverse_sigmoid(p: float) -> float:
    return math.log(p / (1 - p))


class ROLE(Loss):
    """Regularised online label estimation (Cole et al., CVPR 2021), module docstring.

    The estimates are logits (N, C), initialised as the authors': known positives at
    ``sigmoid^-1(0.995)``, known negatives at ``sigmoid^-1(0.005)``, unknown entries uniform in
    ``+-sigmoid^-1(0.6)`` (drawn from torch's seeded global RNG). Per entry, with ``g`` the
    estimate and ``p`` the prediction, each side learns from the other (detached):
    ``cross = BCE(p; g) + BCE(g; p)``; a known positive adds ``-log p - log g``; all halved;
    plus half the expected-positive regulariser of ``p`` and of ``g``. Known negatives: BCE.
    """

    def __init__(self, labels: np.ndarray, expected: float, lr_mult: float):
        super().__init__()
        labels = torch.as_tensor(np.asarray(labels))
        q = _inverse_sigmoid(0.6)
        init = q * (2 * torch.rand(labels.shape) - 1)
        init[labels == 1] = _inverse_sigmoid(0.995)
        init[labels == -1] = _inverse_sigmoid(0.005)
        self.estimates = nn.Parameter(init)  # (N, C) logits of the label estimates
        self.expected, self.lr_mult = expected, lr_mult

    def forward(
        self, logits: Tensor, targets: Tensor, index: Tensor, epoch: int, primary: bool = True
    ) -> Tensor:
        theta = self.estimates[index].to(logits.dtype)  # (B, C)
        p, g = torch.sigmoid(logits), torch.sigmoid(theta)
        pd, gd = p.detach(), g.detach()
        cross = (gd * F.softplus(-logits) + (1 - gd) * F.softplus(logits)
                 + pd * F.softplus(-theta) + (1 - pd) * F.softplus(theta))  # fmt: skip
        positive = 0.5 * (F.softplus(-logits) + F.softplus(-theta)) + 0.5 * cross
        per_entry = by_entry_kind(targets, positive, F.softplus(logits), 0.5 * cross)
        reg = expected_positive_regularizer(p, self.expected)
        reg = 0.5 * (reg + expected_positive_regularizer(g, self.expected))
        return per_entry.mean() + reg


class EntropyMaximization(Loss):
    """EM + APL (Zhou et al., "Acknowledging the Unknown for Multi-label Learning with Single
    Positive Labels", ECCV 2022).

    EM: a known positive gets ``-log p``; an unknown entry gets ``-alpha H(p)`` (its entropy is
    maximised, so it is neither pushed to 0 nor to 1). APL: at the start of every epoch from
    ``apl_start`` on, per class, the ``int(proportion U_c / (epochs - apl_start))`` unknown
    entries with the lowest probability become soft negatives (``U_c``: the class's unknown
    entries at the start), their soft target the probability they had then, weighted ``beta``.
    The soft targets (N, C) are per-image state, checkpointed (0: none).
    """

    def __init__(self, labels: np.ndarray, alpha: float, beta: float, proportion: float,
                 start: int, epochs: int):  # fmt: skip
        super().__init__()
        self.alpha, self.beta, self.start = alpha, beta, start
        unknown = torch.as_tensor(np.asarray(labels) == 0)  # (N, C)
        per_round = proportion * unknown.sum(dim=0).double() / max(epochs - start, 1)
        self.register_buffer("per_round", per_round.long())  # (C,) new negatives per round
        self.register_buffer("soft_negatives", torch.zeros(unknown.shape))  # (N, C)

    def forward(
        self, logits: Tensor, targets: Tensor, index: Tensor, epoch: int, primary: bool = True
    ) -> Tensor:
        pos, neg = F.softplus(-logits), F.softplus(logits)  # -log p, -log(1 - p)
        p = torch.sigmoid(logits)
        entropy = p * pos + (1 - p) * neg
        soft = self.soft_negatives[index].to(logits.dtype)  # (B, C), 0 where none
        unknown = torch.where(soft > 0, self.beta * (soft * pos + (1 - soft) * neg),
                              -self.alpha * entropy)  # fmt: skip
        return by_entry_kind(targets, pos, neg, unknown).mean()

    @torch.no_grad()
    def on_epoch_start(self, epoch: int, head: nn.Module, train_batches: FeatureBatches) -> None:
        if epoch < self.start:
            return
        probs, labels = score_training_split(head, train_batches, len(self.soft_negatives))
        soft = self.soft_negatives.to(probs.device)
        candidates = (labels == 0) & (soft == 0)  # (N, C)
        ranked = torch.where(candidates, probs, torch.inf)  # the lowest probabilities first
        rank = ranked.argsort(dim=0, stable=True).argsort(dim=0)  # (N, C): rank within the class
        chosen = candidates & (rank < self.per_round.to(probs.device))
        soft = torch.where(chosen, probs.clamp(min=1e-6), soft)
        self.soft_negatives.copy_(soft.to(self.soft_negatives.device))


LOSSES: Registry[Loss] = Registry("loss", "--loss")
"""``LOSSES.create(name, cfg, info)``: the loss of ``--loss name``, its settings from ``cfg``,
the training labels (EPR's and ROLE's k, ROLE's and LL-Cp's state) from ``info``."""


def _function(fn: Callable[..., Tensor], **settings: Any) -> Callable[[Any, Any], Loss]:
    """The builder of a stateless loss: ``fn`` with keyword arguments taken from the config
    (a field name) or computed (a function of the config and the data info)."""

    def build(cfg: Any, info: Any) -> Loss:
        kwargs = {k: v(cfg, info) if callable(v) else getattr(cfg, v) for k, v in settings.items()}
        return FunctionLoss(functools.partial(fn, **kwargs) if kwargs else fn)

    return build


def _large_loss(scheme: str) -> Callable[[Any, Any], Loss]:
    return lambda cfg, info: LargeLoss(scheme, cfg.ll_delta / 100, *info.train_labels.shape)


def _k(cfg: Any, info: Any) -> float:
    return expected_positives(info.train_labels, cfg.expected_positives)


LOSSES.register("partial-bce", summary="BCE over the known labels (SSGRL, SARB)")(
    _function(partial_bce, normalize="bce_normalize")
)
LOSSES.register("partial-bce-durand", summary="known-label BCE scaled by g(p) (Durand et al.)")(
    _function(partial_bce_durand)
)
LOSSES.register("assume-negative", summary="unknown labels taken as absent")(
    _function(assume_negative_bce, normalize="bce_normalize")
)
LOSSES.register("an-ls", reference="Cole et al., CVPR 2021")(
    _function(an_ls_loss, smoothing="ls_coef")
)
LOSSES.register("wan", reference="Cole et al., CVPR 2021")(_function(wan_loss))
LOSSES.register("epr", reference="Cole et al., CVPR 2021")(_function(epr_loss, expected=_k))
LOSSES.register("role", reference="Cole et al., CVPR 2021")(
    lambda cfg, info: ROLE(info.train_labels, _k(cfg, info), cfg.role_lr_mult)
)
LOSSES.register("asl", reference="Ridnik et al., ICCV 2021")(
    _function(asl_loss, gamma_pos="asl_gamma_pos", gamma_neg="asl_gamma_neg", clip="asl_clip")
)
LOSSES.register("hill", reference="Zhang et al., 2021")(
    _function(hill_loss, lam="hill_lambda", margin="focal_margin", gamma="focal_gamma")
)
LOSSES.register("splc", reference="Zhang et al., 2021")(
    lambda cfg, info: SPLC(cfg.splc_tau, cfg.splc_start, cfg.focal_margin, cfg.focal_gamma)
)
LOSSES.register("em", reference="Zhou et al., ECCV 2022")(
    lambda cfg, info: EntropyMaximization(
        info.train_labels, cfg.em_alpha, cfg.apl_beta, cfg.apl_proportion, cfg.apl_start, cfg.epochs
    )  # fmt: skip
)
for _name, _scheme in (("ll-r", "reject"), ("ll-ct", "temporary"), ("ll-cp", "permanent")):
    LOSSES.register(_name, reference="Kim et al., CVPR 2022")(_large_loss(_scheme))


__all__ = ["LOSSES", "ROLE", "SPLC", "EntropyMaximization", "FunctionLoss", "LargeLoss", "Loss"]
