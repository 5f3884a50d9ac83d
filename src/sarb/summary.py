"""What a training run is about to do, in a few lines on stderr (the run's startup summary)."""

from __future__ import annotations

import sys
from typing import Any

import torch

from sarb.presets import describe_parts


def _labels(data: Any) -> str:
    y = data.labels
    known, pos = (y != 0).mean(), (y == 1).sum(axis=1).mean()
    return f"{len(data)} images, {known:.0%} of labels known, {pos:.2f} known positives per image"


def print_summary(
    cfg: Any, splits: Any, method: Any, device: torch.device, cached: bool, world: int
) -> None:
    """The method and its parts, the data and its label density, where it runs, the run dir."""
    protocol = "single positive labels" if cfg.mask_protocol == "single-positive" else (
        f"{cfg.known:.0%} of the training labels kept ({cfg.mask_protocol} mask, seed "
        f"{cfg.mask_seed})" if cfg.known < 1.0 else "the training labels as given")  # fmt: skip
    backbone = method.model.backbone
    threads = torch.get_num_threads()
    lines = [
        f"method {cfg.method}: {describe_parts(vars(cfg))}",
        f"data {splits.name}: {splits.train.num_classes} classes; {protocol}",
        f"  train: {_labels(splits.train)}",
        f"  val:   {_labels(splits.val)}",
        f"  test:  {len(splits.test)} images",
        f"model {cfg.backbone} ({backbone.weights_source} weights, trainable: {cfg.trainable}) at "
        f"{cfg.image_size} px" + ("; backbone maps cached" if cached else ""),
        f"device {device}"
        + (f" x {world} processes" if world > 1 else "")
        + f", {threads} threads, bf16 {'on' if cfg.amp else 'off'}; "
        f"{cfg.epochs} epochs of batch {cfg.batch_size}",
        f"run directory {cfg.out}",
    ]
    print("\n".join(f"sarb: {line}" for line in lines), file=sys.stderr)
