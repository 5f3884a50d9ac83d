"""Configuration, data splits, feature cache and the training loop."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sarb.cli import main
from sarb.config import TrainConfig, add_config_arguments, resolve_config
from sarb.data.loaders import make_loader
from sarb.data.manifest import read_manifest
from sarb.data.partial import mask_labels
from sarb.data.splits import load_splits
from sarb.engine import _cached_feature_maps
from sarb.errors import SarbError
from sarb.methods import build_method
from sarb.models.factory import DataInfo
from tests.conftest import tiny_train_args


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return parser.parse_args(argv)


def test_flags_override_yaml_which_overrides_defaults(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("epochs: 3\nbatch-size: 4\nlr: 1\ncrop-flip: false\n")
    cfg = resolve_config(_parse(["--config", str(path), "--epochs", "7"]))
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.crop_flip) == (7, 4, 1.0, False)
    assert cfg.weight_decay == TrainConfig().weight_decay


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("epochz: 3\n", "epochz"),
        ("epochs: many\n", "epochs"),
        ("- 1\n", "mapping"),
        ("a: [\n", "YAML"),
    ],
)
def test_bad_config_files_name_the_problem(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(SarbError, match=needle):
        resolve_config(_parse(["--config", str(path)]))


def test_mask_is_drawn_before_the_validation_carve(tiny_dataset) -> None:
    cfg = resolve_config(
        None, dataset="manifest", train=str(tiny_dataset["train"]), test=str(tiny_dataset["test"]),
        known=0.3, val_fraction=0.25, seed=5,
    )  # fmt: skip
    splits = load_splits(cfg)
    full = read_manifest(tiny_dataset["train"])
    expected = dict(zip(full.images, mask_labels(full.labels, 0.3), strict=True))
    assert len(splits.train) + len(splits.val) == len(full)
    assert not set(splits.train.images) & set(splits.val.images)
    for part in (splits.train, splits.val):
        for image, row in zip(part.images, part.labels, strict=True):
            np.testing.assert_array_equal(row, expected[image])
    again = load_splits(cfg)
    assert again.val.images == splits.val.images


def test_feature_cache_is_exact_and_reused(tmp_path: Path, tiny_dataset, capsys) -> None:
    cfg = resolve_config(
        None, method="bce-ignore", dataset="manifest", train=str(tiny_dataset["train"]),
        test=str(tiny_dataset["test"]),
        backbone="cnn3", weights="random", trainable="none", feature_cache=True, crop_flip=False,
        image_size=32, cache_dir=str(tmp_path), workers=0, batch_size=8,
    )  # fmt: skip
    splits = load_splits(cfg)
    info = DataInfo(splits.train.class_names, None, splits.train.labels)
    method = build_method(cfg, info)
    model = method.model
    cpu = torch.device("cpu")
    cached = _cached_feature_maps(cfg, method, splits, cpu)
    assert cached is not None and set(cached) == {"train", "val", "test"}
    for part in ("train", "val", "test"):
        assert len(cached[part]) == len(getattr(splits, part))
    files = sorted((tmp_path / "features").iterdir())
    assert len(files) == 3  # one file per split

    def batches(fmaps: torch.Tensor | None) -> list[torch.Tensor]:
        return [x for x, _, _ in make_loader(splits.test, cfg, False, feature_maps=fmaps)]

    from_cache = torch.cat(batches(cached["test"]))
    torch.testing.assert_close(from_cache, cached["test"])
    assert not model.takes_feature_maps
    with torch.no_grad():
        images = batches(None)
        direct = torch.cat([model.feature_map(x) for x in images])
        torch.testing.assert_close(from_cache, direct.half().float())
        model.takes_feature_maps = True  # the backbone is skipped: the inputs are its maps
        assert torch.equal(model.feature_map(from_cache), from_cache)
        model.takes_feature_maps = False
        from_images = torch.cat([model(x) for x in images])
        model.takes_feature_maps = True
        torch.testing.assert_close(model(from_cache), from_images, rtol=1e-2, atol=1e-2)
    stamps = [f.stat().st_mtime_ns for f in files]
    again = _cached_feature_maps(cfg, method, splits, cpu)
    assert [f.stat().st_mtime_ns for f in files] == stamps  # reused, not recomputed
    for part in ("train", "val", "test"):
        torch.testing.assert_close(again[part], cached[part])
    test_file = next(f for f in files if torch.equal(torch.load(f).float(), cached["test"]))
    test_file.write_bytes(b"")  # a damaged cache is recomputed
    capsys.readouterr()
    repaired = _cached_feature_maps(cfg, method, splits, cpu)
    assert "recomputing the damaged feature cache" in capsys.readouterr().err
    torch.testing.assert_close(repaired["test"], cached["test"])
    assert test_file.stat().st_size > 0
    # a backbone that trains cannot be served from the cache
    trainable = dataclasses.replace(cfg, trainable="all")
    assert _cached_feature_maps(trainable, build_method(trainable, info), splits, cpu) is None
    assert "the backbone is not fully frozen" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["sarb", "ssgrl"])
def test_train_with_amp_and_max_steps(tmp_path: Path, tiny_dataset, method: str) -> None:
    out = tmp_path / method
    args = [
        *tiny_train_args(tiny_dataset, out, method),
        "--amp",
        "--max-steps",
        "7",
        "--val-fraction",
        "0.3",
    ]  # a validation split that can rank epochs
    assert main(args) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 7
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 7 and metrics["selected_on"] == "val"
    if method == "sarb":  # blending starts at epoch index 1 in the tiny settings
        assert "bce_ilrb" in log[-1] and "bce_plrb" in log[-1]
        assert 0 < log[-1]["a"] < 1 and 0 < log[-1]["b"] < 1


def test_amp_default_is_resolved_and_recorded(tmp_path: Path, tiny_dataset) -> None:
    """Unset --amp means bf16 on CUDA only; the run records the resolved value (CPU: off)."""
    assert resolve_config(None).amp is None
    out = tmp_path / "run"
    assert main([*tiny_train_args(tiny_dataset, out), "--max-steps", "1", "--device", "cpu"]) == 0
    from sarb.checkpoint import load_checkpoint

    assert load_checkpoint(out / "best.pt")["config"]["amp"] is False
    assert "amp: false" in (out / "config.yaml").read_text()


def test_compile_traces_the_train_step_and_matches_eager(tmp_path: Path, tiny_dataset,
                                                          monkeypatch) -> None:  # fmt: skip
    """--compile wraps the train step (the Method) in torch.compile. Inductor's C++ build takes
    a minute on 2 cores, so the test traces with the aot_eager backend (TorchDynamo +
    AOTAutograd, the same graph capture), which must give the eager run's parameters."""
    from sarb.checkpoint import load_checkpoint

    real, calls = torch.compile, []

    def compile_aot_eager(module, **kwargs):
        calls.append(type(module).__name__)
        return real(module, backend="aot_eager")

    monkeypatch.setattr(torch, "compile", compile_aot_eager)
    states = {}
    for flag in ("--no-compile", "--compile"):
        out = tmp_path / flag
        args = [*tiny_train_args(tiny_dataset, out, "sarb"), flag, "--deterministic"]
        assert main(args) == 0
        last = load_checkpoint(out / "last.pt")
        # the method's state too: SARB's learned blend weights a, b
        states[flag] = {**last["model"], **last["augmentations"]}
    assert calls == ["Method"]  # the method's train step, loss included
    assert "ilrb.weight.raw" in states["--compile"]
    for name, value in states["--no-compile"].items():
        torch.testing.assert_close(states["--compile"][name], value, rtol=1e-4, atol=1e-5)


