"""Heads: feature map (B, D_in, h, w) -> logits (B, C), in two stages.

``features(fmap)`` gives the representation that augmentations act on, and ``classify(z)``
turns it into logits, so that ``head(fmap) == head.classify(head.features(fmap))``. A head whose
``features`` are category-specific, (B, C, D) (``category_specific = True``), is what SARB's
blendings and contrastive loss need.

- ``linear``: global average pooling + one linear layer (the plain baselines).
- ``csrl``: neck -> CSRL (SD or SAM) -> GGNN over the label graph -> SSGRL's classifier
  (SSGRL, Chen et al., ICCV 2019; SARB's model, Pu et al., AAAI 2022).
- ``gcn``: ML-GCN (Chen et al., CVPR 2019): max-pooled neck features x classifiers from a GCN.
- ``kggr``: KGGR (Chen et al., TPAMI 2021), re-implemented: SSGRL's features x classifiers
  propagated by a second GGNN.

Every head is built as ``HEADS.create(name, cfg, in_channels, info)``; ``info`` is a
:class:`~sarb.models.factory.DataInfo` (classes, embeddings, training labels for the graph).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from sarb.models.csrl import Neck, SemanticAttention, SemanticDecoupling
from sarb.models.embeddings import ClassEmbeddings
from sarb.models.gcn import GCNClassifier, mlgcn_adjacency
from sarb.models.ggnn import GGNN, adjacency_from_labels
from sarb.registry import Registry

HEADS: Registry[nn.Module] = Registry("head", "--head")


class Head(nn.Module):
    """Two stages: ``features`` (the representation) then ``classify`` (logits (B', C))."""

    category_specific = False  #: ``features`` is (B, C, D), one vector per class
    uses_embeddings = False  #: the head holds class embeddings (``self.embeddings``)

    def features(self, fmap: Tensor) -> Tensor:
        raise NotImplementedError

    def classify(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, fmap: Tensor) -> Tensor:
        return self.classify(self.features(fmap))


def _label_graph(info: Any, build: Any) -> Tensor:
    """``build(train labels)`` (C, C), or zeros to be filled by a checkpoint's state dict."""
    if info.train_labels is None:
        return torch.zeros(info.num_classes, info.num_classes)
    return build(info.train_labels)


def prior_logits(labels: Tensor | np.ndarray) -> Tensor:
    """Log-odds (C,) of each class's share of positives among its known labels, from partial
    labels (N, C) in {1, -1, 0}, smoothed by one positive and one negative (a class with no
    known label gets 0).

    A class bias started there makes the untrained head predict each class's base rate (Lin et
    al., ICCV 2017, do the same for rare objects). Started at 0 instead, every sigmoid begins at
    0.5 while only a few percent of the known labels are positive: Adam moves a bias by about
    the learning rate per step, so for hundreds of steps the negatives' gradient pushes the
    per-class classifier weights and the attention away from their class instead, and rare
    classes can stay unlearned for the whole run (on glyphs, SSGRL lost whole symbols this way).
    """
    lab = torch.as_tensor(labels)
    pos = (lab == 1).sum(0).double()  # (C,)
    known = (lab != 0).sum(0).double()  # (C,)
    return torch.log((pos + 1) / (known - pos + 1)).float()  # log(p / (1-p)), p = (pos+1)/(known+2)


def _embeddings(cfg: Any, info: Any) -> ClassEmbeddings:
    """The head's class embeddings: ``info``'s fixed vectors (standardised unless
    ``--class-embedding-norm none``) or learned ones."""
    standardise = cfg.class_embedding_norm == "standardise"
    return ClassEmbeddings(info.num_classes, info.class_embeddings, standardise)


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


class SSGRLClassifier(nn.Module):
    """SSGRL's output: ``o_c = tanh(Linear([h_c ; x_c]))`` then a per-class linear classifier.

    ``h`` are the GGNN outputs and ``x`` the CSRL features it started from, both (B, C, D); the
    ``Linear(2*feat_dim, out_dim)`` is shared by all classes. The authors' code has
    ``out_dim = feat_dim``. Returns logits (B, C).
    """

    def __init__(self, num_classes: int, feat_dim: int, out_dim: int):
        super().__init__()
        self.fc = nn.Linear(2 * feat_dim, out_dim)
        self.per_class = PerClassLinear(num_classes, out_dim)

    def forward(self, h: Tensor, x: Tensor) -> Tensor:
        """GGNN output (B, C, D) and CSRL features (B, C, D) -> logits (B, C)."""
        o = torch.tanh(self.fc(torch.cat([h, x], dim=-1)))  # (B, C, out_dim)
        return self.per_class(o)


@HEADS.register("linear", summary="pooled features + linear")
class LinearHead(Head):
    """Global average pooling of the feature map, then a linear layer to C logits."""

    def __init__(self, cfg: Any, in_channels: int, info: Any):
        super().__init__()
        self.fc = nn.Linear(in_channels, info.num_classes)

    def features(self, fmap: Tensor) -> Tensor:
        return fmap.mean(dim=(2, 3))  # (B, D, H, W) -> (B, D)

    def classify(self, z: Tensor) -> Tensor:
        return self.fc(z)  # (B, D) -> (B, C)


@HEADS.register("csrl", summary="neck + CSRL (SD or SAM) + GGNN + SSGRL classifier")
class CSRLHead(Head):
    """Neck -> CSRL (``--attention sd|sam``) -> GGNN over the label graph -> SSGRL classifier.

    ``features`` are the CSRL features (B, C, D); ``classify`` runs GGNN + classifier on them.
    The label graph is ``A[i, j] = P(j | i)`` of the known positives of the training labels;
    the class biases start at the class prior (``--bias-init``, see :func:`prior_logits`).
    """

    category_specific = True
    uses_embeddings = True

    def __init__(self, cfg: Any, in_channels: int, info: Any):
        super().__init__()
        c, d = info.num_classes, cfg.feat_dim
        self.neck = Neck(in_channels, d, cfg.neck_pool)
        self.embeddings = _embeddings(cfg, info)
        if cfg.attention == "sam":
            self.csrl = SemanticAttention(d, c)
        else:
            self.csrl = SemanticDecoupling(d, self.embeddings.dim, cfg.hidden_dim)
        self.register_buffer("adjacency", _label_graph(info, adjacency_from_labels))  # (C, C)
        self.ggnn = GGNN(d, steps=3)
        self.classifier = SSGRLClassifier(c, d, cfg.classifier_dim or d)
        if cfg.bias_init == "prior" and info.train_labels is not None:  # else a checkpoint's
            with torch.no_grad():  # state dict provides the biases
                self.classifier.per_class.bias.copy_(prior_logits(info.train_labels))

    def features(self, fmap: Tensor) -> Tensor:
        """CSRL features (B, C, D) of a backbone feature map (B, D_in, H, W)."""
        return self.csrl(self.neck(fmap), self.embeddings())

    def classify(self, z: Tensor) -> Tensor:
        """GGNN + classifier: CSRL features (B', C, D) -> logits (B', C)."""
        return self.classifier(self.ggnn(z, self.adjacency), z)


@HEADS.register("gcn", summary="max-pooled features x classifiers from a GCN (ML-GCN)")
class GCNHead(Head):
    """ML-GCN (Chen et al., CVPR 2019) on partial labels: ``logits = maxpool(neck(fmap)) @ W^T``.

    ``W`` (C, D) = :class:`~sarb.models.gcn.GCNClassifier` over the class embeddings and
    :func:`~sarb.models.gcn.mlgcn_adjacency`. Differences from ML-GCN, ours: the SARB neck (1x1
    conv + BN to ``feat_dim``) precedes the global max pooling so that every head sees the same
    feature size; the GCN's hidden size is ``feat_dim / 2`` (ML-GCN: 1024 for 2048-d features);
    the graph counts known positives only.
    """

    uses_embeddings = True

    def __init__(self, cfg: Any, in_channels: int, info: Any):
        super().__init__()
        d = cfg.feat_dim
        self.neck = Neck(in_channels, d, cfg.neck_pool)
        self.embeddings = _embeddings(cfg, info)
        self.register_buffer("adjacency", _label_graph(info, mlgcn_adjacency))  # (C, C)
        self.gcn = GCNClassifier(self.embeddings.dim, max(d // 2, 1), d)

    def classifiers(self) -> Tensor:
        """Per-class classifier weights (C, D) produced by the GCN."""
        return self.gcn(self.embeddings(), self.adjacency)

    def features(self, fmap: Tensor) -> Tensor:
        return self.neck(fmap).amax(dim=(2, 3))  # (B, D) global max pooling, as ML-GCN

    def classify(self, z: Tensor) -> Tensor:
        return z @ self.classifiers().T  # (B, C)


@HEADS.register("kggr", summary="SD + GGNN features x classifiers propagated by a second GGNN")
class KGGRHead(Head):
    """KGGR (Chen et al., TPAMI 2021): graph feature propagation + graph classifier learning.

    Re-implemented from the paper's description (no reference code was used):

    - graph-based feature propagation, as SSGRL: semantic decoupling (SD) of the neck's feature
      map into class features ``x_c`` (B, C, D), a GGNN over the statistical label graph
      (``A[i, j] = P(j | i)`` of the known positives) giving ``h_c``, and
      ``o_c = tanh(W_o [h_c ; x_c])``;
    - graph-based classifier learning: every graph node is initialised with a classifier
      ``w0_c`` and a second GGNN over the same graph propagates them, so that correlated labels
      share classifier information; the score is ``logits_c = <w_c, o_c> + b_c``.

    Our choices (the description leaves them open): ``w0_c`` is a linear projection of the class
    embedding (with learned embeddings it is a free per-class vector, i.e. a learned classifier
    initialisation; with word vectors the classifiers start from label semantics); the final
    classifier is ``w_c = W_w [g_c ; w0_c]`` with ``g_c`` the classifier GGNN's output (the same
    read-out as the feature branch, without tanh so that classifier weights are unbounded);
    ``o_c`` has ``feat_dim`` channels (as the csrl head) so that both GGNNs have the
    same size; the bias starts at 0 (the class prior of the csrl head, ``--bias-init prior``,
    was worse here on the glyphs validation split). ``features`` are the SD features (B, C, D).
    """

    category_specific = True
    uses_embeddings = True

    def __init__(self, cfg: Any, in_channels: int, info: Any):
        super().__init__()
        c, d = info.num_classes, cfg.feat_dim
        self.neck = Neck(in_channels, d, cfg.neck_pool)
        self.embeddings = _embeddings(cfg, info)
        e = self.embeddings.dim
        self.register_buffer("adjacency", _label_graph(info, adjacency_from_labels))  # (C, C)
        # graph-based feature propagation
        self.csrl = SemanticDecoupling(d, e, cfg.hidden_dim)
        self.ggnn = GGNN(d, steps=3)
        self.fc_o = nn.Linear(2 * d, d)
        # graph-based classifier learning
        self.classifier_init = nn.Linear(e, d)
        self.classifier_ggnn = GGNN(d, steps=3)
        self.fc_w = nn.Linear(2 * d, d)
        self.bias = nn.Parameter(torch.zeros(c))

    def classifiers(self) -> Tensor:
        """Per-class classifiers (C, D): initial weights propagated over the label graph."""
        w0 = self.classifier_init(self.embeddings())  # (C, D)
        g = self.classifier_ggnn(w0, self.adjacency)  # (C, D)
        return self.fc_w(torch.cat([g, w0], dim=-1))  # (C, D)

    def features(self, fmap: Tensor) -> Tensor:
        return self.csrl(self.neck(fmap), self.embeddings())  # (B, C, D)

    def classify(self, z: Tensor) -> Tensor:
        h = self.ggnn(z, self.adjacency)  # (B, C, D)
        o = torch.tanh(self.fc_o(torch.cat([h, z], dim=-1)))  # (B, C, D)
        return torch.einsum("bcd,cd->bc", o, self.classifiers()) + self.bias  # (B, C)


__all__ = [
    "HEADS", "CSRLHead", "GCNHead", "Head", "KGGRHead", "LinearHead", "SSGRLClassifier",
    "prior_logits",
]  # fmt: skip
