"""The three splits of a training run: training labels hidden as the paper does, a validation
split for model selection, and the test split."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from sarb.data.dataset import LabelledImages, drop_unreadable, split_train_val
from sarb.data.partial import SINGLE_POSITIVE, mask_labels, single_positive
from sarb.data.sources import read_dataset


@dataclass
class Splits:
    """Train (labels already partial), validation and test splits of one dataset."""

    name: str
    train: LabelledImages
    val: LabelledImages
    test: LabelledImages
    skipped_images: dict[str, int] = dataclasses.field(default_factory=dict)
    single_positive: bool = False

    def rankable_classes(self) -> int:
        """Classes whose validation AP is defined (a known positive and a known negative)."""
        y = self.selection_labels
        return int(((y == 1).any(axis=0) & (y == -1).any(axis=0)).sum())

    def can_rank_epochs(self) -> bool:
        """Whether the validation labels can rank epochs: at least half of the classes have a
        defined AP. Otherwise a warning says so, and training keeps its last epoch."""
        c, rankable = self.val.num_classes, self.rankable_classes()
        if rankable * 2 >= c:
            return True
        positives = int((self.selection_labels == 1).sum())
        print(
            f"sarb: warning: the validation split ({len(self.val)} images, {positives} known "
            f"positives) has a defined AP for only {rankable} of {c} classes: "
            "too few to rank epochs; the last epoch is kept instead",
            file=sys.stderr,
        )
        return False

    @property
    def selection_labels(self) -> np.ndarray:
        """The labels (N_val, C) that rank epochs. Single positive validation labels have no
        known negative (every AP would be 100), so there every unknown counts as absent, as Cole
        et al. select their epochs."""
        if self.single_positive:
            return np.where(self.val.labels == 0, -1, self.val.labels).astype(np.int8)
        return self.val.labels


def load_splits(cfg: Any) -> Splits:
    """Read ``cfg.dataset`` and hide training labels per ``cfg.known`` (the paper's masks).

    The mask is drawn over the whole training split in its canonical row order, before a
    validation split is carved out of it, so the kept labels are those of the paper's protocol.
    With ``cfg.skip_bad_images`` every image is decoded once and unreadable ones are dropped
    (and counted in ``skipped_images``).
    """
    source = read_dataset(cfg)
    train, val = source.train, source.val
    single = cfg.mask_protocol == SINGLE_POSITIVE
    if cfg.known < 1.0 or single:
        train = train.with_labels(
            mask_labels(train.labels, cfg.known, cfg.mask_seed, cfg.mask_protocol)
        )
    if single and val is not None:  # the validation split gets the same treatment
        val = val.with_labels(single_positive(val.labels, cfg.mask_seed))
    if val is None:
        train, val = split_train_val(train, cfg.val_fraction, cfg.seed)
    splits = Splits(source.name, train, val, source.test, single_positive=single)
    if single:
        for part in ("train", "val"):
            empty = int((getattr(splits, part).labels == 0).all(axis=1).sum())
            if empty:
                print(f"sarb: single positive labels: {empty} {part} images without a positive"
                      " are all unknown", file=sys.stderr)  # fmt: skip
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
