"""Graph-based classifier learning of ML-GCN: the GCN and its label graph.

Used by the ``gcn`` head (``sarb.models.heads``), which turns class embeddings into per-class
classifiers by propagating them over a label graph built from the *known* positives of the
training partial labels.

- ML-GCN (Chen, Wei, Wang, Guo, "Multi-Label Image Recognition with Graph
  Convolutional Networks", CVPR 2019). A 2-layer GCN over the class embeddings gives a (C, D)
  classifier matrix W, applied to the globally max-pooled image feature. The adjacency is the
  paper's: conditional probabilities P(j | i), binarised at tau = 0.4, re-weighted with p = 0.25,
  then symmetrically normalised (:func:`mlgcn_adjacency`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sarb.models.ggnn import adjacency_from_labels

MLGCN_THRESHOLD = 0.4  # tau of ML-GCN (CVPR 2019, §3.3): P(j|i) >= tau keeps the edge
MLGCN_REWEIGHT = 0.25  # p of ML-GCN: the weight a node gives to its neighbours (1-p to itself)


def mlgcn_adjacency(
    labels: Tensor | np.ndarray,
    threshold: float = MLGCN_THRESHOLD,
    reweight: float = MLGCN_REWEIGHT,
) -> Tensor:
    """The ML-GCN correlation matrix (C, C), float32, from partial labels (N, C) in {1, -1, 0}.

    As in ML-GCN (Chen et al., CVPR 2019, §3.3), from the *known* positives only:

    1. ``P[i, j] = P(j | i)`` = #(i and j known positive) / #(i known positive)
       (:func:`~sarb.models.ggnn.adjacency_from_labels`);
    2. binarise the off-diagonal entries: ``B[i, j] = 1`` if ``P[i, j] >= threshold``, else 0;
    3. re-weight against over-smoothing: ``A[i, j] = reweight * B[i, j] / sum_{k != i} B[i, k]``
       for ``j != i`` and ``A[i, i] = 1 - reweight``;
    4. symmetric normalisation ``D^-1/2 A D^-1/2`` with ``D = diag(sum_j A[i, j])``.

    A class without neighbours (in particular one without any known positive) keeps only its
    self-loop ``1 - reweight``: no division by zero, every entry finite.
    """
    if not 0.0 <= reweight < 1.0:
        raise ValueError(f"reweight must be in [0, 1), got {reweight}")
    cond = adjacency_from_labels(labels)  # (C, C) float32, P(j | i); zero rows where no positive
    c = cond.shape[0]
    eye = torch.eye(c, dtype=torch.bool, device=cond.device)
    binary = (cond >= threshold) & ~eye  # (C, C) off-diagonal edges
    degree = binary.sum(dim=1, keepdim=True).clamp(min=1).to(torch.float64)  # (C, 1)
    adj = torch.where(binary, reweight / degree, 0.0) + (1.0 - reweight) * eye  # (C, C) float64
    d = adj.sum(dim=1).rsqrt()  # (C,), every row sums to 1 or to 1 - reweight > 0
    return (d[:, None] * adj * d[None, :]).to(torch.float32)


class GCNClassifier(nn.Module):
    """Two graph convolutions ``A (A E W1 -> LeakyReLU(0.2)) W2``: embeddings (C, E) -> (C, D).

    The layers of ML-GCN (CVPR 2019): ``H' = A H W`` without bias, LeakyReLU with slope 0.2
    between the layers and nothing after the last, so the output is a free linear classifier.
    """

    def __init__(self, embed_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.w1 = nn.Linear(embed_dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(hidden_dim, out_dim, bias=False)

    def forward(self, embeddings: Tensor, adjacency: Tensor) -> Tensor:
        """Class embeddings (C, E) and normalised adjacency (C, C) -> classifiers (C, out_dim)."""
        h = F.leaky_relu(adjacency @ self.w1(embeddings), 0.2)  # (C, hidden)
        return adjacency @ self.w2(h)  # (C, out_dim)


__all__ = ["GCNClassifier", "mlgcn_adjacency"]
