"""VG-200: the 200 most frequent object categories of Visual Genome, built once into
files by ``sarb data build-vg200`` and read by ``--dataset vg200 --root DIR``.

Visual Genome has no multi-label split, so the build is deterministic and written out for reuse:

- Names: every object name is lower-cased, stripped, and runs of inner whitespace become one
  space (``"  Tree\\tTrunk "`` -> ``"tree trunk"``); nothing else (no singularisation, no alias
  merging, no synsets). An object lists its names in ``"names"`` (VG v1.4) or ``"name"`` (older
  releases); every name of an object counts. Empty names are ignored.
- Frequency of a category: the number of images with at least one object of that name.
  The classes are the ``num_classes`` (200) most frequent, ties broken by name (code-point
  order); ``classes.txt`` lists them in that rank order, which is the column order.
- Images: those with at least one of the classes. Images with none are DROPPED (they would be
  all-negative rows that no VG-200 class describes; the count is in README.txt). Rows are in
  ascending image id.
- Test split: ``min(10000, max(1, N // 10))`` of the N kept images (10,000 for the real data,
  as in the paper; a tenth of a small fixture), chosen by sorting the images on
  ``sha256("vg200:{seed}:{image_id}")`` and taking the first ones. The hash makes the split
  independent of NumPy versions and of the order of objects.json.
- Image files are ``{image_id}.jpg``, looked up in ``VG_IMAGES/``, then ``VG_IMAGES/VG_100K/``,
  then ``VG_IMAGES/VG_100K_2/`` (the two folders of the official image zips); the first hit wins.
  ``train.txt``/``test.txt`` hold the paths relative to ``VG_IMAGES``, and ``images_dir.txt``
  the absolute ``VG_IMAGES`` path (``--images`` overrides it when reading).

Same inputs give byte-identical files.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sarb.data.csvio import read_matrix, read_text_lines, write_matrix
from sarb.data.dataset import LabelledImages
from sarb.data.sources import DATASETS, Source, read_json, require_images
from sarb.errors import SarbError
from sarb.files import atomic_write

NUM_CLASSES = 200
MAX_TEST = 10_000
IMAGE_SUBDIRS = ("", "VG_100K", "VG_100K_2")
FILES = ("classes.txt", "train.txt", "test.txt", "train_labels.csv", "test_labels.csv")


@dataclass
class VGBuild:
    """What a build wrote: its folder, class names and split sizes."""

    out: Path
    class_names: list[str]
    num_train: int
    num_test: int
    num_dropped: int


def normalise_name(name: str) -> str:
    """Lower-case, strip, and collapse inner whitespace: ``" Tree  Trunk"`` -> ``"tree trunk"``."""
    return " ".join(name.lower().split())


def num_test_images(num_images: int) -> int:
    """Images in the test split: 10,000 as in the paper, a tenth of smaller data, at least 1."""
    return min(MAX_TEST, max(1, num_images // 10))


def build_vg200(
    images: str | Path,
    objects: str | Path,
    out: str | Path,
    seed: int = 0,
    num_classes: int = NUM_CLASSES,
) -> VGBuild:
    """Build VG-200 from Visual Genome's ``objects.json`` into ``out`` (see the module doc)."""
    images, objects, out = Path(images), Path(objects), Path(out)
    if num_classes < 1:
        raise SarbError(f"--num-classes must be >= 1, got {num_classes}")
    if not images.is_dir():
        raise SarbError(f"{images}: Visual Genome image folder not found")
    per_image = _read_objects(objects)

    counts = Counter(name for names in per_image.values() for name in names)
    if not counts:
        raise SarbError(f"{objects}: no object names found")
    ranked = sorted(counts, key=lambda name: (-counts[name], name))
    classes = ranked[:num_classes]
    col_of = {name: c for c, name in enumerate(classes)}

    kept = sorted(i for i, names in per_image.items() if any(n in col_of for n in names))
    if len(kept) < 2:
        raise SarbError(f"{objects}: {len(kept)} images with a VG-200 class, need at least 2")
    labels = np.full((len(kept), len(classes)), -1, dtype=np.int8)
    for row, image_id in enumerate(kept):
        cols = [col_of[n] for n in per_image[image_id] if n in col_of]
        labels[row, cols] = 1
    rel_paths = _locate_images(images, kept)

    n_test = num_test_images(len(kept))
    order = sorted(range(len(kept)), key=lambda r: (_split_key(seed, kept[r]), kept[r]))
    test_rows = sorted(order[:n_test])
    train_rows = sorted(order[n_test:])

    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "classes.txt", "".join(f"{name}\n" for name in classes))
    for split, rows in (("train", train_rows), ("test", test_rows)):
        atomic_write(out / f"{split}.txt", "".join(f"{rel_paths[r]}\n" for r in rows))
        write_matrix(out / f"{split}_labels.csv", labels[rows])
    atomic_write(out / "images_dir.txt", f"{images.resolve()}\n")
    dropped = len(per_image) - len(kept)
    readme = _readme(objects, seed, classes, counts, len(per_image), dropped, train_rows, test_rows)
    atomic_write(out / "README.txt", readme)
    return VGBuild(out, classes, len(train_rows), len(test_rows), dropped)


