"""Pascal VOC 2007 reader: layouts, row and class order, the two difficult protocols, errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from sarb.cli import main
from sarb.data.sources import read_dataset
from sarb.data.voc import VOC_CLASSES, find_voc2007, read_voc_split
from sarb.errors import SarbError

# image id -> [(class, difficult flag or None for a missing <difficult> tag)]
OBJECTS = {
    "000005": [("chair", "0"), ("chair", "1"), ("person", "1")],  # person only difficult
    "000007": [("car", "0")],
    "000009": [("horse", None), ("person", "0")],
    "000012": [("dog", "1")],  # only difficult
    "000014": [("tvmonitor", "0"), ("pottedplant", "0")],
}
TRAINVAL = ["000009", "000005", "000007"]  # not sorted: the file's order is the row order
TEST = ["000014", "000012"]


def _xml(objects: list[tuple[str, str | None]]) -> str:
    parts = []
    for name, difficult in objects:
        tag = f"<difficult>{difficult}</difficult>" if difficult is not None else ""
        parts.append(
            f"<object><name>{name}</name><pose>Unspecified</pose>{tag}"
            "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"
            "<part><name>head</name></part></object>"
        )
    return f"<annotation><folder>VOC2007</folder>{''.join(parts)}</annotation>"


def make_voc(base: Path) -> Path:
    """A tiny VOCdevkit/VOC2007 tree under ``base``; returns the VOC2007 folder."""
    voc = base / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (voc / sub).mkdir(parents=True, exist_ok=True)
    for k, (image_id, objects) in enumerate(OBJECTS.items()):
        (voc / "Annotations" / f"{image_id}.xml").write_text(_xml(objects))
        Image.new("RGB", (10, 10), (20 * k, 60, 90)).save(voc / "JPEGImages" / f"{image_id}.jpg")
    (voc / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(TRAINVAL) + "\n\n")
    (voc / "ImageSets" / "Main" / "test.txt").write_text("\r\n".join(TEST) + "\r\n")
    return voc


@pytest.fixture()
def voc(tmp_path: Path) -> Path:
    return make_voc(tmp_path)


def _cfg(root: Path, difficult: str = "negative") -> SimpleNamespace:
    return SimpleNamespace(dataset="voc2007", root=str(root), voc_difficult=difficult)


def _row(**present: int) -> list[int]:
    return [present.get(c, -1) for c in VOC_CLASSES]


def test_classes_and_rows(voc):
    assert len(VOC_CLASSES) == 20 and list(VOC_CLASSES) == sorted(VOC_CLASSES)
    data = read_voc_split(voc, "trainval")
    assert data.class_names == list(VOC_CLASSES)
    assert [p.name for p in data.images] == [f"{i}.jpg" for i in TRAINVAL]
    assert data.labels.tolist() == [
        _row(horse=1, person=1),
        _row(chair=1),  # the difficult person is skipped: -1 (reference protocol)
        _row(car=1),
    ]


def test_difficult_modes(voc):
    negative = read_voc_split(voc, "test", "negative")
    ignore = read_voc_split(voc, "test", "ignore")
    assert negative.labels.tolist() == [_row(tvmonitor=1, pottedplant=1), _row()]
    assert ignore.labels.tolist() == [_row(tvmonitor=1, pottedplant=1), _row(dog=0)]
    train = read_voc_split(voc, "trainval", "ignore").labels
    person, chair = VOC_CLASSES.index("person"), VOC_CLASSES.index("chair")
    assert train[1, person] == 0  # present only as difficult
    assert train[1, chair] == 1  # a non-difficult chair wins over a difficult one


@pytest.mark.parametrize("where", ["VOC2007", "devkit", "parent"])
def test_root_layouts(tmp_path, where):
    voc = make_voc(tmp_path)
    root = {"VOC2007": voc, "devkit": voc.parent, "parent": tmp_path}[where]
    if where == "devkit":  # root/VOC2007 (a folder holding VOC2007 directly)
        assert find_voc2007(root) == voc
    source = read_dataset(_cfg(root))
    assert source.name == "voc2007" and source.val is None
    assert len(source.train) == 3 and len(source.test) == 2
    assert source.test.images[0] == voc / "JPEGImages" / "000014.jpg"


def test_dataset_flag(voc):
    source = read_dataset(_cfg(voc, "ignore"))
    assert source.test.labels[1, VOC_CLASSES.index("dog")] == 0


def _labels(root: Path, out: Path, capsys, *extra: str) -> tuple[int, str]:
    code = main(["labels", "--dataset", "voc2007", "--root", str(root), "--out", str(out), *extra])
    return code, capsys.readouterr().err


def test_errors(tmp_path, capsys):
    out = tmp_path / "o.csv"
    code, err = _labels(tmp_path / "missing", out, capsys)
    assert code == 2 and err.count("\n") == 1 and str(tmp_path / "missing") in err

    code, err = _labels(tmp_path, out, capsys)  # exists, but holds no VOC tree
    assert code == 2 and err.count("\n") == 1 and "not a VOC 2007 folder" in err

    voc = make_voc(tmp_path / "a")
    bad = voc / "Annotations" / "000007.xml"
    bad.write_text("<annotation><object><name>car</name>")
    code, err = _labels(voc, out, capsys)
    assert code == 2 and err.count("\n") == 1 and f"{bad}: invalid XML" in err

    bad.write_text(_xml([("unicorn", "0")]))
    code, err = _labels(voc, out, capsys)
    assert code == 2 and err.count("\n") == 1 and "'unicorn'" in err and str(bad) in err

    bad.unlink()
    code, err = _labels(voc, out, capsys)
    assert code == 2 and err.count("\n") == 1 and f"{bad}: VOC annotation file not found" in err

    voc = make_voc(tmp_path / "b")
    (voc / "JPEGImages" / "000005.jpg").unlink()
    code, err = _labels(voc, out, capsys)
    assert code == 2 and err.count("\n") == 1
    assert f"{voc / 'JPEGImages' / '000005.jpg'}: image file not found" in err

    voc = make_voc(tmp_path / "c")
    (voc / "ImageSets" / "Main" / "test.txt").unlink()
    code, err = _labels(voc, out, capsys, "--split", "test")
    assert code == 2 and "test.txt: VOC image list not found" in err


def test_bad_difficult_mode(voc):
    with pytest.raises(SarbError, match="voc-difficult"):
        read_voc_split(voc, "test", "drop")


def test_labels_cli_matches_reader(voc, tmp_path, capsys):
    out, names = tmp_path / "test.csv", tmp_path / "names.txt"
    code, _ = _labels(voc, out, capsys, "--split", "test", "--voc-difficult", "ignore",
                      "--names", str(names))  # fmt: skip
    assert code == 0
    want = read_voc_split(voc, "test", "ignore").labels
    np.testing.assert_array_equal(np.loadtxt(out, delimiter=",", dtype=np.int64, ndmin=2), want)
    assert names.read_text().splitlines() == list(VOC_CLASSES)


def test_shipped_embeddings_without_glove(monkeypatch):
    from sarb.data import embeddings as emb

    want = emb.glove_embeddings(VOC_CLASSES) if emb.glove_available() else None
    monkeypatch.setattr(emb, "glove_available", lambda: False)
    got = emb.class_embeddings(list(VOC_CLASSES), "auto")
    assert got.shape == (20, 50)
    if want is not None:
        np.testing.assert_array_equal(got, want)
