"""Class embeddings as one module: fixed word vectors (a buffer) or learned vectors."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

LEARNED_DIM = 300
"""Width of learned class embeddings (the width of the paper's GloVe vectors)."""


class ClassEmbeddings(nn.Module):
    """Class embeddings (C, E): ``vectors`` kept fixed, or learned from ``0.1 * N(0, 1)``
    (``vectors=None``). ``learned`` records which; the state-dict key is ``weight`` either way."""

    def __init__(self, num_classes: int, vectors: np.ndarray | Tensor | None = None):
        super().__init__()
        self.learned = vectors is None
        if vectors is None:
            self.weight = nn.Parameter(0.1 * torch.randn(num_classes, LEARNED_DIM))
        else:
            self.register_buffer("weight", torch.as_tensor(vectors, dtype=torch.float32))

    @property
    def dim(self) -> int:
        return self.weight.shape[1]

    def forward(self) -> Tensor:
        """The embeddings (C, E)."""
        return self.weight

    def extra_repr(self) -> str:
        return f"classes={self.weight.shape[0]}, dim={self.dim}, learned={self.learned}"
