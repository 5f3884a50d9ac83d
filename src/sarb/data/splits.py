"""The three splits of a training run: training labels hidden as the paper does, a validation
split for model selection, and the test split."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Any

from sarb.data.dataset import LabelledImages, drop_unreadable, split_train_val
from sarb.data.partial import mask_labels
from sarb.data.sources import read_dataset


@dataclass
class Splits:
    """Train (labels already partial), validation and test splits of one dataset."""

    name: str
    train: LabelledImages
    val: LabelledImages
    test: LabelledImages
    skipped_images: dict[str, int] = dataclasses.field(default_factory=dict)


def load_splits(cfg: Any) -> Splits:
    """Read ``cfg.dataset`` and hide training labels per ``cfg.known`` (the paper's masks).

    The mask is drawn over the whole training split in its canonical row order, before a
    validation split is carved out of it, so the kept labels are those of the paper's protocol.
    With ``cfg.skip_bad_images`` every image is decoded once and unreadable ones are dropped
    (and counted in ``skipped_images``).
    """
    source = read_dataset(cfg)
    train = source.train
    if cfg.known < 1.0:
        train = train.with_labels(
            mask_labels(train.labels, cfg.known, cfg.mask_seed, cfg.mask_protocol)
        )
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
