"""The one training and evaluation loop shared by every method (torchvision-reference style)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset, TensorDataset
from tqdm.auto import tqdm

from sarb import distributed
from sarb.checkpoint import load_checkpoint, save_checkpoint
from sarb.config import TrainConfig, save_config
from sarb.data.dataset import ImageDataset, LabelledImages, drop_unreadable, split_train_val
from sarb.data.embeddings import class_embeddings
from sarb.data.partial import mask_labels
from sarb.data.sources import read_dataset
from sarb.data.transforms import test_transform, train_transform
from sarb.errors import SarbError
from sarb.methods import MethodContext, create_method
from sarb.metrics import compute_metrics
from sarb.models.backbones import create_backbone
from sarb.models.multilabel import MultiLabelModel


@dataclass
class Splits:
    """Train (labels already partial), validation and test splits of one dataset."""

    name: str
    train: LabelledImages
    val: LabelledImages
    test: LabelledImages
    skipped_images: dict[str, int] = dataclasses.field(default_factory=dict)


def cache_root(cfg: TrainConfig) -> Path:
    """The cache folder (demo data, feature maps): ``--cache-dir`` or the user cache dir."""
    from sarb.data.demo import demo_root

    return Path(cfg.cache_dir) if cfg.cache_dir else demo_root().parent


def load_splits(cfg: TrainConfig) -> Splits:
    """Read the dataset of ``cfg`` and hide training labels per ``--known`` (SPEC §2).

    The mask is drawn over the whole training split in its canonical row order, before a
    validation split is carved out of it, so the kept labels are those of the paper's protocol.
    """
    source = read_dataset(cfg)
    train = _mask(source.train, cfg)
    if source.val is not None:
        splits = Splits(source.name, train, source.val, source.test)
    else:
        train, val = split_train_val(train, cfg.val_fraction, cfg.seed)
        splits = Splits(source.name, train, val, source.test)
    if cfg.skip_bad_images:
        for part in ("train", "val", "test"):
            kept, bad = drop_unreadable(getattr(splits, part))
            if bad:
                names = ", ".join(str(p) for p in bad[:3]) + (" ..." if len(bad) > 3 else "")
                print(f"sarb: skipping {len(bad)} unreadable {part} images: {names}",
                      file=sys.stderr)  # fmt: skip
            setattr(splits, part, kept)
            splits.skipped_images[part] = len(bad)
    return splits


def _mask(train: LabelledImages, cfg: TrainConfig) -> LabelledImages:
    if cfg.known >= 1.0:
        return train
    return train.with_labels(mask_labels(train.labels, cfg.known, cfg.mask_seed, cfg.mask_protocol))


def pick_device(name: str, dist_info: distributed.DistInfo | None = None) -> torch.device:
    """``auto``: CUDA when available (this process's GPU under torchrun), else the CPU."""
    if name == "auto" and torch.cuda.is_available() and dist_info and dist_info.enabled:
        return torch.device("cuda", dist_info.local_rank)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SarbError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SarbError(f"--device {name}: CUDA is not available on this machine")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise SarbError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    if device.type not in ("cpu", "cuda"):
        raise SarbError(f"--device {name!r}: expected auto, cpu, cuda or cuda:N")
    return device


def amp_enabled(amp: bool | None, device: torch.device) -> bool:
    """bf16 autocast: ``--amp``/``--no-amp``, or when unset on CUDA only."""
    return amp if amp is not None else device.type == "cuda"


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002  (code that uses the legacy global RNG)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def build_model(
    cfg: TrainConfig, class_names: list[str], train_labels: np.ndarray
) -> MultiLabelModel:
    """Backbone + the head of ``cfg.method``; the same call rebuilds a model from a checkpoint."""
    backbone = create_backbone(cfg.backbone, cfg.weights, cfg.trainable)
    ctx = MethodContext(
        num_classes=len(class_names),
        in_channels=backbone.out_channels,
        class_names=list(class_names),
        embeddings=class_embeddings(class_names, cfg.embeddings),
        train_labels=train_labels,
        config=cfg,
    )
    return MultiLabelModel(backbone, create_method(cfg.method, ctx))


class Inputs:
    """Batches of a split as the head needs them: images through the backbone, or cached maps.

    With a fully frozen backbone and ``--feature-cache``, feature maps are computed once with the
    test transform and stored on disk, keyed by backbone, weights, image size and the image files.
    That is exact when training would not augment (``--no-augment``); with augmentation on, the
    cache replaces random crops and flips by the test view, an approximation.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        model: MultiLabelModel,
        device: torch.device,
        dist_info: distributed.DistInfo | None = None,
    ):
        self.cfg, self.model, self.device = cfg, model, device
        self.dist = dist_info or distributed.DistInfo()
        self.cached = bool(cfg.feature_cache and getattr(model.backbone, "fully_frozen", False))
        if cfg.feature_cache and not self.cached:
            print(
                "sarb: --feature-cache ignored: the backbone is not fully frozen", file=sys.stderr
            )
        elif self.cached and getattr(model.head, "needs_images", False):
            self.cached = False  # e.g. IP-Mixup mixes the images themselves
            print(
                f"sarb: --feature-cache ignored: method {cfg.method} needs the images",
                file=sys.stderr,
            )

    def loader(self, data: LabelledImages, train: bool, generator: torch.Generator | None = None):
        """Batches of ``(input, labels, row index)``. Training batches come from a
        DistributedSampler, in one process too, so that N processes see exactly the global batches
        of one (the global batch is ``--batch-size``; the order depends on the seed and the epoch
        only). Across processes, evaluation batches come from a strided shard of the rows
        (``predict_scores`` gathers them back in order)."""
        world, rank = self.dist.world, self.dist.rank
        if self.cfg.batch_size % world:
            raise SarbError(f"--batch-size {self.cfg.batch_size} is not divisible by {world} ranks")
        bs = self.cfg.batch_size // world
        if self.cached:
            fmaps = self._features(data)
            labels = torch.from_numpy(data.labels.astype(np.float32))
            ds = TensorDataset(fmaps, labels, torch.arange(len(data)))
            workers = 0
        else:
            tf = train_transform(self.cfg.image_size) if train and self.cfg.augment else None
            ds = ImageDataset(data, tf or test_transform(self.cfg.image_size))
            workers = self.cfg.workers
        sampler = None
        if train:
            sampler = DistributedSampler(ds, world, rank, shuffle=True, seed=self.cfg.seed,
                                         drop_last=True)  # fmt: skip
        elif self.dist.enabled:
            ds = Subset(ds, range(rank, len(ds), world))
        return DataLoader(
            ds,
            bs,
            sampler=sampler,
            generator=generator,
            drop_last=train and len(data) > self.cfg.batch_size,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.device.type == "cuda",
        )

    def autocast(self) -> torch.autocast:
        """bf16 autocast when :func:`amp_enabled`, a no-op otherwise."""
        enabled = amp_enabled(self.cfg.amp, self.device)
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def feature_map(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device, non_blocking=True)
        if self.cached:
            return batch.float()
        if self.device.type == "cuda":
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self.model.backbone(batch)

    def _features(self, data: LabelledImages) -> torch.Tensor:
        bb = self.model.backbone
        stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in data.images]
        key = json.dumps([self.cfg.backbone, bb.weights_tag, self.cfg.image_size, stats])
        path = cache_root(self.cfg) / "features" / f"{hashlib.sha1(key.encode()).hexdigest()}.pt"
        if not self.dist.is_main:  # rank 0 computes the cache, the others then read it
            distributed.barrier()
            return torch.load(path, weights_only=True).float()
        if path.is_file():
            try:
                fmaps = torch.load(path, weights_only=True).float()
                distributed.barrier()
                return fmaps
            except Exception:  # a truncated cache file is recomputed, never trusted
                print(f"sarb: recomputing the damaged feature cache {path}", file=sys.stderr)
        ds = ImageDataset(data, test_transform(self.cfg.image_size))
        dl = DataLoader(ds, 64, num_workers=self.cfg.workers)
        bb.eval()
        chunks = []
        with torch.no_grad():
            for x, _, _ in tqdm(dl, desc="caching features", leave=False, file=sys.stderr):
                chunks.append(bb(x.to(self.device)).half().cpu())
        fmaps = torch.cat(chunks)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(fmaps, tmp)
        tmp.replace(path)
        distributed.barrier()
        return fmaps.float()


@torch.no_grad()
def predict_scores(model: MultiLabelModel, inputs: Inputs, loader: DataLoader) -> np.ndarray:
    """Sigmoid probabilities (N, C) for every row of ``loader``'s dataset, in row order
    (gathered from every process when training is distributed)."""
    model.eval()
    rows, out, seen = [], [], 0
    for x, _, index in loader:  # index: the rows of the batch (None: consecutive)
        with inputs.autocast():
            logits = model.head(inputs.feature_map(x))
        out.append(torch.sigmoid(logits.float()).cpu())
        rows.append(torch.arange(seen, seen + len(x)) if index is None else index)
        seen += len(x)
    parts = distributed.gather_objects((torch.cat(rows), torch.cat(out)))
    index = torch.cat([p[0] for p in parts])
    scores = torch.cat([p[1] for p in parts])
    return scores[torch.argsort(index)].numpy()


def evaluate(
    model: MultiLabelModel,
    inputs: Inputs,
    data: LabelledImages,
    ap: str,
    loader: DataLoader | None = None,
) -> dict:
    """SPEC §7 metrics of ``model`` on ``data`` (unknown labels ignored); ``loader``: the
    evaluation loader of ``data`` when one is kept (its workers persist between epochs)."""
    loader = loader if loader is not None else inputs.loader(data, train=False)
    scores = predict_scores(model, inputs, loader)
    return compute_metrics(scores, data.labels, ap=ap)


def _train_batches(inputs: Inputs, loader: DataLoader):
    def batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        inputs.model.eval()
        with torch.no_grad():
            for x, y, _ in loader:
                with inputs.autocast():
                    fmap = inputs.feature_map(x)
                yield fmap.float(), y.to(inputs.device)

    return batches


def run_dir_for(cfg: TrainConfig) -> Path:
    if cfg.out:
        return Path(cfg.out)
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.method}"


class RunLog:
    """Per-epoch records: ``log.jsonl`` in the run directory, and TensorBoard when installed."""

    def __init__(self, run_dir: Path, append: bool = False):
        self.file = (run_dir / "log.jsonl").open("a" if append else "w")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:  # tensorboard is optional
            self.tensorboard = None

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tensorboard is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "epoch":
                    self.tensorboard.add_scalar(key, value, record["epoch"])

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


class TrainStep(torch.nn.Module):
    """Backbone (unless its maps are cached) + the method's loss: the module DDP wraps."""

    def __init__(self, model: MultiLabelModel, cached: bool):
        super().__init__()
        self.model, self.cached = model, cached

    def forward(self, x: torch.Tensor, targets: torch.Tensor, epoch: int):
        fmap = x.float() if self.cached else self.model.backbone(x)
        return self.model.head.loss(fmap, targets, epoch)


BATCH_NORMS = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d,
               torch.nn.SyncBatchNorm)  # fmt: skip


