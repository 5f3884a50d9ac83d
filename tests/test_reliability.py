"""Failures during training end in one clear line and never destroy the last good checkpoint."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch

import sarb.methods.objectives as objectives
from sarb.checkpoint import load_checkpoint
from sarb.cli import main
from sarb.errors import SarbError
from sarb.runs import RunDir
from tests.conftest import tiny_train_args


def _nan_on_call(monkeypatch: pytest.MonkeyPatch, bad_call: int) -> None:
    """The partial-BCE loss (bce-ignore's, one call per step) returns NaN on its
    ``bad_call``-th call."""
    real = objectives.FunctionLoss.forward
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        loss = real(self, *args, **kwargs)
        return loss * float("nan") if calls["n"] == bad_call else loss

    monkeypatch.setattr(objectives.FunctionLoss, "forward", flaky)


def test_nonfinite_loss_stops_with_a_clear_message(tmp_path, tiny_dataset, monkeypatch, capsys):
    _nan_on_call(monkeypatch, bad_call=8)  # epoch 2 (5 steps per epoch)
    out = tmp_path / "run"
    assert main(tiny_train_args(tiny_dataset, out)) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "non-finite loss at epoch 2, step 8;" in err and "last.pt" in err
    assert load_checkpoint(out / "last.pt")["epoch"] == 1  # the last good one is intact


def test_skip_nonfinite_counts_the_skipped_step(tmp_path, tiny_dataset, monkeypatch):
    _nan_on_call(monkeypatch, bad_call=3)
    out = tmp_path / "run"
    assert main([*tiny_train_args(tiny_dataset, out), "--skip-nonfinite"]) == 0
    assert json.loads((out / "metrics.json").read_text())["skipped_steps"] == 1
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[0]["skipped_steps"] == 1 and "skipped_steps" not in log[1]


def test_resume_falls_back_to_the_previous_checkpoint(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "run"
    args = [*tiny_train_args(tiny_dataset, out), "--epochs", "3", "--deterministic"]
    assert main(args) == 0
    expected = json.loads((out / "metrics.json").read_text())
    assert load_checkpoint(out / "last.prev.pt")["epoch"] == 2
    data = (out / "last.pt").read_bytes()
    (out / "last.pt").write_bytes(data[: len(data) // 2])  # truncated
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 0
    err = capsys.readouterr().err
    assert "last.pt" in err and "previous checkpoint" in err
    assert json.loads((out / "metrics.json").read_text()) == expected


def test_unwritable_out_is_one_line(tmp_path, tiny_dataset, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(tiny_train_args(tiny_dataset, blocker / "run")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a_file" in err[0]


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    method = torch.nn.Module()
    method.model, method.augmentations = torch.nn.Linear(2, 1), torch.nn.ModuleDict()
    method.loss = torch.nn.Module()
    optimizer = torch.optim.SGD(method.parameters(), 0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    generator = torch.Generator().manual_seed(0)
    run = RunDir(tmp_path)

    def save(value: float) -> None:
        torch.nn.init.constant_(method.model.weight, value)
        run.save(method, optimizer, scheduler, generator, {"config": {}}, best=False)

    save(1.0)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(SarbError, match="last.pt.*No space left"):
        save(0.0)
    monkeypatch.undo()
    ones = torch.ones(1, 2)
    assert torch.equal(run.load_last()["model"]["weight"], ones)
    assert "optimizer" in run.load_last() and "rng" in run.load_last()
    # no temporary file left: last.pt, and the copy of it kept aside before the write
    assert {p.name for p in tmp_path.iterdir()} == {RunDir.LAST, RunDir.LAST_PREV}
    assert torch.equal(load_checkpoint(run / RunDir.LAST_PREV)["model"]["weight"], ones)


def test_corrupt_checkpoint_names_the_file(tmp_path: Path):
    path = tmp_path / "best.pt"
    path.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(SarbError, match="best.pt"):
        load_checkpoint(path)


def _with_corrupt_image(tiny: dict[str, Path], tmp_path: Path) -> Path:
    bad = tiny["train"].parent / "img" / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    manifest = tmp_path / "train_with_bad.csv"
    rows = tiny["train"].read_text().splitlines()
    rows = [rows[0], *[r.replace("img/", f"{tiny['train'].parent}/img/", 1) for r in rows[1:]]]
    manifest.write_text("\n".join([*rows, f"{bad},1,-1,1"]) + "\n")
    return manifest


@pytest.mark.parametrize("workers", ["0", "2"])
def test_unreadable_image_stops_training_naming_it(tmp_path, tiny_dataset, capsys, workers):
    args = tiny_train_args(tiny_dataset, tmp_path / "run")
    args[args.index("--train") + 1] = str(_with_corrupt_image(tiny_dataset, tmp_path))
    args[args.index("--workers") + 1] = workers
    args[args.index("--known") + 1] = "1.0"
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("sarb: error: ") and "corrupt.jpg" in err and "Traceback" not in err


def test_skip_bad_images_skips_and_counts(tmp_path, tiny_dataset, capsys):
    args = tiny_train_args(tiny_dataset, tmp_path / "run")
    args[args.index("--train") + 1] = str(_with_corrupt_image(tiny_dataset, tmp_path))
    assert main([*args, "--skip-bad-images"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert sum(metrics["skipped_images"].values()) == 1
    assert "corrupt.jpg" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["sarb", "gcn-ml"])
def test_class_without_positives_and_image_without_known_labels(tmp_path, tiny_dataset, method):
    rows = tiny_dataset["train"].read_text().splitlines()
    base = tiny_dataset["train"].parent
    fixed = [rows[0]]
    for i, row in enumerate(rows[1:]):
        path, *values = row.split(",")
        values[2] = "-1"  # "blue" has no positive anywhere in training
        if i == 0:
            values = ["", "", ""]  # an image with no known label at all
        fixed.append(",".join([str(base / path), *values]))
    manifest = tmp_path / "odd.csv"
    manifest.write_text("\n".join(fixed) + "\n")
    args = tiny_train_args(tiny_dataset, tmp_path / "run", method)
    args[args.index("--train") + 1] = str(manifest)
    assert main(args) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["mAP"] is not None
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    values = [*state["model"].values(), *state["augmentations"].values()]  # prototypes too
    assert all(torch.isfinite(v).all() for v in values if v.is_floating_point())


def test_skipped_last_step_still_ends_at_max_steps(tmp_path, tiny_dataset, monkeypatch):
    _nan_on_call(monkeypatch, bad_call=3)
    out = tmp_path / "run"
    args = [*tiny_train_args(tiny_dataset, out), "--skip-nonfinite", "--max-steps", "3"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["skipped_steps"] == 1
