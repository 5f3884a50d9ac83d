"""Hostile conditions end in one line and exit 2, never a traceback or mixed files: full disks,
two runs into one directory, untrusted checkpoints and configs, mismatched resumes."""

from __future__ import annotations

import csv
import dataclasses
import errno
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sarb.cli import main
from sarb.config import TrainConfig, load_yaml, resolve_config
from sarb.errors import SarbError
from sarb.files import atomic_write
from sarb.report import RESULTS, read_results, write_results
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


# -------------------------------------------------------------------- untrusted checkpoints


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory) -> RunDir:
    out = tmp_path_factory.mktemp("trained") / "run"
    assert main([*tiny_train_args(tiny_dataset, out), "--epochs", "1"]) == 0
    return RunDir(out)


def _tampered(run: RunDir, folder: Path, **changes) -> Path:
    """``run``'s best.pt with config keys replaced (``class_names``: the class list)."""
    payload = torch.load(run / RunDir.BEST, weights_only=True)
    for key, value in changes.items():
        (payload if key == "class_names" else payload["config"])[key] = value
    path = folder / "tampered.pt"
    torch.save(payload, path)
    return path


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"image_size": 60000}, "--image-size must be in [8, 2048], got 60000"),
        ({"image_size": "448"}, "'image_size': expected int, got '448'"),
        ({"epochs": True}, "'epochs': expected a number, got True"),
        ({"lr": float("nan")}, "--lr must be a finite number"),
        ({"head": "x" * 10_000}, "unknown head"),
        ({"class_names": ["red", "green", "red"]}, "names class 'red' twice"),
    ],
)
def test_a_hostile_checkpoint_config_is_one_line(trained, tmp_path, capsys, changes, needle):
    ckpt = _tampered(trained, tmp_path, **changes)
    assert main(["predict", "--checkpoint", str(ckpt), str(_an_image(tmp_path))]) == 2
    line = _one_error_line(capsys)
    assert "tampered.pt" in line and needle in line and len(line) < 300


def _an_image(folder: Path) -> Path:
    from PIL import Image

    path = folder / "img.png"
    Image.new("RGB", (32, 32)).save(path)
    return path


def test_eval_never_writes_to_a_folder_named_in_the_checkpoint(
    trained, tmp_path, monkeypatch, capsys
):
    import sarb.data.demo as demo

    victim = tmp_path / "victim"
    ckpt = _tampered(trained, tmp_path, dataset="demo", cache_dir=str(victim))
    asked = []

    def ensure_demo(cache_dir=None):
        asked.append(cache_dir)
        raise SarbError("stopped before building the demo")

    monkeypatch.setattr(demo, "ensure_demo", ensure_demo)
    for extra in ([], ["--dataset", "demo"]):
        assert main(["eval", "--checkpoint", str(ckpt), *extra]) == 2
        assert "stopped before" in _one_error_line(capsys)
    assert asked == [None, None] and not victim.exists()
    mine = str(tmp_path / "mine")
    assert main(["eval", "--checkpoint", str(ckpt), "--cache-dir", mine]) == 2
    assert asked[-1] == mine


# ----------------------------------------------------------------------- configs and flags

FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]
HOSTILE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(FIELDS), value=HOSTILE)
def test_any_config_value_is_accepted_or_refused_in_one_line(name, value):
    """Flags, YAML keys and checkpoint configs share this check: a value is refused with a short
    message naming it, or it makes a config that the optimiser and the loaders accept."""
    try:
        cfg = resolve_config(None, **{name: value})
    except SarbError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 300
        return
    torch.optim.Adam([torch.zeros(1, requires_grad=True)], cfg.lr, weight_decay=cfg.weight_decay)
    assert cfg.max_steps is None or cfg.max_steps >= 1


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--lr", "-1"], "--lr must be > 0"),
        (["--lr", "nan"], "--lr must be a finite number"),
        (["--weight-decay", "-1"], "--weight-decay and --contrastive-weight must be >= 0"),
        (["--contrastive-weight", "nan"], "--contrastive-weight must be a finite number"),
        (["--max-steps", "0"], "--max-steps must be in [1,"),
        (["--image-size", "60000"], "--image-size must be in [8, 2048]"),
    ],
)
def test_bad_numeric_flags_are_one_line(tmp_path, tiny_dataset, capsys, flags, needle):
    assert main([*tiny_train_args(tiny_dataset, tmp_path / "run"), *flags]) == 2
    assert needle in _one_error_line(capsys)
    assert not (tmp_path / "run").exists()


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (BOMB.replace("i: &i", "head: &i").encode(), "more than 64 aliases"),
        (b"epochs: " + b"[" * 20_000 + b"]" * 20_000, "nested deeper than 64 levels"),
        ("known: 0.5\nout: caf\u00e9\n".encode("latin-1"), "not UTF-8 text (byte 19)"),
        (b"epochs: true\n", "'epochs': expected a number, got True"),
        (b"head: " + b"x" * 2_000_000 + b"\n", "larger than 1 MiB"),
        (b"epochs: [" + b"1, " * 10_000 + b"1]\n", "expected int, got [1, 1, 1, 1, 1, 1, ...]"),
    ],
)
def test_hostile_yaml_configs_are_one_line(tmp_path, capsys, content, needle):
    path = tmp_path / "hostile.yaml"
    path.write_bytes(content)
    assert main(["train", "--config", str(path)]) == 2
    line = _one_error_line(capsys)
    assert needle in line and len(line) < 300


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_yaml_bytes_are_a_config_or_one_line(tmp_path, content):
    path = tmp_path / "fuzzed.yaml"
    path.write_bytes(content)
    try:
        values = load_yaml(path)
    except SarbError as exc:
        assert "\n" not in str(exc) and "fuzzed.yaml" in str(exc)
        return
    assert set(values) <= set(FIELDS)


