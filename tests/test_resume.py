"""Crash safety: kill -9 during training, then --resume, ends where an uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from sarb.checkpoint import load_checkpoint
from sarb.cli import main
from tests.conftest import tiny_train_args


def _args(tiny: dict[str, Path], out: Path) -> list[str]:
    """SARB trained with ROLE's loss: blending state and label estimates must both resume. One
    thread in every process: the reference trains in this one, whose thread count earlier
    tests may have changed, and another count rounds differently."""
    args = tiny_train_args(tiny, out, "sarb")
    args[args.index("--epochs") + 1] = "4"
    args[args.index("--batch-size") + 1] = "4"
    return [*args, "--loss", "role", "--deterministic", "--threads", "1"]


def _wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.time() < deadline, "training did not reach the kill point in time"
        time.sleep(0.02)


def _epochs_logged(out: Path) -> int:
    path = out / "log.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


def test_kill_and_resume_matches_an_uninterrupted_run(tmp_path: Path, tiny_dataset) -> None:
    reference = tmp_path / "reference"
    assert main(_args(tiny_dataset, reference)) == 0

    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [sys.executable, "-m", "sarb", *_args(tiny_dataset, out)]
    # first kill: in the middle of epoch 3 (two checkpoints written, prototypes computed)
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    _wait_for(lambda: _epochs_logged(out) >= 2 and (out / "last.pt").is_file(), proc)
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "metrics.json").exists()
    # second kill: right after the next checkpoint
    proc = subprocess.Popen([*cmd, "--resume", str(out)], env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL)  # fmt: skip
    done = _epochs_logged(out)
    _wait_for(lambda: load_checkpoint(out / "last.pt")["epoch"] > done, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    assert main(["train", "--resume", str(out)]) == 0
    expected = json.loads((reference / "metrics.json").read_text())
    got = json.loads((out / "metrics.json").read_text())
    assert got.pop("run_dir") == str(out.resolve())
    assert expected.pop("run_dir") == str(reference.resolve())
    assert got == expected
    a, b = load_checkpoint(reference / "last.pt"), load_checkpoint(out / "last.pt")
    assert a["loss"]["estimates"].shape[1] == 3  # ROLE's label estimates, one row per image
    for part in ("model", "augmentations", "loss"):
        assert a[part].keys() == b[part].keys()
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), key
    log_a = (reference / "log.jsonl").read_text().splitlines()
    log_b = (out / "log.jsonl").read_text().splitlines()
    assert len(log_a) == len(log_b) == 4
    strip = lambda line: {k: v for k, v in json.loads(line).items() if k != "epoch_time_s"}  # noqa: E731
    assert [strip(x) for x in log_a] == [strip(x) for x in log_b]


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "last.pt" in capsys.readouterr().err
