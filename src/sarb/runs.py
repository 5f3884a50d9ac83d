"""The run directory: one object owns every file a training run writes and reads back.

``RunDir(path)`` names the files; ``RunDir.for_config(cfg)`` picks the directory of a new run
(``--out``, or ``runs/<time>-<method>`` stamped once) and records it in the config. Files:

- ``config.yaml``: the resolved configuration (``out`` included), to repeat the run;
- ``log.jsonl``: one record per epoch (and TensorBoard scalars under ``tensorboard/`` when
  TensorBoard is installed);
- ``last.pt`` (+ ``last.prev.pt``, the one before): the training state, for an exact resume;
- ``best.pt``: the epoch with the best validation mAP; ``metrics.json``: its test metrics;
- ``error.txt``: why a sweep cell failed: one line, then the traceback;
- ``.lock``: held (``flock``) by the run that writes here, so that a second run into the same
  directory is refused; the kernel releases it when its process ends, however it ends.

Every file is written atomically (:func:`sarb.files.atomic_write`); checkpoints are read with
``torch.load(weights_only=True)``, so loading one never runs code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sarb.checkpoint import FORMAT, load_checkpoint
from sarb.config import TrainConfig, config_yaml, flag, read_yaml, resume_change
from sarb.errors import SarbError, quote
from sarb.files import atomic_write, remove_stale_temps, try_lock
from sarb.presets import upgrade_config
from sarb.runtime import rng_state, set_rng_state


def _holder(fd: int) -> str:
    """What the process holding a run directory's lock wrote in it: ``pid N on HOST``."""
    return os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "a process"


class RunInUse(SarbError):
    """The run directory is held by another process's run (:meth:`RunDir.lock`)."""


