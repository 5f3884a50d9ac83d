"""The feature cache: a frozen backbone's feature maps of a split, computed once, kept on disk.

With a fully frozen backbone (``--trainable none``) and ``--feature-cache``, every epoch, run and
sweep cell reads the same maps instead of running the backbone. They are computed with the test
transform, so the cache is exact when training does not augment (``--no-crop-flip``); with
augmentation on, it replaces random crops and flips by the test view, an approximation.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from sarb import distributed
from sarb.data.dataset import ImageDataset, LabelledImages
from sarb.data.sources import cache_root
from sarb.data.transforms import test_transform
from sarb.files import atomic_write, remove_stale_temps, writable_folder


def cache_path(
    cache_dir: str | None, backbone: str, weights_tag: str, image_size: int, data: LabelledImages
) -> Path:
    """The cache file of ``data``: keyed by backbone, weights, image size and the image files
    (paths, sizes, modification times), so that a changed image is never served stale."""
    stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in data.images]
    key = json.dumps([backbone, weights_tag, image_size, stats])
    return cache_root(cache_dir) / "features" / f"{hashlib.sha1(key.encode()).hexdigest()}.pt"


@torch.no_grad()
def feature_maps(
    backbone: nn.Module,
    data: LabelledImages,
    path: Path,
    image_size: int,
    device: torch.device,
    workers: int,
    split: str = "",
) -> torch.Tensor:
    """The backbone's feature maps (N, D, h, w) of ``data``, float32, from ``path`` or computed
    (stored as float16). Under torchrun, rank 0 computes the file and the other ranks read it."""
    if not distributed.is_main():
        distributed.barrier()
        return torch.load(path, weights_only=True).float()
    if path.is_file():
        try:
            fmaps = torch.load(path, weights_only=True).float()
            distributed.barrier()
            return fmaps
        except Exception:  # a truncated cache file is recomputed, never trusted
            print(f"sarb: recomputing the damaged feature cache {path}", file=sys.stderr)
    writable_folder(path.parent)  # an unwritable cache fails before the work, not after
    remove_stale_temps(path.parent, older_than_s=3600)  # of killed runs; live writers stay
    # its own generator: computing the cache leaves the global RNG as a cache hit does
    loader = DataLoader(ImageDataset(data, test_transform(image_size)), 64, num_workers=workers,
                        generator=torch.Generator().manual_seed(0))  # fmt: skip
    backbone.eval()
    chunks = [
        backbone(x.to(device)).half().cpu()
        for x, _, _ in tqdm(
            loader,
            desc=f"caching {split} features" if split else "caching features",
            leave=False,
            file=sys.stderr,
        )
    ]
    fmaps = torch.cat(chunks)
    atomic_write(path, lambda f: torch.save(fmaps, f), fsync=False)
    distributed.barrier()
    return fmaps.float()
