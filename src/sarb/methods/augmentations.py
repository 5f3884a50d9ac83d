"""Augmentations: the optional parts of a method, each acting at one stage of the train step.

A batch goes ``relabel`` (targets) -> ``mix_images`` -> backbone -> ``mix_feature_maps`` ->
head features -> ``blend`` (extra branches) -> head classifier -> loss, + ``penalty`` terms
(see :class:`sarb.methods.method.Method`). Each augmentation overrides the stages it acts on;
the others are identities. They run in registration order:

- ``curriculum``: pseudo-labels for the most confident unknown labels (Durand et al., CVPR 2019).
- ``ip-mixup`` / ``fm-mixup``: mixup of images / backbone feature maps and their partial labels
  (Zhang et al., ICLR 2018; the SARB paper's ablation).
- ``ilrb`` / ``plrb``: SARB's instance- and prototype-level representation blending
  (Pu et al., AAAI 2022), on category-specific features.
- ``contrastive``: SARB's class-wise contrastive loss on category-specific features.

An augmentation's state (blend weights, prototypes, pseudo-labels) belongs to the method, not to
the model: it is checkpointed for resuming, and inference never needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from sarb import distributed
from sarb.distributed import gather_cat
from sarb.losses import contrastive_loss
from sarb.methods.blending import BlendWeight, ilrb, plrb
from sarb.methods.curriculum import select_pseudo_labels
from sarb.methods.mixup import mixup
from sarb.methods.prototypes import batched_kmeans
from sarb.registry import Registry

FeatureBatches = Callable[[], Iterable[tuple[Tensor, Tensor]]]
"""``train_batches()``: the whole training split as (feature map, labels) batches, rows in order,
computed in eval mode without gradients."""
MAX_POINTS_PER_CLASS = 4096  # K-means input per class: a seeded sample beyond this (memory bound)


class Augmentation(nn.Module):
    """The hooks of one augmentation; each default leaves the batch unchanged."""

    needs_images = False  #: mixes the images themselves: no cached feature maps
    blends = False  #: adds blended branches from epoch ``self.start`` on
    needs_category_features = False  #: acts on (B, C, D) features: a csrl or kggr head
    uses_scores = False  #: ``blend`` reads the model's own detached scores of the batch

    def relabel(self, index: Tensor, targets: Tensor) -> Tensor:
        """The training targets (B, C) of dataset rows ``index`` (B,) given their labels."""
        return targets

    def mix_images(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        return images, targets

    def mix_feature_maps(self, fmap: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        return fmap, targets

    def blend(
        self, z: Tensor, targets: Tensor, epoch: int, scores: Tensor | None = None
    ) -> tuple[Tensor, Tensor] | None:
        """An extra branch (features, targets) classified beside the batch, or None;
        ``scores`` (B, C): the model's detached probabilities of the batch if ``uses_scores``."""
        return None

    def penalty(self, z: Tensor, targets: Tensor) -> Tensor | None:
        """A loss term on the features, added with weight :meth:`penalty_scale`."""
        return None

    def penalty_scale(self) -> Tensor | float:
        """The weight of :meth:`penalty`'s term in the loss."""
        return 0.0

    def on_step(self, epoch: int, fraction: float) -> None:
        """Before each training step; ``fraction`` of the epoch's steps are done (0 first)."""

    def on_epoch_start(self, epoch: int, head: nn.Module, train_batches: FeatureBatches) -> None:
        """Before each training epoch (prototypes, pseudo-labels)."""

    def logged_values(self) -> dict[str, float]:
        """Scalars worth logging once per epoch."""
        return {}


@torch.no_grad()
def score_training_split(
    head: nn.Module, train_batches: FeatureBatches, num_images: int
) -> tuple[Tensor, Tensor]:
    """Probabilities (N, C) of the whole training split and its labels (N, C), rows in dataset
    order; under torchrun each rank scored the rows rank, rank + world, ... and all gather."""
    probs, labels = [], []
    for fmap, y in train_batches():
        probs.append(torch.sigmoid(head(fmap).float()))
        labels.append(y)
    probs_t, labels_t = torch.cat(probs), torch.cat(labels)
    if distributed.active():
        probs_t, labels_t = gather_cat(probs_t), gather_cat(labels_t)
        world = torch.distributed.get_world_size()
        rows = torch.cat([torch.arange(r, num_images, world) for r in range(world)])
        order = torch.argsort(rows.to(probs_t.device))
        probs_t, labels_t = probs_t[order], labels_t[order]
    if len(probs_t) != num_images:
        raise RuntimeError(f"scored {len(probs_t)} rows of a training split of {num_images}")
    return probs_t, labels_t


AUGMENTATIONS: Registry[Augmentation] = Registry("augmentation", "--augment")
"""``AUGMENTATIONS.create(name, cfg, info)``; ``info`` is the model's DataInfo."""


