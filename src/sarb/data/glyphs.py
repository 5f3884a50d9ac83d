"""``glyphs``: the embedded benchmark in the paper's regime, built offline from fonts pip installs.

The digits demo is dense (2.6 of 10 labels per image) and easy; MS-COCO has 2.9 of 80. This set
is built to look like the latter to a partial-label method:

- 48 classes, each a symbol in a colour ("red star", "blue anchor", ...: 16 symbols of the
  DejaVu fonts that ship with matplotlib x red / green / blue). Telling "red star" from "blue
  star" next to a red anchor needs the colour bound to the shape, as "person riding a horse"
  needs more than two detectors.
- Sparse labels: about 3 objects per image, so about 6% of the labels are positive.
- Long-tailed class frequencies (a Zipf prior over a fixed random order of the classes) and
  co-occurrence from latent scene types, each favouring 8 classes.
- Clutter that is not a label: the same symbols in other colours (grey, yellow, purple), other
  symbols in the class colours, strokes and blobs, on textured, muted backgrounds.

The class list, frequencies and scene types are part of the definition (``GLYPHS_VERSION``);
the build is seeded and deterministic and writes a ``demo``-style manifest layout.
"""

from __future__ import annotations

import colorsys
import sys
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sarb.data import synthetic
from sarb.data.sources import DATASETS, Source, cache_root
from sarb.data.synthetic import JPEG_QUALITY, SPLIT_CODES, SPLITS, Grid

GLYPHS_VERSION = "v1"
DEFAULT_SIZES: dict[str, int] = {"train": 6000, "val": 1000, "test": 3000}
DEFAULT_IMAGE_SIZE = 160

SYMBOLS: dict[str, str] = {
    "star": "\u2605",
    "heart": "\u2665",
    "moon": "\u263e",
    "sun": "\u2600",
    "arrow": "\u279c",
    "note": "\u266a",
    "anchor": "\u2693",
    "umbrella": "\u2602",
    "snowflake": "\u2744",
    "flower": "\u273f",
    "crown": "\u265b",
    "plane": "\u2708",
    "knight": "\u265e",
    "skull": "\u2620",
    "cup": "\u2615",
    "gear": "\u2699",
}
COLOURS: dict[str, float] = {"red": 0.0, "green": 0.33, "blue": 0.62}  # hue in [0, 1)
CLASSES: list[str] = [f"{colour} {symbol}" for symbol in SYMBOLS for colour in COLOURS]

# Clutter: symbols that are never a class, and colours that are never a class colour.
_OTHER_SYMBOLS = "\u2663\u2660\u2666\u2691\u26a1\u2709\u2601\u271a\u260e\u2702\u262f\u265c"
_OTHER_HUES = (0.15, 0.80)  # yellow, purple (plus greys)
_FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf")


def _definition() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The dataset's label model: class prior (C,), scene prior (S,), per-scene class weights
    (S, C). Fixed by ``GLYPHS_VERSION``, not by the build seed."""
    rng = np.random.default_rng(20221)
    c = len(CLASSES)
    rank = rng.permutation(c)
    prior = 1.0 / (rank + 1.0) ** 0.9  # Zipf-like: the most frequent class ~30x the rarest
    scenes = 8
    weights = np.ones((scenes, c))
    for s in range(scenes):
        weights[s, rng.choice(c, size=8, replace=False)] = 12.0
    scene_class = prior[None, :] * weights
    return prior, np.full(scenes, 1.0 / scenes), scene_class / scene_class.sum(1, keepdims=True)


_CLASS_PRIOR, _SCENE_PRIOR, _SCENE_CLASS_P = _definition()
_NUM_OBJECTS_P = np.array([0.12, 0.25, 0.27, 0.18, 0.11, 0.07])  # 1..6 objects, mean ~3
_MAX_OVERLAP = 0.25
_SIDE = (35, 64)  # symbol height range in pixels at 128 px (x 1.25 at 160); smaller when crowded


def glyphs_root(cache_dir: str | Path | None = None) -> Path:
    """Where the benchmark lives: ``cache_dir``, else ``$SARB_CACHE_DIR``, else the user cache
    directory, then ``glyphs-<version>``."""
    return cache_root(cache_dir) / f"glyphs-{GLYPHS_VERSION}"


def ensure_glyphs(cache_dir: str | Path | None = None) -> Path:
    """The benchmark's root, building it first (with a note on stderr) if it is missing."""
    root = glyphs_root(cache_dir)
    if not synthetic.is_complete(root, _params(0, DEFAULT_SIZES, DEFAULT_IMAGE_SIZE)):
        print(f"building the glyphs benchmark in {root} (about a minute) ...", file=sys.stderr)
    return build_glyphs(root)


