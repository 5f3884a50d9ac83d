"""CSV and JSONL manifests: parsing, class handling, and errors naming file and line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from sarb.data.dataset import LabelledImages
from sarb.data.manifest import read_manifest, write_manifest_csv
from sarb.errors import SarbError


def _png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (10, 20, 30)).save(path)
    return path


@pytest.fixture
def root(tmp_path) -> Path:
    """A folder with images a.png, b.png, sub/c.png."""
    for name in ["a.png", "b.png", "sub/c.png"]:
        _png(tmp_path / name)
    return tmp_path


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _jsonl(path: Path, *records) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    return _write(path, "\n".join(lines) + "\n")


# ---------------------------------------------------------------- CSV, well formed


def test_csv_parses(root):
    path = _write(
        root / "train.csv",
        "image,cat,dog,person\na.png,1,-1,\n b.png , 0 , 1 , -1 \nsub/c.png,,,\n",
    )
    data = read_manifest(path)
    assert isinstance(data, LabelledImages)
    assert data.class_names == ["cat", "dog", "person"]
    assert data.images == [root / "a.png", root / "b.png", root / "sub" / "c.png"]
    assert all(p.is_absolute() for p in data.images)
    assert data.labels.dtype == np.int8
    np.testing.assert_array_equal(data.labels, [[1, -1, 0], [0, 1, -1], [0, 0, 0]])
    assert data.source == str(path)


def test_csv_relative_to_manifest_folder_not_cwd(root, monkeypatch, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    monkeypatch.chdir(elsewhere)
    manifest = _write(root / "sub" / "m.csv", "image,x\nc.png,1\n../a.png,-1\n")
    data = read_manifest(manifest)
    assert data.images == [root / "sub" / "c.png", root / "a.png"]
    # a manifest given by a relative path resolves against its own folder too
    rel = Path(os.path.relpath(manifest, elsewhere))
    assert read_manifest(rel).images == data.images


def test_csv_absolute_path_kept(root, tmp_path_factory):
    other = tmp_path_factory.mktemp("other")
    manifest = _write(other / "m.csv", f"image,x\n{root / 'b.png'},1\n")
    assert read_manifest(manifest).images == [root / "b.png"]


def test_csv_class_names_reorder(root):
    path = _write(root / "m.csv", "image,dog,cat\na.png,1,-1\nb.png,,1\n")
    data = read_manifest(path, class_names=["cat", "dog"])
    assert data.class_names == ["cat", "dog"]
    np.testing.assert_array_equal(data.labels, [[-1, 1], [1, 0]])


def test_csv_quoted_path_crlf_bom_blank_lines(root):
    _png(root / "with, comma.png")
    path = root / "m.csv"
    path.write_bytes(b'\xef\xbb\xbfIMAGE,x\r\n\r\n"with, comma.png",1\r\n\r\n')
    data = read_manifest(path)
    assert data.images == [root / "with, comma.png"]
    np.testing.assert_array_equal(data.labels, [[1]])


def test_check_images_off(tmp_path):
    path = _write(tmp_path / "m.csv", "image,x\nmissing.png,1\n")
    assert read_manifest(path, check_images=False).images == [tmp_path / "missing.png"]


def test_write_read_round_trip(root, tmp_path_factory):
    images = [root / "a.png", root / "sub" / "c.png", root / "with, comma.png"]
    _png(images[2])
    data = LabelledImages(images, np.array([[1, 0, -1], [0, 1, 1], [-1, -1, 0]]), ["a", "b c", "d"])
    manifest = root / "out" / "m.csv"
    write_manifest_csv(manifest, data)
    text = manifest.read_text(encoding="utf-8")
    assert text.splitlines()[1].startswith("../a.png,")  # relative to the manifest's folder
    back = read_manifest(manifest)
    assert back.images == images
    assert back.class_names == data.class_names
    np.testing.assert_array_equal(back.labels, data.labels)


def test_write_unwritable(tmp_path):
    blocker = _write(tmp_path / "file", "x")
    data = LabelledImages([tmp_path / "a.png"], np.array([[1]]), ["x"])
    with pytest.raises(SarbError, match="file"):
        write_manifest_csv(blocker / "m.csv", data)


# ---------------------------------------------------------------- JSONL, well formed


def test_jsonl_parses(root):
    path = _jsonl(
        root / "m.jsonl",
        {"image": "a.png", "positive": ["dog"], "negative": ["cat"]},
        "",
        {"image": "sub/c.png", "positive": ["bird", "cat"]},
        {"image": "b.png"},
    )
    data = read_manifest(path)
    assert data.class_names == ["bird", "cat", "dog"]  # sorted union
    assert data.images == [root / "a.png", root / "sub" / "c.png", root / "b.png"]
    np.testing.assert_array_equal(data.labels, [[0, -1, 1], [1, 1, 0], [0, 0, 0]])


def test_jsonl_with_class_names(root):
    path = _jsonl(root / "m.jsonl", {"image": "a.png", "positive": ["dog"]})
    data = read_manifest(path, class_names=["zebra", "dog", "ant"])
    assert data.class_names == ["zebra", "dog", "ant"]
    np.testing.assert_array_equal(data.labels, [[0, 1, 0]])


# ---------------------------------------------------------------- malformed cases

CSV_CASES = [
    # (text, line, fragment, class_names, check_images)
    ("", 1, "empty manifest", None, True),
    ("\n  \n", 1, "empty manifest", None, True),
    ("a.png,1,0\n", 1, "header", None, True),
    ("img,cat\na.png,1\n", 1, "header", None, True),
    ("image\na.png\n", 1, "no classes", None, True),
    ("image,cat,,dog\na.png,1,0,0\n", 1, "empty class name in column 3", None, True),
    ("image,cat,dog,cat\na.png,1,0,0\n", 1, "appears twice", None, True),
    ("\nimage,cat,dog,cat\n", 2, "appears twice", None, True),
    ("image,cat,cow\na.png,1,0\n", 1, "unknown class 'cow'", ["cat", "dog"], True),
    ("image,cat\na.png,1\n", 1, "lacks the expected class 'dog'", ["cat", "dog"], True),
    ("image,cat\n", 2, "no image rows", None, True),
    ("image,cat,dog\na.png,1,0\nb.png,2,0\n", 3, "value '2'", None, True),
    ("image,cat,dog\na.png,1,yes\n", 2, "value 'yes'", None, True),
    ("image,cat,dog\na.png,1,1.0\n", 2, "value '1.0'", None, True),
    ("image,cat,dog\na.png,1\n", 2, "2 cells, expected 3", None, True),
    ("image,cat,dog\na.png,1,0,0\n", 2, "4 cells, expected 3", None, True),
    ("image,cat\na.png,1\nnope.png,1\n", 3, "image file not found", None, True),
    ("image,cat\n,1\n", 2, "empty image path", None, False),
    ("image,cat\na.png,1\nb.png,0\n./a.png,-1\n", 4, "first on line 2", None, True),
]


@pytest.mark.parametrize(("text", "line", "fragment", "class_names", "check"), CSV_CASES)
def test_csv_malformed(root, text, line, fragment, class_names, check):
    path = _write(root / "bad.csv", text)
    with pytest.raises(SarbError) as info:
        read_manifest(path, class_names=class_names, check_images=check)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message, message
    assert "\n" not in message


JSONL_CASES = [
    # (lines, line, fragment, class_names, check_images)
    ([], 1, "empty manifest", None, True),
    (["", "  "], 1, "empty manifest", None, True),
    (['{"image": "a.png", "positive": ["x"]}', "{not json"], 2, "invalid JSON", None, True),
    (['{"image": "a.png", "positive": ["x"]}', "[1, 2]"], 2, "JSON object", None, True),
    (['"a.png"'], 1, "JSON object", None, True),
    (['{"positive": ["x"]}'], 1, 'missing the "image" key', None, True),
    (['{"image": 3, "positive": ["x"]}'], 1, '"image" must be a string', None, True),
    (['{"image": "a.png", "positives": ["x"]}'], 1, "unknown key 'positives'", None, True),
    (['{"image": "a.png", "positive": "x"}'], 1, "list of class names", None, True),
    (['{"image": "a.png", "negative": [1]}'], 1, "list of class names", None, True),
    (['{"image": "a.png", "negative": [""]}'], 1, "empty class name", None, True),
    (
        ["", '{"image": "a.png", "positive": ["x", "y"], "negative": ["y"]}'],
        2,
        "both positive and negative",
        None,
        True,
    ),
    (
        ['{"image": "a.png", "positive": ["x"]}', '{"image": "b.png", "negative": ["z"]}'],
        2,
        "unknown class 'z'",
        ["x", "y"],
        True,
    ),
    (
        ['{"image": "a.png", "positive": ["x"]}', '{"image": "nope.png"}'],
        2,
        "image file not found",
        None,
        True,
    ),
    (
        ['{"image": "a.png", "positive": ["x"]}', '{"image": "b.png"}', '{"image": "a.png"}'],
        3,
        "first on line 1",
        None,
        True,
    ),
    (['{"image": "a.png"}', '{"image": "b.png"}'], 1, "no class is named", None, True),
    (['{"image": "   "}'], 1, "empty image path", ["x"], False),
]


@pytest.mark.parametrize(("lines", "line", "fragment", "class_names", "check"), JSONL_CASES)
def test_jsonl_malformed(root, lines, line, fragment, class_names, check):
    path = _write(root / "bad.jsonl", "".join(f"{x}\n" for x in lines))
    with pytest.raises(SarbError) as info:
        read_manifest(path, class_names=class_names, check_images=check)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message, message
    assert "\n" not in message


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_not_utf8(root, suffix):
    path = root / f"bad{suffix}"
    path.write_bytes(b"image,x\na.png,1\n\xff\n")
    with pytest.raises(SarbError, match=rf"bad{suffix}:3: .*not UTF-8"):
        read_manifest(path)


def test_missing_manifest(tmp_path):
    with pytest.raises(SarbError, match=r"nope\.csv: manifest file not found"):
        read_manifest(tmp_path / "nope.csv")


@pytest.mark.parametrize("name", ["m.txt", "m.json", "m"])
def test_unknown_format(tmp_path, name):
    path = _write(tmp_path / name, "image,x\n")
    with pytest.raises(SarbError, match=r"\.csv or \.jsonl"):
        read_manifest(path)


def test_bad_class_names_argument(root):
    path = _write(root / "m.csv", "image,x\na.png,1\n")
    with pytest.raises(SarbError, match="duplicated"):
        read_manifest(path, class_names=["x", "x"])


# ---------------------------------------------------------------- property-based

_ALPHABET = st.sampled_from(list('image,-10 \t\r\n"{}[]:positvngaxb.png\\/\x00é'))
_TEXT = st.one_of(
    st.text(alphabet=_ALPHABET, max_size=120),
    st.text(max_size=80),
    st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
)
_JSONL_TEXT = st.one_of(
    _TEXT,
    st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {"image": st.sampled_from(["a.png", "b.png", "c.png", "", "x\ny.png", 3, None])},
                optional={
                    "positive": st.lists(st.sampled_from(["x", "y", "", 1]), max_size=3),
                    "negative": st.one_of(
                        st.lists(st.sampled_from(["x", "y", "z"]), max_size=3), st.none()
                    ),
                },
            ),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3)
                ),
                max_leaves=8,
            ),
        ).map(json.dumps),
        max_size=5,
    ).map("\n".join),
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.one_of(_TEXT, _JSONL_TEXT),
    suffix=st.sampled_from([".csv", ".jsonl"]),
    class_names=st.sampled_from([None, ["x"], ["x", "y"], ["image", "b"]]),
    check=st.booleans(),
)
def test_random_text_only_raises_sarb_error(tmp_path, text, suffix, class_names, check):
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    try:
        data = read_manifest(path, class_names=class_names, check_images=check)
    except SarbError as exc:
        message = str(exc)
        assert message.startswith(str(path))
        assert "\n" not in message
    else:
        assert len(data.images) == data.labels.shape[0] > 0
        assert set(np.unique(data.labels)) <= {-1, 0, 1}
        if class_names is not None:
            assert data.class_names == class_names