def wrap_ddp(step_fn: torch.nn.Module, device: torch.device) -> DistributedDataParallel:
    """``step_fn`` under DistributedDataParallel, broadcasting only batch-norm statistics.

    DDP re-broadcasts every buffer from rank 0 before each forward. Apart from batch-norm
    running statistics, this project's buffers are constant (class embeddings, adjacency) or
    recomputed identically on every rank from all-gathered data (SARB's prototypes, the
    curriculum's (N, C) pseudo-labels), so they are excluded: no per-step copy of them.
    """
    ignored = [
        f"{owner}.{name}" if owner else name
        for owner, module in step_fn.named_modules()
        if not isinstance(module, BATCH_NORMS)
        for name, _ in module.named_buffers(recurse=False)
    ]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(step_fn, ignored)
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(step_fn, device_ids=ids, find_unused_parameters=True)


def train_one_epoch(
    model: MultiLabelModel,
    step_fn: torch.nn.Module,
    inputs: Inputs,
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    step: int,
    cfg: TrainConfig,
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
    model.train()
    if isinstance(loader.sampler, DistributedSampler):
        loader.sampler.set_epoch(epoch)
    sums: dict[str, torch.Tensor] = {}
    none = torch.iinfo(torch.long).max
    first_bad = torch.full((), none, device=inputs.device)  # the first non-finite step, if any
    n = skipped = 0

    def check_finite() -> None:  # every rank stops together, at the earliest bad step of any
        if (bad := int(distributed.reduce_over_ranks(first_bad, "min"))) != none:
            raise SarbError(
                f"non-finite loss at epoch {epoch + 1}, step {bad + 1}; the last good checkpoint "
                f"is {run_dir_for(cfg) / 'last.pt'} (--skip-nonfinite skips such steps)"
            )

    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False, disable=quiet)
    for x, y, index in bar:
        x = x.to(inputs.device, non_blocking=True)
        y = model.head.targets(index.to(inputs.device), y.to(inputs.device))  # e.g. pseudo-labels
        x, y = model.head.mix_inputs(x, y)  # e.g. IP-Mixup; the identity for most methods
        if inputs.device.type == "cuda" and not inputs.cached:
            x = x.contiguous(memory_format=torch.channels_last)
        with inputs.autocast():
            loss, terms = step_fn(x, y, epoch)
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


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random stream a training run draws from, for an exact resume."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state(np.random.get_state()),  # noqa: NPY002
        "python": random.getstate(),
        "sampler": generator.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _numpy_state(state: tuple | dict) -> tuple | dict:
    """numpy's legacy RNG state as plain tensors and numbers (loadable with weights_only)."""
    if isinstance(state, tuple):
        name, keys, pos, has_gauss, gauss = state
        return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                "has_gauss": int(has_gauss), "gauss": float(gauss)}  # fmt: skip
    keys = state["keys"].numpy().astype(np.uint32)
    return (state["name"], keys, state["pos"], state["has_gauss"], state["gauss"])


