"""What the embedded, generated datasets (``demo``, ``glyphs``) share: a build that never looks
finished until it is, label statistics, and the scene-drawing primitives (backgrounds, placement).

A build is written into a temporary sibling folder, marked ``COMPLETE`` (with the build
parameters as JSON) and renamed into place, so an interrupted build never looks finished and a
build with other parameters is redone. ``SHA256`` holds a digest of what was built: the same
parameters give the same digest wherever the fonts and Pillow's JPEG encoder are the same, and
a different one where they are not (results then do not pair run for run with ours).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from sarb.data.dataset import LabelledImages
from sarb.data.manifest import read_manifest, write_manifest_csv
from sarb.data.sources import Source
from sarb.errors import SarbError

SPLITS = ("train", "val", "test")
MARKER = "COMPLETE"
DIGEST = "SHA256"
SPLIT_CODES = {"train": 1, "val": 2, "test": 3}  # seeds each image's RNG apart per split
JPEG_QUALITY = 90
LUMA = np.array([0.299, 0.587, 0.114])


def is_complete(root: Path, params: dict) -> bool:
    """True if ``root`` holds a finished build made with exactly ``params``."""
    try:
        return json.loads((root / MARKER).read_text()) == params
    except (OSError, ValueError):
        return False


def build_once(root: Path, params: dict, write: Callable[[Path], None], what: str) -> Path:
    """``write(folder)`` into a temporary sibling of ``root``, then rename it to ``root``.

    Skipped if ``root`` already holds a complete build with ``params``. ``what`` names the
    dataset in the one-line error of a failed build. Returns ``root``.
    """
    root = Path(root)
    if is_complete(root, params):
        if not (root / DIGEST).is_file():  # built before builds recorded their digest
            try:
                _write_digest(root)
            except OSError:  # a read-only cache: the digest is a record, not a part of the data
                pass
        return root
    tmp = root.parent / f".{root.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        write(tmp)
        _write_digest(tmp)
        (tmp / MARKER).write_text(json.dumps(params, sort_keys=True) + "\n")
        _install(tmp, root, params)
    except OSError as exc:
        raise SarbError(f"{root}: cannot build the {what} dataset ({exc})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def content_digest(root: Path) -> str:
    """SHA-256 (hex) of a built dataset: ``classes.txt``, the split manifests and every image,
    in split and file-name order, each preceded by its path relative to ``root``."""
    root = Path(root)
    files = [root / "classes.txt", *(root / f"{split}.csv" for split in SPLITS)]
    for split in SPLITS:
        files += sorted((root / "images" / split).iterdir())
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _write_digest(root: Path) -> None:
    part = root / f".{DIGEST}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    part.write_text(content_digest(root) + "\n")
    os.replace(part, root / DIGEST)


def _install(tmp: Path, root: Path, params: dict) -> None:
    """Rename the finished ``tmp`` to ``root``, replacing a stale or partial ``root``."""
    if root.exists() or root.is_symlink():
        if is_complete(root, params):  # another process finished first
            return
        trash = root.parent / f".{root.name}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.replace(root, trash)
        if trash.is_symlink():
            trash.unlink()
        else:
            shutil.rmtree(trash, ignore_errors=True)
    try:
        os.replace(tmp, root)
    except OSError:
        if not is_complete(root, params):  # fine only if a concurrent build got there first
            raise


def check_sizes(
    sizes: dict[str, int] | None, defaults: dict[str, int], what: str
) -> dict[str, int]:
    """``defaults`` with the overrides of ``sizes`` (each a positive integer), or SarbError."""
    out = dict(defaults)
    for split, n in (sizes or {}).items():
        if split not in defaults:
            raise SarbError(f"{what} sizes: unknown split {split!r} (expected one of {SPLITS})")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise SarbError(f"{what} sizes: {split} must be a positive integer, got {n!r}")
        out[split] = n
    return out


def check_build(what: str, seed: object, image_size: object, min_size: int) -> None:
    """One-line SarbErrors for a build seed that is not a non-negative integer and an image
    size that is not an integer >= ``min_size``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SarbError(f"{what} seed must be a non-negative integer, got {seed!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < min_size:
        raise SarbError(f"{what} image_size must be an integer >= {min_size}, got {image_size!r}")


Render = Callable[[str, int], tuple[Image.Image, list[int]]]
"""``render(split, i)``: image ``i`` of ``split`` and its present classes (indices)."""


def write_splits(
    out: Path, class_names: Sequence[str], sizes: dict[str, int], render: Render
) -> dict[str, np.ndarray]:
    """Render every image of every split into ``out/images/<split>/<i>.jpg``, write each split's
    manifest and ``classes.txt``; returns the complete labels (N, C) in {1, -1} per split."""
    labels_by_split: dict[str, np.ndarray] = {}
    for split in SPLITS:
        (out / "images" / split).mkdir(parents=True)
        labels = np.full((sizes[split], len(class_names)), -1, dtype=np.int8)
        images = []
        for i in range(sizes[split]):
            img, present = render(split, i)
            labels[i, present] = 1
            images.append(out / "images" / split / f"{i:05d}.jpg")
            img.save(images[-1], format="JPEG", quality=JPEG_QUALITY)
        data = LabelledImages(images, labels, list(class_names), split)
        write_manifest_csv(out / f"{split}.csv", data)
        labels_by_split[split] = labels
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in class_names))
    return labels_by_split


