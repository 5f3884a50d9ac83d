"""Hostile conditions end in one line and exit 2, never a traceback or mixed files: full disks,
two runs into one directory, untrusted checkpoints and configs, mismatched resumes."""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from sarb.cli import main
from sarb.errors import SarbError
from sarb.files import atomic_write
from sarb.runs import RunDir
from tests.conftest import tiny_train_args


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The last stderr line, checked to be sarb's one-line error (no traceback before it)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("sarb: error: "), err
    return line


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


# ------------------------------------------------------------------------------- full disks


class _FullDisk(io.RawIOBase):
    """A file whose disk fills after ``room`` bytes, as a real one does under ``torch.save``."""

    def __init__(self, inner: io.RawIOBase, room: int):
        self.inner, self.room = inner, room

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.inner.write(data)


def test_disk_full_while_checkpointing_is_one_line_without_temp_files(
    tmp_path, tiny_dataset, monkeypatch, capsys
):
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f: real_save(obj, _FullDisk(f, 5000)))
    out = tmp_path / "run"
    assert main(tiny_train_args(tiny_dataset, out)) == 2
    line = _one_error_line(capsys)
    assert "best.pt: cannot write" in line  # torch's RuntimeError, not a 28-line traceback
    assert _temps(out) == []


def test_a_full_disk_never_leaves_metrics_json_half_written(tmp_path, monkeypatch):
    run = RunDir(tmp_path)
    run.write_metrics({"mAP": 1.0})

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(SarbError, match="metrics.json: cannot write"):
        run.write_metrics({"mAP": 2.0})
    assert run.read_metrics() == {"mAP": 1.0}
    assert _temps(tmp_path) == []


def test_temp_files_of_a_killed_run_are_removed_by_the_next(tmp_path, tiny_dataset):
    out = tmp_path / "run"
    out.mkdir()
    for name in (".last.pt.k1ll3d.tmp", ".last.prev.pt.tmp", ".metrics.json.x.tmp"):
        (out / name).write_bytes(b"left by kill -9")
    assert main(tiny_train_args(tiny_dataset, out)) == 0
    assert _temps(out) == []


# ------------------------------------------------------------------- one run per directory

_HOLD = """
import sys, time
from sarb.runs import RunDir
with RunDir(sys.argv[1]).lock():
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_second_run_into_a_busy_directory_is_refused_until_the_first_dies(
    tmp_path, tiny_dataset, capsys
):
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"held\n"
        assert main(tiny_train_args(tiny_dataset, out)) == 2
        assert f"in use by another sarb run (pid {holder.pid}" in _one_error_line(capsys)
        assert not (out / RunDir.CONFIG).exists()  # the holder's files are left alone
        assert main(["train", "--resume", str(out)]) == 2
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert main(tiny_train_args(tiny_dataset, out)) == 0  # a dead holder leaves no stale lock


def test_concurrent_writers_of_one_file_never_mix(tmp_path):
    """What two runs filling one feature cache entry do: each writes its own temporary file."""
    target = tmp_path / "features" / "entry.pt"
    blobs = [bytes([i]) * 200_000 for i in range(8)]
    threads = [threading.Thread(target=atomic_write, args=(target, b)) for b in blobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_bytes() in blobs
    assert _temps(tmp_path) == []


# ------------------------------------------------------------------------------ the caches


def test_an_unwritable_cache_dir_fails_before_features_are_computed(
    tmp_path, tiny_dataset, monkeypatch, capsys
):
    import sarb.data.features as features

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    computed = []
    monkeypatch.setattr(features, "ImageDataset", lambda *a: computed.append(a))
    args = tiny_train_args(tiny_dataset, tmp_path / "run")
    args[args.index("--trainable") + 1] = "none"
    assert main([*args, "--feature-cache", "--cache-dir", str(blocker / "cache")]) == 2
    assert "a_file/cache/features: cannot write" in _one_error_line(capsys)
    assert computed == []