class RunDir:
    """The files of one training run, under ``path``."""

    CONFIG = "config.yaml"
    LOG = "log.jsonl"
    LAST = "last.pt"
    LAST_PREV = "last.prev.pt"
    BEST = "best.pt"
    METRICS = "metrics.json"
    ERROR = "error.txt"
    TENSORBOARD = "tensorboard"
    LOCK = ".lock"
    RUN_FILES = (METRICS, BEST, LAST, LAST_PREV, CONFIG, LOG)
    """The files that make a directory hold a run."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @classmethod
    def for_config(cls, cfg: TrainConfig) -> tuple[RunDir, TrainConfig]:
        """The run directory of ``cfg`` and the config that records it: ``cfg.out``, else
        ``runs/<date>-<time>-<method>`` under the current folder (the time stamped once)."""
        out = cfg.out or str(Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.method}")
        return cls(out), dataclasses.replace(cfg, out=str(Path(out).resolve()))

    # ------------------------------------------------------------------------------------ lock

    @contextlib.contextmanager
    def lock(self, resume: bool = False, overwrite: bool = False) -> Iterator[None]:
        """Hold the directory for this process while the block runs: a second run into it (or
        a ``--resume`` of it) is refused with one line. The lock is the kernel's (``flock`` on
        ``.lock``), so it ends with its process, even after ``kill -9``: a dead run never
        leaves a stale lock. Once held, temporary files that a killed run left are removed,
        and unless ``resume``, a previous run's files are refused (or cleared: ``overwrite``)."""
        self._mkdir()
        try:
            fd = os.open(self / self.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SarbError(f"{self / self.LOCK}: cannot write ({exc.strerror})") from None
        try:
            if not try_lock(fd, self / self.LOCK):
                raise RunInUse(f"{self.path}: in use by another sarb run ({_holder(fd)}); wait for "
                               "it to end, or choose another --out")  # fmt: skip
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode(), 0)
            remove_stale_temps(self.path)
            if not resume and (found := self.existing_run()):
                if not overwrite:
                    raise SarbError(f"{self.path}: already holds a run ({found}); --overwrite "
                                    f"replaces it, --resume {self.path} continues it")  # fmt: skip
                self.clear()
            yield
        finally:
            os.close(fd)  # releases the lock

    def holder(self) -> str | None:
        """Who holds :meth:`lock` now (``pid N on HOST``), or None when no process does."""
        try:
            fd = os.open(self / self.LOCK, os.O_RDWR)
        except OSError:
            return None  # no lock file: no run has written here
        try:
            return None if try_lock(fd, self / self.LOCK) else _holder(fd)
        finally:
            os.close(fd)  # releases the probe's lock, if it took it

    def _mkdir(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SarbError(
                f"{self.path}: cannot write the run directory ({exc.strerror})"
            ) from None

    # ---------------------------------------------------------------------------------- config

    def existing_run(self) -> str | None:
        """The name of a run file this directory already holds (None: free for a new run)."""
        return next((name for name in self.RUN_FILES if (self / name).exists()), None)

    def clear(self) -> None:
        """Remove the files of a previous run (the folder and anything else in it stay)."""
        for name in (*self.RUN_FILES, self.ERROR):
            (self / name).unlink(missing_ok=True)
        shutil.rmtree(self / self.TENSORBOARD, ignore_errors=True)

    def create(self, cfg: TrainConfig) -> None:
        """Make the folder and write ``config.yaml``."""
        self._mkdir()
        atomic_write(self / self.CONFIG, config_yaml(cfg))

    def read_config(self) -> dict[str, Any] | None:
        """The keys of ``config.yaml``, or None when it is missing or unreadable."""
        try:
            saved = read_yaml(self / self.CONFIG)
        except SarbError:
            return None
        return saved if isinstance(saved, dict) else None

    # ------------------------------------------------------------------------------ checkpoints

    def last_good(self) -> str:
        """Where a failed run can be resumed from, said for an error message."""
        if (self / self.LAST).is_file():
            return f"the last good checkpoint is {self / self.LAST}"
        return "no checkpoint was written yet"

    def has_checkpoint(self) -> bool:
        """Whether there is a ``last.pt`` (or its predecessor) to resume from."""
        return any((self / f).is_file() for f in (self.LAST, self.LAST_PREV))

    def save(
        self,
        method: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        generator: torch.Generator,
        record: dict[str, Any],
        best: bool,
    ) -> None:
        """Checkpoint the training state after an epoch: ``last.pt`` holds the model, the
        method's own state (``method.augmentations``, ``method.loss``), ``record`` (config,
        classes, epoch bookkeeping), the optimiser, the scheduler and every RNG state; the
        previous one is kept as ``last.prev.pt``, so that a ``last.pt`` always exists. When
        ``best``, ``best.pt`` gets the same without the optimiser, scheduler and RNG states."""
        model_state = {
            "format": FORMAT,
            "model": method.model.state_dict(),
            "augmentations": method.augmentations.state_dict(),
            "loss": method.loss.state_dict(),
            **record,
        }
        if best:
            atomic_write(self / self.BEST, lambda f: torch.save(model_state, f))
        payload = {
            **model_state,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng_state(generator),
        }
        last = self / self.LAST
        if last.is_file():  # linked aside first: last.pt never disappears
            staged = self / f".{self.LAST_PREV}.tmp"
            staged.unlink(missing_ok=True)
            try:
                os.link(last, staged)
            except OSError:  # a file system without hard links
                shutil.copy2(last, staged)
            os.replace(staged, self / self.LAST_PREV)
        atomic_write(last, lambda f: torch.save(payload, f))

    def restore(
        self,
        method: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
        config: TrainConfig | None = None,
    ) -> dict[str, Any]:
        """Load what :meth:`save` wrote last into the given objects and the RNGs; returns the
        checkpoint (its ``epoch``, ``step``, ``best_val_mAP``, ``best_epoch``...). A checkpoint
        that cannot continue this run (no training state, as in a ``best.pt``; trained with
        another ``config`` than the one given; weights of another model) is a one-line error."""
        state = self.load_last(device)
        last = self / self.LAST
        if state.get("migrated_from") is not None:
            raise SarbError(f"{self.path}: written by an older sarb; start the run over")
        missing = [k for k in ("optimizer", "scheduler", "rng", "epoch", "step") if k not in state]
        if missing:
            raise SarbError(f"{last}: no training state ({', '.join(missing)}); a {self.BEST} "
                            "cannot be resumed, only a run's own last checkpoint")  # fmt: skip
        saved = upgrade_config(state["config"])  # a copy
        if config is not None and (change := resume_change(saved, dataclasses.asdict(config))):
            name, old, new = change
            raise SarbError(f"{last}: trained with --{flag(name)} {quote(old)}, but "
                            f"{self / self.CONFIG} has {quote(new)}")  # fmt: skip
        try:
            method.model.load_state_dict(state["model"])
            method.augmentations.load_state_dict(state["augmentations"])
            method.loss.load_state_dict(state["loss"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            set_rng_state(state["rng"], generator)
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
            detail = " ".join(str(exc).split())[:200]
            raise SarbError(f"{last}: does not fit the model of this run ({detail})") from None
        return state

    def load_last(self, device: torch.device | str = "cpu") -> dict[str, Any]:
        """``last.pt``, or ``last.prev.pt`` when the former is missing or damaged (said so)."""
        try:
            return load_checkpoint(self / self.LAST, map_location=device)
        except SarbError as exc:
            previous = self / self.LAST_PREV
            if not previous.is_file():
                raise
            print(f"sarb: {exc}; resuming from the previous checkpoint {previous}", file=sys.stderr)
            return load_checkpoint(previous, map_location=device)

    def load_best(self, device: torch.device | str = "cpu") -> dict[str, Any]:
        return load_checkpoint(self / self.BEST, map_location=device)

    # ------------------------------------------------------------------------- metrics, errors

    def write_metrics(self, result: dict[str, Any]) -> None:
        atomic_write(self / self.METRICS, json.dumps(result, indent=2) + "\n")

    def read_metrics(self) -> dict[str, Any] | None:
        """The content of ``metrics.json`` (a finished run), or None."""
        try:
            data = json.loads((self / self.METRICS).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return data if isinstance(data, dict) else None

    def write_error(self, summary: str, details: str) -> None:
        """Record a failure: its one-line summary, then the traceback (best effort: the
        failure is reported anyway)."""
        try:
            atomic_write(self / self.ERROR, f"{summary}\n\n{details}", fsync=False)
        except SarbError:
            pass

    def read_error(self) -> str | None:
        """The one-line summary of the failure recorded here, or None."""
        try:
            with (self / self.ERROR).open() as f:
                return f.readline().strip() or None
        except OSError:
            return None

    def clear_error(self) -> None:
        (self / self.ERROR).unlink(missing_ok=True)

    # ------------------------------------------------------------------------------------- log

    def open_log(self, resume_after: int | None = None) -> RunLog:
        """The per-epoch log; when resuming after epoch N, records past N are dropped first
        (the interrupted epoch is redone)."""
        path = self / self.LOG
        if resume_after is not None and path.is_file():
            lines = path.read_text().splitlines(keepends=True)
            atomic_write(path, "".join(lines[:resume_after]), fsync=False)
        return RunLog(path, self / self.TENSORBOARD, append=resume_after is not None)

    def read_log(self) -> list[dict[str, Any]]:
        """The records of ``log.jsonl`` (unreadable lines skipped; empty when there is none)."""
        try:
            lines = (self / self.LOG).read_text().splitlines()
        except OSError:
            return []
        records = []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
        return records


class RunLog:
    """Per-epoch records: ``log.jsonl``, and TensorBoard scalars when it is installed."""

    def __init__(self, path: Path, tensorboard_dir: Path, append: bool = False):
        self.file = path.open("a" if append else "w")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(tensorboard_dir))
        except ImportError:  # tensorboard is optional
            self.tensorboard = None

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tensorboard is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.tensorboard.add_scalar(key, value, record["epoch"])

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
