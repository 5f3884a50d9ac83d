"""One dataset abstraction: image paths, a label matrix in {1, -1, 0}, class names."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torchvision.transforms.v2.functional import pil_to_tensor

try:  # deprecated in torchvision 0.29 for TorchCodec, whose decoder has no EXIF rotation yet
    from torchvision.io import ImageReadMode, decode_jpeg
except ImportError:  # a torchvision without it: every image goes through Pillow
    decode_jpeg = None

from sarb.data.csvio import read_bytes
from sarb.errors import SarbError

POSITIVE, NEGATIVE, UNKNOWN = 1, -1, 0


@dataclass
class LabelledImages:
    """A split of a multi-label dataset.

    ``labels[n, c]`` is 1 (present), -1 (absent) or 0 (unknown) for image ``images[n]``.
    """

    images: list[Path]
    labels: np.ndarray  # (N, C) int8
    class_names: list[str]
    source: str = ""

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int8)
        n, c = self.labels.shape
        if n != len(self.images):
            raise SarbError(f"{self.source}: {len(self.images)} images but {n} label rows")
        if c != len(self.class_names):
            raise SarbError(f"{self.source}: {len(self.class_names)} classes but {c} label columns")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, index: Sequence[int] | np.ndarray) -> LabelledImages:
        """The rows ``index``, in that order."""
        index = np.asarray(index, dtype=np.int64)
        return LabelledImages(
            [self.images[i] for i in index], self.labels[index], list(self.class_names), self.source
        )

    def with_labels(self, labels: np.ndarray) -> LabelledImages:
        """The same images with another label matrix (e.g. a partial-label mask)."""
        return LabelledImages(list(self.images), labels, list(self.class_names), self.source)


def split_train_val(
    data: LabelledImages, val_fraction: float, seed: int
) -> tuple[LabelledImages, LabelledImages]:
    """A seeded random split of ``data`` into (train, val); train keeps the dataset order."""
    if not 0.0 < val_fraction < 1.0:
        raise SarbError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    n_val = max(1, round(len(data) * val_fraction))
    if n_val >= len(data):
        raise SarbError(
            f"{data.source}: {len(data)} images are too few to carve a validation split"
        )
    perm = np.random.default_rng(seed).permutation(len(data))
    val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    return data.subset(train_idx), data.subset(val_idx)


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit RGB: EXIF rotation applied, alpha composited on white,
    16-bit and 32-bit greyscale scaled to 8 bits (``convert`` alone would clip them)."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_rgb(path: Path) -> Image.Image:
    """Open an image as RGB (see :func:`to_rgb`), or raise a one-line error naming the file."""
    try:
        with Image.open(path) as img:
            img.load()
            return to_rgb(img)
    except FileNotFoundError:
        raise SarbError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise SarbError(f"{path}: cannot read image ({exc})") from None


JPEG_MAGIC = b"\xff\xd8\xff"


def read_image(path: Path) -> torch.Tensor:
    """An image file as a uint8 RGB tensor (3, H, W), the input of the v2 transforms.

    JPEGs (most photo datasets) are decoded by ``torchvision.io.decode_jpeg`` straight into a
    tensor, with the EXIF rotation applied (the same pixels as Pillow's decoder). Every other
    file, and a JPEG libjpeg refuses, goes through :func:`load_rgb` (Pillow), which handles
    16-bit, alpha and palette images and names the file in its error.
    """
    data = read_bytes(path, "image file")
    if decode_jpeg is not None and data.startswith(JPEG_MAGIC):
        try:  # the header only: Pillow's decompression-bomb limit, as load_rgb applies it
            Image.open(io.BytesIO(data)).close()
        except Image.DecompressionBombError as exc:
            raise SarbError(f"{path}: cannot read image ({exc})") from None
        except (UnidentifiedImageError, OSError, ValueError):  # decode_jpeg or Pillow will say
            pass
        try:
            encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            with warnings.catch_warnings(), _libjpeg_warnings(path):  # (deprecation notice)
                warnings.simplefilter("ignore", DeprecationWarning)
                return decode_jpeg(encoded, mode=ImageReadMode.RGB, apply_exif_orientation=True)
        except RuntimeError:  # truncated or unusual: Pillow decodes it or says why it cannot
            pass
    return pil_to_tensor(load_rgb(path))


_stderr_pipe: tuple[int, int] | None = None
"""This process's pipe that libjpeg's messages are caught in (made on first use)."""


@contextlib.contextmanager
def _libjpeg_warnings(path: Path) -> Iterator[None]:
    """libjpeg prints its warnings (``Corrupt JPEG data: premature end of data segment``: the
    image decodes, partly grey) on the C stderr without a file name; they are caught here and
    printed again as ``sarb: warning: <path>: ...``."""
    global _stderr_pipe
    if _stderr_pipe is None:
        _stderr_pipe = os.pipe()
        for fd in _stderr_pipe:  # a full pipe drops messages instead of stopping the decoder
            os.set_blocking(fd, False)
    saved = os.dup(2)
    os.dup2(_stderr_pipe[1], 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        try:
            caught = os.read(_stderr_pipe[0], 65536).decode("utf-8", "replace")
        except BlockingIOError:  # nothing was printed: the usual case
            caught = ""
        for line in caught.splitlines():
            print(f"sarb: warning: {path}: {line}", file=sys.stderr)


def drop_unreadable(data: LabelledImages) -> tuple[LabelledImages, list[Path]]:
    """The images of ``data`` that decode (each is decoded once), and the paths that do not."""
    good, bad = [], []
    for i, path in enumerate(data.images):
        try:
            read_image(path)
            good.append(i)
        except SarbError:
            bad.append(path)
    return (data.subset(good) if bad else data), bad


class ImageDataset(torch.utils.data.Dataset):
    """Yields ``(image, labels, index)``: a transformed image, its (C,) float labels, its row.

    ``transform`` receives the uint8 (3, H, W) tensor of :func:`read_image`."""

    def __init__(self, data: LabelledImages, transform: Callable[[torch.Tensor], torch.Tensor]):
        self.data = data
        self.transform = transform
        self.labels = torch.from_numpy(data.labels.astype(np.float32))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        return self.transform(read_image(self.data.images[i])), self.labels[i], i