def build_glyphs(
    root: Path,
    seed: int = 0,
    sizes: dict[str, int] | None = None,
    image_size: int = DEFAULT_IMAGE_SIZE,
) -> Path:
    """Build the benchmark in ``root`` (skipped if a matching complete build is there).

    ``sizes`` overrides the number of images of some splits (default train 6000, val 1000,
    test 3000). Returns ``root``.
    """
    sizes = synthetic.check_sizes(sizes, DEFAULT_SIZES, "glyphs")
    synthetic.check_build("glyphs", seed, image_size, 48)
    params = _params(seed, sizes, image_size)
    return synthetic.build_once(
        Path(root), params, lambda out: _write_dataset(out, seed, sizes, image_size), "glyphs"
    )


def glyphs_statistics(root: Path) -> dict:
    """Label statistics of a built benchmark (see :func:`sarb.data.synthetic.label_statistics`)."""
    return synthetic.label_statistics(synthetic.split_labels(root, CLASSES), CLASSES)


def _params(seed: int, sizes: dict[str, int], image_size: int) -> dict:
    return {"version": GLYPHS_VERSION, "seed": int(seed), "sizes": sizes, "image_size": image_size}


def _write_dataset(out: Path, seed: int, sizes: dict[str, int], image_size: int) -> None:
    grid = Grid(image_size)

    def render(split: str, i: int) -> tuple[Image.Image, list[int]]:
        return _render_scene(np.random.default_rng([seed, 7, SPLIT_CODES[split], i]), grid)

    labels_by_split = synthetic.write_splits(out, CLASSES, sizes, render)
    stats = synthetic.label_statistics(labels_by_split, CLASSES)
    (out / "README.txt").write_text(_readme(seed, sizes, image_size, stats))


@cache
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name), size)


def _symbol_mask(rng: np.random.Generator, char: str, side: int) -> Image.Image:
    """An 'L' mask of one symbol about ``side`` pixels tall, slightly rotated and squeezed."""
    font = _font(_FONTS[int(rng.integers(len(_FONTS)))], side)
    mask = font.getmask(char)
    img = Image.frombytes("L", mask.size, bytes(mask)) if mask.size[0] else Image.new("L", (1, 1))
    w, h = img.size
    img = img.resize((max(4, round(w * rng.uniform(0.8, 1.15))), max(4, h)), Image.BILINEAR)
    img = img.rotate(rng.uniform(-25, 25), resample=Image.BILINEAR, expand=True)
    bbox = img.getbbox()
    return img.crop(bbox) if bbox else img


def _colour(rng: np.random.Generator, hue: float | None) -> tuple[int, int, int]:
    """A saturated colour near ``hue`` (jittered), or a grey when ``hue`` is None."""
    if hue is None:
        v = rng.uniform(0.1, 0.95)
        return (round(255 * v),) * 3
    h = (hue + rng.uniform(-0.03, 0.03)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, rng.uniform(0.65, 1.0), rng.uniform(0.6, 1.0))
    return round(255 * r), round(255 * g), round(255 * b)


