"""Headerless numeric CSV matrices (masks, scores, labels) with errors that name the line.

Used by ``sarb masks``, ``sarb metrics`` and ``sarb labels``: one row per image, one column
per class, comma-separated, no header. Every problem with the file is a one-line
:class:`~sarb.errors.SarbError` of the form ``{path}:{line}: ...``.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path

import numpy as np

from sarb.errors import SarbError
from sarb.files import atomic_write

# A plain decimal number: what both numpy's parser and this module's line-by-line parser
# accept. Python's float() alone would also take "1_000" and non-ASCII digits.
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_NON_FINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.ASCII | re.IGNORECASE)
_MAX_EXACT_INT = 2**53  # integers beyond this are not exact in float64
_SPACE = " \t\f\v"  # the whitespace allowed around a value
_ROW = re.compile(
    rf"[{_SPACE}]*{_NUMBER.pattern}[{_SPACE}]*(?:,[{_SPACE}]*{_NUMBER.pattern}[{_SPACE}]*)*",
    re.ASCII,
)
# With ``missing=True`` a cell may also be "nan" (any case) or empty: a missing value.
_NAN = re.compile(r"nan", re.ASCII | re.IGNORECASE)
_CELL_OR_MISSING = rf"[{_SPACE}]*(?:{_NUMBER.pattern}|[nN][aA][nN])?[{_SPACE}]*"
_ROW_MISSING = re.compile(rf"{_CELL_OR_MISSING}(?:,{_CELL_OR_MISSING})*", re.ASCII)
_EMPTY_CELL = re.compile(rf"(?<![^,])[{_SPACE}]*(?![^,])")  # a cell that holds only spaces


def read_bytes(path: Path, what: str) -> bytes:
    """The content of a file, or a one-line SarbError naming it (``what``: e.g. "image file")."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise SarbError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise SarbError(f"{path}: is a directory, expected a {what}") from None
    except OSError as exc:
        raise SarbError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None