@AUGMENTATIONS.register("curriculum", reference="Durand et al., CVPR 2019")
class Curriculum(Augmentation):
    """Curriculum labelling: a (N, C) buffer of accumulated pseudo-labels in {1, -1, 0}.

    Every ``curriculum_every`` epochs from ``curriculum_start`` on, the model scores the whole
    training split and the most confident still-unknown entries become pseudo-labels
    (:func:`~sarb.methods.curriculum.select_pseudo_labels`). ``relabel`` fills the unknown
    entries of a batch with them, so the known fraction p of g(p) counts them too, as in Durand
    et al.; a known label is never overwritten.
    """

    def __init__(self, cfg: Any, info: Any):
        super().__init__()
        self.start, self.every = cfg.curriculum_start, cfg.curriculum_every
        self.fraction = cfg.curriculum_fraction
        n, c = info.train_labels.shape
        self.register_buffer("pseudo_labels", torch.zeros(n, c, dtype=torch.int8))

    def relabel(self, index: Tensor, targets: Tensor) -> Tensor:
        pseudo = self.pseudo_labels[index].to(targets.dtype)  # (B, C)
        return torch.where(targets == 0, pseudo, targets)

    def on_epoch_start(self, epoch: int, head: nn.Module, train_batches: FeatureBatches) -> None:
        if epoch >= self.start and (epoch - self.start) % self.every == 0:
            self.pseudo_label_round(head, train_batches)

    @torch.no_grad()
    def pseudo_label_round(self, head: nn.Module, train_batches: FeatureBatches) -> None:
        """Score the whole training split (rows in order) and add this round's pseudo-labels."""
        probs_t, labels_t = score_training_split(head, train_batches, len(self.pseudo_labels))
        pseudo = self.pseudo_labels.to(probs_t.device)
        new = select_pseudo_labels(probs_t, labels_t, pseudo, self.fraction)
        self.pseudo_labels.copy_(new.to(self.pseudo_labels.device))

    def logged_values(self) -> dict[str, float]:
        return {"pseudo_labels": int((self.pseudo_labels != 0).sum())}