def _draw_clutter(rng: np.random.Generator, canvas: Image.Image, grid: Grid, count: int) -> None:
    """Things that are not labels: class symbols in other colours, other symbols in any colour,
    strokes and blobs."""
    size, scale = grid.size, grid.size / 128.0
    draw = ImageDraw.Draw(canvas)
    hues = [*COLOURS.values(), *_OTHER_HUES, None]
    for _ in range(count):
        kind = int(rng.choice(4, p=[0.35, 0.3, 0.2, 0.15]))
        x, y = (int(v) for v in rng.integers(0, size, size=2))
        if kind == 0:  # a class symbol in a colour that is not a class colour
            char = list(SYMBOLS.values())[int(rng.integers(len(SYMBOLS)))]
            hue = [*_OTHER_HUES, None][int(rng.integers(3))]
        elif kind == 1:  # a symbol that is never a class, in any colour
            char = _OTHER_SYMBOLS[int(rng.integers(len(_OTHER_SYMBOLS)))]
            hue = hues[int(rng.integers(len(hues)))]
        if kind <= 1:
            mask = _symbol_mask(rng, char, int(rng.integers(round(16 * scale), round(34 * scale))))
            canvas.paste(_colour(rng, hue), (x - mask.size[0] // 2, y - mask.size[1] // 2), mask)
        elif kind == 2:  # a polyline stroke
            pts = [(x, y)]
            for _ in range(int(rng.integers(1, 4))):
                step, a = rng.uniform(0.08, 0.25) * size, rng.uniform(0, 2 * np.pi)
                pts.append((pts[-1][0] + step * np.cos(a), pts[-1][1] + step * np.sin(a)))
            colour = _colour(rng, hues[int(rng.integers(len(hues)))])
            draw.line(pts, fill=colour, width=int(rng.integers(1, 4)))
        else:  # a blob
            rx, ry = rng.uniform(0.02, 0.07, size=2) * size
            colour = _colour(rng, hues[int(rng.integers(len(hues)))])
            draw.ellipse((x - rx, y - ry, x + rx, y + ry), fill=colour)


def _render_scene(rng: np.random.Generator, grid: Grid) -> tuple[Image.Image, list[int]]:
    """One scene: a muted background, clutter, 1-6 labelled symbols of one latent scene type."""
    size, scale = grid.size, grid.size / 128.0
    scene = int(rng.choice(len(_SCENE_PRIOR), p=_SCENE_PRIOR))
    n = int(rng.choice(len(_NUM_OBJECTS_P), p=_NUM_OBJECTS_P)) + 1
    classes = rng.choice(len(CLASSES), size=n, p=_SCENE_CLASS_P[scene])
    canvas = Image.fromarray(synthetic.background(rng, grid, saturation=0.3))
    _draw_clutter(rng, canvas, grid, int(rng.integers(1, 5)))
    symbols, hues = list(SYMBOLS.values()), list(COLOURS.values())
    lo, hi = round(_SIDE[0] * scale), round((_SIDE[1] - 3 * n) * scale)
    boxes: list[tuple[int, int, int, int]] = []
    present: list[int] = []
    for c in classes.tolist():
        side = int(rng.integers(lo, max(lo, hi) + 1))
        mask = _symbol_mask(rng, symbols[c // len(COLOURS)], side)
        xy = synthetic.place(rng, *mask.size, size, boxes, _MAX_OVERLAP)
        if xy is None:  # no room left (never for the first symbol): drop it and its label
            continue
        canvas.paste(_colour(rng, hues[c % len(COLOURS)]), xy, mask)
        boxes.append((*xy, *mask.size))
        present.append(c)
    return canvas, sorted(set(present))


def _readme(seed: int, sizes: dict[str, int], image_size: int, stats: dict) -> str:
    freq = stats["class_frequency"]
    ranked = sorted(CLASSES, key=lambda name: -freq[name])
    pairs = synthetic.pairs_by_lift(stats)
    lines = [
        f"sarb glyphs benchmark, generator version {GLYPHS_VERSION}, seed {seed}",
        "",
        "Built offline by sarb.data.glyphs from symbols of the DejaVu fonts bundled with",
        f"matplotlib. Each image is a {image_size}x{image_size} RGB JPEG (quality {JPEG_QUALITY})",
        "with 1-6 labelled symbols (a class is a symbol in a colour) among clutter that is not",
        "a label. Labels are complete (1 present, -1 absent).",
        "",
        "Layout: images/{split}/{index:05d}.jpg; train.csv, val.csv, test.csv with header",
        "image,<48 classes>; classes.txt; COMPLETE marks a finished build.",
        "",
        "  images: " + ", ".join(f"{s} {stats['num_images'][s]}" for s in SPLITS),
        "  mean positive labels per image: "
        + ", ".join(f"{s} {stats['mean_positives'][s]:.2f}" for s in (*SPLITS, "all")),
        f"  label density: {stats['mean_positives']['all'] / len(CLASSES):.1%}",
        "  class frequency (fraction of images), most to least frequent:",
        *(f"    {name:16s} {freq[name]:.4f}" for name in ranked),
        "  co-occurrence lift P(a,b)/(P(a)P(b)), strongest pairs:",
        *(f"    {a} + {b}: {lift:.2f} ({n} images)" for lift, a, b, n in pairs[:8]),
    ]
    return "\n".join(lines) + "\n"


@DATASETS.register("glyphs")
def glyphs_source(cfg: Any) -> Source:
    """The embedded glyphs benchmark (built on first use in the cache folder)."""
    return synthetic.read_splits(ensure_glyphs(cfg.cache_dir), "glyphs")
