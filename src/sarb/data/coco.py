"""MS-COCO and any COCO-format annotation file as a multi-label dataset.

``--dataset coco2014 --root DIR`` reads the paper's split: ``DIR/train2014/``, ``DIR/val2014/``
and ``DIR/annotations/instances_{train,val}2014.json`` (train = train2014, test = val2014).
``--dataset coco --annotations FILE.json --images DIR --test-annotations FILE --test-images DIR``
reads any COCO-format pair of files.

The label matrix follows the reference protocol: one row per entry of the file's ``images``
list, in that order, also for images without annotations (they are all-negative); one column
per category in ascending category id (names from ``categories``); an image is positive for a
category when at least one annotation of it exists, crowd annotations included.

Parsing a large instances file (``instances_train2014.json`` is 330 MB) takes tens of seconds,
so the parsed label matrix is cached as an ``.npz`` under ``<cache>/coco-labels/``, keyed by the
file's absolute path, size and modification time: the file is parsed once, later runs load the
matrix in milliseconds. Files under :data:`CACHE_MIN_BYTES` are parsed every time.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sarb.data.dataset import LabelledImages
from sarb.data.sources import DATASETS, Source, cache_root, read_json, require_images
from sarb.errors import SarbError
from sarb.files import atomic_write

# The 80 categories of COCO 2014/2017 in ascending category id (ids 1..90 with gaps).
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

CACHE_VERSION = 1  # bump when the parsed content or the .npz layout changes
CACHE_MIN_BYTES = 1 << 20  # smaller files parse in milliseconds: not worth a cache entry
COCO2014_LAYOUT = "train2014/, val2014/, annotations/instances_{train,val}2014.json"


@dataclass
class CocoLabels:
    """What the readers need from an instances file: rows in file order, columns by id."""

    file_names: list[str]
    labels: np.ndarray  # (N, C) int8 in {1, -1}
    category_ids: list[int]
    class_names: list[str]


# --------------------------------------------------------------------------------------------
# Public interface
# --------------------------------------------------------------------------------------------


def read_coco(
    annotations: str | Path,
    images: str | Path,
    cache_dir: str | Path | None = None,
    check_images: bool = True,
) -> LabelledImages:
    """The complete labels of a COCO-format file, images under ``images``; see the module doc.

    ``check_images`` raises a one-line error naming the first listed image file that is absent.
    """
    annotations, images = Path(annotations), Path(images)
    parsed = load_instances(annotations, cache_dir)
    if not images.is_dir():
        raise SarbError(f"{images}: image folder not found (images of {annotations})")
    paths = [images / name for name in parsed.file_names]
    if check_images:
        require_images(paths, str(annotations))
    return LabelledImages(paths, parsed.labels, parsed.class_names, source=str(annotations))


def load_instances(path: str | Path, cache_dir: str | Path | None = None) -> CocoLabels:
    """The parsed label matrix of an instances file, from the cache when it is current."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise SarbError(f"{path}: COCO annotation file not found") from None
    except OSError as exc:
        raise SarbError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not path.is_file():
        raise SarbError(f"{path}: is not a file, expected a COCO annotation file (.json)")
    cache = _cache_file(path, st, cache_dir) if st.st_size >= CACHE_MIN_BYTES else None
    if cache is not None and cache.is_file():
        cached = _load_cache(cache)
        if cached is not None:
            return cached
    parsed = parse_instances(path)
    if cache is not None:
        _save_cache(cache, parsed)
    return parsed


def parse_instances(path: str | Path) -> CocoLabels:
    """Parse a COCO instances file with the standard library (no cache); SarbError if malformed."""
    path = Path(path)
    data = read_json(path, "COCO annotation file")
    if not isinstance(data, dict):
        raise SarbError(f"{path}: expected a JSON object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            hint = " (an image-info file without labels?)" if key == "annotations" else ""
            raise SarbError(f"{path}: no {key!r} list{hint}")

    categories: dict[int, str] = {}
    for i, cat in enumerate(data["categories"]):
        cid, name = _field(cat, "id"), _field(cat, "name")
        if not _is_int(cid) or not isinstance(name, str):
            raise SarbError(f"{path}: categories[{i}] needs an integer 'id' and a string 'name'")
        if cid in categories:
            raise SarbError(f"{path}: category id {cid} appears twice in 'categories'")
        categories[cid] = name
    if not categories:
        raise SarbError(f"{path}: 'categories' is empty")
    category_ids = sorted(categories)
    col_of = {cid: c for c, cid in enumerate(category_ids)}

    row_of: dict[int, int] = {}
    file_names: list[str] = []
    for i, img in enumerate(data["images"]):
        iid, name = _field(img, "id"), _field(img, "file_name")
        if not _is_int(iid) or not isinstance(name, str) or not name:
            raise SarbError(f"{path}: images[{i}] needs an integer 'id' and a 'file_name'")
        if iid in row_of:
            raise SarbError(f"{path}: image id {iid} appears twice in 'images'")
        row_of[iid] = i
        file_names.append(name)

    rows: list[int] = []
    cols: list[int] = []
    for i, ann in enumerate(data["annotations"]):
        iid, cid = _field(ann, "image_id"), _field(ann, "category_id")
        try:
            rows.append(row_of[iid])
        except (KeyError, TypeError):
            raise SarbError(
                f"{path}: annotations[{i}] refers to image_id {iid!r}, which is not in 'images'"
            ) from None
        try:
            cols.append(col_of[cid])
        except (KeyError, TypeError):
            raise SarbError(
                f"{path}: annotations[{i}] refers to category_id {cid!r},"
                " which is not in 'categories'"
            ) from None
    labels = np.full((len(file_names), len(category_ids)), -1, dtype=np.int8)
    labels[np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)] = 1
    names = [categories[cid] for cid in category_ids]
    return CocoLabels(file_names, labels, category_ids, names)


