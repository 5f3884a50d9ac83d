"""ONNX export (``sarb export``) and ONNX Runtime prediction (``sarb predict --model``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sarb.api import load_model
from sarb.cli import main
from sarb.errors import SarbError
from tests.conftest import tiny_train_args

ort = pytest.importorskip("onnxruntime", reason="the optional onnx extra: pip install 'sarb[onnx]'")
pytest.importorskip("onnxscript", reason="the optional onnx extra: pip install 'sarb[onnx]'")

from sarb.deploy import OnnxPredictor  # noqa: E402  (needs the extra)

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_dataset) -> dict[str, tuple[Path, Path]]:
    """Per preset: a tiny trained run directory (random-weight cnn3, 32 px) and its ONNX file."""
    root = tmp_path_factory.mktemp("onnx")
    out = {}
    for method in ("ssgrl", "sarb"):
        run = root / method
        assert main([*tiny_train_args(tiny_dataset, run, method), "--max-steps", "2"]) == 0
        model = root / f"{method}.onnx"
        assert main(["export", "--checkpoint", str(run), "--out", str(model)]) == 0
        out[method] = (run, model)
    return out


def _csv_scores(path: Path) -> tuple[list[str], np.ndarray]:
    rows = path.read_text().splitlines()
    return [r.split(",")[0] for r in rows[1:]], np.loadtxt(path, delimiter=",", skiprows=1,
                                                            usecols=(1, 2, 3), ndmin=2)  # fmt: skip


@pytest.mark.parametrize("method", ["ssgrl", "sarb"])
def test_onnx_probabilities_match_the_checkpoint(exported, tiny_dataset, tmp_path, method):
    run, model = exported[method]
    images = str(tiny_dataset["test"].parent / "img")
    torch_csv, onnx_csv = tmp_path / "torch.csv", tmp_path / "onnx.csv"
    assert main(["predict", "--checkpoint", str(run), images, "--out", str(torch_csv)]) == 0
    assert main(["predict", "--model", str(model), images, "--out", str(onnx_csv)]) == 0
    names_t, torch_scores = _csv_scores(torch_csv)
    names_o, onnx_scores = _csv_scores(onnx_csv)
    assert names_t == names_o and len(names_t) == 64
    diff = np.abs(torch_scores - onnx_scores).max()
    print(f"{method}: max |ONNX - PyTorch| = {diff:.2e}")
    assert diff <= 1e-4
    # the batch size is dynamic: one image alone, or seven, give the same rows
    onnx = OnnxPredictor(model)
    paths = sorted(Path(images).glob("test_*.png"))[:7]
    full = onnx.predict(paths)
    np.testing.assert_allclose(onnx.predict(paths[:1]), full[:1], atol=1e-6)
    np.testing.assert_allclose(full, load_model(run, device="cpu").predict(paths), atol=1e-4)


def test_metadata_names_the_classes_and_the_preprocessing(exported):
    session = ort.InferenceSession(str(exported["sarb"][1]))
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["class_names"]) == ["red", "green", "blue"]
    assert int(meta["image_size"]) == 32
    assert json.loads(meta["mean"]) == [0.485, 0.456, 0.406]
    assert json.loads(meta["std"]) == [0.229, 0.224, 0.225]
    (inp,) = session.get_inputs()
    assert inp.name == "images" and isinstance(inp.shape[0], str)  # a symbolic batch size
    assert inp.shape[1:] == [3, 32, 32]


def test_readme_deployment_snippet_runs_on_an_exported_model(exported, tiny_dataset, tmp_path):
    """The README's ten lines (onnxruntime, numpy and Pillow only) print the probabilities."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    (snippet,) = [b for b in blocks if "onnxruntime" in b]
    code = [line for line in snippet.splitlines() if line.strip()]
    assert len(code) <= 10
    assert not re.search(r"^\s*(import|from)\s+(sarb|torch)", snippet, re.M)
    run, model = exported["ssgrl"]
    shutil.copy(model, tmp_path / "model.onnx")
    (photo,) = re.findall(r'Image\.open\("([^"]+)"\)', snippet)  # relative to where it runs
    (tmp_path / photo).parent.mkdir(parents=True, exist_ok=True)
    source = sorted((tiny_dataset["test"].parent / "img").glob("test_*.png"))[0]
    Image.open(source).save(tmp_path / photo, quality=95)
    done = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    printed = dict(line.split(": ") for line in done.stdout.splitlines())
    want = load_model(run, device="cpu").predict([tmp_path / photo])[0]
    assert list(printed) == ["red", "green", "blue"]
    np.testing.assert_allclose([float(v) for v in printed.values()], want, atol=2e-3)


def test_bad_inputs_are_one_line_errors(exported, tmp_path, capsys):
    run, model = exported["ssgrl"]
    with pytest.raises(SarbError, match="missing.onnx: no such ONNX model file"):
        OnnxPredictor(tmp_path / "missing.onnx")
    with pytest.raises(SarbError, match=r"best.pt: not an ONNX model"):
        OnnxPredictor(run / "best.pt")
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", "x.onnx"]) == 2
    err = capsys.readouterr().err
    assert "none.pt" in err and len(err.strip().splitlines()) == 1


def test_missing_extra_is_a_one_line_error(exported, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import -> ImportError
    with pytest.raises(SarbError, match=r"pip install 'sarb\[onnx\]'"):
        OnnxPredictor(exported["ssgrl"][1])
