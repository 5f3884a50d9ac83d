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

import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from sarb.data import synthetic
from sarb.data.sources import DATASETS, Source, cache_root
from sarb.data.synthetic import (
    JPEG_QUALITY,
    SPLIT_CODES,
    SPLITS,
    Grid,
    background,
    label_statistics,
    local_luminance,
    pairs_by_lift,
    place,
)

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

DEFAULT_SIZES: dict[str, int] = {"train": 3000, "val": 500, "test": 1000}

# Disjoint shares of the source digits (per class) used by each split.
_POOL_FRACTIONS = {"train": 0.6, "val": 0.15, "test": 0.25}

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

_MAX_OVERLAP = 0.3  # largest fraction of a smaller digit box another digit box may cover


def demo_root(cache_dir: str | Path | None = None) -> Path:
    """Where the demo dataset lives: ``cache_dir``, else ``$SARB_CACHE_DIR``, else the user
    cache directory, then ``demo-<version>`` (a new version never reuses an old cache)."""
    return cache_root(cache_dir) / f"demo-{DEMO_VERSION}"


def ensure_demo(cache_dir: str | Path | None = None) -> Path:
    """The demo dataset's root, building it first (with a note on stderr) if it is missing."""
    root = demo_root(cache_dir)
    if not synthetic.is_complete(root, _build_params(0, DEFAULT_SIZES, 96)):
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
    sizes = synthetic.check_sizes(sizes, DEFAULT_SIZES, "demo")
    synthetic.check_build("demo", seed, image_size, 32)
    params = _build_params(seed, sizes, image_size)
    return synthetic.build_once(
        Path(root), params, lambda out: _write_dataset(out, seed, sizes, image_size), "demo"
    )


def demo_statistics(root: Path) -> dict:
    """Label statistics of a built demo dataset, read from its manifests.

    Returns ``num_images`` and ``mean_positives`` per split (plus ``"all"``), and over all
    splits together: ``class_frequency`` (fraction of images containing each class),
    ``cooccurrence`` (C x C image counts, diagonal = class counts) and ``lift``
    (P(i, j) / (P(i) P(j)); > 1 means the pair appears together more than chance).
    """
    return label_statistics(synthetic.split_labels(root, DEMO_CLASSES), DEMO_CLASSES)


# ---------------------------------------------------------------------------- build helpers


def _build_params(seed: int, sizes: dict[str, int], image_size: int) -> dict:
    return {"version": DEMO_VERSION, "seed": int(seed), "sizes": sizes, "image_size": image_size}


def _write_dataset(out: Path, seed: int, sizes: dict[str, int], image_size: int) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 0..16 -> 0..255 intensity, one 8x8 image per source digit.
    images = np.clip(digits.images * 16.0, 0, 255).astype(np.uint8)
    targets = digits.target.astype(np.int64)
    pools = _split_pools(targets, seed)
    grid = _Grid(image_size)

    def render(split: str, i: int) -> tuple[Image.Image, list[int]]:
        rng = np.random.default_rng([seed, SPLIT_CODES[split], i])
        return _render_scene(rng, images, pools[split], grid)

    labels_by_split = synthetic.write_splits(out, DEMO_CLASSES, sizes, render)
    readme = _readme(seed, sizes, image_size, label_statistics(labels_by_split, DEMO_CLASSES))
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


class _Grid(Grid):
    """Pixel coordinate grids and digit size ranges for one image size (computed once)."""

    def __init__(self, size: int):
        super().__init__(size)
        scale = size / 96.0
        self.min_digit = max(8, round(18 * scale))
        # Largest digit side for scenes of 1..5 digits, so that crowded scenes still fit.
        self.max_digit = [max(self.min_digit + 1, round(s * scale)) for s in (44, 44, 40, 34, 30)]
        # Digit fragments stay clearly smaller than the smallest digit.
        self.fragment = (max(4, round(7 * scale)), max(5, round(14 * scale)))


# Contrast stretch of an upscaled mask: thins the blurry bilinear strokes so they read as strokes.
_SHARPEN = [min(255, max(0, int((v - 80) * 2.5))) for v in range(256)]


def _random_colour(rng: np.random.Generator, away_from: float, min_diff: float) -> tuple:
    """A random RGB colour whose luminance differs from ``away_from`` by >= ``min_diff``."""
    cand = rng.integers(0, 256, size=(24, 3))
    lum = cand @ synthetic.LUMA
    ok = np.flatnonzero(np.abs(lum - away_from) >= min_diff)
    if len(ok):
        return tuple(int(v) for v in cand[ok[0]])
    v = 0 if away_from > 127 else 255
    return (v, v, v)


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
        colour = _random_colour(rng, local_luminance(bg, x - 6, y - 6, 12, 12), 50)
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

    bg = background(rng, grid)
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
            xy = place(rng, w, h, size, boxes, _MAX_OVERLAP)
            if xy is not None or side <= grid.min_digit:
                break
            side = max(grid.min_digit, int(side * 0.85))
        if xy is None:  # no room left (never for the first digit): drop it and its label
            continue
        x, y = xy
        colour = _random_colour(rng, local_luminance(bg, x, y, w, h), 80)
        canvas.paste(colour, (x, y), mask)
        boxes.append((x, y, w, h))
        present.append(c)

    _draw_clutter(rng, canvas, bg, images, pool, grid, int(rng.integers(0, 3)), thin_only=True)
    return canvas, sorted(set(present))


# ------------------------------------------------------------------------------- statistics


def _readme(seed: int, sizes: dict[str, int], image_size: int, stats: dict) -> str:
    lines = [
        f"sarb demo dataset, generator version {DEMO_VERSION}, seed {seed}",
        "",
        "Built offline by sarb.data.demo from the 1,797 handwritten 8x8 digits bundled with",
        "scikit-learn (sklearn.datasets.load_digits), split per class into disjoint source pools",
        "("
        + " / ".join(f"{s} {_POOL_FRACTIONS[s]:.0%}" for s in SPLITS)
        + "), so test scenes use digits never seen in training.",
        f"Each scene is a {image_size}x{image_size} RGB JPEG (quality {JPEG_QUALITY}):",
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
    pairs = pairs_by_lift(stats)
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
    return synthetic.read_splits(ensure_demo(cfg.cache_dir), "demo")
