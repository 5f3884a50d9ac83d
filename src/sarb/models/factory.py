"""One model builder, for training, evaluation, prediction, the API and the benchmarks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sarb.data.embeddings import class_embeddings
from sarb.models.backbones import create_backbone
from sarb.models.heads import HEADS
from sarb.models.multilabel import MultiLabelModel


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know of its data.

    ``class_embeddings``: fixed class vectors (C, E), or None for learned ones.
    ``train_labels``: the partial training labels (N, C) in {1, -1, 0}, from which the label
    graphs are built; None when a checkpoint's state dict will provide them.
    """

    class_names: list[str]
    class_embeddings: np.ndarray | None = None
    train_labels: np.ndarray | None = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def embeddings_for(cfg: Any, class_names: Sequence[str]) -> np.ndarray | None:
    """The fixed class vectors ``cfg.embeddings`` names for ``class_names`` (None: learned);
    only read for heads that use class embeddings."""
    if not HEADS.get(cfg.head).build.uses_embeddings:
        return None
    return class_embeddings(list(class_names), cfg.embeddings)


def build_model(cfg: Any, info: DataInfo) -> MultiLabelModel:
    """The backbone of ``cfg`` (with ``cfg.weights``) and its ``cfg.head``."""
    backbone = create_backbone(cfg.backbone, cfg.weights, cfg.trainable)
    head = HEADS.create(cfg.head, cfg, backbone.out_channels, info)
    return MultiLabelModel(backbone, head)
