"""What every method has in common: the interface the engine calls, and the registry."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from sarb.errors import SarbError

Terms = dict[str, torch.Tensor]
FeatureBatches = Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]


@dataclass
class MethodContext:
    """What a method may use to build itself: sizes, class embeddings, the training labels."""

    num_classes: int
    in_channels: int  # channels of the backbone's feature map
    class_names: list[str]
    embeddings: np.ndarray | None  # (C, E) or None: learn them
    train_labels: np.ndarray  # (N, C) partial labels of the training split, {1, -1, 0}
    config: object  # the TrainConfig; methods read the fields they need


class Method(nn.Module):
    """A head on the backbone feature map (B, D, H, W) -> logits (B, C), plus its loss."""

    #: True when the method must see the images themselves in ``mix_inputs`` (IP-Mixup): the
    #: engine then never replaces them by cached feature maps.
    needs_images: bool = False

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(
        self, fmap: torch.Tensor, targets: torch.Tensor, epoch: int
    ) -> tuple[torch.Tensor, Terms]:
        """Training loss of a batch; ``targets`` (B, C) in {1, -1, 0}. Returns (loss, terms)."""
        raise NotImplementedError

    def targets(self, index: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training targets of the dataset rows ``index`` (B,), given their labels (B, C).

        Called by the engine before ``loss`` on every training batch. The default returns the
        labels unchanged; curriculum labelling adds its pseudo-labels to the unknown entries.
        """
        return targets

    def mix_inputs(
        self, images: torch.Tensor, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training batch (B, 3, S, S) and targets (B, C) -> the batch the backbone sees.

        Called by the engine before the backbone on every training batch. The default is the
        identity; IP-Mixup mixes pairs of images and their label vectors here. With a feature
        cache the "images" would be cached feature maps, hence ``needs_images``.
        """
        return images, targets

    def on_epoch_start(self, epoch: int, train_batches: FeatureBatches) -> None:
        """Hook run before each training epoch (SARB refreshes its prototypes here).

        ``train_batches()`` iterates over the whole training split as (feature map, labels)
        batches computed in eval mode without gradients.
        """

    def logged_values(self) -> dict[str, float]:
        """Scalars worth logging once per epoch (e.g. SARB's blend weights a and b)."""
        return {}


@dataclass(frozen=True)
class MethodInfo:
    name: str
    reference: str
    summary: str
    build: Callable[[MethodContext], Method]


_REGISTRY: dict[str, MethodInfo] = {}


def register(name: str, reference: str, summary: str) -> Callable:
    """Decorator: ``@register("kggr", "Chen et al., TPAMI 2021", "...")`` on a Method class, or
    on a builder function, either called with the MethodContext."""

    def wrap(build: Callable[[MethodContext], Method]) -> Callable[[MethodContext], Method]:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} registered twice")
        _REGISTRY[name] = MethodInfo(name, reference, summary, build)
        return build

    return wrap


def list_methods() -> list[MethodInfo]:
    return list(_REGISTRY.values())


def create_method(name: str, ctx: MethodContext) -> Method:
    """Build the method ``name`` (see ``sarb methods``)."""
    if name not in _REGISTRY:
        raise SarbError(f"unknown method {name!r}; choose from {', '.join(_REGISTRY)}")
    return _REGISTRY[name].build(ctx)
