"""``sarb bench --quick`` emits every key (the timings themselves are never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from sarb.bench import KEYS
from sarb.cli import main


def test_quick_bench_emits_every_key(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "--quick", "--device", "cpu", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    for key in KEYS:
        assert isinstance(result[key], float) and result[key] > 0, key
    printed = capsys.readouterr().out
    assert all(key in printed for key in KEYS)
