"""Tables and figures of a sweep, rebuilt from its ``results.csv`` alone (``sarb report DIR``).

Files in a sweep directory DIR (written by ``sarb sweep`` after every cell, and by
``sarb report DIR`` from ``results.csv`` plus the training logs its rows point to):

- ``results.csv``: one row per method x known proportion x seed, with the metrics of
  docs/method.md#metrics in percent (``mAP, OP, OR, OF1, CP, CR, CF1`` and the ``top3_*``
  ones), ``dataset`` (the ``--dataset`` value), ``method``, ``known``, ``seed``,
  ``best_epoch``, ``val_mAP``, ``ap_definition`` and ``run_dir`` (relative to DIR unless
  absolute). An empty metric cell means "undefined" (e.g. no class with a known positive).
- ``table.md``: the paper's Table 1 layout, one section per dataset: per method, the mAP at each
  proportion, its "Avg." over the proportions, the published Avg. mAP when the dataset is one
  of the paper's (``sarb.published``), and the Avg. of OP, OR, OF1, CP, CR, CF1. Cells are the
  mean over seeds, "± s" the sample standard deviation over seeds (shown with two seeds or
  more). "Avg." is the mean of the row's per-proportion means; its "± s" is the std over
  seeds of each seed's own average (seeds that have every proportion of the row).
  When it has two methods or more and two seeds or more, a second table gives each method's
  per-seed paired difference of test mAP to a baseline (``sarb report DIR --baseline METHOD``;
  default ``ssgrl``, else the first method) and the mean validation mAP of the selected epochs.
- ``map_vs_known.png``: mAP against the known proportion, one line per method, error bars the
  std over seeds (the paper's Figure 3).
- ``loss_curves.png``: the per-epoch mean training loss from each run's ``log.jsonl`` (seed 0,
  or the smallest seed, at the method's smallest proportion) of ``sarb`` and ``sarb-ilrb``
  (SARB with and without PLRB) when present, else of every method (the paper's Figure 4).

Runs repeat to the last digit only within one environment (``metrics.json``'s
``environment``: the packages, the CPU's instructions, the thread count), so a per-seed pair of
runs from two environments compares installations as well as methods:
:func:`mixed_environments` says when a sweep's runs come from more than one (``sarb sweep`` and
``sarb report`` print it as a warning).

``table.md`` is a pure function of ``results.csv`` (floats are stored with ``repr`` and read
back exactly), so ``sarb report`` reproduces it byte for byte.
"""

from __future__ import annotations

import csv
import io
import math
import textwrap
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sarb.data.partial import SINGLE_POSITIVE
from sarb.errors import SarbError, quote
from sarb.files import atomic_write
from sarb.presets import PRESETS
from sarb.published import dataset_column, paper_avg_map
from sarb.runs import RunDir

METRICS = ("mAP", "OP", "OR", "OF1", "CP", "CR", "CF1")
"""The metrics with the threshold rule (docs/method.md#metrics), in the paper's order."""
RATES = METRICS[1:]
TOP3 = tuple(f"top3_{k}" for k in RATES)
"""The top-3 variants (docs/method.md#metrics)."""
COLUMNS = (
    "dataset",
    "method",
    "known",
    "seed",
    *METRICS,
    *TOP3,
    "best_epoch",
    "val_mAP",
    "ap_definition",
    "selected_before_blending",
    "run_dir",
)
"""Columns of ``results.csv``, in order."""
_FLOATS = ("known", *METRICS, *TOP3, "val_mAP")
_INTS = ("seed", "best_epoch", "selected_before_blending")

