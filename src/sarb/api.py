"""The Python API: what ``sarb train / eval / predict`` do, for notebooks and services.

    from sarb.api import load_model, train

    metrics = train({"dataset": "manifest", "train": "train.csv", "test": "test.csv"})
    predictor = load_model("runs/my-run")          # a run directory (its best.pt) or a .pt file
    probs = predictor.predict(["a.jpg", "b.jpg"])  # (N, C) probabilities
    labels = predictor.predict_labels(["a.jpg"])   # [["cat", "dog"]]

A checkpoint holds the model's state dict, the TrainConfig it was trained with and the class
names; :func:`load_model` rebuilds the network from them without touching the training data,
the ImageNet weights or the class-embedding source (everything is in the state dict).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from sarb.checkpoint import load_checkpoint
from sarb.config import TrainConfig, load_yaml, resolve_config, typed_config
from sarb.data.dataset import LabelledImages, read_image
from sarb.data.loaders import make_loader
from sarb.data.transforms import preprocess
from sarb.engine import evaluate, fit, predict_scores
from sarb.errors import SarbError, quote
from sarb.methods import check_parts
from sarb.models.factory import DataInfo, build_model
from sarb.models.multilabel import MultiLabelModel
from sarb.runs import RunDir
from sarb.runtime import amp_enabled, pick_device

ImageInput = Image.Image | str | os.PathLike
"""One image for :meth:`Predictor.predict`: a PIL image or the path of an image file."""

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
)
"""File extensions that :func:`find_images` takes for images when it walks a directory."""


# --------------------------------------------------------------------------------------------
# Loading a checkpoint
# --------------------------------------------------------------------------------------------


def _checkpoint_config(payload: Mapping[str, Any], origin: str) -> TrainConfig:
    raw = payload["config"]
    if not isinstance(raw, Mapping):
        raise SarbError(f"{origin}: not a sarb checkpoint (its config is not a mapping)")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(str(k) for k in raw if k not in known)
    if unknown:
        raise SarbError(
            f"{origin}: the checkpoint's config has unknown keys"
            f" {', '.join(quote(k) for k in unknown[:5])}"
            " (written by another version of sarb?)"
        )
    try:  # validated as the flags are: an untrusted file may hold any value
        cfg = typed_config(raw)
        check_parts(cfg)
        return cfg
    except SarbError as exc:
        raise SarbError(f"{origin}: the checkpoint's config: {exc}") from None


def _checkpoint_classes(payload: Mapping[str, Any], origin: str) -> list[str]:
    names = payload.get("class_names")
    if (
        not isinstance(names, list | tuple)
        or not names
        or not all(isinstance(n, str) for n in names)
    ):
        raise SarbError(f"{origin}: not a sarb checkpoint (no list of class names inside)")
    if len(set(names)) != len(names):
        twice = next(n for i, n in enumerate(names) if n in names[:i])
        raise SarbError(f"{origin}: the checkpoint names class {quote(twice)} twice")
    return list(names)


def rebuild_model(payload: Mapping[str, Any], origin: str = "checkpoint") -> MultiLabelModel:
    """The network of a checkpoint payload (as :func:`sarb.checkpoint.load_checkpoint` reads it),
    on the CPU, in eval mode, with every weight and buffer of the state dict loaded strictly.

    Built by the training's own :func:`~sarb.models.factory.build_model`, independently of the
    machine and of the training data: the backbone starts from random weights (no ImageNet file
    is looked for), fixed class embeddings (the checkpoint records whether they were ``fixed``
    or ``learned``) are taken from the state dict instead of their source, and the label graph
    comes from the state dict. ``origin`` names the checkpoint in errors.
    """
    cfg = dataclasses.replace(_checkpoint_config(payload, origin), weights="random")
    class_names = _checkpoint_classes(payload, origin)
    state = payload["model"]
    vectors = None
    if payload.get("class_embeddings") == "fixed":
        stored = state.get("head.embeddings.weight")
        if not torch.is_tensor(stored) or stored.dim() != 2:
            raise SarbError(f"{origin}: the checkpoint has no class embeddings for its {cfg.head}"
                            " head")  # fmt: skip
        vectors = stored.detach().to("cpu", torch.float32).numpy().copy()
    try:
        model = build_model(cfg, DataInfo(class_names, vectors))
    except SarbError as exc:
        raise SarbError(f"{origin}: {exc}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:300]
        raise SarbError(
            f"{origin}: the weights do not fit the {cfg.method} / {cfg.backbone} model of its"
            f" config ({first})"
        ) from None
    return model.eval()


def load_model(checkpoint: str | os.PathLike, device: str = "auto") -> Predictor:
    """A :class:`Predictor` for ``checkpoint``: a ``.pt`` file or a run directory (its
    ``best.pt``). ``device``: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
    A file that is not a sarb checkpoint is a SarbError naming it."""
    path = Path(checkpoint)
    if path.is_dir():
        path = RunDir(path) / RunDir.BEST
    payload = load_checkpoint(path, map_location="cpu")
    model = rebuild_model(payload, str(path))
    dev = pick_device(device)
    return Predictor(
        model.to(dev),
        _checkpoint_classes(payload, str(path)),
        _checkpoint_config(payload, str(path)),
        dev,
        checkpoint=path,
    )


# --------------------------------------------------------------------------------------------
# Prediction
# --------------------------------------------------------------------------------------------


class ImagePredictor:
    """Class probabilities of images: what :class:`Predictor` (a PyTorch checkpoint) and
    :class:`sarb.deploy.OnnxPredictor` (an exported ONNX model) share.

    Attributes: ``class_names`` (column order of every score matrix) and ``image_size`` (side
    in pixels of the square inputs). A subclass computes :meth:`_scores` of a preprocessed batch;
    decoding, the test transform and batching are done here, identically for both.
    """

    class_names: list[str]
    image_size: int

    def _scores(self, batch: torch.Tensor) -> torch.Tensor:
        """Probabilities (B, C) of a batch (B, 3, S, S) preprocessed with the test transform."""
        raise NotImplementedError

    def predict(
        self, images: Sequence[ImageInput] | torch.Tensor, batch_size: int = 32
    ) -> np.ndarray:
        """Probabilities (N, C) float32, one column per class of ``class_names``.

        ``images``: PIL images and/or image paths (resized to ``image_size`` and normalised with
        the test transform), or a tensor (N, 3, S, S) that is already preprocessed that way.
        An unreadable path is a SarbError naming it; see :meth:`predict_paths` to skip those.
        """
        if batch_size < 1:
            raise SarbError(f"batch size must be >= 1, got {batch_size}")
        if torch.is_tensor(images):
            if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
                raise SarbError(
                    "a tensor input must be a preprocessed float batch (N, 3, S, S), got"
                    f" {images.dtype} {tuple(images.shape)}; pass PIL images or paths instead"
                )
            chunks = [
                self._scores(images[i : i + batch_size]) for i in range(0, len(images), batch_size)
            ]
        else:
            items = list(images)
            chunks = []
            for i in range(0, len(items), batch_size):
                decoded = [
                    x if isinstance(x, Image.Image) else read_image(Path(x))
                    for x in items[i : i + batch_size]
                ]
                chunks.append(self._scores(preprocess(decoded, self.image_size)))
        if not chunks:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return torch.cat(chunks).numpy()

    def predict_labels(
        self,
        images: Sequence[ImageInput] | torch.Tensor,
        threshold: float = 0.5,
        batch_size: int = 32,
    ) -> list[list[str]]:
        """Per image, the names of the classes whose probability is >= ``threshold``
        (the rule of the OP/OR/CP/CR metrics)."""
        return self.labels_of(self.predict(images, batch_size), threshold)

    def labels_of(self, scores: np.ndarray, threshold: float = 0.5) -> list[list[str]]:
        """Class names over ``threshold`` for each row of a score matrix from :meth:`predict`."""
        return [[self.class_names[c] for c in np.flatnonzero(row >= threshold)] for row in scores]

    def predict_paths(
        self, paths: Sequence[str | os.PathLike], batch_size: int = 32, progress: bool = False
    ) -> tuple[list[Path], np.ndarray, list[tuple[Path, str]]]:
        """Like :meth:`predict` on image files, but an unreadable file is skipped, not fatal
        (``progress``: a progress bar when stderr is a terminal).

        Returns ``(predicted, scores, skipped)``: the paths that were read, in input order,
        their probabilities (len(predicted), C), and ``(path, reason)`` for each skipped file.
        Images are decoded one batch at a time, so a large folder does not fill the memory.
        """
        if batch_size < 1:
            raise SarbError(f"batch size must be >= 1, got {batch_size}")
        done: list[Path] = []
        skipped: list[tuple[Path, str]] = []
        chunks: list[torch.Tensor] = []
        pending: list[tuple[Path, torch.Tensor]] = []

        def flush() -> None:
            if pending:
                chunks.append(
                    self._scores(preprocess([img for _, img in pending], self.image_size))
                )
                done.extend(p for p, _ in pending)
                pending.clear()

        bar = progress and sys.stderr.isatty()
        for p in tqdm(list(map(Path, paths)), desc="predicting", unit="img", disable=not bar,
                      leave=False, file=sys.stderr):  # fmt: skip
            try:
                pending.append((p, read_image(p)))
            except SarbError as exc:
                skipped.append((p, str(exc)))
            if len(pending) == batch_size:
                flush()
        flush()
        scores = (
            torch.cat(chunks).numpy()
            if chunks
            else np.zeros((0, len(self.class_names)), np.float32)
        )
        return done, scores, skipped


class Predictor(ImagePredictor):
    """A trained model ready for inference: probabilities, label names and metrics.

    Attributes: ``model`` (the :class:`MultiLabelModel`, in eval mode on ``device``),
    ``class_names`` (column order of every score matrix), ``config`` (the TrainConfig it was
    trained with; ``config.image_size`` is the input side), ``device`` and ``checkpoint``.
    Scores are computed as the engine computes them during training (bf16 autocast if the run
    used ``--amp``), so :meth:`evaluate` reproduces the run's ``metrics.json``.
    """

    def __init__(
        self,
        model: MultiLabelModel,
        class_names: Sequence[str],
        config: TrainConfig,
        device: torch.device | str = "cpu",
        checkpoint: Path | None = None,
    ):
        self.model = model.eval()
        self.class_names = list(class_names)
        self.device = torch.device(device)
        self.config = dataclasses.replace(config, amp=amp_enabled(config.amp, self.device))
        self.checkpoint = checkpoint

    def __repr__(self) -> str:
        return (
            f"Predictor(method={self.config.method!r}, backbone={self.config.backbone!r},"
            f" classes={len(self.class_names)}, device={str(self.device)!r})"
        )

    @property
    def image_size(self) -> int:
        """Side in pixels of the square inputs the model was trained on."""
        return self.config.image_size

    def _scores(self, batch: torch.Tensor) -> torch.Tensor:
        """Probabilities (B, C) of a preprocessed batch, computed as the engine computes them."""
        scores = predict_scores(self.model, [(batch, None, None)], self.device, self.config.amp)
        return torch.from_numpy(scores)

    def evaluate(
        self,
        data: LabelledImages | str | os.PathLike,
        ap: str = "voc",
        threshold: float = 0.5,
        batch_size: int | None = None,
        workers: int = 0,
    ) -> dict[str, Any]:
        """The metrics (mAP, OP/OR/OF1, CP/CR/CF1, top-3, AP per class; unknown labels
        ignored) of the model on ``data``.

        ``data``: labelled images, or the path of a manifest (.csv / .jsonl); it must have the
        checkpoint's classes (any order: its columns are matched by name). The images go
        through the test transform in batches of ``batch_size`` (default: the training batch
        size), exactly as the engine computed the run's ``metrics.json``.
        """
        if not isinstance(data, LabelledImages):  # a manifest file
            from sarb.data.manifest import read_manifest

            data = read_manifest(data)
        data = self._aligned(data)
        bs = self.config.batch_size if batch_size is None else batch_size
        if bs < 1:
            raise SarbError(f"batch size must be >= 1, got {bs}")
        cfg = dataclasses.replace(self.config, batch_size=bs, workers=workers, ap=ap)
        loader = make_loader(data, cfg, train=False, pin_memory=self.device.type == "cuda")
        return evaluate(self.model, loader, data.labels, cfg, self.device, threshold)

    def _aligned(self, data: LabelledImages) -> LabelledImages:
        if list(data.class_names) == self.class_names:
            return data
        if sorted(data.class_names) != sorted(self.class_names):
            extra = [n for n in data.class_names if n not in self.class_names]
            missing = [n for n in self.class_names if n not in data.class_names]
            parts = [
                f"unknown {extra[:5]}" if extra else "",
                f"missing {missing[:5]}" if missing else "",
            ]
            raise SarbError(
                f"{data.source or 'data'}: classes differ from the checkpoint's"
                f" ({'; '.join(p for p in parts if p)})"
            )
        order = [list(data.class_names).index(n) for n in self.class_names]
        return LabelledImages(
            list(data.images), data.labels[:, order], self.class_names, data.source
        )


def find_images(paths: Sequence[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """Image files of ``paths``: a file is taken as given; a directory contributes every file
    inside it, recursively, sorted, whose extension is in :data:`IMAGE_EXTENSIONS`.

    Returns ``(images, skipped)``, ``skipped`` being the directory entries with another
    extension; each file appears once. A path that does not exist is a SarbError.
    """
    images: list[Path] = []
    skipped: list[Path] = []
    seen: set[str] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: str(p))
        elif path.is_file():
            files = [path]
        else:
            raise SarbError(f"{path}: no such file or directory")
        for f in files:
            key = os.path.normcase(os.path.abspath(f))
            if key in seen:
                continue
            seen.add(key)
            if f is path or f.suffix.lower() in IMAGE_EXTENSIONS:
                images.append(f)
            else:
                skipped.append(f)
    return images, skipped


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def _config_of(config: TrainConfig | Mapping[str, Any] | str | os.PathLike) -> TrainConfig:
    if isinstance(config, TrainConfig):
        values = dataclasses.asdict(config)
    elif isinstance(config, Mapping):
        values = {}
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        for key, value in config.items():
            name = str(key).replace("-", "_")
            if name not in fields:
                raise SarbError(f"unknown config key {key!r}")
            values[name] = os.fspath(value) if isinstance(value, os.PathLike) else value
    elif isinstance(config, str | os.PathLike):
        values = load_yaml(config)
    else:
        raise SarbError(
            "a training config is a TrainConfig, a dict or a YAML path,"
            f" not {type(config).__name__}"
        )
    return resolve_config(None, **values)


def train(
    config: TrainConfig | Mapping[str, Any] | str | os.PathLike, quiet: bool = False
) -> dict[str, Any]:
    """Train as ``sarb train`` does and return the content of the run's ``metrics.json``.

    ``config``: a :class:`TrainConfig`, a dict of its fields (dashes or underscores; unset
    fields keep their defaults) or the path of a YAML file with those keys. The run directory
    is ``config.out`` (default ``runs/<time>-<method>``); :func:`load_model` reads it back.
    ``quiet`` hides the progress bars and the per-epoch lines on stderr.
    """
    return fit(_config_of(config), quiet=quiet)


__all__ = [
    "IMAGE_EXTENSIONS",
    "ImagePredictor",
    "Predictor",
    "find_images",
    "load_model",
    "rebuild_model",
    "train",
]
