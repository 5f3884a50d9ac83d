"""The embedded demo dataset: layout, determinism, label statistics, cache marker logic."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sarb.data import demo, synthetic
from sarb.data.demo import (
    DEMO_CLASSES,
    DEMO_VERSION,
    build_demo,
    demo_root,
    demo_statistics,
    ensure_demo,
)
from sarb.errors import SarbError

SMALL = {"train": 40, "val": 10, "test": 20}
MODERATE = {"train": 300, "val": 20, "test": 20}


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _labels(root: Path, split: str) -> tuple[list[str], list[str], np.ndarray]:
    with open(root / f"{split}.csv", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], [r[0] for r in rows[1:]], np.array([[int(v) for v in r[1:]] for r in rows[1:]])


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo(tmp_path_factory.mktemp("small") / "demo", seed=0, sizes=SMALL)


@pytest.fixture(scope="module")
def moderate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo(tmp_path_factory.mktemp("moderate") / "demo", seed=0, sizes=MODERATE)


def test_classes_are_digit_words() -> None:
    assert DEMO_CLASSES == "zero one two three four five six seven eight nine".split()


def test_layout_and_manifests(small: Path) -> None:
    assert (small / "classes.txt").read_text().split() == DEMO_CLASSES
    readme = (small / "README.txt").read_text()
    assert DEMO_VERSION in readme and "seed 0" in readme
    assert (small / synthetic.MARKER).is_file()
    for split, n in SMALL.items():
        header, paths, labels = _labels(small, split)
        assert header == ["image", *DEMO_CLASSES]
        assert paths == [f"images/{split}/{i:05d}.jpg" for i in range(n)]
        assert labels.shape == (n, len(DEMO_CLASSES))
        assert set(np.unique(labels).tolist()) <= {1, -1}
        assert (labels == 1).sum(axis=1).min() >= 1  # every scene shows at least one digit
        assert len(list((small / "images" / split).iterdir())) == n
    # No temporary build folders are left next to the dataset.
    assert [p.name for p in small.parent.iterdir()] == ["demo"]


def test_images_are_96px_rgb_jpegs(small: Path) -> None:
    for path in sorted((small / "images").rglob("*.jpg"))[:25]:
        with Image.open(path) as img:
            assert img.format == "JPEG"
            assert img.mode == "RGB"
            assert img.size == (96, 96)
            pixels = np.asarray(img)
        assert pixels.std() > 10  # not a blank image


def test_same_seed_gives_identical_files(small: Path, tmp_path: Path) -> None:
    again = build_demo(tmp_path / "again", seed=0, sizes=SMALL)
    assert _files(again) == _files(small)


def test_different_seed_differs(small: Path, tmp_path: Path) -> None:
    other = _files(build_demo(tmp_path / "other", seed=1, sizes=SMALL))
    base = _files(small)
    assert other.keys() == base.keys()
    assert other["images/train/00000.jpg"] != base["images/train/00000.jpg"]
    assert other["train.csv"] != base["train.csv"]


def test_source_digit_pools_are_disjoint() -> None:
    from sklearn.datasets import load_digits

    targets = load_digits().target
    pools = demo._split_pools(targets, seed=0)
    seen: set[int] = set()
    for split in demo.SPLITS:
        for c, idx in enumerate(pools[split]):
            assert len(idx) > 0 and (targets[idx] == c).all()
            assert seen.isdisjoint(idx.tolist())
            seen.update(idx.tolist())
    assert len(seen) == len(targets)


def test_label_statistics(moderate: Path) -> None:
    _, _, train = _labels(moderate, "train")
    assert set(np.unique(train).tolist()) == {1, -1}
    positives = train == 1
    assert positives.sum(axis=1).mean() >= 2.0
    freq = positives.mean(axis=0)
    assert freq.min() > 0  # every class appears
    assert freq.max() / freq.min() > 3  # non-uniform class frequencies

    stats = demo_statistics(moderate)
    assert stats["num_images"] == {**MODERATE, "all": sum(MODERATE.values())}
    assert stats["mean_positives"]["train"] == pytest.approx(positives.sum(axis=1).mean())
    co = np.array(stats["cooccurrence"])
    assert (co == co.T).all()
    assert sorted(stats["class_frequency"]) == sorted(DEMO_CLASSES)

    # Co-occurrence is structured: some pair far above independence, some far below.
    lift = np.array(stats["lift"])
    off_diagonal = ~np.eye(len(DEMO_CLASSES), dtype=bool)
    assert lift[off_diagonal].max() > 1.5
    assert lift[off_diagonal].min() < 0.5


def test_readme_documents_statistics(small: Path) -> None:
    stats = demo_statistics(small)
    readme = (small / "README.txt").read_text()
    line = next(t for t in readme.splitlines() if "mean positive labels" in t)
    assert f"train {stats['mean_positives']['train']:.2f}" in line


def test_complete_build_is_not_rebuilt(
    small: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = build_demo(tmp_path / "demo", seed=0, sizes=SMALL)
    before = _files(root)

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("rebuilt a complete dataset")

    monkeypatch.setattr(demo, "_write_dataset", boom)
    assert build_demo(root, seed=0, sizes=SMALL) == root
    assert _files(root) == before


def test_folder_without_marker_is_rebuilt(small: Path, tmp_path: Path) -> None:
    root = tmp_path / "demo"
    (root / "images").mkdir(parents=True)
    (root / "train.csv").write_text("image,zero\nstale.jpg,1\n")
    build_demo(root, seed=0, sizes=SMALL)
    assert _files(root) == _files(small)


def test_other_parameters_rebuild(small: Path, tmp_path: Path) -> None:
    root = build_demo(tmp_path / "demo", seed=1, sizes=SMALL)
    assert _files(root) != _files(small)
    build_demo(root, seed=0, sizes=SMALL)
    assert _files(root) == _files(small)


def test_interrupted_build_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = demo._write_dataset

    def interrupted(out: Path, *args: object) -> None:
        real(out, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "_write_dataset", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_demo(tmp_path / "demo", seed=0, sizes={"train": 2, "val": 1, "test": 1})
    assert list(tmp_path.iterdir()) == []


def test_bad_sizes_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(SarbError, match="unknown split"):
        build_demo(tmp_path / "demo", sizes={"training": 10})
    with pytest.raises(SarbError, match="positive integer"):
        build_demo(tmp_path / "demo", sizes={"train": 0})
    with pytest.raises(SarbError, match="seed"):
        build_demo(tmp_path / "demo", seed=-1)
    assert not (tmp_path / "demo").exists()


def test_demo_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SARB_CACHE_DIR", str(tmp_path / "env"))
    assert demo_root(tmp_path / "arg") == tmp_path / "arg" / f"demo-{DEMO_VERSION}"
    assert demo_root() == tmp_path / "env" / f"demo-{DEMO_VERSION}"
    monkeypatch.delenv("SARB_CACHE_DIR")
    import platformdirs

    assert demo_root() == Path(platformdirs.user_cache_dir("sarb")) / f"demo-{DEMO_VERSION}"


def test_ensure_demo_says_when_it_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built: list[Path] = []

    def fake_build(root: Path) -> Path:  # the full build is too slow for a unit test
        built.append(root)
        root.mkdir(parents=True)
        params = demo._build_params(0, demo.DEFAULT_SIZES, 96)
        (root / synthetic.MARKER).write_text(json.dumps(params, sort_keys=True) + "\n")
        return root

    monkeypatch.setattr(demo, "build_demo", fake_build)
    root = ensure_demo(tmp_path)
    assert root == demo_root(tmp_path)
    assert "building the demo dataset in" in capsys.readouterr().err
    monkeypatch.setattr(demo, "build_demo", build_demo)  # the real one: must skip, not build
    assert ensure_demo(tmp_path) == root
    assert capsys.readouterr().err == ""
    assert built == [root]