RESULTS = "results.csv"
TABLE = "table.md"
MAP_FIGURE = "map_vs_known.png"
LOSS_FIGURE = "loss_curves.png"
LOSS_METHODS = ("sarb", "sarb-ilrb")
"""Figure 4's pair: SARB with PLRB (``sarb``) and without it (``sarb-ilrb``)."""
LOSS_NOTE = (
    "Solid: the total loss, every term a method optimises (SARB: BCE, plus the ILRB/PLRB BCEs "
    "from the epoch blending starts, plus lambda x contrastive), so it steps up when blending "
    "starts. Dashed (sarb vs sarb-ilrb only): the BCE term alone."
)


Known = float | str
"""A label setting of the grid: a known fraction, or ``"single-positive"``."""


def known_key(known: Known) -> tuple[bool, float]:
    """Sort key of label settings: the fractions in order, then single positive labels."""
    return (True, 0.0) if isinstance(known, str) else (False, float(known))


def _fractions(knowns: Iterable[Known]) -> list[float]:
    return [k for k in knowns if not isinstance(k, str)]


def result_row(metrics: dict[str, Any], dataset: str, run_dir: str) -> dict[str, Any]:
    """One ``results.csv`` row from a run's ``metrics.json`` content."""
    top3 = metrics.get("top3") or {}
    single = metrics.get("mask_protocol") == SINGLE_POSITIVE
    row: dict[str, Any] = {
        "dataset": dataset,
        "method": metrics["method"],
        "known": SINGLE_POSITIVE if single else float(metrics["known"]),
        "seed": int(metrics["seed"]),
        **{k: metrics.get(k) for k in METRICS},
        **{f"top3_{k}": top3.get(k) for k in RATES},
        "best_epoch": metrics.get("best_epoch"),
        "val_mAP": metrics.get("val_mAP"),
        "ap_definition": metrics.get("ap_definition", ""),
        "selected_before_blending": int(bool(metrics.get("selected_before_blending"))),
        "run_dir": run_dir,
    }
    return row


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)


def write_results(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write ``results.csv`` atomically (a reader never sees half a file)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_csv_value(row.get(c)) for c in COLUMNS])
    atomic_write(path, buf.getvalue(), fsync=False)


def read_results(path: Path) -> list[dict[str, Any]]:
    """Rows of ``results.csv``: floats (NaN for an empty metric), ints and strings. A value
    that no sweep writes (a known fraction outside (0, 1], an infinite metric, bytes that are
    not UTF-8) is a one-line error naming the line."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [
                c
                for c in ("dataset", "method", "known", "seed", "mAP")
                if c not in (reader.fieldnames or [])
            ]
            if missing:
                raise SarbError(f"{path}: not a sweep results file (no {', '.join(missing)})")
            rows = list(reader)
    except FileNotFoundError:
        raise SarbError(f"{path}: not found (run `sarb sweep` first)") from None
    except UnicodeDecodeError as exc:
        raise SarbError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise SarbError(f"{path}: not a CSV file ({exc})") from None
    out = []
    for line, raw in enumerate(rows, start=2):
        row: dict[str, Any] = dict(raw)
        try:
            for c in _FLOATS:
                if c in row and not (c == "known" and row[c] == SINGLE_POSITIVE):
                    row[c] = float(row[c]) if row[c] not in ("", None) else math.nan
                    if math.isinf(row[c]) or (c == "known" and not 0.0 < row[c] <= 1.0):
                        raise ValueError(f"{c} {quote(raw[c])} is out of range")
            for c in _INTS:
                if c in row:
                    row[c] = int(row[c]) if row[c] not in ("", None) else None
        except ValueError as exc:
            raise SarbError(f"{path}, line {line}: {exc}") from None
        out.append(row)
    return out


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (None below two values) of ``n`` values."""

    mean: float
    std: float | None
    n: int


