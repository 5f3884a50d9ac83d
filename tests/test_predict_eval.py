"""``sarb eval`` and ``sarb predict`` end to end on a model trained on the tiny dataset."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from sarb import api
from sarb.cli import main
from tests.conftest import CLASSES, tiny_train_args


@pytest.fixture(scope="module")
def run(tiny_dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval_run") / "sarb"
    assert main(tiny_train_args(tiny_dataset, out, "sarb")) == 0
    return out


@pytest.fixture(scope="module")
def folder(tiny_dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five test images (two in a subfolder), a text file and a corrupt .png."""
    root = tmp_path_factory.mktemp("predict")
    images = sorted((tiny_dataset["test"].parent / "img").glob("test_*.png"))[:5]
    (root / "sub").mkdir()
    for i, src in enumerate(images):
        shutil.copy(src, root / ("sub" if i >= 3 else ".") / src.name)
    (root / "notes.txt").write_text("not an image\n")
    (root / "broken.png").write_bytes(np.random.default_rng(0).bytes(300))
    return root


def _error_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("sarb: error: ")
    return err[0]


def test_eval_on_the_run_dataset_matches_metrics_json(run: Path, tmp_path: Path, capsys) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    out = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(run), "--out", str(out)]) == 0
    table = capsys.readouterr().out  # a readable table by default, the JSON in --out
    printed = json.loads(out.read_text())
    assert f"{metrics['mAP']:.1f}" in table and "AP per class (chance" in table
    rows = list(zip(["red", "green", "blue"], metrics["ap_per_class"],
                    metrics["chance_ap_per_class"], strict=True))  # fmt: skip
    for name, ap, chance in rows:
        assert re.search(rf"^  {name}\s+{ap:.1f}\s+{chance:.1f}$", table, re.M), name
    assert printed["mAP"] == metrics["mAP"]
    assert printed["ap_per_class"] == metrics["ap_per_class"]
    assert printed["split"] == "test" and printed["images"] == 16
    # the val split carved from the training manifest is the one best.pt was selected on
    assert (
        main(["eval", "--checkpoint", str(run / "best.pt"), "--split", "val", "--format", "json"])
        == 0
    )
    val = json.loads(capsys.readouterr().out)
    assert (val["mAP"] or 0.0) == metrics["val_mAP"]


def test_eval_on_a_manifest(run: Path, tiny_dataset, capsys) -> None:
    metrics = json.loads((run / "metrics.json").read_text())
    test = str(tiny_dataset["test"])
    args = ["eval", "--checkpoint", str(run), "--dataset", "manifest", "--test", test]
    assert main([*args, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["mAP"] == metrics["mAP"]


def test_eval_rejects_a_manifest_with_an_unknown_class(run: Path, tiny_dataset, capsys) -> None:
    bad = tiny_dataset["test"].parent / "purple.csv"
    bad.write_text("image,red,green,purple\nimg/test_000.png,1,-1,1\n")
    code = main(["eval", "--checkpoint", str(run), "--dataset", "manifest", "--test", str(bad)])
    assert code == 2
    line = _error_line(capsys)
    assert str(bad) in line and "purple" in line


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--dataset", "manifest"], "--test"),
        (["--dataset", "demo", "--test", "x.csv"], "--dataset manifest"),
        (["--checkpoint", "nowhere.pt"], "nowhere.pt"),
    ],
)
def test_eval_bad_arguments(run: Path, capsys, args: list[str], needle: str) -> None:
    base = [] if "--checkpoint" in args else ["--checkpoint", str(run)]
    assert main(["eval", *base, *args]) == 2
    assert needle in _error_line(capsys)


def test_predict_jsonl_skips_non_images_and_corrupt_files(run: Path, folder: Path, capsys) -> None:
    assert main(["predict", "--checkpoint", str(run), str(folder), "--threshold", "0.4"]) == 0
    captured = capsys.readouterr()
    warnings = captured.err.strip().splitlines()
    assert len(warnings) == 2, warnings
    assert all(w.startswith("sarb: warning: ") for w in warnings)
    assert any("notes.txt" in w for w in warnings)
    assert any("broken.png" in w for w in warnings)
    records = [json.loads(line) for line in captured.out.splitlines()]
    expected = sorted(str(p) for p in folder.rglob("test_*.png"))
    assert [r["image"] for r in records] == expected  # recursive and sorted
    probs = api.load_model(run, device="cpu").predict(expected)
    for record, row in zip(records, probs, strict=True):
        assert list(record["scores"]) == CLASSES
        scores = np.array([record["scores"][c] for c in CLASSES])
        assert ((scores >= 0) & (scores <= 1)).all()
        np.testing.assert_array_equal(scores, row.astype(np.float64))
        assert record["labels"] == [c for c in CLASSES if record["scores"][c] >= 0.4]


def test_predict_csv_to_a_file(run: Path, folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "pred.csv"
    image = next(folder.glob("test_*.png"))
    args = ["predict", "--checkpoint", str(run), str(image), str(folder / "sub")]
    assert main([*args, "--format", "csv", "--out", str(out)]) == 0
    assert capsys.readouterr().out == ""
    rows = list(csv.reader(io.StringIO(out.read_text())))
    assert rows[0] == ["image", *CLASSES]
    assert [r[0] for r in rows[1:]] == [
        str(image),
        *sorted(str(p) for p in (folder / "sub").iterdir()),
    ]
    values = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    assert values.shape == (3, len(CLASSES)) and ((values >= 0) & (values <= 1)).all()


def test_predict_without_images_is_an_error(run: Path, tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("nothing here\n")
    assert main(["predict", "--checkpoint", str(run), str(empty)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "readme.md" in err[0] and err[-1].startswith("sarb: error: no image files found")
    assert main(["predict", "--checkpoint", str(run), str(tmp_path / "missing")]) == 2
    assert "missing" in _error_line(capsys)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\x00" * 50)
    assert main(["predict", "--checkpoint", str(run), str(broken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "broken.jpg" in err[0] and err[-1].startswith("sarb: error: none of the 1")


def test_predict_csv_from_the_extension_feeds_sarb_metrics(
    run: Path, tiny_dataset, tmp_path, capsys
):
    from sarb.data.manifest import read_manifest

    test = read_manifest(tiny_dataset["test"])
    preds = tmp_path / "preds.csv"
    paths = [str(p) for p in test.images]
    assert main(["predict", "--checkpoint", str(run), *paths, "--out", str(preds)]) == 0
    assert preds.read_text().startswith("image,red,green,blue\n")  # CSV, from the extension
    labels = tmp_path / "labels.csv"
    np.savetxt(labels, test.labels, fmt="%d", delimiter=",")
    capsys.readouterr()
    assert main(["metrics", "--scores", str(preds), "--labels", str(labels)]) == 0
    got = json.loads(capsys.readouterr().out)
    expected = json.loads((run / "metrics.json").read_text())
    assert got["mAP"] == pytest.approx(expected["mAP"], abs=1e-6)