def test_jpeg_manifest_trains_the_same_with_loader_workers(tmp_path: Path, tiny_dataset) -> None:
    """JPEGs go through decode_jpeg inside persistent loader workers (train, val and test
    loaders); without augmentation the run must equal the in-process one."""
    from PIL import Image

    manifests = {}
    for split in ("train", "test"):
        rows = tiny_dataset[split].read_text().splitlines()
        out = [rows[0]]
        for row in rows[1:]:
            rel, labels = row.split(",", 1)
            jpg = tmp_path / Path(rel).with_suffix(".jpg").name
            Image.open(tiny_dataset[split].parent / rel).save(jpg, quality=95)
            out.append(f"{jpg.name},{labels}")
        manifests[split] = tmp_path / f"{split}.csv"
        manifests[split].write_text("\n".join(out) + "\n")
    results = {}
    for workers in ("0", "2"):
        out = tmp_path / f"w{workers}"
        args = tiny_train_args(manifests, out, "ssgrl")
        args[args.index("--workers") + 1] = workers
        assert main([*args, "--no-crop-flip", "--deterministic"]) == 0
        results[workers] = json.loads((out / "metrics.json").read_text())
    assert results["2"]["ap_per_class"] == results["0"]["ap_per_class"]
    assert results["2"]["val_mAP"] == results["0"]["val_mAP"]


def test_packaged_config_names_work_for_train(tmp_path: Path, monkeypatch) -> None:
    """`--config demo` finds the packaged file from any folder; a wrong name lists them."""
    monkeypatch.chdir(tmp_path)
    cfg = resolve_config(_parse(["--config", "demo", "--epochs", "3"]))
    assert cfg.backbone == "efficientnet_lite0_s16" and cfg.epochs == 3
    with pytest.raises(SarbError, match="packaged configs: .*demo.*quick"):
        resolve_config(_parse(["--config", "nope"]))
