"""NUS-WIDE with its 81 concepts: the official train / test split.

``--dataset nuswide --root DIR`` where ``DIR`` (or ``DIR/NUS-WIDE``) holds the files of the
official distribution:

- ``ImageList/TrainImagelist.txt`` and ``ImageList/TestImagelist.txt``: one image per line, a
  path relative to the image folder written with backslashes (``actor\\0001_2124494179.jpg``);
  the row order of each split;
- ``ConceptsList/Concepts81.txt`` (or ``Concepts81.txt`` in ``DIR``): the concepts, one per line;
  the column order;
- ``Groundtruth/TrainTestLabels/Labels_<concept>_Train.txt`` and ``..._Test.txt``: for each
  concept one 0/1 line per image of the split (1: the concept is present, 0: absent);
- the images under ``Flickr/`` (``--images DIR`` points elsewhere).

``ImageList/Imagelist.txt`` (every image of both splits) is not needed. Images with none of
the concepts are dropped by default, as all-negative rows that no concept describes;
``--nuswide-unlabelled keep`` keeps them. Either way their count is printed.
"""

from __future__ import annotations

import sys
from pathlib import Path, PureWindowsPath
from typing import Any

import numpy as np

from sarb.data.csvio import read_matrix, read_text_lines
from sarb.data.dataset import LabelledImages
from sarb.data.sources import DATASETS, Source, require_images
from sarb.errors import SarbError

UNLABELLED_MODES = ("drop", "keep")
PAGE = "https://lms.comp.nus.edu.sg/wp-content/uploads/2019/research/nuswide/NUS-WIDE.html"
SPLITS = {"train": "Train", "test": "Test"}  # our split name -> the official file suffix
CONCEPTS = ("ConceptsList/Concepts81.txt", "Concepts81.txt")
LABELS_DIR = "Groundtruth/TrainTestLabels"
IMAGE_DIR = "Flickr"


def find_nuswide(root: str | Path) -> Path:
    """The NUS-WIDE folder of ``root``: ``root`` or ``root/NUS-WIDE``, whichever holds
    ``ImageList/`` and ``Groundtruth/TrainTestLabels/``."""
    root = Path(root)
    if not root.is_dir():
        raise SarbError(f"{root}: NUS-WIDE root folder not found")
    for candidate in (root, root / "NUS-WIDE"):
        if (candidate / "ImageList").is_dir() and (candidate / LABELS_DIR).is_dir():
            return candidate
    raise SarbError(
        f"{root}: not a NUS-WIDE folder (expected ImageList/ and {LABELS_DIR}/ in it or in"
        " NUS-WIDE/; `sarb data download nuswide --root DIR` says what to fetch)"
    )


def read_concepts(folder: Path) -> list[str]:
    """The concept names of ``Concepts81.txt``, in file order (the column order)."""
    for name in CONCEPTS:
        path = folder / name
        if path.is_file():
            names = [line.strip() for line in read_text_lines(path, "concept list")]
            names = [n for n in names if n]
            if not names:
                raise SarbError(f"{path}: the concept list is empty")
            seen: set[str] = set()
            for n in names:
                if n in seen:
                    raise SarbError(f"{path}: concept {n!r} is listed twice")
                seen.add(n)
            return names
    raise SarbError(f"{folder / CONCEPTS[0]}: NUS-WIDE concept list not found")


def read_nuswide_split(
    folder: str | Path,
    split: str,
    concepts: list[str],
    images: str | Path | None = None,
    check_images: bool = True,
) -> LabelledImages:
    """Every image of the official ``split`` ("train" or "test") with its complete labels."""
    folder = Path(folder)
    suffix = SPLITS[split]
    listing = folder / "ImageList" / f"{suffix}Imagelist.txt"
    if not listing.is_file():
        raise SarbError(f"{listing}: NUS-WIDE image list not found")
    names = [line.strip() for line in read_text_lines(listing, "image list")]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise SarbError(f"{listing}: the image list is empty")
    for line_no, name in enumerate(names, 1):
        if not name:
            raise SarbError(f"{listing}:{line_no}: blank line inside the image list")
    image_dir = Path(images) if images else folder / IMAGE_DIR
    relative = [PureWindowsPath(name) for name in names]  # splits on "\\" and "/"
    for line_no, name in enumerate(relative, 1):
        if name.anchor or ".." in name.parts:
            raise SarbError(f"{listing}:{line_no}: {name} is not a path inside the image folder")
    paths = [image_dir.joinpath(*name.parts) for name in relative]
    labels = np.empty((len(names), len(concepts)), dtype=np.int8)
    for c, concept in enumerate(concepts):
        path = folder / LABELS_DIR / f"Labels_{concept}_{suffix}.txt"
        if not path.is_file():
            raise SarbError(f"{path}: label file of concept {concept!r} not found")
        column = read_matrix(path, allowed={0, 1}, integer=True, what="concept labels")
        if column.shape[1] != 1:
            raise SarbError(f"{path}: {column.shape[1]} values on a line, expected one 0 or 1")
        if column.shape[0] != len(names):
            raise SarbError(
                f"{path}: {column.shape[0]} lines, expected one per image of {listing.name}"
                f" ({len(names)})"
            )
        labels[:, c] = np.where(column[:, 0] == 1, 1, -1)
    if check_images:
        require_images(paths, str(listing))
    return LabelledImages(paths, labels, list(concepts), source=str(listing))


