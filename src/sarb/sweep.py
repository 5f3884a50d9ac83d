"""``sarb sweep``: the paper's grid of methods x known-label proportions x seeds, resumable.

Usage::

    sarb sweep --dataset D [dataset flags and any other `sarb train` flag]
               --methods m1,m2,...|all --known 0.1,0.2,...,0.9 --seeds N --out DIR
               [--config FILE]

Every cell is one ``sarb train`` run (in this process) with ``--method m --known p --seed s``
in ``DIR/runs/{m}/known{p}/seed{s}/``; seeds are 0..N-1 (or ``--seeds A-B``, ``--seeds
A,B,...``: a sweep split over processes by seeds) and the label mask keeps
``--mask-seed`` (0, the paper's masks, unless set). ``--known`` may also list
``single-positive``: a column of cells trained on single positive labels
(``DIR/runs/{m}/single-positive/seed{s}/``), shown after the fractions and left out of Avg.
Other settings come, by increasing precedence, from the defaults, the config file and the flags.

Resuming: a cell whose ``metrics.json`` exists is skipped (and said so; a note is added when
its ``config.yaml`` differs from the current settings). A cell interrupted mid-training, whose
run directory holds ``last.pt`` and the same configuration, continues from its last epoch.
A failing cell is reported in one line, recorded in its run directory's ``error.txt`` (the
line, then the traceback) and does not stop the others; the exit code is then 1. A rerun
retries the failed cells. ``DIR/failures.txt`` lists every cell under ``DIR/runs`` whose last
attempt failed, rewritten with the table (and removed when none has), so a second sweep into
the same folder neither hides nor forgets the first one's failures.

After every trained cell (and at the end), ``DIR/results.csv``, ``DIR/table.md``,
``DIR/map_vs_known.png`` and ``DIR/loss_curves.png`` are rewritten (see ``sarb.report``) from
every finished cell under ``DIR/runs``, so a partial sweep is usable, and two sweeps into the
same DIR (e.g. more methods later) make one table. Use a new DIR for a new configuration.

Two cores, two processes: sweeps into the same DIR may also run at the same time. A cell that
another one is training (its run directory is locked) is skipped and said so, and the rewrites
of the shared files take turns, so the last one to finish leaves every finished cell in the
table. Each process trains whatever cell it reaches first; ``--seeds`` splits the grid evenly.

Progress: one line per cell on stderr, with an ETA for the cells left to train (neither
finished nor in training elsewhere): each counts the mean time of the cells of its method
trained so far, or of all cells when none is. With two sweeps sharing the grid, each one's
ETA counts every cell left, as if it trained them alone.

Config files: ``--config`` takes a path or the name of a packaged config (``quick``,
``demo``, ``paper``, ``sweep_paper``). Besides the ``sarb train`` keys, a config may hold a
``sweep:`` section with the grid, used when the corresponding flag is not given::

    sweep:
      methods: [sarb, ssgrl]   # or "sarb,ssgrl" or "all"
      known: [0.1, 0.5, 0.9]   # or "0.1,0.5,0.9"
      seeds: 3                 # seeds 0, 1, 2; or "3-4", or [3, 4]

Without either, ``known`` is the paper's nine proportions 0.1..0.9 and ``seeds`` is 1;
``methods`` must be given. Top-level ``method``, ``known``, ``seed`` and ``out`` keys are
replaced by the grid's values. A config with a ``sweep:`` section is for ``sarb sweep`` only
(``sarb train --config`` rejects the key).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from sarb import report
from sarb.config import (
    PATH_FIELDS,
    RUNTIME_FIELDS,
    TrainConfig,
    config_changes,
    config_path,
    read_config_sections,
    resolve_config,
)
from sarb.data.partial import SINGLE_POSITIVE, check_known
from sarb.errors import SarbError
from sarb.files import atomic_write, held
from sarb.methods import check_parts
from sarb.presets import PRESETS, upgrade_config
from sarb.report import Known, known_key
from sarb.runs import RunDir, RunInUse

PAPER_PROPORTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""The known-label proportions of the paper's tables ("Avg." is their mean)."""
SWEEP_KEYS = ("methods", "known", "seeds")
"""Keys of a config file's ``sweep:`` section."""
GRID_FIELDS = ("method", "known", "seed", "out")
"""TrainConfig fields that the grid sets per cell."""
FAILURES = "failures.txt"
OUTPUTS_LOCK = ".outputs.lock"
"""Held while a sweep rewrites ``results.csv`` and the table (:func:`write_outputs`)."""


