"""Headerless CSV matrices: round trips and line-numbered errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sarb.data.csvio import read_matrix, write_matrix
from sarb.errors import SarbError


def _write(tmp_path, text: str | bytes, name: str = "m.csv"):
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_round_trip_integer(tmp_path):
    rng = np.random.default_rng(1)
    labels = rng.choice([-1, 0, 1], size=(7, 5))
    path = tmp_path / "sub" / "dir" / "labels.csv"  # parents are created
    write_matrix(path, labels)
    back = read_matrix(path, allowed={-1, 0, 1}, integer=True)
    assert back.dtype == np.int64
    np.testing.assert_array_equal(back, labels)


def test_round_trip_float(tmp_path):
    scores = np.random.default_rng(2).random((4, 3))
    path = tmp_path / "scores.csv"
    write_matrix(path, scores, fmt="%.17g")
    back = read_matrix(path)
    assert back.dtype == np.float64
    np.testing.assert_array_equal(back, scores)


def test_single_column_and_1d(tmp_path):
    path = tmp_path / "col.csv"
    write_matrix(path, np.array([1, 0, 1]))
    assert read_matrix(path, integer=True).shape == (3, 1)


def test_lenient_forms(tmp_path):
    # spaces around values, CRLF line ends, a BOM, blank trailing lines, "1.0" as an integer
    path = _write(tmp_path, "\ufeff 1 , -1\r\n0,1.0\r\n\n  \n".encode())
    np.testing.assert_array_equal(read_matrix(path, integer=True), [[1, -1], [0, 1]])


def test_allowed_float_mode(tmp_path):
    path = _write(tmp_path, "0,1\n1,0.5\n")
    with pytest.raises(SarbError, match=r"m\.csv:2: column 2: value '0\.5' is not one of 0, 1"):
        read_matrix(path, allowed={0, 1})


@pytest.mark.parametrize(
    ("text", "line", "fragment", "kwargs"),
    [
        ("1,2\n3\n", 2, "1 values, expected 2", {}),
        ("1,2\n3,4,5\n", 2, "3 values, expected 2", {}),
        ("1,2\n3,x\n", 2, "'x' is not a number", {}),
        ("1,2\n3,4\n5,\n", 3, "empty value", {}),
        ("1,2\n3,nan\n", 2, "not finite", {}),
        ("1,2\n-inf,1\n", 2, "not finite", {}),
        ("1,2\n1e400,1\n", 2, "not finite", {}),
        ("1,2\n3,1_0\n", 2, "not a number", {}),
        ('1,2\n"3",4\n', 2, "not a number", {}),
        ("1,2\n\n3,4\n", 2, "blank line", {}),
        ("1,0\n0,0.5\n", 2, "not an integer", {"integer": True}),
        ("1,0\n0,1e300\n", 2, "too large", {"integer": True}),
        ("1,0\n0,1\n1,2\n", 3, "not one of -1, 0, 1", {"integer": True, "allowed": {-1, 0, 1}}),
        ("2,0\n", 1, "not one of 0, 1", {"integer": True, "allowed": {0, 1}}),
        ("", 1, "empty", {}),
        ("\n\n", 1, "empty", {}),
    ],
)
def test_malformed_names_line(tmp_path, text, line, fragment, kwargs):
    path = _write(tmp_path, text)
    with pytest.raises(SarbError) as info:
        read_matrix(path, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert fragment in message
    assert "\n" not in message


def test_not_utf8_names_line(tmp_path):
    path = _write(tmp_path, b"1,2\n3,4\n\xff\xfe,1\n")
    with pytest.raises(SarbError, match=r"m\.csv:3: .*not UTF-8"):
        read_matrix(path)


def test_missing_file(tmp_path):
    with pytest.raises(SarbError, match=r"nope\.csv: .*not found"):
        read_matrix(tmp_path / "nope.csv", what="score matrix")


def test_directory_is_not_a_file(tmp_path):
    with pytest.raises(SarbError, match="directory"):
        read_matrix(tmp_path)


def test_what_appears_in_message(tmp_path):
    path = _write(tmp_path, "1,2\n3\n")
    with pytest.raises(SarbError, match="score matrix"):
        read_matrix(path, what="score matrix")


def test_fast_and_slow_paths_agree(tmp_path):
    # A quoted cell forces the slow parser; the numbers it accepts match the fast one's.
    fast = _write(tmp_path, "1.5,-2e3,+.5\n", "fast.csv")
    np.testing.assert_array_equal(read_matrix(fast), [[1.5, -2000.0, 0.5]])


def test_write_unwritable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SarbError, match="file"):
        write_matrix(blocker / "m.csv", np.zeros((2, 2)))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.one_of(
        st.text(alphabet="01-,.e \n\t+x", max_size=60),
        st.text(max_size=40),
        st.lists(st.lists(st.integers(-3, 3), min_size=1, max_size=4), max_size=5).map(
            lambda rows: "\n".join(",".join(map(str, r)) for r in rows)
        ),
    ),
    integer=st.booleans(),
)
def test_random_label_and_score_files_only_raise_sarb_errors(tmp_path, text, integer) -> None:
    path = tmp_path / "m.csv"
    path.write_text(text, encoding="utf-8")
    for allowed in ({1, -1, 0}, None):
        try:
            out = read_matrix(path, allowed=allowed, integer=integer)
        except SarbError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
        else:
            assert out.ndim == 2 and np.isfinite(out).all()
