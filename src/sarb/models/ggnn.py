"""Label graph and gated graph neural network over class nodes, as in SSGRL / SARB.

The GGNN (Li et al., "Gated Graph Sequence Neural Networks", ICLR 2016) is used by SSGRL (Chen et
al., ICCV 2019) and SARB (Pu et al., AAAI 2022) to propagate the category-specific features over
a label co-occurrence graph (docs/method.md#model): the graph is built from the *known*
positives of the training partial labels, and a class with no known positive gets a zero row
(not NaN).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn


def adjacency_from_labels(labels: Tensor | np.ndarray) -> Tensor:
    """Conditional co-occurrence A (C, C), float32, from partial labels (N, C) in {1, -1, 0}.

    ``A[i, j] = #(images with i and j both known positive) / #(images with i known positive)``,
    i.e. an estimate of P(j | i); the diagonal is 1 for every class with a known positive.
    Unknown (0) and negative (-1) entries never count. A class without any known positive gets
    a zero row (SSGRL / the SARB reference divide by zero there and leave NaN). One matrix
    product, accumulated in float64 so that counts stay exact. The result is on the device of a
    tensor input (CPU for numpy).
    """
    lab = torch.as_tensor(labels)
    if lab.dim() != 2:
        raise ValueError(f"labels must be (N, C), got shape {tuple(lab.shape)}")
    pos = (lab == 1).to(torch.float64)  # (N, C)
    co = pos.T @ pos  # (C, C): co[i, j] = #(i and j both known positive)
    count = co.diagonal()  # (C,): #(i known positive)
    adj = co / count.clamp(min=1).unsqueeze(1)  # rows with count 0 are all-zero already
    return adj.to(torch.float32)


class GGNN(nn.Module):
    """Gated graph neural network with GRU-style gates over C class nodes (SSGRL, ICCV 2019).

    With ``A_in = A`` and ``A_out = A^T``, at each of ``steps`` steps::

        a  = [A_in h ; A_out h]                      (2 * dim)
        z  = sigmoid(W_z a + U_z h)
        r  = sigmoid(W_r a + U_r h)
        h~ = tanh(W_h a + U_h (r * h))
        h  = (1 - z) * h + z * h~

    The three ``W`` projections are one ``Linear(2*dim, 3*dim)`` (it carries the biases; a bias
    on ``U`` would be redundant), ``U_z`` and ``U_r`` are one ``Linear(dim, 2*dim)``, ``U_h`` is
    separate because it acts on ``r * h``. Weights are shared over steps and nodes. The input is
    any ``(..., C, dim)`` tensor: SARB runs its three branches as one (3B, C, dim) batch.
    """

    def __init__(self, dim: int, steps: int = 3):
        super().__init__()
        self.dim, self.steps = dim, steps
        self.w = nn.Linear(2 * dim, 3 * dim)  # [W_z; W_r; W_h]
        self.u_zr = nn.Linear(dim, 2 * dim, bias=False)  # [U_z; U_r]
        self.u_h = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor, adjacency: Tensor) -> Tensor:
        """Node features (..., C, dim) and adjacency (C, C) -> propagated features (..., C, dim)."""
        c = x.shape[-2]
        if adjacency.shape != (c, c):
            raise ValueError(f"adjacency must be ({c}, {c}), got {tuple(adjacency.shape)}")
        adjacency = adjacency.to(x.dtype)
        h = x
        for _ in range(self.steps):
            a_in = torch.einsum("ij,...jd->...id", adjacency, h)  # (..., C, dim): sum_j A[i,j] h_j
            a_out = torch.einsum("ji,...jd->...id", adjacency, h)  # (..., C, dim): A^T h
            wz, wr, wh = self.w(torch.cat([a_in, a_out], dim=-1)).chunk(3, dim=-1)
            uz, ur = self.u_zr(h).chunk(2, dim=-1)
            z = torch.sigmoid(wz + uz)
            r = torch.sigmoid(wr + ur)
            h_new = torch.tanh(wh + self.u_h(r * h))
            h = h + z * (h_new - h)  # (1 - z) * h + z * h_new; promotes dtypes under autocast
        return h