def read_splits(root: Path, name: str) -> Source:
    """The complete-label splits of a built dataset in ``root`` (its three manifests)."""
    train = read_manifest(root / "train.csv")
    val = read_manifest(root / "val.csv", train.class_names)
    return Source(name, train, val, read_manifest(root / "test.csv", train.class_names))


def split_labels(root: Path, class_names: Sequence[str]) -> dict[str, np.ndarray]:
    """The complete labels (N, C) of each split of a built dataset, without touching images."""
    return {
        s: read_manifest(Path(root) / f"{s}.csv", class_names, check_images=False).labels
        for s in SPLITS
    }


def label_statistics(labels: dict[str, np.ndarray], class_names: Sequence[str]) -> dict:
    """Statistics of complete labels (1 / -1) per split and over all splits together.

    Returns ``num_images`` and ``mean_positives`` per split (plus ``"all"``), and over all
    splits: ``class_frequency`` (fraction of images containing each class), ``cooccurrence``
    (C x C image counts, diagonal = class counts) and ``lift`` (P(i, j) / (P(i) P(j)); > 1
    means the pair appears together more often than chance).
    """
    allpos = np.concatenate([labels[s] for s in SPLITS]) == 1
    n = max(len(allpos), 1)
    co = allpos.T.astype(np.int64) @ allpos.astype(np.int64)
    freq = np.diag(co) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(np.outer(freq, freq) > 0, (co / n) / np.outer(freq, freq), 0.0)
    mean_pos = {
        s: float((labels[s] == 1).sum(axis=1).mean()) if len(labels[s]) else 0.0 for s in SPLITS
    }
    mean_pos["all"] = float(allpos.sum(axis=1).mean()) if len(allpos) else 0.0
    return {
        "classes": list(class_names),
        "num_images": {**{s: len(labels[s]) for s in SPLITS}, "all": len(allpos)},
        "mean_positives": mean_pos,
        "class_frequency": {name: float(f) for name, f in zip(class_names, freq, strict=True)},
        "cooccurrence": co.tolist(),
        "lift": lift.round(4).tolist(),
    }


def pairs_by_lift(stats: dict) -> list[tuple[float, str, str, int]]:
    """(lift, class a, class b, images) of every class pair, strongest association first."""
    names, lift, co = stats["classes"], stats["lift"], stats["cooccurrence"]
    pairs = [
        (lift[i][j], names[i], names[j], co[i][j])
        for i in range(len(names))
        for j in range(i + 1, len(names))
    ]
    return sorted(pairs, key=lambda p: (-p[0], p[1], p[2]))


