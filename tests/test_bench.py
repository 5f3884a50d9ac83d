"""``sarb bench --quick`` emits every key (the timings themselves are never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

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


@pytest.mark.parametrize(
    ("command", "device", "message"),
    [
        ("bench", "tpu", "expected auto, cpu, cuda or cuda:N"),
        ("train", "cuda:x", "expected auto, cpu, cuda or cuda:N"),
    ],
)
def test_bad_device_is_a_one_line_error(capsys, command: str, device: str, message: str) -> None:
    assert main([command, "--device", device]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and device in err[0]


def test_cuda_on_a_cpu_machine_says_so(capsys, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["bench", "--quick", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