def stat(values: Iterable[float]) -> Stat:
    """``Stat`` of the finite values (mean NaN when there is none)."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return Stat(math.nan, None, 0)
    return Stat(float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else None, int(v.size))


@dataclass
class MethodSummary:
    """One row of the table: per-proportion cells and the average over proportions."""

    method: str
    cells: dict[Known, dict[str, Stat]]  # label setting -> metric -> Stat over seeds
    avg: dict[str, Stat]  # metric -> mean over fractions, std over seeds of per-seed averages
    complete: bool  # the row has every label setting of its table


def _ordered(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def summarize(
    rows: Sequence[dict[str, Any]], knowns: Sequence[Known] | None = None
) -> list[MethodSummary]:
    """Per method (in order of appearance): mean ± std over seeds per label setting, and Avg.

    ``rows`` are ``results.csv`` rows of one dataset; ``knowns`` the table's label settings
    (default: all of ``rows``). Avg. of a metric is the mean over the known fractions of the
    per-fraction means (single positive labels stay out of it); its std is the std over seeds
    of each seed's own average, over the seeds that have all of the row's fractions.
    """
    knowns = sorted(set(knowns if knowns is not None else (r["known"] for r in rows)),
                    key=known_key)  # fmt: skip
    out = []
    for method in _ordered(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        have = [k for k in knowns if any(r["known"] == k for r in mine)]
        cells = {
            k: {m: stat(r.get(m) for r in mine if r["known"] == k) for m in METRICS} for k in have
        }
        avg = {}
        fractions = _fractions(have)
        for m in METRICS:
            means = [cells[k][m].mean for k in fractions if cells[k][m].n > 0]
            seeds = sorted({r["seed"] for r in mine})
            spread = stat(_average(mine, fractions, seed, m) for seed in seeds)
            mean = float(np.mean(means)) if means else math.nan
            avg[m] = Stat(mean, spread.std, max(spread.n, 1) if means else 0)
        out.append(MethodSummary(method, cells, avg, len(have) == len(knowns)))
    return out


def _value(rows: Sequence[dict[str, Any]], known: Known, seed: int, metric: str) -> float | None:
    """The metric of (known, seed); the mean when a rerun left several rows; None if absent."""
    vals = [r.get(metric) for r in rows if r["known"] == known and r["seed"] == seed]
    vals = [v for v in vals if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _fmt(s: Stat, mark: str = "", signed: bool = False) -> str:
    if s.n == 0 or not math.isfinite(s.mean):
        return "-"
    mean = f"{s.mean:+.1f}" if signed else f"{s.mean:.1f}"
    text = mean if s.std is None else f"{mean} ± {s.std:.1f}"
    return text + mark


def _pct(known: Known) -> str:
    return "single positive" if isinstance(known, str) else f"{known * 100:.4g}%"


def _seed_phrase(seeds: list[int]) -> str:
    if len(seeds) == 1:
        return f"1 seed ({seeds[0]})"
    listed = ", ".join(str(s) for s in seeds)
    return f"mean ± sample std over {len(seeds)} seeds ({listed})"


def format_table(rows: Sequence[dict[str, Any]], baseline: str | None = None) -> str:
    """``table.md``: the paper's Table 1 layout, one section per dataset of ``rows``, then the
    paired differences to ``baseline`` (default :data:`PAIRED_BASELINE`, else the first
    method)."""
    parts = ["# Sweep results", ""]
    if not rows:
        return "\n".join([*parts, "No finished cell yet.", ""])
    if baseline is not None and baseline not in {r["method"] for r in rows}:
        methods = ", ".join(_ordered(r["method"] for r in rows))
        raise SarbError(f"--baseline {baseline!r}: no such method in the results ({methods})")
    for dataset in _ordered(r["dataset"] for r in rows):
        parts += _dataset_section(dataset, [r for r in rows if r["dataset"] == dataset], baseline)
    return "\n".join(parts)


def _dataset_section(
    dataset: str, rows: list[dict[str, Any]], baseline: str | None = None
) -> list[str]:
    knowns = sorted({r["known"] for r in rows}, key=known_key)
    seeds = sorted({r["seed"] for r in rows})
    column = dataset_column(dataset)
    aps = sorted({str(r.get("ap_definition") or "") for r in rows} - {""})
    summaries = summarize(rows, knowns)
    max_n = max(cell["mAP"].n for s in summaries for cell in s.cells.values())

    header = ["method", *(_pct(k) for k in knowns), "Avg."]
    if column:
        header.append("paper")
    header += [f"Avg. {m}" for m in RATES]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    fewer_seeds = partial_row = unblended = False
    for s in summaries:
        cells = []
        for k in knowns:
            st = s.cells[k]["mAP"] if k in s.cells else Stat(math.nan, None, 0)
            short = 0 < st.n < max_n
            fewer_seeds |= short
            early = any(r.get("selected_before_blending") for r in rows
                        if r["method"] == s.method and r["known"] == k)  # fmt: skip
            unblended |= early
            cells.append(_fmt(st, ("*" if short else "") + ("‡" if early else "")))
        mark = "" if s.complete else "†"
        partial_row |= not s.complete
        row = [s.method, *cells, _fmt(s.avg["mAP"], mark)]
        if column:
            paper = paper_avg_map(s.method, dataset)
            row.append("-" if paper is None else f"{paper:.1f}")
        row += [_fmt(s.avg[m], mark) for m in RATES]
        lines.append("| " + " | ".join(row) + " |")

    ap = "/".join(aps) if aps else "unknown"
    caption = (
        f"Test-split metrics in percent ({ap} AP) of the epoch selected on the validation "
        f"split; {_seed_phrase(seeds)}."
    )
    notes = [
        "Percent columns: mAP with that proportion of known training labels; Avg.: their mean; "
        "Avg. OP ... CF1: the same average of the threshold-0.5 metrics "
        "(docs/method.md#metrics).",
    ]
    if column:
        notes.append(
            f"paper: the published Avg. mAP on {column} over the nine proportions 10%-90% "
            "(Pu et al., AAAI 2022, Tables 1-2; ResNet-101 at 448 px), '-' where the paper "
            "has none; comparable only with the paper's recipe and the same nine proportions."
        )
    if SINGLE_POSITIVE in knowns:
        notes.append(
            "single positive: one known positive per training image, nothing else known; not "
            "part of Avg."
        )
    if fewer_seeds:
        notes.append("*: fewer seeds than the other cells (an unfinished sweep).")
    if unblended:
        notes.append(
            "‡: in at least one seed the epoch selected on validation comes before blending "
            "starts, so that model is the method without blending (SARB there is SSGRL)."
        )
    if partial_row:
        notes.append("†: the average over fewer proportions than the table's.")
    out = [f"## {dataset}", "", caption, "", *lines, "", *(f"- {n}" for n in notes), ""]
    return out + _paired_section(rows, knowns, [s.method for s in summaries], baseline)


PAIRED_BASELINE = "ssgrl"
"""The method the paired differences of ``table.md`` are taken to (else the sweep's first)."""


def paired_difference(
    rows: Sequence[dict[str, Any]], method: str, baseline: str, known: Known, metric: str = "mAP"
) -> Stat:
    """Mean ± std over the seeds that both methods have of ``method`` minus ``baseline``: the
    comparison of two methods that seed noise (shared by both through the seed) hides least."""
    return stat(_paired_values(rows, method, baseline, known, metric))


def _paired_values(
    rows: Sequence[dict[str, Any]], method: str, baseline: str, known: Known, metric: str = "mAP"
) -> list[float]:
    """``method`` minus ``baseline``, one value per seed that both have at ``known``."""
    ours = [r for r in rows if r["method"] == method]
    theirs = [r for r in rows if r["method"] == baseline]
    seeds = sorted({r["seed"] for r in ours} & {r["seed"] for r in theirs})
    diffs = []
    for seed in seeds:
        a, b = _value(ours, known, seed, metric), _value(theirs, known, seed, metric)
        if a is not None and b is not None:
            diffs.append(a - b)
    return diffs


def _paired_section(
    rows: Sequence[dict[str, Any]],
    knowns: list[Known],
    methods: list[str],
    baseline: str | None = None,
) -> list[str]:
    """Per-seed paired differences to the baseline: of test mAP (with the validation mAP, per
    proportion), then of validation mAP, the split on which methods are to be chosen."""
    seeds = {r["seed"] for r in rows}
    if len(methods) < 2 or len(seeds) < 2:
        return []
    missing = ""  # a --baseline without runs on this dataset: the table says which it used
    if baseline not in methods:
        if baseline is not None:
            missing = f" ({baseline} has no runs here)"
        baseline = PAIRED_BASELINE if PAIRED_BASELINE in methods else methods[0]
    test = (
        f"Per-seed paired differences of test mAP to {baseline}{missing} (mean ± std over the"
        " seeds both have; an effect smaller than its std is within the seed noise), the"
        " validation mAP of the selected epochs, on which methods are to be chosen, and in how"
        " many of the (label setting, seed) pairs both have the method's test mAP is the higher."
    )
    val = (
        f"The same of validation mAP to {baseline}{missing}: the comparison on which a method or"
        " a setting is to be chosen (the test split is for reporting only)."
    )
    return [
        *_paired_table(rows, knowns, methods, baseline, "test", test),
        *_paired_table(rows, knowns, methods, baseline, "val", val),
    ]


def _paired_table(
    rows: Sequence[dict[str, Any]],
    knowns: list[Known],
    methods: list[str],
    baseline: str,
    split: str,
    caption: str,
) -> list[str]:
    """One split's paired table: per proportion and on the average over them, ``method -
    baseline`` (the test table also gives each proportion's validation mAP)."""
    metric = "mAP" if split == "test" else "val_mAP"
    seeds = sorted({r["seed"] for r in rows})
    header = ["method"]
    for k in knowns:
        header.append(f"{_pct(k)} {split} - {baseline}")
        header += [f"{_pct(k)} val mAP"] if split == "test" else []
    fractions = _fractions(knowns)  # as in the Avg. column: single positive labels stay out
    if len(fractions) > 1:
        header.append(f"Avg. {split} - {baseline}")
        header += ["Avg. val mAP"] if split == "test" else []
    header.append(f"pairs ahead of {baseline}" + ("" if split == "test" else " on val"))
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    theirs = [r for r in rows if r["method"] == baseline]
    for method in methods:
        cells = [method]
        mine = [r for r in rows if r["method"] == method]
        pairs = []  # every (label setting, seed) difference, for the count of pairs ahead
        for k in knowns:
            diffs = _paired_values(rows, method, baseline, k, metric)
            pairs += diffs
            cells.append("" if method == baseline else _fmt(stat(diffs), signed=True))
            if split == "test":
                vals = (_value(mine, k, seed, "val_mAP") for seed in seeds)
                cells.append(_fmt(stat(math.nan if v is None else v for v in vals)))
        if len(fractions) > 1:  # per seed, over the seeds that have every proportion
            diffs = [
                _average(mine, fractions, s, metric) - _average(theirs, fractions, s, metric)
                for s in seeds
            ]
            cells.append("" if method == baseline else _fmt(stat(diffs), signed=True))
            if split == "test":
                cells.append(_fmt(stat(_average(mine, fractions, s, "val_mAP") for s in seeds)))
        ahead = f"{sum(d > 0 for d in pairs)}/{len(pairs)}" if pairs else "-"
        cells.append("" if method == baseline else ahead)
        lines.append("| " + " | ".join(cells) + " |")
    return [caption, "", *lines, ""]


def _average(
    rows: Sequence[dict[str, Any]], knowns: list[Known], seed: int, metric: str = "mAP"
) -> float:
    """One seed's mean over the proportions (the "Avg." column); NaN if it lacks one."""
    values = [_value(rows, k, seed, metric) for k in knowns]
    return math.nan if not values or None in values else sum(values) / len(values)


def _figure(ncols: int, width: float = 6.4, height: float = 4.4):
    from matplotlib.figure import Figure  # pyplot-free: no display, no global state (Agg)

    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    return fig, [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]


def _save(fig: Any, path: Path) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110), fsync=False)


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_LINESTYLES = {"csrl": "-", "kggr": "-.", "gcn": ":", "linear": "--"}
"""A method family (its head) has one line style; within it each method its own marker."""


