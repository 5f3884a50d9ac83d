"""A method: a model (backbone + head), a loss and augmentations, composed from their names.

``build_method(cfg, info)`` builds ``--head``, ``--loss`` and ``--augment`` (the presets of
``sarb methods`` are named choices of them). ``Method.forward`` is one training step's loss:
the module that DDP wraps and ``torch.compile`` compiles.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from sarb.errors import SarbError
from sarb.methods.augmentations import AUGMENTATIONS, Augmentation, FeatureBatches
from sarb.methods.objectives import LOSSES, Loss
from sarb.models.factory import DataInfo, build_model
from sarb.models.heads import HEADS
from sarb.models.multilabel import MultiLabelModel
from sarb.presets import OPTION_FIELDS, PAPER_OPTIONS, split_augment

Terms = dict[str, Tensor]


class Method(nn.Module):
    """``model`` trained with ``loss`` and ``augmentations`` (applied in registry order)."""

    def __init__(self, model: MultiLabelModel, loss: Loss, augmentations: dict[str, Augmentation]):
        super().__init__()
        self.model = model
        self.loss = loss
        self.augmentations = nn.ModuleDict(augmentations)

    @property
    def needs_images(self) -> bool:
        """Whether an augmentation mixes images (the feature cache cannot serve them)."""
        return any(a.needs_images for a in self.augmentations.values())

    def forward(
        self, x: Tensor, targets: Tensor, index: Tensor, epoch: int
    ) -> tuple[Tensor, Terms]:
        """The loss of a batch and its terms (detached). ``x``: images (B, 3, S, S) or cached
        feature maps; ``targets`` (B, C) in {1, -1, 0}; ``index`` (B,) their dataset rows.

        SARB's objective (docs/method.md#blending) is this sum: the loss of the batch's own
        features plus the loss of each blended copy (ILRB, PLRB: same images, blended category
        features, soft targets ``1 - a`` / ``1 - b``), plus ``lambda`` x the contrastive loss.
        """
        augs = list(self.augmentations.values())
        for a in augs:
            targets = a.relabel(index, targets)
        if not self.model.takes_feature_maps:
            for a in augs:
                x, targets = a.mix_images(x, targets)
        fmap = self.model.feature_map(x)
        for a in augs:
            fmap, targets = a.mix_feature_maps(fmap, targets)
        head = self.model.head
        z = head.features(fmap)
        # blended targets that read the model's own scores (--blend-targets teacher) need the logits
        # before blending: then two passes of GGNN + classifier instead of one. Before blending
        # starts the one-pass path runs, so that such a run is the paper's run until then
        scoring = any(a.uses_scores for a in augs) and epoch >= (self.first_blending_epoch or 0)
        own = head.classify(z) if scoring else None
        scores = None if own is None else torch.sigmoid(own.detach().float())
        branches = [("bce", z, targets)]
        for name, a in self.augmentations.items():
            if (blended := a.blend(z, targets, epoch, scores)) is not None:
                branches.append((f"bce_{name}", *blended))
        if own is None:
            # one pass of GGNN + classifier for all branches. The concatenation also makes a
            # single branch contiguous; skipping it changes SARB's results in the 4th digit
            logits = head.classify(torch.cat([b[1] for b in branches]))
        elif len(branches) == 1:
            logits = own
        else:
            logits = torch.cat([own, head.classify(torch.cat([b[1] for b in branches[1:]]))])
        loss_epoch = epoch if self.loss.scheduled else 0
        terms = {  # the first branch is the batch itself: a loss with state may learn from it
            name: self.loss(lg, t, index, loss_epoch, primary=i == 0)
            for i, ((name, _, t), lg) in enumerate(
                zip(branches, logits.chunk(len(branches)), strict=True)
            )
        }
        loss = sum(terms.values())
        for name, a in self.augmentations.items():
            if (value := a.penalty(z, targets)) is not None:
                terms[name] = value
                loss = loss + a.penalty_scale() * value
        return loss, {k: v.detach() for k, v in terms.items()}

    @property
    def first_blending_epoch(self) -> int | None:
        """The 0-based epoch from which an augmentation adds blended branches (None: never)."""
        starts = [a.start for a in self.augmentations.values() if a.blends]
        return min(starts) if starts else None

    def param_groups(self, lr: float, backbone_lr_mult: float = 1.0) -> list[dict[str, Any]]:
        """The optimiser's parameter groups: every trainable parameter at ``lr``, except the
        backbone's at ``lr * backbone_lr_mult`` (fine-tuning a pretrained backbone gently) and
        the loss's own (ROLE's label estimates) at ``lr * loss.lr_mult``. The first group is the
        head's, whose learning rate is the one logged."""
        own = {id(p) for p in self.loss.parameters()}
        backbone = []
        if backbone_lr_mult != 1.0:
            backbone = [p for p in self.model.backbone.parameters() if p.requires_grad]
        skip = own | {id(p) for p in backbone}
        groups = [
            {"params": [p for p in self.parameters() if p.requires_grad and id(p) not in skip]}
        ]
        if backbone:
            groups.append({"params": backbone, "lr": lr * backbone_lr_mult})
        if own:
            groups.append({"params": list(self.loss.parameters()), "lr": lr * self.loss.lr_mult})
        return groups

    def on_epoch_start(self, epoch: int, train_batches: FeatureBatches) -> None:
        """Each augmentation's and the loss's per-epoch work (SARB's prototypes, pseudo-labels
        of curriculum labelling and of EM's APL)."""
        for a in self.augmentations.values():
            a.on_epoch_start(epoch, self.model.head, train_batches)
        self.loss.on_epoch_start(epoch, self.model.head, train_batches)

    def on_step(self, epoch: int, fraction: float) -> None:
        """Before each training step, ``fraction`` of the epoch done (the contrastive warm-up)."""
        for a in self.augmentations.values():
            a.on_step(epoch, fraction)

    def logged_values(self) -> dict[str, float]:
        """Scalars worth logging once per epoch (e.g. SARB's blend weights a and b)."""
        out: dict[str, float] = {}
        for a in self.augmentations.values():
            out.update(a.logged_values())
        return out


