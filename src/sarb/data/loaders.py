"""Batches of a split: images through the transforms, or cached feature maps."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset, TensorDataset

from sarb.data.dataset import ImageDataset, LabelledImages
from sarb.data.transforms import test_transform, train_transform
from sarb.errors import SarbError
from sarb.runtime import one_thread


def make_loader(
    data: LabelledImages,
    cfg: object,
    train: bool,
    rank: int = 0,
    world: int = 1,
    pin_memory: bool = False,
    generator: torch.Generator | None = None,
    feature_maps: torch.Tensor | None = None,
) -> DataLoader:
    """Batches of ``(input, labels, row index)``; ``input`` is the transformed images, or the
    rows of ``feature_maps`` (N, D, h, w) when given (the feature cache).

    Training batches come from a DistributedSampler, in one process too, so that N processes
    see exactly the global batches of one (the global batch is ``cfg.batch_size``; the order
    depends on the seed and the epoch only). Evaluation batches of N processes come from a
    strided shard of the rows (``sarb.engine.predict_scores`` gathers them back in order).
    """
    if cfg.batch_size % world:
        raise SarbError(f"--batch-size {cfg.batch_size} is not divisible by {world} ranks")
    if feature_maps is not None:
        labels = torch.from_numpy(data.labels.astype(np.float32))
        ds = TensorDataset(feature_maps, labels, torch.arange(len(data)))
        workers = 0
    else:
        augment = train and cfg.crop_flip
        tf = train_transform(cfg.image_size) if augment else test_transform(cfg.image_size)
        ds = ImageDataset(data, tf)
        workers = cfg.workers
    sampler = None
    if train:
        sampler = DistributedSampler(ds, world, rank, shuffle=True, seed=cfg.seed, drop_last=True)
    elif world > 1:
        ds = Subset(ds, range(rank, len(ds), world))
    return DataLoader(
        ds,
        cfg.batch_size // world,
        sampler=sampler,
        generator=generator,
        drop_last=train and len(data) > cfg.batch_size,
        num_workers=workers,
        worker_init_fn=one_thread if workers > 0 else None,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
    )