def read_text_lines(path: Path, what: str) -> list[str]:
    """The lines of a UTF-8 text file (a leading BOM and ``\\r`` line ends are dropped).

    Lines are split on ``\\n`` only, so that line numbers match what an editor shows.
    """
    raw = read_bytes(path, f"{what} file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SarbError(f"{path}:{line}: {what} file is not UTF-8 text") from None
    lines = text.split("\n")
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def _format_allowed(allowed: set[int]) -> str:
    return ", ".join(str(v) for v in sorted(allowed))


def _parse_cell(
    path: Path, line_no: int, col: int, cell: str, integer: bool, missing: bool
) -> float | int:
    """One cell of the line-by-line (error-finding) parser."""
    cell = cell.strip(_SPACE)
    if missing and (not cell or _NAN.fullmatch(cell)):
        return math.nan
    where = f"{path}:{line_no}: column {col}"
    if not cell:
        raise SarbError(f"{where}: empty value")
    if _NON_FINITE.fullmatch(cell):
        raise SarbError(f"{where}: value {cell!r} is not finite")
    if not _NUMBER.fullmatch(cell):
        raise SarbError(f"{where}: value {cell!r} is not a number")
    value = float(cell)
    if not math.isfinite(value):
        raise SarbError(f"{where}: value {cell!r} is not finite")
    if integer:
        if not value.is_integer():
            raise SarbError(f"{where}: value {cell!r} is not an integer")
        if abs(value) > _MAX_EXACT_INT:
            raise SarbError(f"{where}: value {cell!r} is too large")
        try:
            return int(cell)
        except ValueError:  # "1.0", "1e3": integral but not written as an int
            return int(value)
    return value


def _parse_slowly(
    path: Path,
    rows: list[tuple[int, str]],
    integer: bool,
    allowed: set[int] | None,
    what: str,
    missing: bool = False,
) -> np.ndarray:
    """Parse cell by cell and raise on the first bad value (rows have equal widths)."""
    values = []
    for line_no, line in rows:
        cells = line.split(",")
        row = [
            _parse_cell(path, line_no, col, cell, integer, missing)
            for col, cell in enumerate(cells, 1)
        ]
        if allowed is not None:
            for col, value in enumerate(row, 1):
                if value not in allowed and not math.isnan(value):
                    raise SarbError(
                        f"{path}:{line_no}: column {col}: value {cells[col - 1].strip(_SPACE)!r}"
                        f" is not one of {_format_allowed(allowed)} (allowed in the {what})"
                    )
        values.append(row)
    return np.array(values, dtype=np.int64 if integer and not missing else np.float64)


def _parse_fast(rows: list[tuple[int, str]], width: int, missing: bool) -> np.ndarray | None:
    """numpy's C parser, or None if it rejects the text (the slow path then finds why)."""
    grammar = _ROW_MISSING if missing else _ROW
    if not all(grammar.fullmatch(line) for _, line in rows):
        return None  # something the strict cell parser rejects
    lines = (_EMPTY_CELL.sub("nan", line) if missing else line for _, line in rows)
    text = "\n".join(lines)
    try:
        out = np.loadtxt(io.StringIO(text), delimiter=",", comments=None, dtype=np.float64, ndmin=2)
    except (ValueError, OverflowError):
        return None
    if out.shape != (len(rows), width):
        return None
    return out


def _first_bad_row(rows: list[tuple[int, str]], missing: bool) -> list[tuple[int, str]]:
    """The first row the strict grammar rejects (the slow parser raises on it), else all rows."""
    grammar = _ROW_MISSING if missing else _ROW
    for row in rows:
        if not grammar.fullmatch(row[1]):
            return [row]
    return rows


def read_matrix(
    path: str | Path,
    allowed: set[int] | None = None,
    integer: bool = False,
    what: str = "matrix",
    missing: bool = False,
) -> np.ndarray:
    """Read an N x C headerless, comma-separated numeric matrix.

    Returns int64 if ``integer`` else float64. ``allowed`` restricts the values (e.g.
    ``{-1, 0, 1}`` for labels, ``{0, 1}`` for masks). Blank lines at the end are ignored.
    ``missing``: a cell may be ``nan`` (any case) or empty, read as NaN (the unknown label of
    some label files); the result is then float64, ``integer`` and ``allowed`` apply to the
    other cells.
    Every problem (missing file, bad encoding, empty file, ragged row, non-numeric,
    non-finite or non-integer value, value not allowed) is a SarbError naming the line.
    ``what`` names the file's role in messages ("score matrix", "label matrix", ...).
    Well-formed files go through numpy's C parser (a COCO-sized score matrix in about a
    second); the line-by-line parser only runs to name the offending line.
    """
    path = Path(path)
    lines = read_text_lines(path, what)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise SarbError(f"{path}:1: {what} file is empty")
    width = lines[0].count(",") + 1
    rows: list[tuple[int, str]] = []
    for line_no, line in enumerate(lines, 1):
        if not line.strip():
            raise SarbError(f"{path}:{line_no}: blank line inside the {what}")
        if line.count(",") + 1 != width:
            raise SarbError(
                f"{path}:{line_no}: {line.count(',') + 1} values, expected {width} as on line 1"
                f" (every row of the {what} must have the same number of columns)"
            )
        rows.append((line_no, line))

    fast = _parse_fast(rows, width, missing)
    if fast is None:
        return _parse_slowly(path, _first_bad_row(rows, missing), integer, allowed, what, missing)

    bad = ~np.isfinite(fast)
    if integer:
        bad |= (fast != np.round(fast)) | (np.abs(fast) > _MAX_EXACT_INT)
    if allowed is not None:
        bad |= ~np.isin(fast, np.array(sorted(allowed), dtype=np.float64))
    if missing:
        bad &= ~np.isnan(fast)  # an unknown value
    if bad.any():
        # The slow parser raises on the first offending row with the exact message.
        first = int(np.argwhere(bad)[0, 0])
        _parse_slowly(path, [rows[first]], integer, allowed, what, missing)
        return _parse_slowly(path, rows, integer, allowed, what, missing)  # defensive; not reached
    if integer and not missing:
        return fast.astype(np.int64)
    return fast


def write_matrix(path: str | Path, matrix: np.ndarray, fmt: str = "%d") -> None:
    """Write ``matrix`` (N x C; a 1-D array is one column) as headerless CSV.

    The inverse of :func:`read_matrix`; written atomically, parent directories created. ``fmt`` is a
    printf-style format per value (``"%d"`` for labels and masks, e.g. ``"%.6f"`` for scores).
    """
    path = Path(path)
    matrix = np.asarray(matrix)
    if matrix.ndim == 1:
        matrix = matrix.reshape(-1, 1)
    if matrix.ndim != 2:
        raise ValueError(f"write_matrix expects a 2-D array, got shape {matrix.shape}")
    text = io.StringIO()
    np.savetxt(text, matrix, fmt=fmt, delimiter=",", newline="\n")
    atomic_write(path, text.getvalue(), fsync=False)
