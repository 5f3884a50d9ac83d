"""The training loop and evaluation shared by every method (torchvision-reference style).

``fit`` reads top to bottom: resolve the run, load the splits, build the method, make the
loaders, then for each epoch run the method's epoch hook, train, validate, log and checkpoint;
finally score the test split with the epoch chosen on validation. One code path serves one
process and many (torchrun: every process trains a shard of each global batch; rank 0 writes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm.auto import tqdm

from sarb import distributed, runtime
from sarb.config import TrainConfig, absolute_paths
from sarb.data.features import cache_path, feature_maps
from sarb.data.loaders import make_loader
from sarb.data.splits import Splits, load_splits
from sarb.errors import SarbError
from sarb.methods import Method, build_method, check_parts
from sarb.metrics import compute_metrics
from sarb.models.factory import DataInfo, embeddings_for
from sarb.models.multilabel import MultiLabelModel
from sarb.runs import RunDir
from sarb.runtime import amp_enabled, autocast, choose_threads, pick_device, seed_everything
from sarb.summary import print_summary


def fit(cfg: TrainConfig, quiet: bool = False, resume: bool = False) -> dict[str, Any]:
    """Train ``cfg``'s method, select the epoch on the validation split, report the test split.

    Writes the run directory (:class:`~sarb.runs.RunDir`) and returns the content of its
    ``metrics.json``. With ``resume``, continues from its ``last.pt`` (model, method state,
    optimiser, scheduler, epoch, step, every RNG state): the result equals an uninterrupted run.
    """
    cfg.validate()
    check_parts(cfg)  # a wrong --head / --augment fails before any data is read
    dist_info = distributed.init(cfg.device)
    device = pick_device(cfg.device, dist_info)
    cfg = dataclasses.replace(absolute_paths(cfg), amp=amp_enabled(cfg.amp, device))
    run, cfg = RunDir.for_config(cfg)
    if dist_info.enabled:  # every rank uses rank 0's directory (its time stamp)
        out = distributed.gather_objects(cfg.out)[0]
        run, cfg = RunDir(out), dataclasses.replace(cfg, out=out)
    with run.lock(resume, cfg.overwrite) if dist_info.is_main else contextlib.nullcontext():
        return _fit_in(run, cfg, dist_info, device, quiet, resume)


def _fit_in(run: RunDir, cfg: TrainConfig, dist_info: distributed.DistInfo, device: torch.device,
            quiet: bool, resume: bool) -> dict[str, Any]:  # fmt: skip
    """:func:`fit` in its run directory, which rank 0 holds (:meth:`RunDir.lock`)."""
    quiet = quiet or not dist_info.is_main
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    generator = seed_everything(cfg.seed)
    splits = load_splits(cfg)
    vectors = embeddings_for(cfg, splits.train.class_names)
    info = DataInfo(splits.train.class_names, vectors, splits.train.labels)
    method = build_method(cfg, info).to(device)
    model = method.model
    if device.type == "cuda":
        method = method.to(memory_format=torch.channels_last)
    cached = _cached_feature_maps(cfg, method, splits, device)
    model.takes_feature_maps = cached is not None
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    cfg = dataclasses.replace(  # recorded as used: the weights loaded, the threads chosen
        cfg, threads=choose_threads(cfg.threads, local_world),
        weights="imagenet" if cfg.weights == "auto" and model.backbone.weights_source != "random"
        else cfg.weights)  # fmt: skip
    torch.set_num_threads(cfg.threads)
    if dist_info.is_main:
        run.create(cfg)
    if not quiet:
        print_summary(cfg, splits, method, device, cached is not None, dist_info.world)
    step_fn: torch.nn.Module = method
    if dist_info.enabled:
        if cfg.sync_bn and device.type != "cuda":
            raise SarbError("--sync-bn needs CUDA (PyTorch's SyncBatchNorm is GPU-only)")
        if cfg.sync_bn:
            method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
            model = method.model
        step_fn = wrap_ddp(method, device)
    if cfg.compile:  # after DDP, so that DDP's optimizer splits the graph at bucket boundaries
        step_fn = torch.compile(step_fn)

    def loader(part: str, train: bool, gen: torch.Generator | None = None) -> DataLoader:
        fmaps = None if cached is None else cached[part]
        return make_loader(getattr(splits, part), cfg, train, dist_info.rank, dist_info.world,
                           device.type == "cuda", gen, fmaps)  # fmt: skip

    train_loader = loader("train", train=True, gen=generator)
    plain_train_loader = loader("train", train=False)
    val_loader = loader("val", train=False)
    groups = method.param_groups(cfg.lr, cfg.backbone_lr_mult)
    optimizer = torch.optim.Adam(groups, cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=0.1)
    best_map, best_epoch, step, start_epoch, skipped_total = -1.0, -1, 0, 0, 0
    rank_epochs = splits.can_rank_epochs()  # else every epoch replaces best.pt: the last is kept
    if resume:
        state = run.restore(method, optimizer, scheduler, generator, device, cfg)
        start_epoch, step = state["epoch"], state["step"]
        best_map, best_epoch = state["best_val_mAP"], state["best_epoch"]
        if start_epoch > cfg.epochs:
            raise SarbError(f"{run.path}: already trained {start_epoch} epochs; --epochs "
                            f"{cfg.epochs} cannot shorten it")  # fmt: skip
        print(f"sarb: resuming {run.path} after epoch {start_epoch}", file=sys.stderr)
    log = run.open_log(start_epoch if resume else None) if dist_info.is_main else None
    fit_started = time.time()
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.max_steps is not None and step >= cfg.max_steps:
            break
        started = time.time()
        method.on_epoch_start(epoch, _train_batches(model, plain_train_loader, device, cfg.amp))
        lr = optimizer.param_groups[0]["lr"]
        step, means = train_one_epoch(
            method, step_fn, train_loader, optimizer, epoch, step, cfg, device, run, quiet
        )
        skipped_total += means.get("skipped_steps", 0)
        scheduler.step()
        val_map = evaluate(model, val_loader, splits.selection_labels, cfg, device)["mAP"] or 0.0
        improved = val_map > best_map or not rank_epochs
        if improved:
            best_map, best_epoch = val_map, epoch + 1
        if dist_info.is_main:
            log.write({"epoch": epoch + 1, "step": step, **means, **method.logged_values(),
                       "lr": lr, "val_mAP": val_map,
                       "epoch_time_s": round(time.time() - started, 3)})  # fmt: skip
            record = {
                "config": dataclasses.asdict(cfg),
                "class_names": list(splits.train.class_names),
                "class_embeddings": model.class_embeddings_kind,
                "dataset": splits.name,
                "epoch": epoch + 1,
                "step": step,
                "val_mAP": val_map,
                "best_val_mAP": best_map,
                "best_epoch": best_epoch,
            }
            run.save(method, optimizer, scheduler, generator, record, best=improved)
        if not quiet:
            eta = (time.time() - fit_started) / (epoch + 1 - start_epoch) * (cfg.epochs - epoch - 1)
            print(f"epoch {epoch + 1}/{cfg.epochs}  loss {means.get('loss', float('nan')):.4f}  "
                  f"val mAP {val_map:.2f}  ({time.time() - started:.1f}s; run ETA {eta:.0f}s)",
                  file=sys.stderr)  # fmt: skip
    if log is not None:
        log.close()
    distributed.barrier()  # best.pt is written
    model.load_state_dict(run.load_best(device)["model"])
    blending = method.first_blending_epoch
    before_blending = blending is not None and 0 < best_epoch <= blending
    if before_blending and not quiet:
        print(f"sarb: note: the selected epoch {best_epoch} comes before blending starts (epoch "
              f"{blending + 1}): this model is the method without blending",
              file=sys.stderr)  # fmt: skip
    result = {
        **evaluate(model, loader("test", train=False), splits.test.labels, cfg, device),
        "method": cfg.method,
        "dataset": splits.name,
        "known": cfg.known,
        "mask_protocol": cfg.mask_protocol,
        "seed": cfg.seed,
        "selected_on": "val" if rank_epochs else "last epoch",
        "selected_before_blending": before_blending,
        "best_epoch": best_epoch,
        "val_mAP": best_map,
        "steps": step,
        "skipped_steps": skipped_total,
        "skipped_images": splits.skipped_images,
        "world_size": dist_info.world,
        "run_dir": cfg.out,
        "environment": runtime.environment(device),
    }
    if dist_info.is_main:
        run.write_metrics(result)
    distributed.barrier()
    return result


def _cached_feature_maps(
    cfg: TrainConfig, method: Method, splits: Splits, device: torch.device
) -> dict[str, torch.Tensor] | None:
    """The one decision between cached feature maps and the backbone: the maps of every split
    with ``--feature-cache``, a fully frozen backbone and no augmentation that mixes images
    (see :mod:`sarb.data.features`); None (and a note why, when asked for) otherwise."""
    if not cfg.feature_cache:
        return None
    backbone = method.model.backbone
    if not getattr(backbone, "fully_frozen", False):
        print("sarb: --feature-cache ignored: the backbone is not fully frozen", file=sys.stderr)
        return None
    if method.needs_images:  # e.g. IP-Mixup mixes the images themselves
        print(f"sarb: --feature-cache ignored: method {cfg.method} needs the images",
              file=sys.stderr)  # fmt: skip
        return None
    out = {}
    for part in ("train", "val", "test"):
        data = getattr(splits, part)
        path = cache_path(cfg.cache_dir, cfg.backbone, backbone.weights_tag, cfg.image_size, data)
        out[part] = feature_maps(backbone, data, path, cfg.image_size, device, cfg.workers, part)
    return out


def _train_batches(model: MultiLabelModel, loader: DataLoader, device: torch.device, amp: bool):
    """``train_batches()`` of the epoch hooks: the training split's (feature map, labels)."""

    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        model.eval()
        with torch.no_grad():
            for x, y, _ in loader:
                with autocast(device, amp):
                    fmap = model.feature_map(x.to(device, non_blocking=True))
                yield fmap.float(), y.to(device)

    return batches