# ------------------------------------------------------------------- resuming another run


def _two_class_run(tiny: dict[str, Path], folder: Path) -> RunDir:
    """A run on the tiny data with its last class left out (another model, another --train)."""
    manifests = {}
    for split in ("train", "test"):
        rows = [r.rsplit(",", 1)[0] for r in tiny[split].read_text().splitlines()]
        rows[1:] = [str(tiny[split].parent / r) for r in rows[1:]]
        manifests[split] = folder / f"{split}2.csv"
        manifests[split].write_text("\n".join(rows) + "\n")
    out = folder / "two"
    assert main([*tiny_train_args(manifests, out), "--epochs", "1"]) == 0
    return RunDir(out)


def _shrunk_weights(run: RunDir) -> None:
    state = torch.load(run / RunDir.LAST, weights_only=True)
    state["model"]["head.fc.weight"] = state["model"]["head.fc.weight"][:2]
    torch.save(state, run / RunDir.LAST)


@pytest.mark.parametrize(
    ("damage", "needle"),
    [
        ("other run", "last.pt: trained with --train"),
        ("best as last", "last.pt: no training state (optimizer, scheduler, rng)"),
        ("edited config", "last.pt: trained with --method 'bce-ignore', but"),
        ("other weights", "last.pt: does not fit the model of this run (Error(s) in loading"),
        ("--out", "--out and --overwrite are for new runs"),
        ("--overwrite", "--out and --overwrite are for new runs"),
    ],
)
def test_resuming_a_mismatched_run_is_one_line(
    trained, tiny_dataset, tmp_path, capsys, damage, needle
):
    run = RunDir(tmp_path / "copy")
    shutil.copytree(trained.path, run.path)
    (run / RunDir.LAST_PREV).unlink(missing_ok=True)
    flags = ["--epochs", "2"]
    if damage == "other run":
        shutil.copy(_two_class_run(tiny_dataset, tmp_path) / RunDir.LAST, run / RunDir.LAST)
    elif damage == "best as last":
        shutil.copy(run / RunDir.BEST, run / RunDir.LAST)
    elif damage == "edited config":
        text = (run / RunDir.CONFIG).read_text()
        (run / RunDir.CONFIG).write_text(text.replace("head: linear", "head: csrl"))
    elif damage == "other weights":
        _shrunk_weights(run)
    else:
        flags += [damage, *([str(tmp_path / "elsewhere")] if damage == "--out" else [])]
    capsys.readouterr()
    assert main(["train", "--resume", str(run.path), *flags]) == 2
    assert needle in _one_error_line(capsys)


# --------------------------------------------------------------------------- determinism


def test_deterministic_runs_match_from_a_cold_and_a_warm_feature_cache(tmp_path, tiny_dataset):
    """Computing the feature cache draws no random number of the run: two runs that each fill
    a new cache and one that reads a filled one write the same metrics.json and log."""
    args = tiny_train_args(tiny_dataset, tmp_path / "unused", "sarb")
    args[args.index("--trainable") + 1] = "none"
    args = [*args[: args.index("--out")], "--feature-cache", "--deterministic", "--no-crop-flip",
            "--epochs", "3", "--max-steps", "8"]  # fmt: skip
    results = []
    for name, cache in (("cold", "a"), ("cold again", "b"), ("warm", "a")):
        out = tmp_path / name
        assert main([*args, "--cache-dir", str(tmp_path / cache), "--out", str(out)]) == 0
        metrics = {**json.loads((out / RunDir.METRICS).read_text()), "run_dir": None}
        log = [{**r, "epoch_time_s": None} for r in RunDir(out).read_log()]
        results.append((metrics, log))
    assert results[0] == results[1] == results[2]
    assert {p.name for p in (tmp_path / "a").rglob("*.pt")} == {
        p.name for p in (tmp_path / "b").rglob("*.pt")
    }