@AUGMENTATIONS.register("ip-mixup", reference="Zhang et al., ICLR 2018")
class ImageMixup(Augmentation):
    """mixup of images (pixel space) and partial labels; one lam ~ Beta(alpha, alpha)."""

    needs_images = True  # cached feature maps would turn pixel mixup into feature-map mixup

    def __init__(self, cfg: Any, info: Any):
        super().__init__()
        self.alpha = cfg.mixup_alpha

    def mix_images(self, images: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        return mixup(images, targets, self.alpha)


@AUGMENTATIONS.register("fm-mixup", reference="Zhang et al., ICLR 2018")
class FeatureMapMixup(Augmentation):
    """mixup of backbone feature maps (B, D, H, W) and partial labels."""

    def __init__(self, cfg: Any, info: Any):
        super().__init__()
        self.alpha = cfg.mixup_alpha

    def mix_feature_maps(self, fmap: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        return mixup(fmap, targets, self.alpha)


class _Blending(Augmentation):
    """What ILRB and PLRB share: the start epoch, the blend weight and the target options."""

    needs_category_features = True
    blends = True

    def __init__(self, cfg: Any, info: Any):
        super().__init__()
        self.start = cfg.blend_start
        self.weight = BlendWeight(0.5, learnable=cfg.blend_weights == "learned")
        self.uses_scores = cfg.blend_targets == "teacher"
        self.only_blended = cfg.blend_loss == "blended"


@AUGMENTATIONS.register("ilrb", reference="Pu et al., AAAI 2022")
class ILRB(_Blending):
    """Instance-level blending from epoch ``blend_start``: each image's unknown classes take the
    features of a random partner of the batch where the partner is positive, with weight
    ``1 - a`` and target ``1 - a`` (:func:`~sarb.methods.blending.ilrb`)."""

    def blend(
        self, z: Tensor, targets: Tensor, epoch: int, scores: Tensor | None = None
    ) -> tuple[Tensor, Tensor] | None:
        if epoch < self.start:  # epoch read only here: under torch.compile each read is a guard
            return None
        perm = torch.randperm(z.shape[0], device=z.device)
        return ilrb(z, targets, self.weight(), perm, scores, self.only_blended)

    def logged_values(self) -> dict[str, float]:
        return {"a": float(self.weight().detach())}


@AUGMENTATIONS.register("plrb", reference="Pu et al., AAAI 2022")
class PLRB(_Blending):
    """Prototype-level blending from epoch ``blend_start``: one random unknown class of each
    image takes a K-means prototype of that class with weight ``1 - b``, target ``1 - b``
    (:func:`~sarb.methods.blending.plrb`). The prototypes are recomputed at ``blend_start`` and
    every ``proto_every`` epochs."""

    def __init__(self, cfg: Any, info: Any):
        super().__init__(cfg, info)
        self.every, self.seed, self.per_image = cfg.proto_every, cfg.seed, cfg.plrb_per_image
        c, k, d = info.num_classes, cfg.num_prototypes, cfg.feat_dim
        self.register_buffer("prototypes", torch.zeros(c, k, d))  # (C, K, D)
        self.register_buffer("prototype_valid", torch.zeros(c, k, dtype=torch.bool))
        # whether any prototype is valid: kept on the host, so the step never reads the device
        self._ready = False
        self.register_load_state_dict_post_hook(
            lambda m, _: setattr(m, "_ready", bool(m.prototype_valid.any()))
        )

    def blend(
        self, z: Tensor, targets: Tensor, epoch: int, scores: Tensor | None = None
    ) -> tuple[Tensor, Tensor] | None:
        if epoch < self.start or not self._ready:
            return None
        return plrb(z, targets, self.weight(), self.prototypes, self.prototype_valid,
                    scores=scores, only_blended=self.only_blended,
                    per_image=self.per_image)  # fmt: skip

    def on_epoch_start(self, epoch: int, head: nn.Module, train_batches: FeatureBatches) -> None:
        if epoch >= self.start and (epoch - self.start) % self.every == 0:
            self.refresh_prototypes(head, train_batches, seed=self.seed + epoch)

    @torch.no_grad()
    def refresh_prototypes(self, head: nn.Module, train_batches: FeatureBatches, seed: int) -> None:
        """K-means (K centres) per class over the features of its known-positive images.

        Only the (image, class) features with a known positive label are kept while iterating,
        so memory grows with the number of known positives, not with N x C. A class with more
        than ``MAX_POINTS_PER_CLASS`` points is clustered on a seeded random sample of that size
        (10 centres are estimated as well from 4,096 points as from COCO's 45,000 "person"
        images, and the padded K-means input stays bounded).
        """
        points, classes = [], []
        for fmap, labels in train_batches():
            x = head.features(fmap)  # (B, C, D)
            pos = labels == 1  # (B, C)
            points.append(x[pos])  # (P_b, D)
            classes.append(pos.nonzero()[:, 1])  # (P_b,) class of each point
        # every rank holds a shard of the training set: all ranks cluster the same points
        points_t, classes_t = gather_cat(torch.cat(points)), gather_cat(torch.cat(classes))
        c, k, d = self.prototypes.shape
        gen = torch.Generator(device=points_t.device).manual_seed(seed)
        # group the points by class in a random order, then keep the first MAX of each class
        shuffle = torch.randperm(len(classes_t), generator=gen, device=points_t.device)
        order = shuffle[torch.argsort(classes_t[shuffle], stable=True)]
        counts = torch.bincount(classes_t, minlength=c)  # (C,)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(len(order), device=order.device) - starts[classes_t[order]]
        keep = rank < MAX_POINTS_PER_CLASS
        order, rank = order[keep], rank[keep]
        counts = counts.clamp(max=MAX_POINTS_PER_CLASS)
        padded = points_t.new_zeros(c, max(int(counts.max()), 1), d)  # (C, maxN, D)
        padded[classes_t[order], rank] = points_t[order]
        centres, valid = batched_kmeans(padded, counts, k, generator=gen)
        self.prototypes.copy_(centres)
        self.prototype_valid.copy_(valid)
        self._ready = bool(valid.any())

    def logged_values(self) -> dict[str, float]:
        return {"b": float(self.weight().detach()),
                "prototype_classes": int(self.prototype_valid.any(1).sum())}  # fmt: skip


@AUGMENTATIONS.register("contrastive", reference="Pu et al., AAAI 2022")
class Contrastive(Augmentation):
    """SARB's class-wise contrastive loss on the features, weight ``contrastive_weight``
    (:func:`~sarb.losses.contrastive_loss`). With ``contrastive_warmup`` (the authors' code) the
    weight ramps linearly from 0 over the steps of the first epoch."""

    needs_category_features = True

    def __init__(self, cfg: Any, info: Any):
        super().__init__()
        self.weight, self.warmup = cfg.contrastive_weight, cfg.contrastive_warmup
        self.negatives = cfg.contrastive_negatives
        # a tensor, so that a compiled step reads the ramp instead of recompiling for each value
        self.register_buffer("ramp", torch.ones(()), persistent=False)

    def on_step(self, epoch: int, fraction: float) -> None:
        self.ramp.fill_(fraction if self.warmup and epoch == 0 else 1.0)

    def penalty(self, z: Tensor, targets: Tensor) -> Tensor | None:
        if self.weight <= 0:
            return None
        return contrastive_loss(z, targets, self.negatives)

    def penalty_scale(self) -> Tensor:
        return self.weight * self.ramp

    def logged_values(self) -> dict[str, float]:
        return {"contrastive_scale": float(self.penalty_scale())}


__all__ = ["AUGMENTATIONS", "Augmentation", "FeatureBatches"]
