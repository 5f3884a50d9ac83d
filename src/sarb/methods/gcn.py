"""Graph-based classifier learning: GCN-ML (ML-GCN) and KGGR (SPEC §8).

Both turn class embeddings into per-class classifiers by propagating them over a label graph
built from the *known* positives of the training partial labels.

- ``gcn-ml``: ML-GCN (Chen, Wei, Wang, Guo, "Multi-Label Image Recognition with Graph
  Convolutional Networks", CVPR 2019). A 2-layer GCN over the class embeddings gives a (C, D)
  classifier matrix W, applied to the globally max-pooled image feature. The adjacency is the
  paper's: conditional probabilities P(j | i), binarised at tau = 0.4, re-weighted with p = 0.25,
  then symmetrically normalised (:func:`mlgcn_adjacency`).
- ``kggr``: KGGR (Chen, Lin, Chen, Hui, Wu, "Knowledge-Guided Multi-Label Few-Shot Learning for
  General Image Recognition", TPAMI 2021), re-implemented from the paper's description; see
  :class:`KGGR` for what comes from the paper and what is ours.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sarb.losses import partial_bce
from sarb.methods.base import Method, MethodContext, Terms, register
from sarb.methods.sarb import LEARNED_EMBED_DIM
from sarb.models.csrl import Neck, SemanticDecoupling
from sarb.models.ggnn import GGNN, adjacency_from_labels

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


def _embeddings(module: nn.Module, ctx: MethodContext) -> None:
    """Class embeddings: a buffer of the given word vectors, or learned (as SARB's)."""
    if ctx.embeddings is not None:
        module.register_buffer("embeddings", torch.as_tensor(ctx.embeddings, dtype=torch.float32))
    else:
        module.embeddings = nn.Parameter(0.1 * torch.randn(ctx.num_classes, LEARNED_EMBED_DIM))


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


@register(
    "gcn-ml",
    "Chen et al., CVPR 2019 (ML-GCN)",
    "max-pooled features x classifiers from a 2-layer GCN over class embeddings; partial BCE",
)
class GCNML(Method):
    """ML-GCN (Chen et al., CVPR 2019) on partial labels: ``logits = maxpool(neck(fmap)) @ W^T``.

    ``W`` (C, D) = :class:`GCNClassifier` over the class embeddings and :func:`mlgcn_adjacency`.
    Differences from ML-GCN, ours: the SARB neck (1x1 conv + BN to ``feat_dim``) precedes the
    global max pooling so that every method sees the same feature size; the GCN's hidden size is
    ``feat_dim / 2`` (ML-GCN: 1024 for 2048-d features); the graph counts known positives only;
    the loss is the partial BCE over known labels (SPEC §5).
    """

    def __init__(self, ctx: MethodContext):
        super().__init__()
        cfg = ctx.config
        d = cfg.feat_dim
        self.neck = Neck(ctx.in_channels, d, cfg.neck_pool)
        _embeddings(self, ctx)
        self.register_buffer("adjacency", mlgcn_adjacency(ctx.train_labels))  # (C, C)
        self.gcn = GCNClassifier(self.embeddings.shape[1], max(d // 2, 1), d)
        self.normalize = cfg.bce_normalize

    def classifiers(self) -> Tensor:
        """Per-class classifier weights (C, D) produced by the GCN."""
        return self.gcn(self.embeddings, self.adjacency)

    def forward(self, fmap: Tensor) -> Tensor:
        pooled = self.neck(fmap).amax(dim=(2, 3))  # (B, D) global max pooling, as ML-GCN
        return pooled @ self.classifiers().T  # (B, C)

    def loss(self, fmap: Tensor, targets: Tensor, epoch: int) -> tuple[Tensor, Terms]:
        bce = partial_bce(self.forward(fmap), targets, self.normalize)
        return bce, {"bce": bce.detach()}


@register(
    "kggr",
    "Chen et al., TPAMI 2021 (re-implemented)",
    "SD + GGNN features x classifiers propagated by a second GGNN; partial BCE",
)
class KGGR(Method):
    """KGGR (Chen et al., TPAMI 2021): graph feature propagation + graph classifier learning.

    Re-implemented from the paper's description (no reference code was used):

    - graph-based feature propagation, as SSGRL: semantic decoupling (SD) of the neck's feature
      map into class features ``x_c`` (B, C, D), a GGNN over the statistical label graph
      (``A[i, j] = P(j | i)`` of the known positives, SPEC §4) giving ``h_c``, and
      ``o_c = tanh(W_o [h_c ; x_c])``;
    - graph-based classifier learning: every graph node is initialised with a classifier
      ``w0_c`` and a second GGNN over the same graph propagates them, so that correlated labels
      share classifier information; the score is ``logits_c = <w_c, o_c> + b_c``.

    Our choices (the description leaves them open): ``w0_c`` is a linear projection of the class
    embedding (with learned embeddings it is a free per-class vector, i.e. a learned classifier
    initialisation; with word vectors the classifiers start from label semantics); the final
    classifier is ``w_c = W_w [g_c ; w0_c]`` with ``g_c`` the classifier GGNN's output (the same
    read-out as the feature branch, without tanh so that classifier weights are unbounded);
    ``o_c`` has ``feat_dim`` channels (SSGRL's head uses 2 x feat_dim) so that both GGNNs have the
    same size; the bias starts at 0. Loss: partial BCE over known labels.
    """

    def __init__(self, ctx: MethodContext):
        super().__init__()
        cfg = ctx.config
        c, d = ctx.num_classes, cfg.feat_dim
        self.neck = Neck(ctx.in_channels, d, cfg.neck_pool)
        _embeddings(self, ctx)
        e = self.embeddings.shape[1]
        self.register_buffer("adjacency", adjacency_from_labels(ctx.train_labels))  # (C, C)
        # graph-based feature propagation
        self.csrl = SemanticDecoupling(d, e, cfg.hidden_dim)
        self.ggnn = GGNN(d, steps=3)
        self.fc_o = nn.Linear(2 * d, d)
        # graph-based classifier learning
        self.classifier_init = nn.Linear(e, d)
        self.classifier_ggnn = GGNN(d, steps=3)
        self.fc_w = nn.Linear(2 * d, d)
        self.bias = nn.Parameter(torch.zeros(c))
        self.normalize = cfg.bce_normalize

    def classifiers(self) -> Tensor:
        """Per-class classifiers (C, D): initial weights propagated over the label graph."""
        w0 = self.classifier_init(self.embeddings)  # (C, D)
        g = self.classifier_ggnn(w0, self.adjacency)  # (C, D)
        return self.fc_w(torch.cat([g, w0], dim=-1))  # (C, D)

    def forward(self, fmap: Tensor) -> Tensor:
        x = self.csrl(self.neck(fmap), self.embeddings)  # (B, C, D)
        h = self.ggnn(x, self.adjacency)  # (B, C, D)
        o = torch.tanh(self.fc_o(torch.cat([h, x], dim=-1)))  # (B, C, D)
        w = self.classifiers()  # (C, D)
        return torch.einsum("bcd,cd->bc", o, w) + self.bias  # (B, C)

    def loss(self, fmap: Tensor, targets: Tensor, epoch: int) -> tuple[Tensor, Terms]:
        bce = partial_bce(self.forward(fmap), targets, self.normalize)
        return bce, {"bce": bce.detach()}


__all__ = ["GCNML", "KGGR", "GCNClassifier", "mlgcn_adjacency"]
