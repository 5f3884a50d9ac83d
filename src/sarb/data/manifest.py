"""User datasets as manifests: a CSV table or JSON lines listing images and their labels.

CSV (``.csv``)::

    image,cat,dog,person
    photos/001.jpg,1,-1,
    photos/002.jpg,0,1,-1

a header ``image,<class>,...`` and one row per image: its path (relative to the manifest's
folder, or absolute) and per class 1 (present), -1 (absent) or 0 / empty (unknown).

JSON lines (``.jsonl``)::

    {"image": "photos/001.jpg", "positive": ["cat"], "negative": ["dog"]}

classes not listed are unknown (0). Every problem is a one-line SarbError
``{path}:{line}: ...`` so that the user can fix the file without a traceback.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sarb.data.csvio import read_text_lines
from sarb.data.dataset import LabelledImages
from sarb.data.sources import DATASETS, Source
from sarb.errors import SarbError

_VALUES = {"1": 1, "-1": -1, "0": 0, "": 0}
_JSONL_KEYS = ("image", "positive", "negative")


def _names(names: Sequence[str], limit: int = 8) -> str:
    """A short, quoted list of names for messages."""
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _check_class_names(class_names: Sequence[str] | None) -> list[str] | None:
    if class_names is None:
        return None
    names = [str(n) for n in class_names]
    if not names:
        raise SarbError("the expected class list is empty")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise SarbError(f"the expected class list has duplicated names: {_names(dup)}")
    return names


class _Images:
    """Resolves image cells to paths and catches missing and duplicated images."""

    def __init__(self, manifest: Path, check_images: bool):
        self.manifest = manifest
        self.folder = manifest.parent
        self.check_images = check_images
        self.seen: dict[str, int] = {}
        self.paths: list[Path] = []

    def add(self, cell: str, line_no: int) -> None:
        where = f"{self.manifest}:{line_no}"
        if not cell:
            raise SarbError(f"{where}: empty image path")
        if "\x00" in cell:
            raise SarbError(f"{where}: image path contains a NUL character")
        image = Path(os.path.abspath(self.folder / cell))
        key = os.path.normcase(str(image))
        if key in self.seen:
            raise SarbError(
                f"{where}: image {cell!r} is listed twice (first on line {self.seen[key]})"
            )
        if self.check_images:
            try:
                exists = image.is_file()
            except (OSError, ValueError):
                exists = False
            if not exists:
                raise SarbError(f"{where}: image file not found: {str(image)!r}")
        self.seen[key] = line_no
        self.paths.append(image)


def _read_csv(
    path: Path, lines: list[str], class_names: list[str] | None, check_images: bool
) -> LabelledImages:
    rows: list[tuple[int, list[str]]] = []
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            cells = next(csv.reader([line], skipinitialspace=True))
        except csv.Error as exc:
            raise SarbError(f"{path}:{line_no}: malformed CSV ({exc})") from None
        rows.append((line_no, [c.strip() for c in cells]))
    if not rows:
        raise SarbError(f"{path}:1: empty manifest, expected a header 'image,<class 1>,...'")

    header_line, header = rows[0]
    if not header or header[0].lower() != "image":
        first = header[0] if header else ""
        raise SarbError(
            f"{path}:{header_line}: the header must be 'image,<class 1>,<class 2>,...',"
            f" got {first!r} as its first cell"
        )
    names = header[1:]
    if not names:
        raise SarbError(f"{path}:{header_line}: the header names no classes after 'image'")
    first_col: dict[str, int] = {}
    for col, name in enumerate(names, 2):
        if not name:
            raise SarbError(f"{path}:{header_line}: empty class name in column {col}")
        if name in first_col:
            raise SarbError(
                f"{path}:{header_line}: class {name!r} appears twice in the header"
                f" (columns {first_col[name]} and {col})"
            )
        first_col[name] = col

    if class_names is None:
        order = np.arange(len(names))
        out_names = list(names)
    else:
        expected = set(class_names)
        unknown = [n for n in names if n not in expected]
        if unknown:
            raise SarbError(
                f"{path}:{header_line}: unknown class {_names(unknown)} in the header;"
                f" expected the classes {_names(class_names)}"
            )
        missing = [n for n in class_names if n not in first_col]
        if missing:
            raise SarbError(
                f"{path}:{header_line}: the header lacks the expected class {_names(missing)}"
            )
        order = np.array([first_col[n] - 2 for n in class_names])
        out_names = list(class_names)

    width = 1 + len(names)
    images = _Images(path, check_images)
    labels = []
    for line_no, cells in rows[1:]:
        if len(cells) != width:
            raise SarbError(
                f"{path}:{line_no}: {len(cells)} cells, expected {width}"
                f" (the image and {len(names)} classes, as in the header on line {header_line})"
            )
        row = []
        for col, cell in enumerate(cells[1:], 2):
            value = _VALUES.get(cell)
            if value is None:
                raise SarbError(
                    f"{path}:{line_no}: class {names[col - 2]!r} (column {col}):"
                    f" value {cell!r} is not 1, -1, 0 or empty"
                )
            row.append(value)
        images.add(cells[0], line_no)
        labels.append(row)
    if not labels:
        raise SarbError(f"{path}:{header_line + 1}: empty manifest, no image rows after the header")
    matrix = np.array(labels, dtype=np.int8)[:, order]
    return LabelledImages(images.paths, matrix, out_names, str(path))


def _name_list(path: Path, line_no: int, record: dict, key: str) -> list[str]:
    value = record.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SarbError(f"{path}:{line_no}: {key!r} must be a list of class names (strings)")
    if any(not v for v in value):
        raise SarbError(f"{path}:{line_no}: {key!r} contains an empty class name")
    return value


def _read_jsonl(
    path: Path, lines: list[str], class_names: list[str] | None, check_images: bool
) -> LabelledImages:
    images = _Images(path, check_images)
    records: list[tuple[int, list[str], list[str]]] = []
    expected = set(class_names) if class_names is not None else None
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SarbError(
                f"{path}:{line_no}: invalid JSON ({exc.msg} at column {exc.colno})"
            ) from None
        except (ValueError, RecursionError) as exc:  # e.g. too deep, too long an integer
            raise SarbError(f"{path}:{line_no}: invalid JSON ({type(exc).__name__})") from None
        try:  # a "\ud800" escape decodes to half a character, which no file can hold
            json.dumps(record, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = exc.object[exc.start : exc.end].encode("unicode_escape").decode()
            raise SarbError(
                f"{path}:{line_no}: {bad} is half a UTF-16 pair, not a character"
            ) from None
        if not isinstance(record, dict):
            raise SarbError(
                f"{path}:{line_no}: expected a JSON object"
                ' {"image": ..., "positive": [...], "negative": [...]},'
                f" got {type(record).__name__}"
            )
        extra = [k for k in record if k not in _JSONL_KEYS]
        if extra:
            raise SarbError(
                f"{path}:{line_no}: unknown key {_names(extra)}"
                ' (expected "image", "positive", "negative")'
            )
        if "image" not in record:
            raise SarbError(f'{path}:{line_no}: missing the "image" key')
        image = record["image"]
        if not isinstance(image, str):
            raise SarbError(f'{path}:{line_no}: "image" must be a string (a path)')
        positive = _name_list(path, line_no, record, "positive")
        negative = _name_list(path, line_no, record, "negative")
        both = sorted(set(positive) & set(negative))
        if both:
            raise SarbError(f"{path}:{line_no}: class {_names(both)} is both positive and negative")
        if expected is not None:
            unknown = list(dict.fromkeys(n for n in positive + negative if n not in expected))
            if unknown:
                raise SarbError(
                    f"{path}:{line_no}: unknown class {_names(unknown)};"
                    f" expected one of {_names(class_names)}"
                )
        images.add(image.strip(), line_no)
        records.append((line_no, positive, negative))
    if not records:
        raise SarbError(f"{path}:1: empty manifest, no image lines")

    if class_names is None:
        names = sorted({n for _, pos, neg in records for n in pos + neg})
        if not names:
            raise SarbError(
                f"{path}:{records[0][0]}: no class is named in any line, so the class list"
                " is empty (pass the class names or list positives/negatives)"
            )
    else:
        names = class_names
    index = {n: i for i, n in enumerate(names)}
    matrix = np.zeros((len(records), len(names)), dtype=np.int8)
    for row, (_, positive, negative) in enumerate(records):
        matrix[row, [index[n] for n in positive]] = 1
        matrix[row, [index[n] for n in negative]] = -1
    return LabelledImages(images.paths, matrix, list(names), str(path))


def read_manifest(
    path: str | Path,
    class_names: Sequence[str] | None = None,
    check_images: bool = True,
) -> LabelledImages:
    """Read a ``.csv`` or ``.jsonl`` manifest into a :class:`LabelledImages`.

    Image paths are resolved against the manifest's folder (absolute paths kept) and made
    absolute. ``class_names`` (e.g. the training split's or a checkpoint's classes) fixes
    the class list: a CSV header must name exactly those classes, in any order (columns
    are reordered to ``class_names``); a JSONL line may only name those classes. Without
    it, a CSV uses its header order and a JSONL the sorted union of all names it lists.
    ``check_images`` checks that every image file exists. Any problem is a SarbError
    naming the file and line.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl"):
        raise SarbError(
            f"{path}: unknown manifest format {suffix or '(no extension)'!r},"
            " expected a .csv or .jsonl file"
        )
    names = _check_class_names(class_names)
    lines = read_text_lines(path, "manifest")
    if suffix == ".csv":
        return _read_csv(path, lines, names, check_images)
    return _read_jsonl(path, lines, names, check_images)


