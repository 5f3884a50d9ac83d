"""Pascal VOC 2007 as a multi-label dataset: trainval for training, test for testing.

``--dataset voc2007 --root DIR`` where ``DIR`` is ``VOCdevkit/VOC2007`` itself, or a folder
holding ``VOCdevkit/VOC2007`` (what the official tars extract to) or ``VOC2007``. Rows follow
``ImageSets/Main/{trainval,test}.txt``; columns are the 20 classes in the standard alphabetical
order; labels come from ``Annotations/<id>.xml``.

Objects marked ``difficult``: ``--voc-difficult negative`` (the reference protocol, default)
skips them, so a class present only as difficult is -1; ``--voc-difficult ignore`` (the standard
VOC protocol) makes such a label 0, i.e. unknown in training and ignored by every metric.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np

from sarb.data.csvio import read_text_lines
from sarb.data.dataset import LabelledImages
from sarb.data.sources import DATASETS, Source, require_images
from sarb.errors import SarbError

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip
DIFFICULT_MODES = ("negative", "ignore")
_LAYOUT = "Annotations/, ImageSets/Main/, JPEGImages/"


def find_voc2007(root: str | Path) -> Path:
    """The ``VOC2007`` folder of ``root``: ``root`` itself, ``root/VOCdevkit/VOC2007`` or
    ``root/VOC2007``, whichever holds ``Annotations`` and ``ImageSets/Main``."""
    root = Path(root)
    if not root.is_dir():
        raise SarbError(f"{root}: VOC root folder not found")
    for candidate in (root, root / "VOCdevkit" / "VOC2007", root / "VOC2007"):
        if (candidate / "Annotations").is_dir() and (candidate / "ImageSets" / "Main").is_dir():
            return candidate
    raise SarbError(
        f"{root}: not a VOC 2007 folder (expected {_LAYOUT} in it, in VOCdevkit/VOC2007/ or in"
        " VOC2007/; `sarb data download voc2007 --root DIR` fetches them)"
    )


def read_voc_split(
    voc_dir: str | Path, split: str, difficult: str = "negative", check_images: bool = True
) -> LabelledImages:
    """The complete labels of ``ImageSets/Main/{split}.txt`` of a ``VOC2007`` folder."""
    if difficult not in DIFFICULT_MODES:
        raise SarbError(f"--voc-difficult: {difficult!r} is not one of negative, ignore")
    voc_dir = Path(voc_dir)
    listing = voc_dir / "ImageSets" / "Main" / f"{split}.txt"
    if not listing.is_file():
        hint = " (it comes with VOCtest_06-Nov-2007.tar)" if split == "test" else ""
        raise SarbError(f"{listing}: VOC image list not found{hint}")
    ids = [line.strip() for line in read_text_lines(listing, "image list") if line.strip()]
    if not ids:
        raise SarbError(f"{listing}: the image list is empty")
    col_of = {name: c for c, name in enumerate(VOC_CLASSES)}
    labels = np.full((len(ids), len(VOC_CLASSES)), -1, dtype=np.int8)
    for row, image_id in enumerate(ids):
        for name, is_difficult in _objects(voc_dir / "Annotations" / f"{image_id}.xml", col_of):
            c = col_of[name]
            if not is_difficult:
                labels[row, c] = 1
            elif difficult == "ignore" and labels[row, c] == -1:
                labels[row, c] = 0
    images = [voc_dir / "JPEGImages" / f"{image_id}.jpg" for image_id in ids]
    if check_images:
        require_images(images, str(listing))
    return LabelledImages(images, labels, list(VOC_CLASSES), source=str(listing))


@DATASETS.register("voc2007")
def voc2007_source(cfg: Any) -> Source:
    """``--dataset voc2007 --root DIR [--voc-difficult negative|ignore]``."""
    if not cfg.root:
        raise SarbError("--dataset voc2007 needs --root DIR (VOCdevkit/VOC2007 or a parent)")
    voc_dir = find_voc2007(cfg.root)
    train = read_voc_split(voc_dir, "trainval", cfg.voc_difficult)
    test = read_voc_split(voc_dir, "test", cfg.voc_difficult)
    return Source("voc2007", train, None, test)


def _objects(xml: Path, col_of: dict[str, int]) -> list[tuple[str, bool]]:
    """(class name, difficult) of every ``<object>`` of an annotation file."""
    try:
        tree = ET.parse(xml)
    except FileNotFoundError:
        raise SarbError(f"{xml}: VOC annotation file not found") from None
    except ET.ParseError as exc:
        raise SarbError(f"{xml}: invalid XML ({exc})") from None
    except OSError as exc:
        raise SarbError(f"{xml}: cannot read ({exc.strerror or exc})") from None
    out = []
    for obj in tree.getroot().findall("object"):
        name = (obj.findtext("name") or "").strip().lower()
        if name not in col_of:
            raise SarbError(f"{xml}: object class {name!r} is not one of the 20 VOC classes")
        flag = (obj.findtext("difficult") or "0").strip()
        if flag not in ("0", "1"):
            raise SarbError(f"{xml}: <difficult> of a {name!r} object is {flag!r}, not 0 or 1")
        out.append((name, flag == "1"))
    return out
