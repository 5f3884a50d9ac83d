"""The dataset registry: ``--dataset NAME`` reads a dataset's splits with complete labels.

A reader returns the training split (full labels, in the dataset's canonical order), the
validation split if the dataset has one, and the test split. The engine then hides training
labels (SPEC §2) and, without a validation split, carves one from the training split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sarb.data.dataset import LabelledImages
from sarb.data.manifest import read_manifest
from sarb.errors import SarbError


@dataclass
class Source:
    name: str
    train: LabelledImages
    val: LabelledImages | None
    test: LabelledImages


Reader = Callable[[Any], Source]  # TrainConfig -> Source
_DATASETS: dict[str, Reader] = {}


def register_dataset(name: str) -> Callable[[Reader], Reader]:
    """Decorator adding a reader under ``--dataset name``."""

    def wrap(reader: Reader) -> Reader:
        _DATASETS[name] = reader
        return reader

    return wrap


def list_datasets() -> list[str]:
    return list(_DATASETS)


def read_dataset(cfg: Any) -> Source:
    """The splits of ``cfg.dataset``; a one-line error for an unknown name."""
    if cfg.dataset not in _DATASETS:
        raise SarbError(f"--dataset {cfg.dataset!r}: choose from {', '.join(_DATASETS)}")
    return _DATASETS[cfg.dataset](cfg)


@register_dataset("demo")
def _demo(cfg: Any) -> Source:
    from sarb.data.demo import ensure_demo

    root = ensure_demo(cfg.cache_dir)
    train = read_manifest(root / "train.csv")
    val = read_manifest(root / "val.csv", train.class_names)
    return Source("demo", train, val, read_manifest(root / "test.csv", train.class_names))


@register_dataset("manifest")
def _manifest(cfg: Any) -> Source:
    if not (cfg.train and cfg.test):
        raise SarbError("--dataset manifest needs --train and --test manifests")
    train = read_manifest(cfg.train)
    val = read_manifest(cfg.val, train.class_names) if cfg.val else None
    return Source(Path(cfg.train).stem, train, val, read_manifest(cfg.test, train.class_names))