def read_vg200(
    root: str | Path, images: str | Path | None = None, check_images: bool = True
) -> tuple[LabelledImages, LabelledImages]:
    """The (train, test) splits of a VG-200 build; ``images`` overrides ``images_dir.txt``."""
    root = Path(root)
    if not root.is_dir():
        raise SarbError(f"{root}: VG-200 folder not found (make one with `sarb data build-vg200`)")
    if not (root / "classes.txt").is_file():
        raise SarbError(
            f"{root}: not a VG-200 build (no classes.txt); make one with `sarb data build-vg200`"
        )
    classes = _lines(root / "classes.txt", "class list")
    if images is None:
        recorded = _lines(root / "images_dir.txt", "image folder")
        if len(recorded) != 1:
            raise SarbError(f"{root / 'images_dir.txt'}: expected one line, the image folder")
        images = recorded[0]
    images = Path(images)
    splits = []
    for split in ("train", "test"):
        listing = root / f"{split}.txt"
        names = _lines(listing, "image list")
        csv = root / f"{split}_labels.csv"
        labels = read_matrix(csv, allowed={1, -1}, integer=True, what="label matrix")
        if labels.shape != (len(names), len(classes)):
            raise SarbError(
                f"{csv}: shape {labels.shape}, expected ({len(names)}, {len(classes)}) from"
                f" {listing.name} and classes.txt"
            )
        paths = [images / name for name in names]
        if check_images:
            require_images(paths, str(listing))
        splits.append(LabelledImages(paths, labels, classes, source=str(listing)))
    return splits[0], splits[1]


@DATASETS.register("vg200")
def vg200_source(cfg: Any) -> Source:
    """``--dataset vg200 --root BUILD_DIR [--images VG_IMAGES]``."""
    if not cfg.root:
        raise SarbError("--dataset vg200 needs --root DIR (a folder of `sarb data build-vg200`)")
    train, test = read_vg200(cfg.root, cfg.images)
    return Source("vg200", train, None, test)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _read_objects(path: Path) -> dict[int, set[str]]:
    """image_id -> the set of normalised object names of that image."""
    data = read_json(path, "Visual Genome objects file")
    if not isinstance(data, list):
        raise SarbError(f"{path}: expected a JSON list of {{'image_id', 'objects'}} entries")
    per_image: dict[int, set[str]] = {}
    for i, entry in enumerate(data):
        image_id = entry.get("image_id") if isinstance(entry, dict) else None
        objs = entry.get("objects") if isinstance(entry, dict) else None
        bad_id = not isinstance(image_id, int) or isinstance(image_id, bool)
        if bad_id or not isinstance(objs, list):
            raise SarbError(f"{path}: entry {i} needs an integer 'image_id' and an 'objects' list")
        if image_id in per_image:
            raise SarbError(f"{path}: image_id {image_id} appears twice (entry {i})")
        names: set[str] = set()
        for obj in objs:
            raw = obj.get("names", obj.get("name")) if isinstance(obj, dict) else None
            raw = [raw] if isinstance(raw, str) else raw if raw is not None else []
            if not isinstance(raw, list) or not all(isinstance(n, str) for n in raw):
                raise SarbError(
                    f"{path}: image_id {image_id}: an object's 'names' is not a list of strings"
                )
            names.update(n for n in map(normalise_name, raw) if n)
        per_image[image_id] = names
    return per_image


def _locate_images(images: Path, image_ids: list[int]) -> list[str]:
    """``{id}.jpg`` of every image, relative to ``images`` (see IMAGE_SUBDIRS)."""
    found: dict[str, str] = {}
    for sub in reversed(IMAGE_SUBDIRS):  # earlier folders overwrite: the first one wins
        folder = images / sub if sub else images
        try:
            with os.scandir(folder) as entries:
                names = [e.name for e in entries if e.name.endswith(".jpg")]
        except (FileNotFoundError, NotADirectoryError):
            continue
        found.update({name: f"{sub}/{name}" if sub else name for name in names})
    out = []
    for image_id in image_ids:
        name = f"{image_id}.jpg"
        if name not in found:
            raise SarbError(
                f"{images / name}: image file not found (also looked in VG_100K/ and VG_100K_2/)"
            )
        out.append(found[name])
    return out


def _split_key(seed: int, image_id: int) -> bytes:
    return hashlib.sha256(f"vg200:{seed}:{image_id}".encode()).digest()


def _lines(path: Path, what: str) -> list[str]:
    lines = read_text_lines(path, what)
    while lines and not lines[-1].strip():
        lines.pop()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            raise SarbError(f"{path}:{n}: blank line in the {what}")
    return [line.strip() for line in lines]


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _readme(
    objects: Path,
    seed: int,
    classes: list[str],
    counts: Counter[str],
    num_images: int,
    dropped: int,
    train_rows: list[int],
    test_rows: list[int],
) -> str:
    rare = classes[-1]
    return f"""VG-200: the {len(classes)} most frequent object categories of Visual Genome.
Built by `sarb data build-vg200` (sarb.data.vg) from {objects.name}
({objects.stat().st_size} bytes, sha256 {_file_digest(objects)}), seed {seed}.

Files
  classes.txt        the {len(classes)} class names, most frequent first (= label columns)
  train.txt          {len(train_rows)} training images, paths relative to the image folder
  test.txt           {len(test_rows)} test images, likewise
  train_labels.csv   label matrix of train.txt: no header, 1 present, -1 absent
  test_labels.csv    label matrix of test.txt
  images_dir.txt     the image folder given to the build (sarb train --images overrides it)

Rules
  names      lower-cased, stripped, inner whitespace collapsed to one space; every entry of an
             object's "names" (or "name") counts; nothing else is merged
  frequency  number of images with at least one object of the name; ties broken by name
  images     {num_images} in the objects file; {dropped} have none of the classes and are left
             out; rows in ascending image id
  test split min(10000, max(1, N // 10)) images with the smallest
             sha256("vg200:<seed>:<image_id>"); the rest is the training split
  frequency of the last class ({rare!r}): {counts[rare]} images

Use: sarb train --dataset vg200 --root <this folder> [--images VG_IMAGES]
     sarb labels --dataset vg200 --root <this folder> --split train --out labels.csv
"""
