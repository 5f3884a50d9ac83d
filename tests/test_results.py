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

from sarb.report import format_table, mixed_environments, read_results, write_results
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


@pytest.mark.parametrize("record", RECORDS, ids=lambda p: p.name)
def test_a_record_holds_the_runs_of_one_installation(record: Path) -> None:
    """Per-seed pairs are meaningful only between runs of one installation: where the runs say
    where they computed (``metrics.json``'s ``environment``; earlier runs say less or nothing),
    they say the same."""
    rows = read_results(record / "results.csv")
    assert len(rows) == len(list(record.glob("runs/*/*/seed*/metrics.json")))
    assert mixed_environments(record) is None


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


def _cells(table: str) -> dict[tuple[str, str], str]:
    """{(method, column): cell} of every Markdown table in ``table`` (``sarb report``'s)."""
    out, header = {}, []
    for line in table.splitlines():
        if not line.startswith("|"):
            header = []  # the next table's header comes
            continue
        if line.startswith("|---"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not header:
            header = cells
        else:
            out.update({(cells[0], col): cell for col, cell in zip(header, cells, strict=True)})
    return out


def _paired_cell(results: list[dict], baseline: str, method: str, column: str) -> str:
    """A cell of ``sarb report --baseline baseline``'s paired table (empty for the baseline)."""
    return "" if method == baseline else _cells(format_table(results, baseline))[method, column]


@pytest.mark.parametrize("name,rows", readme_tables(), ids=lambda v: str(v)[:20])
def test_a_readme_table_gives_the_numbers_of_its_record(name: str, rows: list[list[str]]) -> None:
    """Columns "10%" ... and "Avg." are the report's table; "X paired to `B`", "pairs ahead of
    `B`" and "X val" (X: "10%" ... or "Avg.") its paired table with ``--baseline B``; "X val
    paired to `B`" and "pairs ahead of `B` on val" its paired table of validation mAP."""
    results = read_results(ROOT / "results" / name / "results.csv")
    report = _cells(format_table(results))
    header, *body = rows
    checked = 0
    for cells in body:
        method = cells[0].strip("`")
        if (method, "Avg.") not in report and (method, header[1]) not in report:
            continue  # a row from elsewhere; the README says where it comes from
        for column, cell in zip(header[1:], cells[1:], strict=True):
            paired = re.fullmatch(r"(.+?)( val)? paired to `([\w.-]+)`", column)
            ahead = re.fullmatch(r"pairs ahead of `([\w.-]+)`( on val)?", column)
            if paired:
                setting, val, baseline = paired.groups()
                key = f"{setting} {'val' if val else 'test'} - {baseline}"
                expected = _paired_cell(results, baseline, method, key)
            elif ahead:
                baseline, val = ahead.groups()
                expected = _paired_cell(
                    results, baseline, method, f"pairs ahead of {baseline}{val or ''}"
                )
            elif column.endswith(" val"):
                expected = report[method, f"{column} mAP"]
            else:
                expected = report[method, column]
            assert cell == expected, (method, column)
        checked += 1
    assert checked >= 2, f"the README table of results/{name} quotes fewer than two of its rows"
