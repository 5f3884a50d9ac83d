"""Two CPU processes (gloo) train like one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sarb.checkpoint import load_checkpoint
from sarb.cli import main
from tests.conftest import tiny_train_args
from tests.test_sarb_method import _method

ROOT = Path(__file__).resolve().parents[1]


def _labels_and_maps(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(-1, 2, (10, 4), generator=gen).float()
    return labels, torch.randn(10, 8, 3, 3, generator=gen)


def _prototype_worker(rank: int, world: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    model = _method("sarb")
    model.eval()
    labels, maps = _labels_and_maps(rank)  # every rank sees a different shard
    model.refresh_prototypes(lambda: [(maps, labels)], seed=3)
    torch.save({"p": model.prototypes, "v": model.prototype_valid}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_prototypes_are_identical_on_every_rank_and_use_every_shard(tmp_path: Path) -> None:
    mp.spawn(_prototype_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert torch.equal(r0["p"], r1["p"]) and torch.equal(r0["v"], r1["v"])
    single = _method("sarb")
    single.eval()
    shards = [_labels_and_maps(r) for r in (0, 1)]
    single.refresh_prototypes(lambda: [(m, y) for y, m in shards], seed=3)
    assert torch.equal(single.prototypes, r0["p"])


def test_torchrun_two_processes_match_one(tmp_path: Path, tiny_dataset) -> None:
    def args(out: Path) -> list[str]:
        # batch-norm statistics are per process without SyncBatchNorm (CUDA only), so the
        # backbone is frozen and the head has none; all labels known so that every rank's loss
        # has the same normaliser
        a = tiny_train_args(tiny_dataset, out, "bce-ignore")
        a[a.index("--known") + 1] = "1.0"
        a[a.index("--trainable") + 1] = "none"
        return [*a, "--no-crop-flip", "--deterministic"]

    assert main(args(tmp_path / "one")) == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "sarb", *args(tmp_path / "two")]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = (
        load_checkpoint(tmp_path / "one" / "last.pt"),
        load_checkpoint(tmp_path / "two" / "last.pt"),
    )
    for key, value in one["model"].items():
        if value.is_floating_point():
            torch.testing.assert_close(two["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert (
        abs(metrics["mAP"] - json.loads((tmp_path / "one" / "metrics.json").read_text())["mAP"])
        < 1e-3
    )


def test_ddp_broadcasts_only_batch_norm_statistics(tmp_path: Path) -> None:
    """Prototypes, pseudo-labels and constant buffers are identical on every rank by
    construction; re-broadcasting them each step would copy e.g. COCO's (82k, 80) matrix."""
    from sarb.engine import TrainStep, wrap_ddp
    from sarb.models.backbones import create_backbone
    from sarb.models.multilabel import MultiLabelModel

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)  # fmt: skip
    try:
        model = MultiLabelModel(create_backbone("cnn3", "random", "all"), _method("sarb"))
        ddp = wrap_ddp(TrainStep(model, cached=False), torch.device("cpu"))
        ignored = ddp.parameters_to_ignore
        assert {"model.head.prototypes", "model.head.prototype_valid",
                "model.head.adjacency"} <= ignored  # fmt: skip
        assert not any("running_mean" in n or "running_var" in n for n in ignored)
        assert any("running_mean" in n for n, _ in ddp.module.named_buffers())
    finally:
        dist.destroy_process_group()


def _nonfinite_worker(rank: int, world: int, store: str, out: str) -> None:
    from contextlib import nullcontext
    from types import SimpleNamespace

    from torch.utils.data import DataLoader, TensorDataset

    from sarb.config import resolve_config
    from sarb.engine import train_one_epoch
    from sarb.errors import SarbError

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    weight = torch.nn.Parameter(torch.ones(()))
    bad_call, calls = 3 - rank, []  # rank 0: NaN at step 3, rank 1: at step 2

    def step_fn(x, y, epoch):
        calls.append(1)
        return weight * (float("nan") if len(calls) == bad_call else 1.0), {}

    head = SimpleNamespace(targets=lambda i, y: y, mix_inputs=lambda x, y: (x, y))
    model = SimpleNamespace(train=lambda: None, head=head)
    inputs = SimpleNamespace(device=torch.device("cpu"), cached=True, autocast=nullcontext)
    loader = DataLoader(TensorDataset(torch.zeros(6, 1), torch.zeros(6, 1), torch.arange(6)), 1)
    cfg = resolve_config(None, out=out)
    try:
        train_one_epoch(model, step_fn, inputs, loader, torch.optim.SGD([weight]), 0, 0, cfg, True)
        message = "no error"
    except SarbError as exc:
        message = str(exc)
    Path(out, f"rank{rank}.txt").write_text(message)
    dist.destroy_process_group()


def test_nonfinite_loss_reports_the_earliest_step_of_any_rank(tmp_path: Path) -> None:
    mp.spawn(_nonfinite_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    for rank in range(2):
        assert "non-finite loss at epoch 1, step 2;" in (tmp_path / f"rank{rank}.txt").read_text()
