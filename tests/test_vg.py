"""VG-200: the build (classes, normalisation, dropped images, split) and the reader."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from sarb.cli import main
from sarb.data.sources import read_dataset
from sarb.data.vg import FILES, build_vg200, normalise_name, num_test_images, read_vg200
from sarb.errors import SarbError


def _objects() -> list[dict]:
    """25 images. Frequencies (images): tree 20, car 12, man 12, sky 8, dog 2, cat 2, rare 1.

    Both the v1.4 form ("names": [...]) and the older one ("name": "...") occur, with case and
    whitespace variants; a name repeated within an image counts once.
    """
    entries = []
    for i in range(1, 26):
        objs: list[dict] = []
        if i <= 20:
            objs.append({"object_id": i, "names": [" Tree ", "tree"]})
        if i % 2 == 0:
            objs.append({"object_id": 100 + i, "name": "MAN"})
        if i % 2 == 1 and i < 24:
            objs.append({"object_id": 200 + i, "names": ["car"]})
        if i % 3 == 0:
            objs.append({"object_id": 300 + i, "names": ["sky", "Sky"]})
        if i in (21, 22):
            objs.append({"object_id": 400 + i, "names": ["dog"]})
        if i in (23, 24):
            objs.append({"object_id": 500 + i, "names": ["cat  "]})
        if i == 25:
            objs.append({"object_id": 600, "names": ["rare\tthing"]})
        entries.append({"image_id": 1000 + i, "objects": objs})
    entries.append({"image_id": 2000, "objects": []})  # no object at all
    return entries


def make_vg(base: Path) -> tuple[Path, Path]:
    """Images split over VG_100K / VG_100K_2 as in the real download, and objects.json."""
    images = base / "VG"
    for sub in ("VG_100K", "VG_100K_2"):
        (images / sub).mkdir(parents=True, exist_ok=True)
    for entry in _objects():
        i = entry["image_id"]
        sub = "VG_100K" if i % 2 else "VG_100K_2"
        Image.new("RGB", (6, 6), (i % 255, 10, 10)).save(images / sub / f"{i}.jpg")
    objects = base / "objects.json"
    objects.write_text(json.dumps(_objects()))
    return images, objects


@pytest.fixture()
def vg(tmp_path: Path) -> tuple[Path, Path]:
    return make_vg(tmp_path)


def test_build(vg, tmp_path):
    images, objects = vg
    build = build_vg200(images, objects, tmp_path / "out", num_classes=5)
    # dog and cat tie at 2 images: broken by name; "rare thing" falls outside the top 5.
    assert build.class_names == ["tree", "car", "man", "sky", "cat"]
    out = tmp_path / "out"
    assert (out / "classes.txt").read_text() == "tree\ncar\nman\nsky\ncat\n"
    # 1025 has only "rare thing" -> dropped; 2000 has no object -> dropped; 1021/1023 have car.
    assert build.num_dropped == 2
    assert build.num_train + build.num_test == 24
    assert build.num_test == num_test_images(24) == 2
    train, test = read_vg200(out)
    assert len(train) == 22 and len(test) == 2
    everything = sorted(
        (int(p.stem), tuple(row))
        for split in (train, test)
        for p, row in zip(split.images, split.labels.tolist(), strict=True)
    )
    by_id = dict(everything)
    assert by_id[1001] == (1, 1, -1, -1, -1)  # tree, car
    assert by_id[1006] == (1, -1, 1, 1, -1)  # tree, man (from "name"), sky
    assert by_id[1024] == (-1, -1, 1, 1, 1)  # man, sky, cat
    assert 1025 not in by_id and 2000 not in by_id
    # Rows in ascending image id within each split; images found in both subfolders.
    for split in (train, test):
        ids = [int(p.stem) for p in split.images]
        assert ids == sorted(ids)
    assert (out / "train.txt").read_text().splitlines()[0] == "VG_100K/1001.jpg"
    assert train.images[1] == images / "VG_100K_2" / "1002.jpg"
    readme = (out / "README.txt").read_text()
    assert "2 have none of the classes" in readme and "seed 0" in readme


def test_default_is_200_and_fewer_if_fewer_exist(vg, tmp_path):
    build = build_vg200(*vg, tmp_path / "out")
    assert len(build.class_names) == 7  # all categories when fewer than 200 exist
    assert build.class_names[-1] == "rare thing"
    assert build.num_dropped == 1


def test_byte_identical_and_seeded(vg, tmp_path):
    images, objects = vg
    build_vg200(images, objects, tmp_path / "a", seed=0)
    build_vg200(images, objects, tmp_path / "b", seed=0)
    build_vg200(images, objects, tmp_path / "c", seed=1)
    files = [*FILES, "README.txt", "images_dir.txt"]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "test.txt").read_bytes() != (tmp_path / "c" / "test.txt").read_bytes()
    # The order of objects.json does not matter.
    shuffled = tmp_path / "shuffled.json"
    shuffled.write_text(json.dumps(list(reversed(_objects()))))
    build_vg200(images, shuffled, tmp_path / "d", seed=0)
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "d" / name).read_bytes(), name


def test_labels_csv_headerless(vg, tmp_path):
    build_vg200(*vg, tmp_path / "out", num_classes=5)
    text = (tmp_path / "out" / "train_labels.csv").read_text()
    assert text.splitlines()[0] == "1,1,-1,-1,-1"  # image 1001: tree, car
    assert set(text.replace("\n", ",").strip(",").split(",")) == {"1", "-1"}


def test_test_split_size():
    assert num_test_images(108_077) == 10_000
    assert num_test_images(50_000) == 5_000
    assert num_test_images(5) == 1


def test_normalise():
    assert normalise_name("  Tree\t  Trunk \n") == "tree trunk"
    assert normalise_name("   ") == ""


def test_dataset_and_images_override(vg, tmp_path):
    images, objects = vg
    build_vg200(images, objects, tmp_path / "out", num_classes=5)
    cfg = SimpleNamespace(dataset="vg200", root=str(tmp_path / "out"), images=None)
    source = read_dataset(cfg)
    assert source.name == "vg200" and source.val is None
    assert source.train.class_names == ["tree", "car", "man", "sky", "cat"]
    moved = tmp_path / "moved"
    images.rename(moved)
    with pytest.raises(SarbError, match="image file not found"):
        read_dataset(cfg)
    cfg.images = str(moved)
    assert read_dataset(cfg).train.images[0] == moved / "VG_100K" / "1001.jpg"


def _run(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


def test_cli_build_and_labels(vg, tmp_path, capsys):
    images, objects = vg
    out = tmp_path / "vg200"
    code, err = _run(["data", "build-vg200", "--images", str(images), "--objects", str(objects),
                      "--out", str(out), "--num-classes", "5"], capsys)  # fmt: skip
    assert code == 0 and "22 train and 2 test images" in err
    code, _ = _run(["labels", "--dataset", "vg200", "--root", str(out), "--split", "test",
                    "--out", str(tmp_path / "t.csv")], capsys)  # fmt: skip
    assert code == 0
    assert (tmp_path / "t.csv").read_bytes() == (out / "test_labels.csv").read_bytes()


@pytest.mark.parametrize(
    "content, message",
    [
        ("[{", "invalid JSON"),
        ('{"image_id": 1}', "expected a JSON list"),
        ('[{"objects": []}]', "entry 0 needs an integer 'image_id'"),
        ('[{"image_id": 1, "objects": []}, {"image_id": 1, "objects": []}]', "appears twice"),
        ('[{"image_id": 1, "objects": [{"names": [3]}]}]', "not a list of strings"),
        ('[{"image_id": 1, "objects": []}]', "no object names"),
    ],
)
def test_build_errors(vg, tmp_path, capsys, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code, err = _run(["data", "build-vg200", "--images", str(vg[0]), "--objects", str(bad),
                      "--out", str(tmp_path / "o")], capsys)  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and str(bad) in err and message in err, err


def test_build_missing_inputs(vg, tmp_path, capsys):
    images, objects = vg
    args = ["data", "build-vg200", "--out", str(tmp_path / "o")]
    code, err = _run(
        [*args, "--images", str(images), "--objects", str(tmp_path / "x.json")], capsys
    )
    assert code == 2 and f"{tmp_path / 'x.json'}: Visual Genome objects file not found" in err
    code, err = _run([*args, "--images", str(tmp_path / "none"), "--objects", str(objects)], capsys)
    assert code == 2 and str(tmp_path / "none") in err
    (images / "VG_100K_2" / "1002.jpg").unlink()
    code, err = _run([*args, "--images", str(images), "--objects", str(objects)], capsys)
    assert (
        code == 2 and err.count("\n") == 1 and f"{images / '1002.jpg'}: image file not found" in err
    )


def test_read_errors(vg, tmp_path, capsys):
    out = tmp_path / "out"
    lab = ["labels", "--dataset", "vg200", "--out", str(tmp_path / "l.csv")]
    code, err = _run([*lab, "--root", str(tmp_path)], capsys)
    assert code == 2 and "not a VG-200 build" in err
    build_vg200(*vg, out, num_classes=5)
    (out / "train_labels.csv").write_text("1,-1\n")
    code, err = _run([*lab, "--root", str(out)], capsys)
    assert code == 2 and err.count("\n") == 1 and "train_labels.csv" in err
