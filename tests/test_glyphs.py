"""The glyphs benchmark: layout, determinism, the regime it promises (sparse, long-tailed,
scene co-occurrence), and its reader."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sarb.config import resolve_config
from sarb.data import glyphs, synthetic
from sarb.data.glyphs import CLASSES, build_glyphs, glyphs_statistics
from sarb.data.sources import read_dataset
from sarb.errors import SarbError

SMALL = {"train": 24, "val": 6, "test": 8}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory):
    return build_glyphs(tmp_path_factory.mktemp("g") / "glyphs", sizes=SMALL, image_size=64)


def test_classes_are_a_colour_and_a_symbol() -> None:
    assert len(CLASSES) == 48 == len(set(CLASSES))
    assert all(len(name.split()) == 2 for name in CLASSES)
    assert {name.split()[0] for name in CLASSES} == set(glyphs.COLOURS)


def test_layout_and_determinism(small, tmp_path) -> None:
    assert (small / synthetic.MARKER).is_file()
    assert (small / "classes.txt").read_text().split("\n")[:-1] == CLASSES
    for split, n in SMALL.items():
        labels = synthetic.split_labels(small, CLASSES)[split]
        assert labels.shape == (n, 48) and set(np.unique(labels)) <= {1, -1}
        assert (labels == 1).sum(1).min() >= 1  # every image shows at least one labelled symbol
        with Image.open(small / "images" / split / "00000.jpg") as img:
            assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (64, 64))
    again = build_glyphs(tmp_path / "again", sizes=SMALL, image_size=64)
    for name in ("train.csv", "test.csv", "images/val/00005.jpg"):
        assert (again / name).read_bytes() == (small / name).read_bytes()
    other = build_glyphs(tmp_path / "other", seed=1, sizes=SMALL, image_size=64)
    assert (other / "train.csv").read_bytes() != (small / "train.csv").read_bytes()


def test_a_build_records_the_digest_of_its_content(small, tmp_path) -> None:
    digest = (small / synthetic.DIGEST).read_text().strip()
    assert len(digest) == 64 and digest == synthetic.content_digest(small)
    again = build_glyphs(tmp_path / "again", sizes=SMALL, image_size=64)
    assert (again / synthetic.DIGEST).read_text().strip() == digest
    other = build_glyphs(tmp_path / "other", seed=1, sizes=SMALL, image_size=64)
    assert (other / synthetic.DIGEST).read_text().strip() != digest
    (again / synthetic.DIGEST).unlink()  # a build made before builds recorded their digest
    build_glyphs(tmp_path / "again", sizes=SMALL, image_size=64)
    assert (again / synthetic.DIGEST).read_text().strip() == digest
    image = again / "images" / "test" / "00003.jpg"
    data = bytearray(image.read_bytes())
    data[-3] ^= 1  # one bit of one image
    image.write_bytes(bytes(data))
    assert synthetic.content_digest(again) != digest


def test_the_label_model_is_sparse_long_tailed_and_structured() -> None:
    # The regime is a property of the label model; sample it without drawing images.
    prior, scene_prior, scene_class = glyphs._definition()
    rng = np.random.default_rng(0)
    n = 20_000
    scenes = rng.choice(len(scene_prior), size=n, p=scene_prior)
    counts = rng.choice(len(glyphs._NUM_OBJECTS_P), size=n, p=glyphs._NUM_OBJECTS_P) + 1
    labels = np.zeros((n, len(CLASSES)), dtype=bool)
    for i in range(n):
        labels[i, rng.choice(len(CLASSES), size=counts[i], p=scene_class[scenes[i]])] = True
    assert labels.mean() <= 0.08  # label density at most 8%, as MS-COCO's 3.6%
    freq = labels.mean(0)
    assert freq.min() > 0 and freq.max() / freq.min() > 20  # long-tailed
    lift = (labels.T.astype(float) @ labels / n) / np.outer(freq, freq)
    off = ~np.eye(len(CLASSES), dtype=bool)
    assert lift[off].max() > 3 and lift[off].min() < 0.5  # scene types make pairs co-occur


def test_statistics_and_readme(small) -> None:
    stats = glyphs_statistics(small)
    assert stats["num_images"]["all"] == sum(SMALL.values())
    readme = (small / "README.txt").read_text()
    assert "label density" in readme and glyphs.GLYPHS_VERSION in readme


def test_reader_and_bad_sizes(small, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(glyphs, "glyphs_root", lambda cache_dir=None: small)
    monkeypatch.setattr(glyphs, "DEFAULT_SIZES", SMALL)
    monkeypatch.setattr(glyphs, "DEFAULT_IMAGE_SIZE", 64)
    source = read_dataset(resolve_config(None, dataset="glyphs"))
    assert source.train.class_names == CLASSES
    assert (len(source.train), len(source.val), len(source.test)) == (24, 6, 8)
    with pytest.raises(SarbError, match="glyphs sizes: unknown split"):
        build_glyphs(tmp_path / "g", sizes={"training": 3})
    with pytest.raises(SarbError, match="image_size"):
        build_glyphs(tmp_path / "g", image_size=16)
