"""Train and test transforms of the paper, with the image size configurable.

See docs/method.md#training-recipe.

The paper trains at 448: resize to 512x512, random crop of a side drawn from
{512, 448, 384, 320, 256}, resize to 448x448, random horizontal flip, ImageNet normalisation;
at test time it resizes to 448x448. For another ``image_size`` every side scales by
``image_size / 448`` (the demo uses small images).
"""

from __future__ import annotations

import random

import torch
from PIL import Image
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PAPER_SIZE = 448
PAPER_RESIZE = 512
PAPER_CROPS = (512, 448, 384, 320, 256)


class RandomChoiceCrop(torch.nn.Module):
    """Random square crop whose side is drawn uniformly from ``sizes``."""

    def __init__(self, sizes: tuple[int, ...]):
        super().__init__()
        self.sizes = sizes

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        side = random.choice(self.sizes)
        return v2.RandomCrop(side)(img)


def _scaled(side: int, image_size: int) -> int:
    return max(1, round(side * image_size / PAPER_SIZE))


def _to_float_normalised() -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def train_transform(image_size: int = PAPER_SIZE) -> v2.Compose:
    """Augmenting transform for training: a uint8 (3, H, W) tensor (or PIL image) in, a
    normalised (3, S, S) float tensor out. Every geometric step runs on uint8 (torchvision's
    fast resize kernels); the conversion to float comes last."""
    resize = _scaled(PAPER_RESIZE, image_size)
    crops = tuple(_scaled(s, image_size) for s in PAPER_CROPS)
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize((resize, resize), antialias=True),
            RandomChoiceCrop(crops),
            v2.Resize((image_size, image_size), antialias=True),
            v2.RandomHorizontalFlip(),
            *_to_float_normalised(),
        ]
    )


def test_transform(image_size: int = PAPER_SIZE) -> v2.Compose:
    """Deterministic transform for evaluation, prediction and feature caching."""
    return v2.Compose(
        [v2.ToImage(), v2.Resize((image_size, image_size), antialias=True), *_to_float_normalised()]
    )


def preprocess(images: list[Image.Image | torch.Tensor], image_size: int) -> torch.Tensor:
    """A batch (B, 3, S, S) from PIL images or uint8 (3, H, W) tensors, with the test transform."""
    tf = test_transform(image_size)
    return torch.stack([tf(img if torch.is_tensor(img) else img.convert("RGB")) for img in images])
