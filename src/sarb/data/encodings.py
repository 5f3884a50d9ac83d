"""Label encodings: how a label file writes positive, negative and unknown.

``sarb labels`` and ``sarb masks`` read and write three (``--encoding``):

==========  ========  ========  =======================================
encoding    positive  negative  unknown
==========  ========  ========  =======================================
sarb        1         -1        0 (this project's, the paper's)
dualcoop    1         0         -1 (DualCoOp and the CLIP-era repos)
mlcpl       1         0         nan (the mlcpl package; an empty cell too)
==========  ========  ========  =======================================

Inside sarb a label matrix is always in the ``sarb`` encoding; files are converted on the way in
and out, so a round trip through any encoding gives back the same matrix.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from sarb.data.csvio import read_matrix, write_matrix
from sarb.errors import SarbError

# (positive, negative, unknown) of each encoding; NaN is the mlcpl unknown.
ENCODINGS: dict[str, tuple[float, float, float]] = {
    "sarb": (1, -1, 0),
    "dualcoop": (1, 0, -1),
    "mlcpl": (1, 0, math.nan),
}
DEFAULT_ENCODING = "sarb"
_SARB = ENCODINGS[DEFAULT_ENCODING]


def _check(encoding: str) -> tuple[float, float, float]:
    if encoding not in ENCODINGS:
        raise SarbError(f"--encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
    return ENCODINGS[encoding]


def _values(encoding: str, known_only: bool) -> set[float]:
    """The values a file of ``encoding`` may hold (NaN is handled by the reader)."""
    values = _check(encoding)
    kept = values[:2] if known_only else values
    return {int(v) for v in kept if not math.isnan(v)}


def encode(labels: np.ndarray, encoding: str) -> np.ndarray:
    """A sarb label matrix (1 / -1 / 0) in ``encoding``: int8, or float64 for mlcpl (NaN)."""
    labels = np.asarray(labels)
    values = _check(encoding)
    known = np.isin(labels, _SARB)
    if not known.all():
        bad = labels[~known].flat[0]
        raise SarbError(f"labels must be 1, -1 or 0 to encode as {encoding}, found {bad}")
    dtype = np.float64 if any(math.isnan(v) for v in values) else np.int8
    out = np.empty(labels.shape, dtype=dtype)
    for ours, theirs in zip(_SARB, values, strict=True):
        out[labels == ours] = theirs
    return out


def decode(matrix: np.ndarray, encoding: str) -> np.ndarray:
    """The inverse of :func:`encode`: a matrix of ``encoding`` as sarb labels (int8)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    values = _check(encoding)
    out = np.zeros(matrix.shape, dtype=np.int8)
    for ours, theirs in zip(_SARB, values, strict=True):
        out[np.isnan(matrix) if math.isnan(theirs) else matrix == theirs] = ours
    return out


def read_labels(
    path: str | Path, encoding: str = DEFAULT_ENCODING, complete: bool = False
) -> np.ndarray:
    """A label CSV (no header, N rows of C values) of ``encoding`` as sarb labels (int8).

    ``complete``: no value may be unknown (the full labels ``sarb masks`` hides). A value the
    encoding does not have is a one-line SarbError naming the file, line and column.
    """
    what = f"{encoding} labels" + (" (complete: no unknown)" if complete else "")
    missing = math.isnan(_check(encoding)[2])
    allowed = _values(encoding, known_only=complete)
    matrix = read_matrix(path, allowed=allowed, integer=True, what=what, missing=missing)
    if complete and missing and np.isnan(matrix).any():
        row, col = np.argwhere(np.isnan(matrix))[0]
        raise SarbError(
            f"{path}:{row + 1}: column {col + 1}: an unknown value (nan or empty) in the {what}"
        )
    return decode(matrix, encoding)


def write_labels(path: str | Path, labels: np.ndarray, encoding: str = DEFAULT_ENCODING) -> None:
    """Write sarb labels as a headerless CSV of ``encoding`` (mlcpl's unknown is ``nan``)."""
    encoded = encode(labels, encoding)
    write_matrix(path, encoded, fmt="%d" if encoded.dtype == np.int8 else "%g")