@DATASETS.register("coco")
def coco_source(cfg: Any) -> Source:
    """``--dataset coco``: ``--annotations``/``--images`` train, ``--test-annotations`` test.

    ``--test-images`` defaults to ``--images`` (one folder holding both splits).
    """
    if not cfg.annotations or not cfg.images:
        raise SarbError("--dataset coco needs --annotations FILE.json and --images DIR")
    if not cfg.test_annotations:
        raise SarbError(
            "--dataset coco needs --test-annotations FILE.json (and --test-images DIR if the"
            " test images are in another folder); pass the training file again to test on it"
        )
    train = read_coco(cfg.annotations, cfg.images, cfg.cache_dir)
    test = read_coco(cfg.test_annotations, cfg.test_images or cfg.images, cfg.cache_dir)
    _same_classes(train, test)
    return Source(Path(cfg.annotations).stem, train, None, test)


@DATASETS.register("coco2014")
def coco2014_source(cfg: Any) -> Source:
    """``--dataset coco2014 --root DIR``: train2014 for training, val2014 for testing."""
    if not cfg.root:
        raise SarbError(f"--dataset coco2014 needs --root DIR holding {COCO2014_LAYOUT}")
    root = Path(cfg.root)
    if not root.is_dir():
        raise SarbError(f"{root}: COCO root folder not found (expected {COCO2014_LAYOUT})")
    splits = []
    for split in ("train2014", "val2014"):
        ann = root / "annotations" / f"instances_{split}.json"
        if not ann.is_file():
            raise SarbError(
                f"{ann}: COCO annotation file not found (--root must hold {COCO2014_LAYOUT};"
                " `sarb data download coco2014 --root DIR` fetches them)"
            )
        splits.append(read_coco(ann, root / split, cfg.cache_dir))
    train, test = splits
    _same_classes(train, test)
    return Source("coco2014", train, None, test)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else None


def _same_classes(train: LabelledImages, test: LabelledImages) -> None:
    if train.class_names != test.class_names:
        raise SarbError(
            f"{test.source}: its categories differ from those of {train.source}"
            f" ({test.num_classes} vs {train.num_classes} classes, or other ids/names)"
        )


def _cache_file(path: Path, st: os.stat_result, cache_dir: str | Path | None) -> Path:
    key = f"{CACHE_VERSION}\0{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return cache_root(cache_dir) / "coco-labels" / f"{path.stem}-{digest}.npz"


def _load_cache(cache: Path) -> CocoLabels | None:
    """The cached parse, or None if the entry is unreadable (it is then rebuilt)."""
    try:
        with np.load(cache, allow_pickle=False) as z:
            parsed = CocoLabels(
                [str(s) for s in z["file_names"]],
                z["labels"].astype(np.int8),
                [int(i) for i in z["category_ids"]],
                [str(s) for s in z["class_names"]],
            )
    except (OSError, ValueError, KeyError, EOFError):
        return None
    n, c = parsed.labels.shape if parsed.labels.ndim == 2 else (-1, -1)
    if n != len(parsed.file_names) or c != len(parsed.class_names):
        return None
    return parsed


def _save_cache(cache: Path, parsed: CocoLabels) -> None:
    """Write the cache entry atomically; a cache that cannot be written is silently skipped."""
    arrays = {
        "file_names": np.array(parsed.file_names, dtype=str),
        "labels": parsed.labels,
        "category_ids": np.array(parsed.category_ids, dtype=np.int64),
        "class_names": np.array(parsed.class_names, dtype=str),
    }
    try:
        atomic_write(cache, lambda f: np.savez(f, **arrays), fsync=False)
    except SarbError:
        pass