# ---------------------------------------------------------------------------- drawing


class Grid:
    """Pixel coordinate grids (size, size) in [0, 1] of one image size, computed once."""

    def __init__(self, size: int):
        self.size = size
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
        self.xs, self.ys = xs, ys


def background(rng: np.random.Generator, grid: Grid, saturation: float = 1.0) -> np.ndarray:
    """A gradient / radial / striped / blotchy (size, size, 3) uint8 background with colour and
    pixel noise; ``saturation`` < 1 pulls its two colours towards grey."""
    size = grid.size
    c1 = rng.integers(0, 256, size=3).astype(np.float32)
    c2 = np.clip(c1 + rng.normal(0, 90, size=3), 0, 255).astype(np.float32)
    if saturation < 1.0:
        c1 = c1.mean() + saturation * (c1 - c1.mean())
        c2 = c2.mean() + saturation * (c2 - c2.mean())
    kind = rng.integers(4)
    if kind == 0:  # linear gradient
        a = rng.uniform(0, 2 * np.pi)
        t = grid.xs * np.cos(a) + grid.ys * np.sin(a)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    elif kind == 1:  # radial gradient
        cx, cy = rng.uniform(0, 1, size=2)
        t = np.sqrt((grid.xs - cx) ** 2 + (grid.ys - cy) ** 2)
        t = t / max(float(t.max()), 1e-6)
    elif kind == 2:  # soft stripes
        a = rng.uniform(0, np.pi)
        freq = rng.uniform(6, 30)
        t = 0.5 + 0.5 * np.sin(
            freq * (grid.xs * np.cos(a) + grid.ys * np.sin(a)) + rng.uniform(0, 2 * np.pi)
        )
        t = t * rng.uniform(0.3, 1.0)
    else:  # blotches: low-frequency noise
        cells = int(rng.integers(3, 8))
        low = (rng.random((cells, cells)) * 255).astype(np.uint8)
        t = np.asarray(Image.fromarray(low).resize((size, size), Image.BICUBIC), np.float32) / 255
    bg = c1 + t[..., None] * (c2 - c1)
    # Low-frequency colour noise plus fine pixel noise.
    cells = int(rng.integers(2, 6))
    low = rng.integers(0, 256, size=(cells, cells, 3), dtype=np.uint8)
    low = np.asarray(Image.fromarray(low).resize((size, size), Image.BILINEAR), np.float32)
    bg += (low - 127.5) * rng.uniform(0.0, 0.25) * saturation
    bg += rng.normal(0.0, rng.uniform(2.0, 14.0), size=bg.shape).astype(np.float32)
    return np.clip(bg, 0, 255).astype(np.uint8)


def place(
    rng: np.random.Generator,
    w: int,
    h: int,
    size: int,
    boxes: list[tuple[int, int, int, int]],
    max_overlap: float,
) -> tuple[int, int] | None:
    """A top-left corner for a w x h box covering at most ``max_overlap`` of the smaller of
    itself and each earlier box, or None after 40 tries."""
    for _ in range(40):
        x = int(rng.integers(0, max(1, size - w + 1)))
        y = int(rng.integers(0, max(1, size - h + 1)))
        ok = True
        for bx, by, bw, bh in boxes:
            iw = min(x + w, bx + bw) - max(x, bx)
            ih = min(y + h, by + bh) - max(y, by)
            if iw > 0 and ih > 0 and iw * ih > max_overlap * min(w * h, bw * bh):
                ok = False
                break
        if ok:
            return x, y
    return None


def local_luminance(bg: np.ndarray, x: int, y: int, w: int, h: int) -> float:
    """Mean luminance (0-255) of a box of the background; mid-grey if the box is empty."""
    patch = bg[y : y + h, x : x + w]
    return float(patch.reshape(-1, 3).mean(axis=0) @ LUMA) if patch.size else 127.5
