"""The network: a backbone feature extractor followed by a head."""

from __future__ import annotations

import torch
from torch import nn

from sarb.models.heads import Head


class MultiLabelModel(nn.Module):
    """``images (B, 3, S, S) -> backbone -> feature map (B, D, h, w) -> head -> logits (B, C)``.

    ``takes_feature_maps``: the inputs are the backbone's feature maps already (the feature
    cache of a frozen backbone), so the backbone is skipped. It is decided once, by the engine,
    and :meth:`feature_map` is the one place that acts on it.
    """

    def __init__(self, backbone: nn.Module, head: Head):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.takes_feature_maps = False

    @property
    def class_embeddings_kind(self) -> str | None:
        """``"fixed"`` or ``"learned"`` class embeddings, or None for a head without them:
        recorded in checkpoints, so that a rebuild makes the same module."""
        emb = getattr(self.head, "embeddings", None)
        return None if emb is None else ("learned" if emb.learned else "fixed")

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's feature map (B, D, h, w) of images ``x`` (or ``x`` itself when the
        inputs are cached feature maps); images on CUDA go channels-last."""
        if self.takes_feature_maps:
            return x.float()
        if x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feature_map(x))
