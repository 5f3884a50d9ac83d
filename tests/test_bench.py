"""``sarb bench --quick`` emits every key (the timings themselves are never asserted)."""

from __future__ import annotations

import json
import re
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


def test_format_bench_says_which_targets_are_met() -> None:
    from sarb.bench import format_bench

    result = {"device": "cpu", "processor": "x86_64", "torch": "x", "threads": 2,
              **dict.fromkeys(KEYS, 1.2)}  # fmt: skip
    result["sd_memory_vs_naive"] = 4.5
    lines = {line.split()[0]: line for line in format_bench(result).splitlines()[1:8]}
    assert lines["sarb_vs_ssgrl_step"].endswith("target <= 1.3: met")
    assert lines["sd_memory_vs_naive"].endswith("target >= 4: met")
    assert lines["kmeans_vs_sklearn"].endswith("target >= 10: NOT met")
    assert lines["kmeans_inertia_ratio"].endswith("target <= 1.05: NOT met")
    assert "target" not in lines["input_vs_pil"]
    gpu = format_bench({**result, "device": "cuda", "processor": "NVIDIA H100"})
    assert re.search(r"sarb_vs_ssgrl_step +1\.200  target <= 1\.15: NOT met", gpu)
