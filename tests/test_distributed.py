"""Two CPU processes (gloo) train like one process with the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sarb.checkpoint import load_checkpoint
from sarb.cli import main
from sarb.config import resolve_config
from sarb.methods import Method, build_method
from sarb.models.factory import DataInfo
from tests.conftest import tiny_train_args

ROOT = Path(__file__).resolve().parents[1]
C = 4


def _method(name: str) -> Method:
    """A small ``name`` method (cnn3 backbone, 4 classes) built as the engine builds it."""
    cfg = resolve_config(
        None, method=name, backbone="cnn3", weights="random", trainable="all",
        embeddings="learned", feat_dim=6, hidden_dim=5, neck_pool=1, num_prototypes=3,
        blend_start=1, proto_every=2,
    )  # fmt: skip
    labels = np.array([[1, -1, 0, 1], [1, 1, -1, 0], [0, 1, -1, -1]])
    torch.manual_seed(0)
    return build_method(cfg, DataInfo(list("abcd"), None, labels))


def _labels_and_maps(seed: int, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(-1, 2, (10, C), generator=gen).float()
    return labels, torch.randn(10, channels, 3, 3, generator=gen)


def _refresh(method: Method, shards: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """SARB's prototype refresh over the (labels, feature maps) ``shards`` of this process."""
    method.eval()
    batches = [(maps, labels) for labels, maps in shards]
    method.augmentations["plrb"].refresh_prototypes(method.model.head, lambda: batches, seed=3)


def _prototype_worker(rank: int, world: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    method = _method("sarb")
    channels = method.model.backbone.out_channels
    _refresh(method, [_labels_and_maps(rank, channels)])  # every rank sees a different shard
    plrb = method.augmentations["plrb"]
    torch.save({"p": plrb.prototypes, "v": plrb.prototype_valid}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_prototypes_are_identical_on_every_rank_and_use_every_shard(tmp_path: Path) -> None:
    mp.spawn(_prototype_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert torch.equal(r0["p"], r1["p"]) and torch.equal(r0["v"], r1["v"])
    assert r0["v"].any()
    single = _method("sarb")
    channels = single.model.backbone.out_channels
    _refresh(single, [_labels_and_maps(r, channels) for r in (0, 1)])
    assert torch.equal(single.augmentations["plrb"].prototypes, r0["p"])
    assert torch.equal(single.augmentations["plrb"].prototype_valid, r0["v"])
    one_shard = _method("sarb")
    _refresh(one_shard, [_labels_and_maps(0, channels)])
    assert not torch.equal(one_shard.augmentations["plrb"].prototypes, r0["p"])


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
    from sarb.engine import wrap_ddp

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)  # fmt: skip
    try:
        ddp = wrap_ddp(_method("sarb"), torch.device("cpu"))
        ignored = ddp.parameters_to_ignore
        assert {"augmentations.plrb.prototypes", "augmentations.plrb.prototype_valid",
                "model.head.adjacency"} <= ignored  # fmt: skip
        assert not any("running_mean" in n or "running_var" in n for n in ignored)
        assert any("running_mean" in n for n, _ in ddp.module.named_buffers())
        # the Method is the module DDP wraps: one train step's loss goes through it
        targets = torch.tensor([[1, -1, 0, 1], [0, 1, 1, -1]], dtype=torch.float32)
        loss, terms = ddp(torch.randn(2, 3, 32, 32), targets, torch.arange(2), 1)
        assert {"bce", "bce_ilrb", "contrastive"} <= terms.keys() and torch.isfinite(loss)
        loss.backward()
        assert ddp.module.augmentations["ilrb"].weight.raw.grad is not None
        curriculum = wrap_ddp(_method("curriculum"), torch.device("cpu"))
        assert "augmentations.curriculum.pseudo_labels" in curriculum.parameters_to_ignore
    finally:
        dist.destroy_process_group()


def _nonfinite_worker(rank: int, world: int, store: str, out: str) -> None:
    from types import SimpleNamespace

    from torch.utils.data import DataLoader, TensorDataset

    from sarb.engine import train_one_epoch
    from sarb.errors import SarbError
    from sarb.runs import RunDir

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    weight = torch.nn.Parameter(torch.ones(()))
    bad_call, calls = 3 - rank, []  # rank 0: NaN at step 3, rank 1: at step 2

    def step_fn(x, y, index, epoch):
        calls.append(1)
        return weight * (float("nan") if len(calls) == bad_call else 1.0), {}

    method = SimpleNamespace(train=lambda: None, on_step=lambda epoch, fraction: None)
    loader = DataLoader(TensorDataset(torch.zeros(6, 1), torch.zeros(6, 1), torch.arange(6)), 1)
    cfg = resolve_config(None, out=out, amp=False)
    optimizer = torch.optim.SGD([weight])
    try:
        train_one_epoch(method, step_fn, loader, optimizer, 0, 0, cfg, torch.device("cpu"),
                        RunDir(out), quiet=True)  # fmt: skip
        message = "no error"
    except SarbError as exc:
        message = str(exc)
    Path(out, f"rank{rank}.txt").write_text(message)
    dist.destroy_process_group()


def test_nonfinite_loss_reports_the_earliest_step_of_any_rank(tmp_path: Path) -> None:
    mp.spawn(_nonfinite_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    for rank in range(2):
        message = (tmp_path / f"rank{rank}.txt").read_text()
        assert "non-finite loss at epoch 1, step 2;" in message
        assert "step 2; no checkpoint was written yet" in message  # the first epoch failed
