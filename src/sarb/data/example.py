"""A small own-data example that ``sarb demo`` leaves next to its runs.

A few hundred demo images copied under ``photos/`` with CSV manifests laid out as a user's
data would be: ``train.csv`` and ``val.csv`` with about half of their labels unknown (0),
``test.csv`` complete. The README's own-data, predict and Python examples use it, so they run
as written after ``make demo``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from sarb.data.dataset import LabelledImages
from sarb.data.manifest import read_manifest, write_manifest_csv
from sarb.data.partial import mask_labels
from sarb.errors import SarbError

EXAMPLE_SIZES: dict[str, int] = {"train": 400, "val": 100, "test": 200}
EXAMPLE_KNOWN = 0.5  # the proportion of train and val labels kept
EXAMPLE_FILES = ("photos", "train.csv", "val.csv", "test.csv", "README.txt")

_README = """\
An example of your own data, made by `sarb demo` from the demo dataset's images:
photos/         {total} JPEG images (001.jpg ...)
train.csv       {train} images, about {known:.0%} of the labels known (0 = unknown)
val.csv         {val} images, the same proportion known (model selection)
test.csv        {test} images, every label known
Train on it:
  sarb train --dataset manifest --train {out}/train.csv --val {out}/val.csv \\
      --test {out}/test.csv --config demo --out runs/mine
"""


def write_example(
    demo: str | Path,
    out: str | Path,
    sizes: dict[str, int] | None = None,
    known: float = EXAMPLE_KNOWN,
    seed: int = 0,
) -> Path:
    """Write the example into ``out`` (replacing a previous one) from the first images of the
    demo dataset at ``demo``; ``sizes`` gives the images per split. Returns ``out``."""
    demo, out = Path(demo), Path(out)
    sizes = {**EXAMPLE_SIZES, **(sizes or {})}
    splits = {split: read_manifest(demo / f"{split}.csv") for split in EXAMPLE_SIZES}
    for split, data in splits.items():
        if not 0 < sizes[split] <= len(data):
            raise SarbError(f"{demo}: the example takes 1 to {len(data)} {split} images")
    total = sum(sizes.values())
    width = max(3, len(str(total)))
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        (tmp / "photos").mkdir(parents=True)
        number = 0
        for split, data in splits.items():
            images = []
            for source in data.images[: sizes[split]]:
                number += 1
                images.append(tmp / "photos" / f"{number:0{width}d}{source.suffix}")
                shutil.copyfile(source, images[-1])
            labels = data.labels[: sizes[split]]
            if split != "test":
                labels = mask_labels(labels, known, seed=seed)
            write_manifest_csv(
                tmp / f"{split}.csv", LabelledImages(images, labels, data.class_names)
            )
        text = _README.format(total=total, known=known, out=out.as_posix(), **sizes)
        (tmp / "README.txt").write_text(text)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except OSError as exc:
        raise SarbError(f"{out}: cannot write the example ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
