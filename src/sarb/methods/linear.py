"""Global pooling + one linear classifier: the plain baselines that differ only in their loss."""

from __future__ import annotations

import torch
from torch import nn

from sarb.losses import partial_bce, partial_bce_durand
from sarb.methods.base import Method, MethodContext, Terms, register


class LinearHead(Method):
    """Global average pooling of the feature map, then a linear layer to C logits."""

    def __init__(self, ctx: MethodContext, objective: str):
        super().__init__()
        self.objective = objective
        self.normalize = getattr(ctx.config, "bce_normalize", "batch")
        self.fc = nn.Linear(ctx.in_channels, ctx.num_classes)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.fc(fmap.mean(dim=(2, 3)))  # (B, D, H, W) -> (B, D) -> (B, C)

    def loss(
        self, fmap: torch.Tensor, targets: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, Terms]:
        logits = self.forward(fmap)
        if self.objective == "durand":
            bce = partial_bce_durand(logits, targets)
        elif self.objective == "negative":  # every unknown label is taken as absent
            bce = partial_bce(logits, torch.where(targets == 0, -1.0, targets), self.normalize)
        else:
            bce = partial_bce(logits, targets, self.normalize)
        return bce, {"bce": bce.detach()}


@register("bce-ignore", "naive baseline", "pooled features + linear; BCE over known labels only")
def _bce_ignore(ctx: MethodContext) -> Method:
    return LinearHead(ctx, "ignore")


@register("bce-negative", "naive baseline", "pooled features + linear; unknown labels = absent")
def _bce_negative(ctx: MethodContext) -> Method:
    return LinearHead(ctx, "negative")


@register(
    "partial-bce",
    "Durand et al., CVPR 2019",
    "pooled features + linear; BCE over known labels scaled by g(p), g(0.1)=5, g(1)=1",
)
def _partial_bce(ctx: MethodContext) -> Method:
    return LinearHead(ctx, "durand")