# ------------------------------------------------------------------------ smaller promises


class _Payload:
    """A pickle that would create a folder when unpickled with code execution allowed."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (str(self.marker),))


def test_a_checkpoint_with_code_is_refused_saying_why(tmp_path, capsys):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": _Payload(marker), "config": {}}, path)
    assert main(["eval", "--checkpoint", str(path)]) == 2
    line = _one_error_line(capsys)
    assert "evil.pt: refused: it holds Python objects, and loading them could run code" in line
    assert "makedirs" in line and not marker.exists()


def test_a_nan_in_the_first_epoch_names_no_missing_checkpoint(
    tmp_path, tiny_dataset, monkeypatch, capsys
):
    import sarb.methods.objectives as objectives

    real = objectives.FunctionLoss.forward
    monkeypatch.setattr(objectives.FunctionLoss, "forward",
                        lambda self, *a, **k: real(self, *a, **k) * float("nan"))  # fmt: skip
    assert main(tiny_train_args(tiny_dataset, tmp_path / "run")) == 2
    line = _one_error_line(capsys)
    assert "non-finite loss at epoch 1, step 1; no checkpoint was written yet" in line


def test_metrics_of_extreme_logits_warn_of_nothing(tmp_path, capsys):
    (tmp_path / "logits.csv").write_text("1000,-1000\n-1000,1000\n")
    (tmp_path / "labels.csv").write_text("1,-1\n-1,1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warning would fail the test
        args = ["--scores", str(tmp_path / "logits.csv"), "--labels", str(tmp_path / "labels.csv")]
        assert main(["metrics", *args, "--logits"]) == 0
    assert json.loads(capsys.readouterr().out)["mAP"] == 100.0


def _results_csv(folder: Path) -> Path:
    rows = [{"dataset": "demo", "method": m, "known": k, "seed": 0, "mAP": 50.0, "run_dir": "r"}
            for m in ("ssgrl", "sarb") for k in (0.1, 0.5)]  # fmt: skip
    write_results(folder / RESULTS, rows)
    return folder / RESULTS


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda t: t.replace(",0.1,", ",nan,", 1), "line 2: known 'nan' is out of range"),
        (lambda t: t.replace(",50.0,", ",inf,", 1), "line 2: mAP 'inf' is out of range"),
        (lambda t: t.replace("sarb", "caf\xe9", 1), "not UTF-8 text"),
    ],
)
def test_report_of_a_damaged_results_csv_is_one_line(tmp_path, capsys, edit, needle):
    path = _results_csv(tmp_path)
    path.write_bytes(edit(path.read_text()).encode("latin-1"))
    assert main(["report", str(tmp_path)]) == 2
    assert needle in _one_error_line(capsys)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    column=st.sampled_from(["known", "seed", "mAP", "OP", "best_epoch", "val_mAP"]),
    value=st.text(max_size=12) | st.floats().map(repr),
)
def test_any_results_csv_value_is_read_or_refused_in_one_line(tmp_path, column, value):
    path = _results_csv(tmp_path)
    rows = list(csv.DictReader(path.read_text().splitlines()))
    rows[0][column] = value
    with path.open("w", newline="", encoding="utf-8", errors="surrogatepass") as f:
        writer = csv.DictWriter(f, rows[0].keys())
        writer.writeheader()
        writer.writerows(rows)
    try:
        read = read_results(path)
    except SarbError as exc:
        assert "\n" not in str(exc)
        return
    floats = [r[c] for r in read for c in ("mAP", "OP", "val_mAP") if c in r]
    assert not any(math.isinf(v) for v in floats)
    assert all(r["known"] == "single-positive" or 0 < r["known"] <= 1 for r in read)


def test_a_lone_surrogate_in_a_jsonl_class_name_is_one_line(tmp_path, tiny_dataset, capsys):
    image = tiny_dataset["train"].parent / "img" / "train_000.png"
    manifest = tmp_path / "odd.jsonl"
    manifest.write_text(f'{{"image": "{image}", "positive": ["cat\\ud800"]}}\n')
    out = ["--out", str(tmp_path / "labels.csv"), "--names", str(tmp_path / "names.txt")]
    assert main(["labels", "--train", str(manifest), "--test", str(manifest), *out]) == 2
    assert "odd.jsonl:1: \\ud800 is half a UTF-16 pair" in _one_error_line(capsys)


def test_a_jpeg_with_a_corrupt_scan_is_named_in_its_warning(tmp_path, capfd):
    from PIL import Image

    from sarb.data.dataset import read_image

    path = tmp_path / "broken_scan.jpg"
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + b"\xff\xd9")  # the scan ends half way
    assert read_image(path).shape == (3, 64, 64)
    err = capfd.readouterr().err.splitlines()
    assert err == [f"sarb: warning: {path}: Corrupt JPEG data: premature end of data segment"]