@dataclass(frozen=True)
class Cell:
    """One run of the grid."""

    method: str
    known: Known  # a fraction, or "single-positive"
    seed: int

    @property
    def setting(self) -> str:
        return self.known if isinstance(self.known, str) else f"known{self.known:g}"

    @property
    def label(self) -> str:
        known = self.known if isinstance(self.known, str) else f"known={self.known:g}"
        return f"{self.method} {known} seed={self.seed}"

    def run_dir(self, out: Path) -> RunDir:
        """``DIR/runs/{method}/known{p}/seed{s}`` (``single-positive`` for that setting)."""
        return RunDir(out / "runs" / self.method / self.setting / f"seed{self.seed}")

    @classmethod
    def of(cls, run: RunDir, out: Path) -> Cell | None:
        """The cell whose :meth:`run_dir` is ``run`` (None: a folder the sweep did not make)."""
        method, setting, seed = run.path.relative_to(out / "runs").parts
        try:
            known = setting if setting == SINGLE_POSITIVE else float(setting.removeprefix("known"))
            return cls(method, known, int(seed.removeprefix("seed")))
        except ValueError:
            return None


@dataclass
class SweepPlan:
    """What to run: shared training settings, the grid, and the output directory."""

    settings: dict[str, Any]  # TrainConfig values shared by every cell
    methods: list[str]
    known: list[Known]
    seeds: list[int]
    out: Path

    def cells(self) -> list[Cell]:
        """The grid in run order: method, then proportion, then seed."""
        return [Cell(m, k, s) for m in self.methods for k in self.known for s in self.seeds]

    def config(self, cell: Cell) -> TrainConfig:
        """The full training configuration of a cell."""
        single = cell.known == SINGLE_POSITIVE
        values = {
            **self.settings,
            **({"mask_protocol": SINGLE_POSITIVE} if single else {}),
            "method": cell.method,
            "overwrite": True,  # the sweep decides which cells to train again
            "known": 1.0 if single else cell.known,
            "seed": cell.seed,
            "out": str(cell.run_dir(self.out).path),
        }
        return resolve_config(None, **values)


@dataclass
class SweepOutcome:
    """What a sweep did: cells trained, skipped (done before), left to another process that
    was training them (a second sweep into the same folder), and failed (with the error)."""

    trained: list[Cell] = field(default_factory=list)
    skipped: list[Cell] = field(default_factory=list)
    elsewhere: list[Cell] = field(default_factory=list)
    failed: list[tuple[Cell, str]] = field(default_factory=list)


def parse_known(value: str | float | list | tuple) -> list[Known]:
    """``"0.1,0.5,single-positive"`` or a list -> the sorted distinct label settings: fractions
    in (0, 1], and ``single-positive`` (one known positive per image)."""
    items = value.split(",") if isinstance(value, str) else value
    items = items if isinstance(items, (list, tuple)) else [items]
    out: list[Known] = []
    for item in items:
        text = str(item).strip()
        if text == SINGLE_POSITIVE:
            out.append(text)
            continue
        try:
            p = float(text)
        except ValueError:
            raise SarbError(f"--known: {text!r} is not a number") from None
        out.append(check_known(p))
    if not out:
        raise SarbError("--known: no proportion given")
    return sorted(set(out), key=known_key)


def parse_methods(value: str | list | tuple) -> list[str]:
    """``"a,b"``, a list, or ``"all"`` (every preset) -> method names, checked."""
    registered = PRESETS.names()
    items = value.split(",") if isinstance(value, str) else [str(v) for v in value]
    names = [n.strip() for n in items if n.strip()]
    if names == ["all"]:
        return registered
    if not names:
        raise SarbError("--methods: no method given")
    unknown = [n for n in names if n not in registered]
    if unknown:
        raise SarbError(
            f"--methods: unknown method {unknown[0]!r}; choose from all, {', '.join(registered)}"
        )
    return list(dict.fromkeys(names))


def parse_seeds(value: int | str | list[int]) -> list[int]:
    """``N`` -> seeds 0..N-1; ``A-B`` -> seeds A..B; ``A,B,...`` (or a YAML list) -> those.

    Ranges and lists split one sweep over machines or processes: two sweeps into one DIR
    with disjoint seeds never train the same cell."""
    items = value if isinstance(value, list) else str(value).strip().split(",")
    text = ",".join(str(v) for v in items)
    form = "a number of seeds N, a range A-B or a list A,B,..."
    try:
        if len(items) > 1 or isinstance(value, list):
            seeds = [int(v) for v in items]
        elif "-" in text.lstrip("-"):
            first, last = (int(v) for v in text.split("-", 1))
            if first > last:
                raise SarbError(f"--seeds {text}: the range's first seed is above its last")
            seeds = list(range(first, last + 1))
        elif int(text) < 1:
            raise SarbError(f"--seeds must be >= 1, got {int(text)}")
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise SarbError(f"--seeds: expected {form}, got {text!r}") from None
    if not seeds:
        raise SarbError(f"--seeds: expected {form}, got an empty list")
    if min(seeds) < 0:
        raise SarbError(f"--seeds {text}: seeds are >= 0")
    if len(set(seeds)) < len(seeds):
        raise SarbError(f"--seeds {text}: a seed is listed twice")
    return seeds


