"""COCO readers: --dataset coco (any COCO-format file) and --dataset coco2014 (the paper's)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from sarb.cli import main
from sarb.data import coco
from sarb.data.coco import COCO_CLASSES, load_instances, read_coco
from sarb.data.sources import read_dataset
from sarb.errors import SarbError

# Categories listed out of id order, ids not contiguous: columns must be 2 (cat), 5 (dog), 9.
CATEGORIES = [
    {"id": 9, "name": "zebra"},
    {"id": 2, "name": "cat"},
    {"id": 5, "name": "dog"},
]
# Image rows in file order (ids deliberately not sorted); 30 has no annotation at all.
IMAGES = [(40, "b.jpg"), (10, "a.jpg"), (30, "c.jpg"), (20, "d.jpg")]
ANNOTATIONS = [
    (40, 2, 0),
    (40, 2, 0),  # a second cat in the same image
    (10, 9, 0),
    (10, 5, 1),  # a crowd annotation counts as present (reference protocol)
    (20, 5, 0),
]
EXPECTED = np.array(
    [
        [1, -1, -1],  # b.jpg: cat
        [-1, 1, 1],  # a.jpg: dog (crowd), zebra
        [-1, -1, -1],  # c.jpg: no annotation -> all negative, still a row
        [-1, 1, -1],  # d.jpg: dog
    ],
    dtype=np.int8,
)


def _config(**kw: object) -> SimpleNamespace:
    base = dict(
        dataset="coco",
        root=None,
        annotations=None,
        images=None,
        test_annotations=None,
        test_images=None,
        cache_dir=None,
        voc_difficult="negative",
    )
    base.update(kw)
    return SimpleNamespace(**base)


def write_instances(path: Path, images=IMAGES, annotations=ANNOTATIONS, categories=CATEGORIES):
    data = {
        "info": {},
        "images": [{"id": i, "file_name": f, "width": 8, "height": 8} for i, f in images],
        "annotations": [
            {"id": k, "image_id": i, "category_id": c, "iscrowd": crowd, "bbox": [0, 0, 1, 1]}
            for k, (i, c, crowd) in enumerate(annotations)
        ],
        "categories": categories,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_jpegs(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        Image.new("RGB", (8, 8), (k * 40, 80, 120)).save(folder / name, quality=80)


@pytest.fixture()
def coco_files(tmp_path: Path) -> dict[str, Path]:
    ann = write_instances(tmp_path / "ann" / "instances.json")
    write_jpegs(tmp_path / "img", [f for _, f in IMAGES])
    return {"annotations": ann, "images": tmp_path / "img", "cache": tmp_path / "cache"}


def test_labels_rows_and_classes(coco_files):
    data = read_coco(coco_files["annotations"], coco_files["images"], coco_files["cache"])
    assert data.class_names == ["cat", "dog", "zebra"]  # ascending category id
    assert [p.name for p in data.images] == ["b.jpg", "a.jpg", "c.jpg", "d.jpg"]
    np.testing.assert_array_equal(data.labels, EXPECTED)
    assert data.labels.dtype == np.int8


def test_dataset_coco_registered(coco_files):
    cfg = _config(
        annotations=str(coco_files["annotations"]),
        images=str(coco_files["images"]),
        test_annotations=str(coco_files["annotations"]),
        cache_dir=str(coco_files["cache"]),
    )
    source = read_dataset(cfg)
    assert source.val is None  # the engine carves a validation split
    np.testing.assert_array_equal(source.train.labels, EXPECTED)
    np.testing.assert_array_equal(source.test.labels, EXPECTED)
    assert source.test.images[0] == coco_files["images"] / "b.jpg"  # --test-images defaults


def test_coco_needs_a_test_file(coco_files):
    cfg = _config(annotations=str(coco_files["annotations"]), images=str(coco_files["images"]))
    with pytest.raises(SarbError, match="--test-annotations"):
        read_dataset(cfg)
    with pytest.raises(SarbError, match="--annotations"):
        read_dataset(_config())


def test_cache_parses_once(coco_files, monkeypatch):
    monkeypatch.setattr(coco, "CACHE_MIN_BYTES", 0)
    first = load_instances(coco_files["annotations"], coco_files["cache"])
    entries = list((coco_files["cache"] / "coco-labels").glob("*.npz"))
    assert len(entries) == 1

    def no_parse(path):
        raise AssertionError("parsed again despite a current cache")

    monkeypatch.setattr(coco, "parse_instances", no_parse)
    again = load_instances(coco_files["annotations"], coco_files["cache"])
    assert again.file_names == first.file_names
    np.testing.assert_array_equal(again.labels, first.labels)
    assert again.labels.dtype == np.int8
    assert again.category_ids == first.category_ids == [2, 5, 9]
    assert again.class_names == first.class_names
    # A changed file (size and mtime) is a new key: parsed again.
    monkeypatch.undo()
    monkeypatch.setattr(coco, "CACHE_MIN_BYTES", 0)
    write_instances(coco_files["annotations"], annotations=ANNOTATIONS[:1])
    changed = load_instances(coco_files["annotations"], coco_files["cache"])
    assert changed.labels[1].tolist() == [-1, -1, -1]
    # A corrupt cache entry is ignored and rewritten.
    for entry in (coco_files["cache"] / "coco-labels").glob("*.npz"):
        entry.write_bytes(b"junk")
    assert np.array_equal(
        load_instances(coco_files["annotations"], coco_files["cache"]).labels, changed.labels
    )


def test_small_files_are_not_cached(coco_files):
    load_instances(coco_files["annotations"], coco_files["cache"])
    assert not (coco_files["cache"] / "coco-labels").exists()


def test_coco2014_layout(tmp_path):
    root = tmp_path / "coco"
    write_instances(root / "annotations" / "instances_train2014.json")
    write_instances(
        root / "annotations" / "instances_val2014.json",
        images=[(7, "v.jpg")],
        annotations=[(7, 9, 0)],
    )
    write_jpegs(root / "train2014", [f for _, f in IMAGES])
    write_jpegs(root / "val2014", ["v.jpg"])
    source = read_dataset(_config(dataset="coco2014", root=str(root), cache_dir=str(tmp_path)))
    assert source.name == "coco2014"
    np.testing.assert_array_equal(source.train.labels, EXPECTED)
    assert source.test.images == [root / "val2014" / "v.jpg"]
    assert source.test.labels.tolist() == [[-1, -1, 1]]


def test_coco2014_class_names_constant():
    assert len(COCO_CLASSES) == 80 == len(set(COCO_CLASSES))
    real = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-cc" / "instances.json"
    if real.is_file():  # the real category list, where the shared sample is present
        cats = json.loads(real.read_text())["categories"]
        assert [c["name"] for c in sorted(cats, key=lambda c: c["id"])] == list(COCO_CLASSES)


def _run(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def _labels_args(ann: Path, images: Path, tmp_path: Path) -> list[str]:
    return ["labels", "--dataset", "coco", "--annotations", str(ann), "--images", str(images),
            "--test-annotations", str(ann), "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "out.csv")]  # fmt: skip


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "invalid JSON (line 1 column 2"),
        ("[1, 2]", "expected a JSON object"),
        ('{"images": [], "categories": []}', "no 'annotations' list"),
        (
            json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": CATEGORIES,
                        "annotations": [{"image_id": 99, "category_id": 2}]}),
            "image_id 99",
        ),
        (
            json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": CATEGORIES,
                        "annotations": [{"image_id": 1, "category_id": 4}]}),
            "category_id 4",
        ),
        (
            json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}] * 2, "categories": CATEGORIES,
                        "annotations": []}),
            "image id 1 appears twice",
        ),
    ],
)  # fmt: skip
def test_corrupt_annotation_file(tmp_path, capsys, content, message):
    ann = tmp_path / "bad.json"
    ann.write_text(content)
    write_jpegs(tmp_path / "img", ["a.jpg"])
    code, err = _run(_labels_args(ann, tmp_path / "img", tmp_path), capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(ann) in lines[0] and message in lines[0], err


def test_missing_annotation_file_and_image(coco_files, tmp_path, capsys):
    missing = tmp_path / "nope.json"
    code, err = _run(_labels_args(missing, coco_files["images"], tmp_path), capsys)
    assert (
        code == 2 and err.count("\n") == 1 and f"{missing}: COCO annotation file not found" in err
    )

    (coco_files["images"] / "c.jpg").unlink()
    code, err = _run(
        _labels_args(coco_files["annotations"], coco_files["images"], tmp_path), capsys
    )
    assert code == 2 and err.count("\n") == 1
    assert f"{coco_files['images'] / 'c.jpg'}: image file not found" in err


def test_wrong_coco2014_root(tmp_path, capsys):
    code, err = _run(["labels", "--dataset", "coco2014", "--root", str(tmp_path / "x"),
                      "--out", str(tmp_path / "o.csv")], capsys)  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and str(tmp_path / "x") in err
    code, err = _run(["labels", "--dataset", "coco2014", "--root", str(tmp_path),
                      "--out", str(tmp_path / "o.csv")], capsys)  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "instances_train2014.json" in err


def test_shipped_embeddings_without_glove(monkeypatch, capsys):
    """`--embeddings auto` on COCO without the GloVe extra: the shipped GloVe vectors."""
    from sarb.data import embeddings as emb

    want = emb.glove_embeddings(COCO_CLASSES) if emb.glove_available() else None
    monkeypatch.setattr(emb, "glove_available", lambda: False)
    got = emb.class_embeddings(list(COCO_CLASSES), "auto")
    assert got.shape == (80, 50) and got.dtype == np.float32
    if want is not None:  # the shipped file is what make_embeddings.py computes
        np.testing.assert_array_equal(got, want)
    assert capsys.readouterr().err == ""
    assert emb.class_embeddings(list(COCO_CLASSES[:-1]), "auto") is None  # exact match only
    assert "learned" in capsys.readouterr().err