def write_manifest_csv(path: str | Path, data: LabelledImages) -> None:
    """Write ``data`` as a CSV manifest, image paths relative to the manifest's folder.

    :func:`read_manifest` reads it back to the same images, labels and classes.
    """
    path = Path(path)
    folder = Path(os.path.abspath(path.parent))
    for text in [*data.class_names, *map(str, data.images)]:
        if "\n" in text or "\r" in text:
            raise SarbError(f"{path}: cannot write a manifest with a line break in {text!r}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["image", *data.class_names])
            for image, row in zip(data.images, data.labels, strict=True):
                try:
                    rel = os.path.relpath(os.path.abspath(image), folder)
                except ValueError:  # another drive on Windows
                    rel = os.path.abspath(image)
                writer.writerow([Path(rel).as_posix(), *(str(int(v)) for v in row)])
    except OSError as exc:
        raise SarbError(f"{path}: cannot write manifest ({exc.strerror or exc})") from None


@DATASETS.register("manifest")
def manifest_source(cfg: Any) -> Source:
    """``--train`` and ``--test`` manifests (and ``--val`` when given)."""
    if not (cfg.train and cfg.test):
        raise SarbError("--dataset manifest needs --train and --test manifests")
    train = read_manifest(cfg.train)
    val = read_manifest(cfg.val, train.class_names) if cfg.val else None
    return Source(Path(cfg.train).stem, train, val, read_manifest(cfg.test, train.class_names))