def check_parts(cfg: Any) -> list[str]:
    """The augmentation names of ``cfg``, in the order they run, after checking that the head,
    the loss and the augmentations exist and fit together (one-line SarbErrors)."""
    head = HEADS.get(cfg.head).build
    LOSSES.get(cfg.loss)
    given = split_augment(cfg.augment)
    for name in given:
        aug = AUGMENTATIONS.get(name).build
        if aug.needs_category_features and not head.category_specific:
            fits = ", ".join(e.name for e in HEADS.list() if e.build.category_specific)
            raise SarbError(
                f"--augment {name} needs category-specific features: --head {fits}, not {cfg.head}"
            )
    if cfg.attention != PAPER_OPTIONS["attention"] and cfg.head != "csrl":
        raise SarbError(f"--attention {cfg.attention} is an option of --head csrl, not {cfg.head}")
    for field in (f for f in OPTION_FIELDS if f.startswith("blend_")):
        value = getattr(cfg, field)
        if value != PAPER_OPTIONS[field] and not {"ilrb", "plrb"} & set(given):
            raise SarbError(f"--{field.replace('_', '-')} {value} needs --augment ilrb or plrb")
    return [n for n in AUGMENTATIONS.names() if n in given]


def build_method(cfg: Any, info: DataInfo) -> Method:
    """The model of ``cfg`` (see :func:`~sarb.models.factory.build_model`) with its loss and
    augmentations; ``info.train_labels`` must be the training labels."""
    names = check_parts(cfg)
    model = build_model(cfg, info)
    augs = {name: AUGMENTATIONS.create(name, cfg, info) for name in names}
    return Method(model, LOSSES.create(cfg.loss, cfg, info), augs)
