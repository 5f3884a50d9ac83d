"""The dataset registry: ``--dataset NAME`` reads a dataset's splits with complete labels.

A reader returns the training split (full labels, in the dataset's canonical order), the
validation split if the dataset has one, and the test split. The engine then hides training
labels (SPEC §2) and, without a validation split, carves one from the training split.

Registered: ``demo``, ``manifest``, and the paper's datasets ``coco2014``, ``coco`` (any
COCO-format file), ``voc2007`` and ``vg200`` (readers in coco.py, voc.py and vg.py).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sarb.data.csvio import read_bytes
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


# --------------------------------------------------------------------------------------------
# Helpers shared by the paper-dataset readers (coco.py, voc.py, vg.py)
# --------------------------------------------------------------------------------------------


def require_images(images: Sequence[Path], listed_in: str) -> None:
    """Raise a one-line SarbError naming the first image file of ``images`` that does not exist.

    Each folder is listed once (one ``scandir`` instead of a ``stat`` per file), so checking
    COCO's 123,287 images takes a fraction of a second. ``listed_in`` names the file that
    lists the images, for the message.
    """
    listing: dict[Path, set[str] | None] = {}
    for path in images:
        folder = path.parent
        if folder not in listing:
            try:
                with os.scandir(folder) as entries:
                    listing[folder] = {e.name for e in entries}
            except FileNotFoundError:
                raise SarbError(
                    f"{path}: image file not found (its folder {folder} does not exist;"
                    f" listed in {listed_in})"
                ) from None
            except OSError:
                listing[folder] = None  # unlistable: fall back to one stat per file
        names = listing[folder]
        if not (path.name in names if names is not None else path.is_file()):
            raise SarbError(f"{path}: image file not found (listed in {listed_in})")


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The folder of sarb's caches: ``cache_dir``, else ``$SARB_CACHE_DIR``, else the user cache."""
    from sarb.data.demo import demo_root

    return demo_root(cache_dir).parent


# --------------------------------------------------------------------------------------------
# The paper's datasets (SPEC §3); the modules are imported only when a reader runs
# --------------------------------------------------------------------------------------------


@register_dataset("coco2014")
def _coco2014(cfg: Any) -> Source:
    from sarb.data.coco import coco2014_source

    return coco2014_source(cfg)


@register_dataset("coco")
def _coco(cfg: Any) -> Source:
    from sarb.data.coco import coco_source

    return coco_source(cfg)


@register_dataset("voc2007")
def _voc2007(cfg: Any) -> Source:
    from sarb.data.voc import voc2007_source

    return voc2007_source(cfg)


@register_dataset("vg200")
def _vg200(cfg: Any) -> Source:
    from sarb.data.vg import vg200_source

    return vg200_source(cfg)


def read_json(path: Path, what: str) -> Any:
    """A JSON file (COCO instances, VG objects); one-line SarbError naming it if unusable."""
    data = read_bytes(path, what)
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise SarbError(
            f"{path}: invalid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})"
        ) from None
    except UnicodeDecodeError:
        raise SarbError(f"{path}: not UTF-8 JSON text") from None
    except RecursionError:
        raise SarbError(f"{path}: JSON nested too deeply") from None
