"""NUS-WIDE reader on a small generated tree in the official layout: image lists with backslash
paths, Concepts81.txt, one 0/1 label file per concept and split; unlabelled images; errors."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from sarb.cli import main
from sarb.data.csvio import read_matrix
from sarb.data.nuswide import find_nuswide, read_concepts, read_nuswide_split
from sarb.data.sources import read_dataset
from sarb.errors import SarbError
from tests.conftest import tiny_train_args

CONCEPTS = ["animal", "beach", "sky", "zebra"]  # alphabetical, as the official list
# split -> [(folder\file, present concepts)]; one image per split has none of the concepts
IMAGES = {
    "Train": [
        (r"animal\0001_101.jpg", {"animal", "sky"}),
        (r"beach\0002_102.jpg", {"beach"}),
        (r"sky\0003_103.jpg", set()),
        (r"zebra\0004_104.jpg", {"zebra", "animal"}),
        (r"sky\0005_105.jpg", {"sky"}),
        (r"beach\0006_106.jpg", {"beach", "sky"}),
        (r"animal\0007_107.jpg", {"animal"}),
        (r"zebra\0008_108.jpg", {"zebra"}),
        (r"sky\0009_109.jpg", {"sky", "beach"}),
        (r"animal\0010_110.jpg", {"animal", "zebra"}),
        (r"beach\0011_111.jpg", {"beach"}),
        (r"sky\0012_112.jpg", {"sky"}),
    ],
    "Test": [
        (r"zebra\0013_201.jpg", {"zebra"}),
        (r"beach\0014_202.jpg", set()),
        (r"animal\0015_203.jpg", {"animal", "beach"}),
        (r"sky\0016_204.jpg", {"sky"}),
    ],
}


def make_nuswide(base: Path) -> Path:
    """The tree under ``base``; returns it."""
    (base / "ImageList").mkdir(parents=True)
    (base / "ConceptsList").mkdir()
    labels = base / "Groundtruth" / "TrainTestLabels"
    labels.mkdir(parents=True)
    (base / "ConceptsList" / "Concepts81.txt").write_text("\r\n".join(CONCEPTS) + "\r\n")
    every = []
    for k, (suffix, rows) in enumerate(IMAGES.items()):
        names = [name for name, _ in rows]
        (base / "ImageList" / f"{suffix}Imagelist.txt").write_text("\r\n".join(names) + "\r\n")
        every += [f"C:\\ImageData\\Flickr\\{name}" for name in names]
        for concept in CONCEPTS:
            values = "".join(f"{int(concept in present)}\n" for _, present in rows)
            (labels / f"Labels_{concept}_{suffix}.txt").write_text(values)
        for i, name in enumerate(names):
            path = base / "Flickr" / Path(*name.split("\\"))
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16), (20 * i, 80 * k, 90)).save(path)
    (base / "ImageList" / "Imagelist.txt").write_text("\r\n".join(every) + "\r\n")
    return base


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    return make_nuswide(tmp_path / "NUS-WIDE")


def _cfg(root: Path, unlabelled: str = "drop", images: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        dataset="nuswide", root=str(root), images=images, nuswide_unlabelled=unlabelled
    )


def _expected(suffix: str, keep: bool) -> np.ndarray:
    rows = [[1 if c in present else -1 for c in CONCEPTS] for _, present in IMAGES[suffix]]
    return np.array([r for r in rows if keep or 1 in r])


def test_splits_rows_and_columns(tree):
    concepts = read_concepts(tree)
    assert concepts == CONCEPTS
    data = read_nuswide_split(tree, "train", concepts)
    assert data.class_names == CONCEPTS and len(data) == 12
    assert data.images[0] == tree / "Flickr" / "animal" / "0001_101.jpg"  # backslashes split
    np.testing.assert_array_equal(data.labels, _expected("Train", keep=True))


@pytest.mark.parametrize("mode", ["drop", "keep"])
def test_unlabelled_images_dropped_or_kept_and_counted(tree, capsys, mode):
    source = read_dataset(_cfg(tree.parent, mode))  # a parent holding NUS-WIDE/ works too
    err = capsys.readouterr().err
    assert "1 of 12 train and 1 of 4 test images have none of the 4 concepts" in err
    assert ("dropped" in err) == (mode == "drop")
    keep = mode == "keep"
    np.testing.assert_array_equal(source.train.labels, _expected("Train", keep))
    np.testing.assert_array_equal(source.test.labels, _expected("Test", keep))
    assert source.val is None and len(source.train) == (12 if keep else 11)
    assert (tree / "Flickr" / "sky" / "0003_103.jpg" in source.train.images) == keep


def test_images_flag_and_labels_command(tree, tmp_path, capsys):
    moved = tmp_path / "photos"
    (tree / "Flickr").rename(moved)
    source = read_dataset(_cfg(tree, images=str(moved)))
    assert source.test.images[0] == moved / "zebra" / "0013_201.jpg"
    out = tmp_path / "test.csv"
    args = ["labels", "--dataset", "nuswide", "--root", str(tree), "--images", str(moved)]
    assert main([*args, "--split", "test", "--nuswide-unlabelled", "keep", "--out", str(out)]) == 0
    np.testing.assert_array_equal(read_matrix(out, integer=True), _expected("Test", keep=True))


def test_trains_end_to_end(tree, tmp_path):
    args = tiny_train_args({"train": Path(), "test": Path()}, tmp_path / "run")
    args = args[:1] + ["--dataset", "nuswide", "--root", str(tree)] + args[7:]
    assert main([*args, "--val-fraction", "0.3", "--max-steps", "2"]) == 0
    assert (tmp_path / "run" / "config.yaml").read_text().count("dataset: nuswide") == 1


def _labels(root: Path, tmp_path: Path, capsys) -> str:
    code = main(
        ["labels", "--dataset", "nuswide", "--root", str(root), "--out", str(tmp_path / "o")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("sarb: error: "), err
    return err


def test_errors_name_the_file(tree, tmp_path, capsys):
    assert "not a NUS-WIDE folder" in _labels(tmp_path / "NUS-WIDE" / "ImageList", tmp_path, capsys)
    bad = tree / "Groundtruth" / "TrainTestLabels" / "Labels_sky_Test.txt"
    bad.write_text("0\n1\n")
    assert f"{bad}: 2 lines, expected one per image of TestImagelist.txt (4)" in _labels(
        tree, tmp_path, capsys
    )
    bad.write_text("0\n2\n0\n1\n")
    assert f"{bad}:2: column 1: value '2' is not one of 0, 1" in _labels(tree, tmp_path, capsys)
    bad.unlink()
    assert f"{bad}: label file of concept 'sky' not found" in _labels(tree, tmp_path, capsys)
    make_nuswide(tmp_path / "b")
    image = tmp_path / "b" / "Flickr" / "beach" / "0002_102.jpg"
    image.unlink()
    assert f"{image}: image file not found" in _labels(tmp_path / "b", tmp_path, capsys)
    listing = tmp_path / "b" / "ImageList" / "TrainImagelist.txt"
    listing.write_text("..\\escape.jpg\n")
    assert f"{listing}:1: ..\\escape.jpg is not a path" in _labels(tmp_path / "b", tmp_path, capsys)
    with pytest.raises(SarbError, match="nuswide-unlabelled"):
        read_dataset(_cfg(tree, "maybe"))
    with pytest.raises(SarbError, match="not found"):
        find_nuswide(tmp_path / "nowhere")


def test_download_explains_what_to_fetch_offline(tree, tmp_path, capsys):
    code = main(["data", "download", "nuswide", "--root", str(tmp_path / "empty")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    wanted = ("on request", "NUS-WIDE.html", "TrainImagelist.txt", "Concepts81.txt",
              "Labels_<concept>_Train.txt", "missing: ImageList/TrainImagelist.txt")  # fmt: skip
    for part in wanted:
        assert part in err, part
    assert not (tmp_path / "empty").exists()  # nothing created, nothing downloaded
    code = main(["data", "download", "nuswide", "--root", str(tree)])
    err = capsys.readouterr().err
    assert code == 0 and f"next: sarb train --dataset nuswide --root {tree}" in err


def test_paper_config():
    from sarb.config import config_path, load_yaml

    nuswide, coco = load_yaml(config_path("paper_nuswide")), load_yaml(config_path("paper_coco"))
    assert nuswide.pop("dataset") == "nuswide" and nuswide.pop("nuswide_unlabelled") == "drop"
    assert coco.pop("dataset") == "coco2014" and nuswide == coco  # the same recipe