def read_sweep_config(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A config file's ``sarb train`` keys and its ``sweep:`` section, both checked."""
    settings, extra = read_config_sections(path, ("sweep",))
    sweep = extra.get("sweep") or {}
    if not isinstance(sweep, dict):
        raise SarbError(f"{path}: 'sweep' must be a mapping with keys {', '.join(SWEEP_KEYS)}")
    for key in sweep:
        if key not in SWEEP_KEYS:
            raise SarbError(f"{path}: unknown key {key!r} in 'sweep' ({', '.join(SWEEP_KEYS)})")
    return settings, sweep


def plan_from_args(args: argparse.Namespace) -> SweepPlan:
    """Resolve the flags and the config file into a plan; every value is checked up front."""
    settings: dict[str, Any] = {}
    sweep: dict[str, Any] = {}
    if args.config:
        settings, sweep = read_sweep_config(config_path(args.config))
    if getattr(args, "seed", None) is not None:
        raise SarbError("sarb sweep runs several seeds: use --seeds N (0..N-1), A-B or A,B")
    for f in dataclasses.fields(TrainConfig):
        if f.name not in GRID_FIELDS and getattr(args, f.name, None) is not None:
            settings[f.name] = getattr(args, f.name)
    for name in GRID_FIELDS:
        settings.pop(name, None)
    methods = args.methods if args.methods is not None else sweep.get("methods")
    if methods is None:
        raise SarbError("sarb sweep needs --methods m1,m2,... or 'all' (or sweep.methods)")
    known = args.known if args.known is not None else sweep.get("known", PAPER_PROPORTIONS)
    seeds = args.seeds if args.seeds is not None else sweep.get("seeds", 1)
    plan = SweepPlan(
        settings, parse_methods(methods), parse_known(known), parse_seeds(seeds), Path(args.out)
    )
    for method in plan.methods:  # a bad setting fails now, not after hours of training
        check_parts(plan.config(Cell(method, plan.known[0], 0)))
    return plan


def config_differences(run: RunDir, cfg: TrainConfig) -> list[str] | None:
    """Settings in which the run's ``config.yaml`` differs from ``cfg`` (data paths and the run
    directory aside, which a run stores resolved); None when there is no readable config."""
    saved = run.read_config()
    if saved is None:
        return None
    saved = upgrade_config(saved)  # a run of sarb 0.1 is compared in today's keys
    ignore = {*PATH_FIELDS, "weights", "out", *RUNTIME_FIELDS}
    if cfg.amp is None:  # unset: the run recorded what its device resolved it to
        ignore.add("amp")
    changes = config_changes(saved, dataclasses.asdict(cfg), ignore)
    return [f"{name} {saved.get(name)!r} (now {new!r})" for name, _, new in changes]


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _eta(left: list[Cell], times: dict[str, list[float]]) -> float:
    """Seconds to train ``left``: per cell, the mean time of its method so far, else of all."""
    every = [t for ts in times.values() for t in ts]
    overall = sum(every) / len(every)
    return sum(
        sum(times[c.method]) / len(times[c.method]) if c.method in times else overall for c in left
    )


def _untrained(run: RunDir) -> bool:
    """Neither finished nor in training by another process (a cell still to train)."""
    return run.read_metrics() is None and run.holder() is None


def _map_text(metrics: dict[str, Any] | None) -> str:
    value = (metrics or {}).get("mAP")
    return f"mAP {value:.1f}" if isinstance(value, (int, float)) else "mAP -"


def _error_text(exc: BaseException) -> str:
    """One line: the message of a SarbError, ``Type: message`` of anything else."""
    text = str(exc).strip()
    if "Original Traceback" in text:  # re-raised from a DataLoader worker
        text = text.splitlines()[-1]
    text = " ".join(text.split()) or "(no message)"
    return text if isinstance(exc, SarbError) else f"{type(exc).__name__}: {text}"


def collect_rows(out: Path, method_order: list[str] | None = None) -> list[dict[str, Any]]:
    """``results.csv`` rows of every finished cell under ``out/runs``, in grid order (the
    methods of ``method_order`` first), ``run_dir`` relative to ``out``."""
    rows = []
    for metrics_file in sorted((out / "runs").glob(f"*/*/seed*/{RunDir.METRICS}")):
        run = RunDir(metrics_file.parent)
        metrics = run.read_metrics()
        if metrics is None or not {"method", "known", "seed"} <= metrics.keys():
            continue
        saved = run.read_config() or {}
        dataset = str(saved.get("dataset") or metrics.get("dataset") or "")
        rows.append(report.result_row(metrics, dataset, run.path.relative_to(out).as_posix()))
    order = {m: i for i, m in enumerate(method_order or [])}
    rows.sort(key=lambda r: _grid_key(order, Cell(r["method"], r["known"], r["seed"])))
    return rows


def _grid_key(order: dict[str, int], cell: Cell) -> tuple:
    """Sort key in grid order: the methods of ``order`` first, then proportion, then seed."""
    return order.get(cell.method, len(order)), cell.method, known_key(cell.known), cell.seed


def collect_failures(out: Path, method_order: list[str] | None = None) -> list[str]:
    """``failures.txt`` lines: every cell under ``out/runs`` whose last attempt failed (an
    ``error.txt`` and no ``metrics.json``), in grid order, as ``label: error``."""
    failed = []
    for error_file in (out / "runs").glob(f"*/*/seed*/{RunDir.ERROR}"):
        run = RunDir(error_file.parent)
        summary = run.read_error()
        if summary is None or run.read_metrics() is not None:
            continue
        if cell := Cell.of(run, out):
            failed.append((cell, summary))
    order = {m: i for i, m in enumerate(method_order or [])}
    failed.sort(key=lambda f: _grid_key(order, f[0]))
    return [f"{cell.label}: {summary}" for cell, summary in failed]


def write_outputs(out: Path, method_order: list[str] | None = None) -> None:
    """Rewrite ``results.csv`` from the finished cells, then the table and figures from it,
    and ``failures.txt``; one process at a time, so that each rewrite sees every cell
    finished (or failed) before it."""
    with held(out / OUTPUTS_LOCK):
        report.write_results(out / report.RESULTS, collect_rows(out, method_order))
        report.write_report(out)
        if failures := collect_failures(out, method_order):
            atomic_write(out / FAILURES, "".join(f"{line}\n" for line in failures))
        else:
            (out / FAILURES).unlink(missing_ok=True)


def run_sweep(plan: SweepPlan, stream: TextIO | None = None) -> SweepOutcome:
    """Run the plan's cells in order, skipping finished ones; outputs rewritten after each."""
    from sarb.engine import fit

    stream = stream or sys.stderr
    out = plan.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SarbError(f"{out}: cannot write the sweep directory ({exc.strerror})") from None
    cells = plan.cells()
    outcome, times = SweepOutcome(), {}

    def say(i: int, cell: Cell, text: str) -> None:
        print(f"[{i}/{len(cells)}] {cell.label}: {text}", file=stream, flush=True)

    for i, cell in enumerate(cells, start=1):
        cfg = plan.config(cell)
        run = cell.run_dir(out)
        if holder := run.holder():  # another sweep into this folder is training the cell
            say(i, cell, f"being trained by another process ({holder}), skipped")
            outcome.elsewhere.append(cell)
            continue
        done = run.read_metrics()
        if done is not None:
            diffs = config_differences(run, cfg)
            note = f"; note: it ran with {', '.join(diffs)}" if diffs else ""
            say(i, cell, f"done before ({_map_text(done)}), skipped{note}")
            outcome.skipped.append(cell)
            continue
        resume = run.has_checkpoint() and config_differences(run, cfg) == []
        if resume:
            say(i, cell, "resuming the interrupted run")
        started = time.monotonic()
        try:
            result = fit(cfg, quiet=True, resume=resume)
        except RunInUse:  # another process took the cell since the check above
            say(i, cell, "being trained by another process, skipped")
            outcome.elsewhere.append(cell)
        except Exception as exc:  # one cell's failure never stops the others
            error = _error_text(exc)
            if resume:
                error += f" (while resuming; delete {run.path} to start the cell over)"
            say(i, cell, f"FAILED ({error})")
            outcome.failed.append((cell, error))
            run.write_error(error, "".join(traceback.format_exception(exc)))
            write_outputs(out, plan.methods)
        else:
            run.clear_error()
            elapsed = time.monotonic() - started
            times.setdefault(cell.method, []).append(elapsed)
            outcome.trained.append(cell)
            left = [c for c in cells[i:] if _untrained(c.run_dir(out))]
            eta = f"ETA {_duration(_eta(left, times))}" if left else "last cell"
            say(i, cell, f"{_map_text(result)} ({_duration(elapsed)}); {eta}")
            write_outputs(out, plan.methods)  # a partial sweep is usable at any time
    write_outputs(out, plan.methods)
    return outcome
