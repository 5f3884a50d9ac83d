"""The recorded sweeps under ``results/`` and the README tables quoted from them agree.

A record is a sweep folder without its checkpoints: each run's ``config.yaml``, ``log.jsonl``
and ``metrics.json``, and the sweep's ``results.csv`` and ``table.md`` (results/README.md).
These tests fail when ``results.csv`` is not what the sweep makes of the runs, when
``table.md`` is not what ``sarb report`` makes of ``results.csv``, or when a README table that
names a record (``sarb report results/NAME``) shows a number the record does not give.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sarb.report import (
    _average,
    _fmt,
    format_table,
    paired_difference,
    read_results,
    stat,
    summarize,
    write_results,
)
from sarb.sweep import collect_rows

ROOT = Path(__file__).resolve().parents[1]
RECORDS = sorted(p.parent for p in (ROOT / "results").glob("*/results.csv"))


def _baseline(table: str) -> str | None:
    found = re.search(r"paired differences of test mAP to ([\w.-]+)", table)
    return found.group(1) if found else None


def test_the_results_folder_has_records() -> None:
    assert RECORDS, "results/ holds no recorded sweep"


@pytest.mark.parametrize("record", RECORDS, ids=lambda p: p.name)
def test_a_record_results_are_what_its_runs_measured(record: Path, tmp_path: Path) -> None:
    made = tmp_path / "results.csv"
    write_results(made, collect_rows(record))
    recorded = (record / "results.csv").read_text().splitlines()
    assert sorted(made.read_text().splitlines()) == sorted(recorded)
    assert len(recorded) > 1


@pytest.mark.parametrize("record", RECORDS, ids=lambda p: p.name)
def test_a_record_table_is_what_sarb_report_makes_of_its_results(record: Path) -> None:
    table = (record / "table.md").read_text()
    assert format_table(read_results(record / "results.csv"), _baseline(table)) == table


def readme_tables() -> list[tuple[str, list[list[str]]]]:
    """(record name, rows) of each README table that follows a ``sarb report results/NAME``
    command; a row is its cells without Markdown emphasis."""
    text = (ROOT / "README.md").read_text()
    out = []
    for name, block in re.findall(r"sarb report results/([\w.-]+).*\n```\n\n((?:\|.*\|\n)+)", text):
        rows = [
            [c.strip().replace("**", "") for c in line.strip().strip("|").split("|")]
            for line in block.splitlines()
            if not line.startswith("|---")
        ]
        out.append((name, rows))
    return out


def test_the_readme_quotes_a_record() -> None:
    assert {name for name, _ in readme_tables()} & {r.name for r in RECORDS}


@pytest.mark.parametrize("name,rows", readme_tables(), ids=lambda v: str(v)[:20])
def test_a_readme_table_gives_the_numbers_of_its_record(name: str, rows: list[list[str]]) -> None:
    """Columns "10%" ... (mean ± std over seeds), "Avg.", "val Avg.", and "[Avg.] paired to
    `B`" (the per-seed paired difference to B; for Avg., followed by each seed's)."""
    rows_csv = read_results(ROOT / "results" / name / "results.csv")
    summaries = {s.method: s for s in summarize(rows_csv)}
    seeds = sorted({r["seed"] for r in rows_csv})
    header, *body = rows
    checked = 0
    for cells in body:
        method = cells[0].strip("`")
        if method not in summaries:
            continue  # a row from elsewhere; the README says where it comes from
        s = summaries[method]
        knowns = list(s.cells)
        mine = [r for r in rows_csv if r["method"] == method]
        for column, cell in zip(header[1:], cells[1:], strict=True):
            paired = re.fullmatch(r"(Avg\. )?paired to `([\w.-]+)`", column)
            if column.endswith("%"):
                key = min(knowns, key=lambda k: abs(k - float(column[:-1]) / 100))
                assert cell == _fmt(s.cells[key]["mAP"]), (method, column)
            elif column == "Avg.":
                assert cell == _fmt(s.avg["mAP"]), (method, column)
            elif column == "val Avg.":
                vals = [_average(mine, knowns, i, "val_mAP") for i in seeds]
                assert cell == _fmt(stat(vals)), (method, column)
            elif paired and paired.group(2) != method:
                theirs = [r for r in rows_csv if r["method"] == paired.group(2)]
                if paired.group(1):
                    diffs = [_average(mine, knowns, i) - _average(theirs, knowns, i) for i in seeds]
                    per_seed = "(" + ", ".join(f"{d:+.1f}" for d in diffs) + ")"
                    expected = f"{_fmt(stat(diffs), signed=True)} {per_seed}"
                else:
                    (key,) = knowns
                    expected = _fmt(
                        paired_difference(rows_csv, method, paired.group(2), key), signed=True
                    )
                assert cell == expected, (method, column)
        checked += 1
    assert checked >= 2, f"the README table of results/{name} quotes fewer than two of its rows"