BATCH_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d,
               torch.nn.SyncBatchNorm)  # fmt: skip


def wrap_ddp(method: torch.nn.Module, device: torch.device) -> DistributedDataParallel:
    """``method`` under DistributedDataParallel, broadcasting only batch-norm statistics.

    DDP re-broadcasts every buffer from rank 0 before each forward. Apart from batch-norm
    running statistics, this project's buffers are constant (class embeddings, adjacency) or
    recomputed identically on every rank from all-gathered data (SARB's prototypes, the
    curriculum's (N, C) pseudo-labels), so they are excluded: no per-step copy of them.
    """
    ignored = [
        f"{owner}.{name}" if owner else name
        for owner, module in method.named_modules()
        if not isinstance(module, BATCH_NORMS)
        for name, _ in module.named_buffers(recurse=False)
    ]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(method, ignored)
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(method, device_ids=ids, find_unused_parameters=True)


def train_one_epoch(
    method: Method,
    step_fn: torch.nn.Module,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    step: int,
    cfg: TrainConfig,
    device: torch.device,
    run: RunDir,
    quiet: bool = False,
) -> tuple[int, dict[str, float]]:
    """One pass over ``loader``; returns the global step and the epoch means of the loss terms.

    The step itself never waits for the device: loss terms are summed on the device, and the
    first step with a non-finite loss is recorded there too. Both are read every 10 steps (with
    the progress bar) and at the end of the epoch. A non-finite loss then stops training, before
    any checkpoint of the damaged model is written (the previous one stays the last good one).
    ``--skip-nonfinite`` instead checks every step before the update, which costs one host sync
    per step, and skips and counts such steps (``skipped_steps``).
    """
    method.train()
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    sums: dict[str, torch.Tensor] = {}
    none = torch.iinfo(torch.long).max
    first_bad = torch.full((), none, device=device)  # the first non-finite step, if any
    n = skipped = 0

    def check_finite() -> None:  # every rank stops together, at the earliest bad step of any
        if (bad := int(distributed.reduce_over_ranks(first_bad, "min"))) != none:
            raise SarbError(
                f"non-finite loss at epoch {epoch + 1}, step {bad + 1}; {run.last_good()} "
                "(--skip-nonfinite skips such steps)"
            )

    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=quiet)
    for i, (x, y, index) in enumerate(bar):
        method.on_step(epoch, i / len(loader))
        x, y = x.to(device, non_blocking=True), y.to(device)
        with autocast(device, cfg.amp):
            loss, terms = step_fn(x, y, index.to(device), epoch)
        optimizer.zero_grad(set_to_none=True)
        finite = torch.isfinite(loss.detach())
        # every rank skips together (a rank that stepped alone would wait in all-reduce)
        if cfg.skip_nonfinite and bool(distributed.reduce_over_ranks((~finite).int(), "max")):
            skipped, step = skipped + 1, step + 1
            if cfg.max_steps is not None and step >= cfg.max_steps:
                break
            continue
        first_bad = torch.where(finite, first_bad, first_bad.clamp(max=step))
        loss.backward()
        optimizer.step()
        for k, v in {"loss": loss.detach(), **terms}.items():
            sums[k] = sums[k] + v if k in sums else v.clone()
        n, step = n + 1, step + 1
        if step % 10 == 0:
            check_finite()
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        if cfg.max_steps is not None and step >= cfg.max_steps:
            break
    check_finite()
    means = {k: float(v) / max(n, 1) for k, v in sums.items()}
    return step, {**means, "skipped_steps": skipped} if skipped else means


