"""The dataset registry: ``--dataset NAME`` reads a dataset's splits with complete labels.

A reader returns the training split (full labels, in the dataset's canonical order), the
validation split if the dataset has one, and the test split; ``sarb.data.splits`` then hides
training labels and, without a validation split, carves one from the training split.

Each reader registers itself where it is defined: ``demo`` (demo.py), ``manifest``
(manifest.py), and the paper's datasets ``coco2014`` and ``coco`` (any COCO-format file,
coco.py), ``voc2007`` (voc.py) and ``vg200`` (vg.py). Importing ``sarb.data`` imports them all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sarb.data.csvio import read_bytes
from sarb.data.dataset import LabelledImages
from sarb.errors import SarbError
from sarb.registry import Registry


@dataclass
class Source:
    name: str
    train: LabelledImages
    val: LabelledImages | None
    test: LabelledImages


DATASETS: Registry[Source] = Registry("dataset", "--dataset")


def read_dataset(cfg: Any) -> Source:
    """The splits of ``cfg.dataset``; a one-line error for an unknown name."""
    return DATASETS.create(cfg.dataset, cfg)


def cache_root(cache_dir: str | Path | None = None) -> Path:
    """The folder of sarb's caches (demo data, feature maps, parsed annotations):
    ``cache_dir``, else ``$SARB_CACHE_DIR``, else the user cache directory."""
    if cache_dir is None:
        cache_dir = os.environ.get("SARB_CACHE_DIR") or None
    if cache_dir is None:
        import platformdirs

        cache_dir = platformdirs.user_cache_dir("sarb")
    return Path(cache_dir).expanduser()


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
