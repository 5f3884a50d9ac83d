"""The embedded demo dataset: cluttered multi-digit scenes built offline from scikit-learn digits.

The 1,797 handwritten 8x8 digits bundled with scikit-learn (no download) are split per class
into disjoint train/val/test pools, then composited into small RGB scenes: several coloured,
upscaled digits on gradient/noise backgrounds, among strokes, blobs and unrecognisable digit
fragments. Each scene is drawn from one of a few latent scene types with its own class
preferences, so class frequencies and co-occurrences are non-uniform, as in real multi-label
datasets (which is what label-correlation methods exploit). The build is seeded and
byte-for-byte deterministic; it is written into a temporary sibling folder, marked ``COMPLETE``
and renamed into place, so an interrupted build never looks finished.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from sarb.data.manifest import read_manifest
from sarb.data.sources import DATASETS, Source, cache_root
from sarb.errors import SarbError

DEMO_VERSION = "v1"
DEMO_CLASSES: list[str] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
]

SPLITS = ("train", "val", "test")
DEFAULT_SIZES: dict[str, int] = {"train": 3000, "val": 500, "test": 1000}
MARKER = "COMPLETE"

# Disjoint shares of the source digits (per class) used by each split.
_POOL_FRACTIONS = {"train": 0.6, "val": 0.15, "test": 0.25}
_SPLIT_CODES = {"train": 1, "val": 2, "test": 3}

# Latent scene types: (name, prior probability, per-class preference weights).
# Part of the dataset definition: changing them requires bumping DEMO_VERSION.
#                   zero one  two  three four five six  seven eight nine
_SCENE_TYPES: list[tuple[str, float, list[float]]] = [
    ("counting", 0.30, [3.0, 6.0, 4.0, 1.5, 0.1, 0.2, 0.2, 0.1, 0.1, 0.2]),
    ("loops", 0.22, [0.1, 1.2, 0.2, 3.0, 0.1, 3.0, 1.5, 0.1, 4.0, 0.3]),
    ("angles", 0.20, [0.1, 4.0, 0.1, 0.1, 4.0, 0.3, 0.1, 1.4, 0.2, 3.5]),
    ("curves", 0.16, [2.5, 1.5, 2.0, 0.2, 0.1, 0.5, 4.0, 0.1, 0.6, 2.5]),
    ("mixed", 0.12, [1.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.6, 1.0, 1.0]),
]
_SCENE_PRIOR = np.array([p for _, p, _ in _SCENE_TYPES])
_SCENE_CLASS_P = np.array([w for _, _, w in _SCENE_TYPES])
_SCENE_CLASS_P = _SCENE_CLASS_P / _SCENE_CLASS_P.sum(axis=1, keepdims=True)
# Number of digits per scene, 1..5.
_NUM_OBJECTS_P = np.array([0.04, 0.14, 0.30, 0.30, 0.22])

_JPEG_QUALITY = 90
_MAX_OVERLAP = 0.3  # largest fraction of a smaller digit box another digit box may cover


def demo_root(cache_dir: str | Path | None = None) -> Path:
    """Where the demo dataset lives: ``cache_dir``, else ``$SARB_CACHE_DIR``, else the user
    cache directory, then ``demo-<version>`` (a new version never reuses an old cache)."""
    return cache_root(cache_dir) / f"demo-{DEMO_VERSION}"


def ensure_demo(cache_dir: str | Path | None = None) -> Path:
    """The demo dataset's root, building it first (with a note on stderr) if it is missing."""
    root = demo_root(cache_dir)
    if not _is_complete(root, _build_params(0, DEFAULT_SIZES, 96)):
        print(f"building the demo dataset in {root} ...", file=sys.stderr, flush=True)
    return build_demo(root)


