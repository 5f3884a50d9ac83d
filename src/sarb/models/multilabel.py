"""The full network: a backbone feature extractor followed by a method's head."""

from __future__ import annotations

import torch
from torch import nn

from sarb.methods.base import Method


class MultiLabelModel(nn.Module):
    """``images (B, 3, S, S) -> backbone -> feature map (B, D, h, w) -> head -> logits (B, C)``."""

    def __init__(self, backbone: nn.Module, head: Method):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))
