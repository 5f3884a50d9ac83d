"""Shared fixtures: tiny generated image datasets written as manifests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLASSES = ["red", "green", "blue"]


def write_tiny_dataset(root: Path, n: int, seed: int, name: str) -> Path:
    """``n`` 32x32 images with coloured squares, one per present class; a CSV manifest."""
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = ["image," + ",".join(CLASSES)]
    for i in range(n):
        labels = np.where(rng.random(len(CLASSES)) < 0.5, 1, -1)
        img = np.full((32, 32, 3), 40, np.uint8) + rng.integers(0, 30, (32, 32, 3), dtype=np.uint8)
        for c in np.flatnonzero(labels == 1):
            y, x = rng.integers(0, 20, 2)
            img[y : y + 12, x : x + 12, c] = 230
        rel = f"img/{name}_{i:03d}.png"
        Image.fromarray(img).save(root / rel)
        rows.append(rel + "," + ",".join(str(v) for v in labels))
    path = root / f"{name}.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    return {
        "train": write_tiny_dataset(root, 48, 0, "train"),
        "test": write_tiny_dataset(root, 16, 1, "test"),
    }


def tiny_train_args(tiny: dict[str, Path], out: Path, method: str = "bce-ignore") -> list[str]:
    """``sarb train`` flags for a few fast CPU steps on the tiny dataset."""
    return [
        "train",
        "--dataset", "manifest",
        "--train", str(tiny["train"]),
        "--test", str(tiny["test"]),
        "--method", method,
        "--backbone", "cnn3",
        "--weights", "random",
        "--trainable", "all",
        "--image-size", "32",
        "--embeddings", "learned",
        "--feat-dim", "32",
        "--neck-pool", "1",
        "--epochs", "2",
        "--batch-size", "8",
        "--lr", "1e-3",
        "--workers", "0",
        "--known", "0.5",
        "--blend-start", "1",
        "--proto-every", "1",
        "--num-prototypes", "3",
        "--out", str(out),
    ]  # fmt: skip
