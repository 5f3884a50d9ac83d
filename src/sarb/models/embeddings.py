"""Class embeddings as one module: fixed word vectors (a buffer) or learned vectors."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

LEARNED_DIM = 300
"""Width of learned class embeddings (the width of the paper's GloVe vectors)."""


class ClassEmbeddings(nn.Module):
    """Class embeddings (C, E): ``vectors`` kept fixed, or learned from ``0.1 * N(0, 1)``
    (``vectors=None``). ``learned`` records which; the state-dict key is ``weight`` either way.

    ``standardise`` (fixed vectors of two classes or more): the vectors are used centred on
    their mean and scaled to unit variance. Word vectors of class names share a large common
    direction (GloVe means of "red star", "blue anchor"...: mean pairwise cosine 0.75, and 0.96
    for names that share a word); centred, they are about orthogonal (-0.02). Near-identical
    embeddings give every class the same attention at the start, the classes' gradients then
    cancel, and some seeds never leave that state (measured: SSGRL stuck at its first epochs'
    validation mAP for a whole run). The stored ``weight`` stays the vectors as given.
    """

    def __init__(
        self,
        num_classes: int,
        vectors: np.ndarray | Tensor | None = None,
        standardise: bool = False,
    ):
        super().__init__()
        self.learned = vectors is None
        self.standardise = standardise and not self.learned and num_classes > 1
        if vectors is None:
            self.weight = nn.Parameter(0.1 * torch.randn(num_classes, LEARNED_DIM))
        else:
            self.register_buffer("weight", torch.as_tensor(vectors, dtype=torch.float32))

    @property
    def dim(self) -> int:
        return self.weight.shape[1]

    def forward(self) -> Tensor:
        """The embeddings (C, E)."""
        if not self.standardise:
            return self.weight
        centred = self.weight - self.weight.mean(dim=0, keepdim=True)  # (C, E)
        return centred / centred.std().clamp(min=1e-6)

    def extra_repr(self) -> str:
        return (f"classes={self.weight.shape[0]}, dim={self.dim}, learned={self.learned}, "
                f"standardise={self.standardise}")  # fmt: skip