def unlabelled(data: LabelledImages) -> np.ndarray:
    """Rows with none of the concepts (bool, one per image)."""
    return ~(data.labels == 1).any(axis=1)


@DATASETS.register("nuswide")
def nuswide_source(cfg: Any) -> Source:
    """``--dataset nuswide --root DIR [--images FLICKR_DIR] [--nuswide-unlabelled drop|keep]``."""
    if not cfg.root:
        raise SarbError("--dataset nuswide needs --root DIR (the NUS-WIDE folder)")
    mode = cfg.nuswide_unlabelled
    if mode not in UNLABELLED_MODES:
        raise SarbError(f"--nuswide-unlabelled: {mode!r} is not one of drop, keep")
    folder = find_nuswide(cfg.root)
    concepts = read_concepts(folder)
    splits = {s: read_nuswide_split(folder, s, concepts, cfg.images) for s in SPLITS}
    counts = []
    for split, data in splits.items():
        empty = unlabelled(data)
        counts.append(f"{int(empty.sum())} of {len(data)} {split}")
        if mode == "drop":
            splits[split] = data.subset(np.flatnonzero(~empty))
            if not len(splits[split]):
                raise SarbError(f"{data.source}: no image has any of the {len(concepts)} concepts")
    done = "dropped (--nuswide-unlabelled keep keeps them)" if mode == "drop" else "kept"
    none = f"have none of the {len(concepts)} concepts"
    print(f"nuswide: {' and '.join(counts)} images {none}; {done}", file=sys.stderr)
    return Source("nuswide", splits["train"], None, splits["test"])


def check_download(root: str | Path) -> str:
    """``sarb data download nuswide``: the next command if ``root`` holds a usable NUS-WIDE,
    else a one-line SarbError that says what to fetch by hand and where to put it (NUS-WIDE's
    images are given out on request, so nothing is downloaded)."""
    root = Path(root)
    folder = root / "NUS-WIDE" if (root / "NUS-WIDE").is_dir() else root
    # (what the reader opens, the path that shows it is there, where it comes from)
    needed = [
        ("ImageList/TrainImagelist.txt", "ImageList/TrainImagelist.txt", "ImageList"),
        ("ImageList/TestImagelist.txt", "ImageList/TestImagelist.txt", "ImageList"),
        (CONCEPTS[0], CONCEPTS[0], "ConceptsList"),
        (f"{LABELS_DIR}/Labels_<concept>_Train.txt and _Test.txt", LABELS_DIR, "Groundtruth"),
        (f"{IMAGE_DIR}/<folder>/<image>.jpg", IMAGE_DIR, "the images, on request"),
    ]
    concepts_there = any((folder / name).is_file() for name in CONCEPTS)
    missing = [
        check
        for _, check, _ in needed
        if not (concepts_there if check == CONCEPTS[0] else (folder / check).exists())
    ]
    if not missing:
        concepts = read_concepts(folder)
        for split in SPLITS:  # every label file, and every listed image
            read_nuswide_split(folder, split, concepts)
        return f"sarb train --dataset nuswide --root {root}"
    raise SarbError(
        f"NUS-WIDE is not downloaded by sarb: its images are given out on request (the agreement"
        f" form of {PAGE}) and its lists and labels are on that page; put into {folder}/"
        f" {'; '.join(f'{shown} ({source})' for shown, _, source in needed)}; then rerun to check"
        f" them; missing: {', '.join(missing)}"
    )