@torch.no_grad()
def predict_scores(
    model: MultiLabelModel, loader: Any, device: torch.device, amp: bool
) -> np.ndarray:
    """Sigmoid probabilities (N, C) for every row of ``loader``'s dataset, in row order
    (gathered from every process when training is distributed). ``loader`` yields
    ``(input, labels, row index or None)``."""
    model.eval()
    rows, out, seen = [], [], 0
    for x, _, index in loader:  # index: the rows of the batch (None: consecutive)
        with autocast(device, amp):
            logits = model(x.to(device, non_blocking=True))
        out.append(torch.sigmoid(logits.float()).cpu())
        rows.append(torch.arange(seen, seen + len(x)) if index is None else index)
        seen += len(x)
    parts = distributed.gather_objects((torch.cat(rows), torch.cat(out)))
    index = torch.cat([p[0] for p in parts])
    scores = torch.cat([p[1] for p in parts])
    return scores[torch.argsort(index)].numpy()


def evaluate(
    model: MultiLabelModel,
    loader: Any,
    labels: np.ndarray,
    cfg: Any,
    device: torch.device,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """The metrics (mAP, OP/OR/OF1, CP/CR/CF1, top-3, AP per class; unknown labels ignored)
    of ``model`` on the rows of ``loader`` against ``labels`` (N, C), as the run scores them
    (``cfg.amp``, ``cfg.ap``)."""
    scores = predict_scores(model, loader, device, cfg.amp)
    return compute_metrics(scores, labels, ap=cfg.ap, threshold=threshold)
