"""Classification heads over category-specific features (SSGRL, Chen et al., ICCV 2019)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PerClassLinear(nn.Module):
    """One linear classifier per class: ``logits[b, c] = <w_c, x[b, c]> + bias_c``.

    The per-class scoring of SSGRL / SARB, written as one einsum over a (C, dim) weight instead of
    C separate ``nn.Linear(dim, 1)``. Initialised like ``nn.Linear(dim, 1)`` for every class:
    weight and bias uniform in +-1/sqrt(dim).
    """

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        self.bias = nn.Parameter(torch.empty(num_classes))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # == nn.Linear's, fan_in = dim
        bound = 1.0 / math.sqrt(self.weight.shape[1])
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """Class features (..., C, dim) -> logits (..., C)."""
        return torch.einsum("...cd,cd->...c", x, self.weight) + self.bias


class SSGRLHead(nn.Module):
    """SSGRL output head: ``o_c = tanh(Linear([h_c ; x_c]))`` then a per-class linear classifier.

    ``h`` are the GGNN outputs and ``x`` the CSRL features it started from, both (B, C, D); the
    ``Linear(2*feat_dim, out_dim)`` is shared by all classes. Returns logits (B, C).
    """

    def __init__(self, num_classes: int, feat_dim: int, out_dim: int = 2048):
        super().__init__()
        self.fc = nn.Linear(2 * feat_dim, out_dim)
        self.classifier = PerClassLinear(num_classes, out_dim)

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        """GGNN output (B, C, D) and CSRL features (B, C, D) -> logits (B, C)."""
        o = torch.tanh(self.fc(torch.cat([h, x], dim=-1)))  # (B, C, out_dim)
        return self.classifier(o)