def build_demo(
    root: Path,
    seed: int = 0,
    sizes: dict[str, int] | None = None,
    image_size: int = 96,
) -> Path:
    """Build the demo dataset in ``root`` (skipped if a matching complete build is there).

    ``sizes`` overrides the number of images of some splits (default train 3000, val 500,
    test 1000). The build goes to a temporary sibling folder that is renamed to ``root``
    only once every file and the ``COMPLETE`` marker are written. Returns ``root``.
    """
    root = Path(root)
    sizes = _resolve_sizes(sizes)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SarbError(f"demo seed must be a non-negative integer, got {seed!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
        raise SarbError(f"demo image_size must be an integer >= 32, got {image_size!r}")
    params = _build_params(seed, sizes, image_size)
    if _is_complete(root, params):
        return root
    tmp = root.parent / f".{root.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        _write_dataset(tmp, seed, sizes, image_size)
        (tmp / MARKER).write_text(json.dumps(params, sort_keys=True) + "\n")
        _install(tmp, root, params)
    except OSError as exc:
        raise SarbError(f"{root}: cannot build the demo dataset ({exc})") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def demo_statistics(root: Path) -> dict:
    """Label statistics of a built demo dataset, read from its manifests.

    Returns ``num_images`` and ``mean_positives`` per split (plus ``"all"``), and over all
    splits together: ``class_frequency`` (fraction of images containing each class),
    ``cooccurrence`` (C x C image counts, diagonal = class counts) and ``lift``
    (P(i, j) / (P(i) P(j)); > 1 means the pair appears together more than chance).
    """
    root = Path(root)
    labels = {split: _read_manifest(root / f"{split}.csv") for split in SPLITS}
    return _statistics(labels)


# ---------------------------------------------------------------------------- build helpers


def _resolve_sizes(sizes: dict[str, int] | None) -> dict[str, int]:
    out = dict(DEFAULT_SIZES)
    for split, n in (sizes or {}).items():
        if split not in DEFAULT_SIZES:
            raise SarbError(f"demo sizes: unknown split {split!r} (expected one of {SPLITS})")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise SarbError(f"demo sizes: {split} must be a positive integer, got {n!r}")
        out[split] = n
    return out


def _build_params(seed: int, sizes: dict[str, int], image_size: int) -> dict:
    return {"version": DEMO_VERSION, "seed": int(seed), "sizes": sizes, "image_size": image_size}


def _is_complete(root: Path, params: dict) -> bool:
    """True if ``root`` holds a finished build made with exactly ``params``."""
    try:
        return json.loads((root / MARKER).read_text()) == params
    except (OSError, ValueError):
        return False


def _install(tmp: Path, root: Path, params: dict) -> None:
    """Rename the finished ``tmp`` to ``root``, replacing a stale or partial ``root``."""
    if root.exists() or root.is_symlink():
        if _is_complete(root, params):  # another process finished first
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
        if not _is_complete(root, params):  # fine only if a concurrent build got there first
            raise


def _write_dataset(out: Path, seed: int, sizes: dict[str, int], image_size: int) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 0..16 -> 0..255 intensity, one 8x8 image per source digit.
    images = np.clip(digits.images * 16.0, 0, 255).astype(np.uint8)
    targets = digits.target.astype(np.int64)
    pools = _split_pools(targets, seed)
    grid = _Grid(image_size)

    labels_by_split: dict[str, np.ndarray] = {}
    for split in SPLITS:
        folder = out / "images" / split
        folder.mkdir(parents=True)
        pool = pools[split]
        labels = np.full((sizes[split], len(DEMO_CLASSES)), -1, dtype=np.int8)
        rows = []
        for i in range(sizes[split]):
            rng = np.random.default_rng([seed, _SPLIT_CODES[split], i])
            img, present = _render_scene(rng, images, pool, grid)
            labels[i, present] = 1
            rel = f"images/{split}/{i:05d}.jpg"
            img.save(out / rel, format="JPEG", quality=_JPEG_QUALITY)
            rows.append([rel, *labels[i].tolist()])
        with open(out / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(["image", *DEMO_CLASSES])
            writer.writerows(rows)
        labels_by_split[split] = labels

    (out / "classes.txt").write_text("".join(f"{name}\n" for name in DEMO_CLASSES))
    readme = _readme(seed, sizes, image_size, _statistics(labels_by_split))
    (out / "README.txt").write_text(readme)


def _split_pools(targets: np.ndarray, seed: int) -> dict[str, list[np.ndarray]]:
    """Per split, per class: indices of the source digits that split may use (disjoint)."""
    rng = np.random.default_rng([seed, 0])
    pools: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    for c in range(len(DEMO_CLASSES)):
        idx = rng.permutation(np.flatnonzero(targets == c))
        n_train = round(len(idx) * _POOL_FRACTIONS["train"])
        n_val = round(len(idx) * _POOL_FRACTIONS["val"])
        pools["train"].append(idx[:n_train])
        pools["val"].append(idx[n_train : n_train + n_val])
        pools["test"].append(idx[n_train + n_val :])
    return pools


# -------------------------------------------------------------------------- scene rendering


class _Grid:
    """Pixel coordinate grids and size ranges for one image size (computed once)."""

    def __init__(self, size: int):
        self.size = size
        scale = size / 96.0
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
        self.xs, self.ys = xs, ys
        self.min_digit = max(8, round(18 * scale))
        # Largest digit side for scenes of 1..5 digits, so that crowded scenes still fit.
        self.max_digit = [max(self.min_digit + 1, round(s * scale)) for s in (44, 44, 40, 34, 30)]
        # Digit fragments stay clearly smaller than the smallest digit.
        self.fragment = (max(4, round(7 * scale)), max(5, round(14 * scale)))


_LUMA = np.array([0.299, 0.587, 0.114])
# Contrast stretch of an upscaled mask: thins the blurry bilinear strokes so they read as strokes.
_SHARPEN = [min(255, max(0, int((v - 80) * 2.5))) for v in range(256)]


def _random_colour(rng: np.random.Generator, away_from: float, min_diff: float) -> tuple:
    """A random RGB colour whose luminance differs from ``away_from`` by >= ``min_diff``."""
    cand = rng.integers(0, 256, size=(24, 3))
    lum = cand @ _LUMA
    ok = np.flatnonzero(np.abs(lum - away_from) >= min_diff)
    if len(ok):
        return tuple(int(v) for v in cand[ok[0]])
    v = 0 if away_from > 127 else 255
    return (v, v, v)


def _background(rng: np.random.Generator, grid: _Grid) -> np.ndarray:
    """A gradient / radial / striped / blotchy background with colour and pixel noise."""
    size = grid.size
    c1 = rng.integers(0, 256, size=3).astype(np.float32)
    c2 = np.clip(c1 + rng.normal(0, 90, size=3), 0, 255).astype(np.float32)
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
    bg += (low - 127.5) * rng.uniform(0.0, 0.25)
    bg += rng.normal(0.0, rng.uniform(2.0, 14.0), size=bg.shape).astype(np.float32)
    return np.clip(bg, 0, 255).astype(np.uint8)


def _digit_mask(rng: np.random.Generator, digit: np.ndarray, side: int) -> Image.Image:
    """An 'L' alpha mask of one 8x8 digit, bilinearly upscaled, squeezed and slightly rotated."""
    # A zero border lets the strokes fade out instead of being cut at the 8x8 frame.
    padded = np.pad(digit, 1)
    h = round(side * 10 / 8)
    w = max(4, round(h * rng.uniform(0.7, 1.0)))
    mask = Image.fromarray(padded).resize((w, h), Image.BILINEAR)
    mask = mask.rotate(rng.uniform(-18, 18), resample=Image.BILINEAR, expand=True)
    mask = mask.point(_SHARPEN)
    bbox = mask.getbbox()
    return mask.crop(bbox) if bbox else mask


def _place(
    rng: np.random.Generator, w: int, h: int, size: int, boxes: list[tuple[int, int, int, int]]
) -> tuple[int, int] | None:
    """A top-left corner for a w x h box overlapping no earlier box by > _MAX_OVERLAP."""
    for _ in range(40):
        x = int(rng.integers(0, max(1, size - w + 1)))
        y = int(rng.integers(0, max(1, size - h + 1)))
        ok = True
        for bx, by, bw, bh in boxes:
            iw = min(x + w, bx + bw) - max(x, bx)
            ih = min(y + h, by + bh) - max(y, by)
            if iw > 0 and ih > 0 and iw * ih > _MAX_OVERLAP * min(w * h, bw * bh):
                ok = False
                break
        if ok:
            return x, y
    return None


def _local_luminance(bg: np.ndarray, x: int, y: int, w: int, h: int) -> float:
    patch = bg[y : y + h, x : x + w]
    return float(patch.reshape(-1, 3).mean(axis=0) @ _LUMA) if patch.size else 127.5


def _draw_clutter(
    rng: np.random.Generator,
    canvas: Image.Image,
    bg: np.ndarray,
    images: np.ndarray,
    pool: list[np.ndarray],
    grid: _Grid,
    count: int,
    thin_only: bool = False,
) -> None:
    """Distractors that are not digits: strokes, arcs, blobs, and small cropped digit pieces."""
    size = grid.size
    draw = ImageDraw.Draw(canvas)
    for _ in range(count):
        kind = 0 if thin_only else int(rng.choice(4, p=[0.3, 0.25, 0.2, 0.25]))
        x, y = (int(v) for v in rng.integers(0, size, size=2))
        colour = _random_colour(rng, _local_luminance(bg, x - 6, y - 6, 12, 12), 50)
        if kind == 0:  # random polyline stroke
            pts = [(x, y)]
            for _ in range(int(rng.integers(1, 4))):
                step = rng.uniform(0.08, 0.25) * size
                a = rng.uniform(0, 2 * np.pi)
                pts.append((pts[-1][0] + step * np.cos(a), pts[-1][1] + step * np.sin(a)))
            draw.line(pts, fill=colour, width=1 if thin_only else int(rng.integers(1, 4)))
        elif kind == 1:  # arc piece
            r = rng.uniform(0.05, 0.18) * size
            start = rng.uniform(0, 360)
            draw.arc(
                (x - r, y - r, x + r, y + r),
                start,
                start + rng.uniform(40, 200),
                fill=colour,
                width=int(rng.integers(1, 4)),
            )
        elif kind == 2:  # blob
            rx, ry = rng.uniform(0.02, 0.08, size=2) * size
            draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=colour)
        else:  # a corner piece of a digit: too little of it to tell which digit
            c = int(rng.integers(len(pool)))
            src = images[int(rng.choice(pool[c]))]
            k = int(rng.integers(3, 5))
            r0 = 0 if rng.random() < 0.5 else 8 - k
            c0 = 0 if rng.random() < 0.5 else 8 - k
            piece = src[r0 : r0 + k, c0 : c0 + k]
            if int(piece.max()) < 64:  # an empty corner: take the centre-edge instead
                piece = src[2 : 2 + k, 0:k]
            side = int(rng.integers(grid.fragment[0], grid.fragment[1] + 1))
            mask = Image.fromarray(piece).resize((side, side), Image.BILINEAR)
            mask = mask.point(_SHARPEN)
            canvas.paste(colour, (x - side // 2, y - side // 2), mask)


def _render_scene(
    rng: np.random.Generator, images: np.ndarray, pool: list[np.ndarray], grid: _Grid
) -> tuple[Image.Image, list[int]]:
    """One scene: background, clutter, 1-5 digits from a latent scene type, light overdraw."""
    size = grid.size
    scene = int(rng.choice(len(_SCENE_PRIOR), p=_SCENE_PRIOR))
    n = int(rng.choice(len(_NUM_OBJECTS_P), p=_NUM_OBJECTS_P)) + 1
    classes = rng.choice(len(DEMO_CLASSES), size=n, p=_SCENE_CLASS_P[scene])

    bg = _background(rng, grid)
    canvas = Image.fromarray(bg)
    _draw_clutter(rng, canvas, bg, images, pool, grid, int(rng.integers(2, 7)))

    boxes: list[tuple[int, int, int, int]] = []
    present: list[int] = []
    for c in classes.tolist():
        src = images[int(rng.choice(pool[c]))]
        side = int(rng.integers(grid.min_digit, grid.max_digit[n - 1] + 1))
        while True:
            mask = _digit_mask(rng, src, side)
            w, h = mask.size
            xy = _place(rng, w, h, size, boxes)
            if xy is not None or side <= grid.min_digit:
                break
            side = max(grid.min_digit, int(side * 0.85))
        if xy is None:  # no room left (never for the first digit): drop it and its label
            continue
        x, y = xy
        colour = _random_colour(rng, _local_luminance(bg, x, y, w, h), 80)
        canvas.paste(colour, (x, y), mask)
        boxes.append((x, y, w, h))
        present.append(c)

    _draw_clutter(rng, canvas, bg, images, pool, grid, int(rng.integers(0, 3)), thin_only=True)
    return canvas, sorted(set(present))


# ------------------------------------------------------------------------------- statistics


def _read_manifest(path: Path) -> np.ndarray:
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError as exc:
        raise SarbError(f"{path}: cannot read demo manifest ({exc})") from None
    if not rows or rows[0] != ["image", *DEMO_CLASSES]:
        raise SarbError(f"{path}:1: not a demo manifest (unexpected header)")
    try:
        return np.array([[int(v) for v in row[1:]] for row in rows[1:]], dtype=np.int8).reshape(
            -1, len(DEMO_CLASSES)
        )
    except ValueError as exc:
        raise SarbError(f"{path}: malformed demo manifest ({exc})") from None


def _statistics(labels: dict[str, np.ndarray]) -> dict:
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
        "classes": list(DEMO_CLASSES),
        "num_images": {**{s: len(labels[s]) for s in SPLITS}, "all": len(allpos)},
        "mean_positives": mean_pos,
        "class_frequency": {name: float(f) for name, f in zip(DEMO_CLASSES, freq, strict=True)},
        "cooccurrence": co.tolist(),
        "lift": lift.round(4).tolist(),
    }


def _pairs_by_lift(stats: dict) -> list[tuple[float, str, str, int]]:
    names, lift, co = stats["classes"], stats["lift"], stats["cooccurrence"]
    pairs = [
        (lift[i][j], names[i], names[j], co[i][j])
        for i in range(len(names))
        for j in range(i + 1, len(names))
    ]
    return sorted(pairs, key=lambda p: (-p[0], p[1], p[2]))


def _readme(seed: int, sizes: dict[str, int], image_size: int, stats: dict) -> str:
    lines = [
        f"sarb demo dataset, generator version {DEMO_VERSION}, seed {seed}",
        "",
        "Built offline by sarb.data.demo from the 1,797 handwritten 8x8 digits bundled with",
        "scikit-learn (sklearn.datasets.load_digits), split per class into disjoint source pools",
        "("
        + " / ".join(f"{s} {_POOL_FRACTIONS[s]:.0%}" for s in SPLITS)
        + "), so test scenes use digits never seen in training.",
        f"Each scene is a {image_size}x{image_size} RGB JPEG (quality {_JPEG_QUALITY}):",
        "1-5 coloured digits (bilinearly upscaled, squeezed, rotated up to 18 degrees, partial",
        "overlap only) on gradient / radial / striped / blotchy backgrounds with colour and pixel",
        "noise, among distractors that are not digits (strokes, arcs, blobs, small corner pieces",
        "of digits). Each scene draws its digits from one latent scene type (below), so classes",
        "co-occur non-uniformly:",
    ]
    for name, prior, weights in _SCENE_TYPES:
        top = sorted(range(len(weights)), key=lambda c: -weights[c])[:3]
        lines.append(
            f"  {name:9s} p={prior:.2f}  prefers {', '.join(DEMO_CLASSES[c] for c in top)}"
        )
    lines += [
        "",
        "Layout: images/{split}/{index:05d}.jpg; train.csv, val.csv, test.csv with header",
        "image," + ",".join(DEMO_CLASSES) + " and complete labels (1 present, -1 absent);",
        "classes.txt; COMPLETE marks a finished build.",
        "",
        "Statistics (all splits together unless noted):",
        "  images: " + ", ".join(f"{s} {stats['num_images'][s]}" for s in SPLITS),
        "  mean positive labels per image: "
        + ", ".join(f"{s} {stats['mean_positives'][s]:.2f}" for s in (*SPLITS, "all")),
        "  class frequency (fraction of images):",
    ]
    for name in DEMO_CLASSES:
        lines.append(f"    {name:6s} {stats['class_frequency'][name]:.3f}")
    pairs = _pairs_by_lift(stats)
    lines.append("  co-occurrence lift P(a,b)/(P(a)P(b)), strongest pairs:")
    lines += [f"    {a}+{b}: {lift:.2f} ({n} images)" for lift, a, b, n in pairs[:5]]
    lines.append("  weakest pairs:")
    lines += [f"    {a}+{b}: {lift:.2f} ({n} images)" for lift, a, b, n in pairs[-5:]]
    lines.append("  co-occurrence counts (rows/columns in class order, diagonal = class counts):")
    lines += ["    " + " ".join(f"{v:5d}" for v in row) for row in stats["cooccurrence"]]
    return "\n".join(lines) + "\n"


@DATASETS.register("demo")
def demo_source(cfg: Any) -> Source:
    """The embedded demo dataset (built on first use in the cache folder)."""
    root = ensure_demo(cfg.cache_dir)
    train = read_manifest(root / "train.csv")
    val = read_manifest(root / "val.csv", train.class_names)
    return Source("demo", train, val, read_manifest(root / "test.csv", train.class_names))