def method_family(method: str) -> str:
    """The head of a preset (``sarb`` -> ``csrl``) or of a composed name (``linear+hill``)."""
    if method in PRESETS:
        return PRESETS.create(method).head
    return method.split("+", 1)[0]


def line_styles(methods: Sequence[str]) -> list[dict[str, str]]:
    """Per method: its family's line style and a marker not used by another of its family."""
    seen: dict[str, int] = {}
    out = []
    for m in methods:
        family = method_family(m)
        i = seen[family] = seen.get(family, -1) + 1
        out.append({"linestyle": _LINESTYLES.get(family, "-"),
                    "marker": _MARKERS[i % len(_MARKERS)]})  # fmt: skip
    return out


def _legend(ax: Any, entries: int) -> None:
    """Inside the axes for a few lines; beside them (never over a line) for many."""
    if entries <= 6:
        ax.legend(fontsize=7)
    else:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def plot_map_vs_known(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """mAP against the known proportion, one line per method, error bars = std over seeds."""
    datasets = _ordered(r["dataset"] for r in rows) or ["(no results yet)"]
    fig, axes = _figure(len(datasets))
    for ax, dataset in zip(axes, datasets, strict=True):
        mine = [r for r in rows if r["dataset"] == dataset and not isinstance(r["known"], str)]
        summaries = summarize(mine)
        styles = line_styles([s.method for s in summaries])
        for s, color, style in zip(summaries, _colors(len(summaries)), styles, strict=True):
            ks = sorted(k for k in s.cells if s.cells[k]["mAP"].n > 0)
            means = [s.cells[k]["mAP"].mean for k in ks]
            errs = [s.cells[k]["mAP"].std or 0.0 for k in ks]
            ax.errorbar([100 * k for k in ks], means, yerr=errs, ms=4, capsize=3, color=color,
                        label=s.method, **style)  # fmt: skip
        ticks = sorted({100 * r["known"] for r in mine})
        if ticks:
            ax.set_xticks(ticks, [f"{t:.4g}" for t in ticks])
        ax.set_xlabel("known label proportion (%)")
        ax.set_ylabel("test mAP (%)")
        ax.set_title(f"mAP vs known labels: {dataset}")
        ax.grid(alpha=0.3)
        if summaries:
            _legend(ax, len(summaries))
        else:
            ax.text(0.5, 0.5, "no finished cell yet", ha="center", transform=ax.transAxes)
    _save(fig, path)


def read_loss_log(run: RunDir, key: str = "loss") -> tuple[list[int], list[float]]:
    """Epochs and per-epoch means of ``key`` from a run's log (empty if unreadable)."""
    records = [r for r in run.read_log() if isinstance(r.get(key), (int, float)) and "epoch" in r]
    return [int(r["epoch"]) for r in records], [float(r[key]) for r in records]


def loss_curve_runs(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows whose logs Figure 4 shows: per method (``sarb`` and ``sarb-ilrb`` if any were
    run, else all), the run of seed 0 (or the smallest seed) at its smallest proportion."""
    methods = _ordered(r["method"] for r in rows)
    chosen = [m for m in LOSS_METHODS if m in methods] or methods
    out = []
    for m in chosen:
        mine = [r for r in rows if r["method"] == m]
        seed = 0 if any(r["seed"] == 0 for r in mine) else min(r["seed"] for r in mine)
        out.append(min((r for r in mine if r["seed"] == seed), key=lambda r: known_key(r["known"])))
    return out


def plot_loss_curves(rows: Sequence[dict[str, Any]], base: Path, path: Path) -> None:
    """Per-epoch mean training loss of the runs of ``loss_curve_runs`` (paper's Figure 4)."""
    from matplotlib.ticker import MaxNLocator

    datasets = _ordered(r["dataset"] for r in rows) or ["(no results yet)"]
    fig, axes = _figure(len(datasets), height=4.8)
    for ax, dataset in zip(axes, datasets, strict=True):
        runs = loss_curve_runs([r for r in rows if r["dataset"] == dataset])
        pair = {r["method"] for r in runs} == set(LOSS_METHODS)
        drawn = 0
        for j, (r, color) in enumerate(zip(runs, _colors(len(runs)), strict=True)):
            run_dir = Path(r.get("run_dir") or "")
            run = RunDir(run_dir if run_dir.is_absolute() else base / run_dir)
            epochs, losses = read_loss_log(run)
            if epochs:
                label = f"{r['method']} (known {_pct(r['known'])}, seed {r['seed']})"
                ax.plot(
                    epochs,
                    losses,
                    marker=_MARKERS[j // 10 % len(_MARKERS)],
                    ms=3,
                    color=color,
                    label=label + (": total" if pair else ""),
                )
                drawn += 1
            bce_epochs, bce = read_loss_log(run, "bce")
            if pair and bce_epochs:  # the term both share: BCE on the images' own features
                ax.plot(bce_epochs, bce, ls="--", color=color, label=f"{r['method']}: BCE term")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss (mean per epoch)")
        title = "Training loss per epoch"
        if pair:
            title += ": SARB with (sarb) and without (sarb-ilrb) PLRB"
        ax.set_title(f"{title}\n{dataset}", fontsize=10)
        ax.grid(alpha=0.3)
        if drawn:
            _legend(ax, drawn)
        else:
            ax.text(0.5, 0.5, "no training log found", ha="center", transform=ax.transAxes)
    fig.supxlabel(textwrap.fill(LOSS_NOTE, 100 * len(datasets)), fontsize=7)
    _save(fig, path)


def mixed_environments(out_dir: str | Path) -> str | None:
    """One line naming what differs when the runs of a sweep directory's ``results.csv``
    computed in more than one environment (runs that do not record theirs are left out), else
    None."""
    seen: dict[str, Counter[str]] = {}
    for row in read_results(Path(out_dir) / RESULTS):
        metrics = RunDir(Path(out_dir) / row["run_dir"]).read_metrics() or {}
        for key, value in (metrics.get("environment") or {}).items():
            seen.setdefault(key, Counter())[str(value)] += 1
    differ = {key: values for key, values in seen.items() if len(values) > 1}
    if not differ:
        return None
    what = "; ".join(
        f"{key}: " + ", ".join(f"{v} ({n} run{'s' * (n > 1)})" for v, n in values.most_common())
        for key, values in differ.items()
    )
    return (f"{out_dir}: the runs computed in more than one environment ({what}); runs repeat "
            "only within one, so per-seed pairs across them compare installations as well as "
            "methods")  # fmt: skip


def write_report(out_dir: str | Path, baseline: str | None = None) -> list[Path]:
    """Rebuild ``table.md`` (paired differences to ``baseline``, see :func:`format_table`) and
    both figures of a sweep directory from its ``results.csv``."""
    out_dir = Path(out_dir)
    rows = read_results(out_dir / RESULTS)
    table = out_dir / TABLE
    atomic_write(table, format_table(rows, baseline), fsync=False)
    plot_map_vs_known(rows, out_dir / MAP_FIGURE)
    plot_loss_curves(rows, out_dir, out_dir / LOSS_FIGURE)
    return [table, out_dir / MAP_FIGURE, out_dir / LOSS_FIGURE]