def _set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(_numpy_state(state["numpy"]))  # noqa: NPY002
    random.setstate(state["python"])
    generator.set_state(state["sampler"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train(cfg: TrainConfig, quiet: bool = False, resume: bool = False) -> dict[str, Any]:
    """Train ``cfg.method``, select the epoch on the validation split, report on the test split.

    Writes into the run directory: ``config.yaml``, ``log.jsonl`` (one line per epoch),
    ``last.pt``, ``best.pt`` and ``metrics.json``. Returns the content of ``metrics.json``.
    With ``resume``, continues from the run directory's ``last.pt`` (model, optimiser,
    scheduler, epoch, step, every RNG state), so the result equals an uninterrupted run.
    Under torchrun every process trains a shard of each global batch (DDP); rank 0 writes.
    """
    cfg.validate()
    cfg = _absolute_paths(cfg)
    dist_info = distributed.init(cfg.device)
    device = pick_device(cfg.device, dist_info)
    # recorded, so that eval and predict score as training did
    cfg = dataclasses.replace(cfg, amp=amp_enabled(cfg.amp, device))
    quiet = quiet or not dist_info.is_main
    run_dir = run_dir_for(cfg)
    if dist_info.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, run_dir / "config.yaml")
        except OSError as exc:
            raise SarbError(f"{run_dir}: cannot write the run directory ({exc.strerror})") from None
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    generator = seed_everything(cfg.seed)
    splits = load_splits(cfg)
    model = build_model(cfg, splits.train.class_names, splits.train.labels).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    inputs = Inputs(cfg, model, device, dist_info)
    step_fn: torch.nn.Module = TrainStep(model, inputs.cached)
    if dist_info.enabled:
        if cfg.sync_bn and device.type != "cuda":
            raise SarbError("--sync-bn needs CUDA (PyTorch's SyncBatchNorm is GPU-only)")
        if cfg.sync_bn:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            step_fn = TrainStep(model, inputs.cached)
        step_fn = wrap_ddp(step_fn, device)
    if cfg.compile:  # after DDP, so that DDP's optimizer splits the graph at bucket boundaries
        step_fn = torch.compile(step_fn)
    train_loader = inputs.loader(splits.train, train=True, generator=generator)
    plain_train_loader = inputs.loader(splits.train, train=False)
    val_loader = inputs.loader(splits.val, train=False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step, gamma=0.1)
    best_map, best_epoch, step, start_epoch, skipped_total = -1.0, -1, 0, 0, 0
    if resume:
        state = _load_last(run_dir, device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, step = state["epoch"], state["step"]
        best_map, best_epoch = state["best_val_mAP"], state["best_epoch"]
        _set_rng_state(state["rng"], generator)
        if dist_info.is_main:
            _truncate_log(run_dir / "log.jsonl", start_epoch)
        print(f"sarb: resuming {run_dir} after epoch {start_epoch}", file=sys.stderr)
    log = RunLog(run_dir, append=resume) if dist_info.is_main else None
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.max_steps is not None and step >= cfg.max_steps:
            break
        started = time.time()
        model.head.on_epoch_start(epoch, _train_batches(inputs, plain_train_loader))
        lr = optimizer.param_groups[0]["lr"]
        step, means = train_one_epoch(
            model, step_fn, inputs, train_loader, optimizer, epoch, step, cfg, quiet
        )
        skipped_total += means.get("skipped_steps", 0)
        scheduler.step()
        val_map = evaluate(model, inputs, splits.val, cfg.ap, val_loader)["mAP"] or 0.0
        improved = val_map > best_map
        if improved:
            best_map, best_epoch = val_map, epoch + 1
        if dist_info.is_main:
            record = {
                "epoch": epoch + 1,
                "step": step,
                **means,
                **model.head.logged_values(),
                "lr": lr,
                "val_mAP": val_map,
                "epoch_time_s": round(time.time() - started, 3),
            }
            log.write(record)
            checkpoint = {
                "model": model.state_dict(),
                "config": dataclasses.asdict(cfg),
                "class_names": list(splits.train.class_names),
                "dataset": splits.name,
                "epoch": epoch + 1,
                "step": step,
                "val_mAP": val_map,
                "best_val_mAP": best_map,
                "best_epoch": best_epoch,
            }
            if improved:
                save_checkpoint(run_dir / "best.pt", checkpoint)
            training_state = {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": _rng_state(generator),
            }
            _save_last(run_dir, {**checkpoint, **training_state})
        if not quiet:
            print(
                f"epoch {epoch + 1}/{cfg.epochs}  loss {means.get('loss', float('nan')):.4f}  "
                f"val mAP {val_map:.2f}  ({time.time() - started:.1f}s)",
                file=sys.stderr,
            )
    if log is not None:
        log.close()
    distributed.barrier()  # best.pt is written
    model.load_state_dict(load_checkpoint(run_dir / "best.pt", map_location=device)["model"])
    result = {
        **evaluate(model, inputs, splits.test, cfg.ap),
        "method": cfg.method,
        "dataset": splits.name,
        "known": cfg.known,
        "seed": cfg.seed,
        "selected_on": "val",
        "best_epoch": best_epoch,
        "val_mAP": best_map,
        "steps": step,
        "skipped_steps": skipped_total,
        "skipped_images": splits.skipped_images,
        "world_size": dist_info.world,
    }
    if dist_info.is_main:
        (run_dir / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    distributed.barrier()
    return result


def _save_last(run_dir: Path, payload: dict[str, Any]) -> None:
    """Write ``last.pt``, keeping the one before as ``last.prev.pt`` (the resume fallback)."""
    last = run_dir / "last.pt"
    if last.is_file():  # last.pt never disappears: the previous one is linked aside first
        staged = run_dir / ".last.prev.pt.tmp"
        staged.unlink(missing_ok=True)
        try:
            os.link(last, staged)
        except OSError:  # a file system without hard links
            shutil.copy2(last, staged)
        os.replace(staged, run_dir / "last.prev.pt")
    save_checkpoint(last, payload)


def _load_last(run_dir: Path, device: torch.device) -> dict[str, Any]:
    """``last.pt``, or ``last.prev.pt`` when the former is missing or damaged (and say so)."""
    try:
        return load_checkpoint(run_dir / "last.pt", map_location=device)
    except SarbError as exc:
        previous = run_dir / "last.prev.pt"
        if not previous.is_file():
            raise
        print(f"sarb: {exc}; resuming from the previous checkpoint {previous}", file=sys.stderr)
        return load_checkpoint(previous, map_location=device)


PATH_FIELDS = ("train", "val", "test", "root", "annotations", "images", "test_annotations",
               "test_images", "cache_dir")  # fmt: skip


def _absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """The config with its data paths made absolute, so a checkpoint works from any folder."""
    fixed = {f: str(Path(v).resolve()) for f in PATH_FIELDS if (v := getattr(cfg, f))}
    if cfg.weights not in ("auto", "random", "imagenet") and Path(cfg.weights).is_file():
        fixed["weights"] = str(Path(cfg.weights).resolve())
    return dataclasses.replace(cfg, **fixed)


def _truncate_log(path: Path, epochs: int) -> None:
    """Keep the first ``epochs`` records of a log (an interrupted epoch is redone on resume)."""
    if path.is_file():
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[:epochs]))
