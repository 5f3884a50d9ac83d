"""The command line end to end: exit codes, one-line errors, outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from sarb.cli import main
from tests.conftest import CLASSES, tiny_train_args


def _error_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("sarb: error: ")
    return err[0]


def test_masks_reproduces_the_paper_protocol(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    full = np.where(rng.random((57, 13)) < 0.3, 1, -1)
    np.savetxt(tmp_path / "full.csv", full, fmt="%d", delimiter=",")
    for known in (0.1, 0.5, 0.9):
        out = tmp_path / f"partial_{known}.csv"
        assert main(["masks", "--labels", str(tmp_path / "full.csv"), "--known", str(known),
                     "--out", str(out)]) == 0  # fmt: skip
        np.random.seed(0)  # noqa: NPY002  (the paper's mask, written out independently)
        expected = np.where(np.random.random(full.shape) < known, full, 0)  # noqa: NPY002
        got = np.loadtxt(out, delimiter=",", dtype=int)
        np.testing.assert_array_equal(got, expected)


def test_metrics_prints_json_matching_sklearn(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    labels = np.where(rng.random((200, 6)) < 0.3, 1, -1)
    labels[rng.random(labels.shape) < 0.1] = 0
    logits = rng.normal(size=labels.shape) + 1.5 * (labels == 1)
    np.savetxt(tmp_path / "labels.csv", labels, fmt="%d", delimiter=",")
    np.savetxt(tmp_path / "logits.csv", logits, delimiter=",")
    np.savetxt(tmp_path / "scores.csv", 1 / (1 + np.exp(-logits)), delimiter=",")
    base = ["metrics", "--labels", str(tmp_path / "labels.csv"), "--ap", "sklearn"]
    assert main([*base, "--scores", str(tmp_path / "scores.csv")]) == 0
    probs = json.loads(capsys.readouterr().out)
    assert main([*base, "--scores", str(tmp_path / "logits.csv"), "--logits"]) == 0
    from_logits = json.loads(capsys.readouterr().out)
    expected = np.mean(
        [average_precision_score(labels[labels[:, c] != 0, c] == 1, logits[labels[:, c] != 0, c])
         for c in range(6)]
    )  # fmt: skip
    assert probs["mAP"] == pytest.approx(100 * expected, abs=1e-6)
    assert from_logits["mAP"] == pytest.approx(probs["mAP"], abs=1e-9)
    assert from_logits["OF1"] == pytest.approx(probs["OF1"], abs=1e-9)
    assert set(probs) >= {"mAP", "OP", "OR", "OF1", "CP", "CR", "CF1", "top3", "ap_per_class"}
    assert probs["ap_definition"] == "sklearn"


@pytest.mark.parametrize(
    ("content", "needle"),
    [("1,-1\n1,2\n", ":2:"), ("1,-1\n1\n", ":2:"), ("1,x\n", ":1:")],
)
def test_masks_rejects_bad_label_files(tmp_path: Path, capsys, content: str, needle: str) -> None:
    path = tmp_path / "full.csv"
    path.write_text(content)
    code = main(
        ["masks", "--labels", str(path), "--known", "0.5", "--out", str(tmp_path / "o.csv")]
    )
    assert code == 2
    line = _error_line(capsys)
    assert str(path) in line and needle in line


@pytest.mark.parametrize("known", ["0", "1.5", "-0.1"])
def test_masks_rejects_bad_known(tmp_path: Path, capsys, known: str) -> None:
    path = tmp_path / "full.csv"
    path.write_text("1,-1\n-1,1\n")
    assert main(["masks", "--labels", str(path), "--known", known, "--out", str(path)]) == 2
    assert "--known" in _error_line(capsys)


def test_masks_single_positive(tmp_path: Path, capsys) -> None:
    full = np.where(np.random.default_rng(4).random((40, 6)) < 0.3, 1, -1)
    full[0] = -1  # an image without a positive
    np.savetxt(tmp_path / "full.csv", full, fmt="%d", delimiter=",")
    out = tmp_path / "sp.csv"
    args = ["masks", "--labels", str(tmp_path / "full.csv"), "--out", str(out)]
    assert main([*args, "--protocol", "single-positive", "--seed", "2"]) == 0
    got = np.loadtxt(out, delimiter=",", dtype=int)
    assert ((got == 1).sum(1) == (full == 1).any(1)).all() and (got >= 0).all()
    empty = int((~(full == 1).any(1)).sum())
    assert empty >= 1 and f"; {empty} images without a known label" in capsys.readouterr().err
    assert main(args) == 2  # the other protocols need --known
    assert "--known is required" in _error_line(capsys)


def test_metrics_rejects_mismatched_shapes(tmp_path: Path, capsys) -> None:
    (tmp_path / "s.csv").write_text("0.1,0.2\n")
    (tmp_path / "l.csv").write_text("1,-1,1\n")
    code = main(
        ["metrics", "--scores", str(tmp_path / "s.csv"), "--labels", str(tmp_path / "l.csv")]
    )
    assert code == 2
    assert "s.csv" in _error_line(capsys)


def test_methods_lists_references(capsys) -> None:
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ("bce-ignore", "partial-bce", "ssgrl", "sarb", "sarb-sam", "sarb-plrb-fixed"):
        assert any(line.split()[0] == name for line in out.splitlines()), name
    assert "Pu et al., AAAI 2022" in out


def test_python_dash_m_runs_the_same_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sarb", "masks", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert "--known" in done.stdout


def _manifest(tmp_path: Path, tiny: dict[str, Path], text: str) -> Path:
    path = tiny["train"].parent / f"bad_{abs(hash(text))}.csv"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("red,green,blue\nimg/train_000.png,1,1,1\n", ":1:"),  # header missing
        ("image,red,green,purple\nimg/train_000.png,1,1,1\n", "purple"),  # unknown class (vs test)
        ("image,red,green,blue\nimg/train_000.png,1,2,1\n", ":2:"),  # value outside the set
        ("image,red,green,blue\nimg/nope.png,1,-1,1\n", ":2:"),  # missing image
        ("image,red,green,blue\nimg/train_000.png,1,-1,1\nimg/train_000.png,1,1,1\n", ":3:"),
    ],
)
def test_train_rejects_malformed_manifests(
    tmp_path: Path, tiny_dataset, capsys, text: str, needle: str
) -> None:
    bad = _manifest(tmp_path, tiny_dataset, text)
    args = tiny_train_args(tiny_dataset, tmp_path / "run")
    args[args.index("--train") + 1] = str(bad)
    assert main(args) == 2
    line = _error_line(capsys)
    assert needle in line
    assert bad.name in line or "test.csv" in line


def test_train_writes_metrics_json(tmp_path: Path, tiny_dataset, capsys) -> None:
    out = tmp_path / "run"
    assert main(tiny_train_args(tiny_dataset, out)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("mAP", "OP", "OR", "OF1", "CP", "CR", "CF1", "top3", "ap_per_class"):
        assert key in metrics
    assert metrics["method"] == "bce-ignore" and metrics["known"] == 0.5 and metrics["seed"] == 0
    assert len(metrics["ap_per_class"]) == len(CLASSES)
    env = metrics["environment"]  # where it ran: what a rerun must match to repeat the numbers
    assert env["torch"] == torch.__version__ and env["device"] == "cpu" and env["threads"] >= 1
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and env["processor"]
    assert (out / "best.pt").is_file() and (out / "last.pt").is_file()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert all(np.isfinite(r["loss"]) for r in log)
    assert "bce-ignore" in capsys.readouterr().out
