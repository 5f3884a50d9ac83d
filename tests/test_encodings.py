"""Label encodings (sarb, dualcoop, mlcpl): exact round trips, the files, the two commands."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sarb.cli import main
from sarb.data.csvio import read_matrix
from sarb.data.encodings import ENCODINGS, decode, encode, read_labels, write_labels
from sarb.errors import SarbError
from tests.test_coco import EXPECTED
from tests.test_labels_cli import coco_args  # noqa: F401  (a fixture)

LABELS = arrays(
    np.int8,
    st.tuples(st.integers(1, 6), st.integers(1, 5)),
    elements=st.sampled_from([1, -1, 0]),
)
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@given(labels=LABELS, encoding=st.sampled_from(tuple(ENCODINGS)))
@SETTINGS
def test_encode_decode_round_trip(labels, encoding):
    encoded = encode(labels, encoding)
    back = decode(encoded, encoding)
    assert back.dtype == np.int8
    np.testing.assert_array_equal(back, labels)


@given(labels=LABELS, encoding=st.sampled_from(tuple(ENCODINGS)))
@SETTINGS
def test_file_round_trip(tmp_path, labels, encoding):
    path = tmp_path / f"{encoding}.csv"
    write_labels(path, labels, encoding)
    np.testing.assert_array_equal(read_labels(path, encoding), labels)


@given(
    labels=LABELS, first=st.sampled_from(tuple(ENCODINGS)), second=st.sampled_from(tuple(ENCODINGS))
)
@SETTINGS
def test_conversion_between_encodings_is_lossless(labels, first, second):
    there = decode(encode(labels, first), first)
    np.testing.assert_array_equal(decode(encode(there, second), second), labels)


def test_the_three_encodings_as_written(tmp_path):
    labels = np.array([[1, -1, 0], [0, 1, -1]])
    expected = {
        "sarb": "1,-1,0\n0,1,-1\n",
        "dualcoop": "1,0,-1\n-1,1,0\n",
        "mlcpl": "1,0,nan\nnan,1,0\n",
    }
    for encoding, text in expected.items():
        path = tmp_path / f"{encoding}.csv"
        write_labels(path, labels, encoding)
        assert path.read_text() == text


def test_mlcpl_reads_what_pandas_writes(tmp_path):
    # pandas' to_csv writes floats, and NaN as an empty cell; "NaN" is read too.
    path = tmp_path / "mlcpl.csv"
    path.write_text("1.0,0.0,\n,NaN,1.0\n")
    np.testing.assert_array_equal(read_labels(path, "mlcpl"), [[1, -1, 0], [0, 0, 1]])


@pytest.mark.parametrize(
    ("encoding", "text", "complete", "fragment"),
    [
        ("sarb", "1,2\n", False, "value '2' is not one of -1, 0, 1"),
        ("sarb", "1,0\n", True, "value '0' is not one of -1, 1"),
        ("dualcoop", "1,-1\n", True, "value '-1' is not one of 0, 1"),
        ("mlcpl", "1,-1\n", False, "value '-1' is not one of 0, 1"),
        ("mlcpl", "1,0\n1,nan\n", True, "2: column 2: an unknown value (nan or empty)"),
        ("mlcpl", "1,0\n0,inf\n", False, "not finite"),
        ("mlcpl", "1,0\n0,0.5\n", False, "not an integer"),
    ],
)
def test_a_value_outside_the_encoding_is_a_line_numbered_error(
    tmp_path, encoding, text, complete, fragment
):
    path = tmp_path / "l.csv"
    path.write_text(text)
    with pytest.raises(SarbError) as info:
        read_labels(path, encoding, complete=complete)
    message = str(info.value)
    assert message.startswith(f"{path}:") and fragment in message and "\n" not in message
    if "finite" not in fragment and "integer" not in fragment:  # a value the encoding lacks
        assert encoding in message


def test_unknown_encoding_and_values():
    with pytest.raises(SarbError, match="'onehot' is not one of sarb, dualcoop, mlcpl"):
        encode(np.ones((1, 1)), "onehot")
    with pytest.raises(SarbError, match="found 2"):
        encode(np.array([[2]]), "dualcoop")


def test_missing_cells_are_only_read_when_asked(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("1, nan ,\n0,1,1\n")
    out = read_matrix(path, missing=True)
    assert out.dtype == np.float64 and np.isnan(out[0, 1:]).all() and out[1].tolist() == [0, 1, 1]
    with pytest.raises(SarbError, match="not finite"):
        read_matrix(path)


def _main(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("encoding", ["dualcoop", "mlcpl"])
def test_labels_and_masks_commands(coco_args, tmp_path, capsys, encoding):  # noqa: F811
    full = tmp_path / "full.csv"
    code, err = _main(["labels", *coco_args, "--out", str(full), "--encoding", encoding], capsys)
    assert code == 0 and f"({encoding} encoding)" in err
    np.testing.assert_array_equal(read_labels(full, encoding, complete=True), EXPECTED)
    assert "-1" not in full.read_text()  # complete labels: 1 and 0 in both

    partial = tmp_path / "partial.csv"
    args = ["masks", "--labels", str(full), "--known", "0.5", "--out", str(partial)]
    code, _ = _main([*args, "--encoding", encoding], capsys)
    assert code == 0
    masked = read_labels(partial, encoding)

    # The same masks as the sarb encoding gives: the encoding changes the file, nothing else.
    sarb_full, sarb_partial = tmp_path / "s_full.csv", tmp_path / "s_partial.csv"
    assert _main(["labels", *coco_args, "--out", str(sarb_full)], capsys)[0] == 0
    args = ["masks", "--labels", str(sarb_full), "--known", "0.5", "--out", str(sarb_partial)]
    assert _main(args, capsys)[0] == 0
    np.testing.assert_array_equal(masked, read_labels(sarb_partial))


def test_masks_with_the_wrong_encoding_is_one_line(coco_args, tmp_path, capsys):  # noqa: F811
    full = tmp_path / "full.csv"
    assert _main(["labels", *coco_args, "--out", str(full)], capsys)[0] == 0  # 1 / -1
    args = ["masks", "--labels", str(full), "--known", "0.5", "--out", str(tmp_path / "p.csv")]
    code, err = _main([*args, "--encoding", "dualcoop"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert f"{full}:1:" in err and "is not one of 0, 1" in err and "dualcoop" in err
