"""The run directory (sarb.runs.RunDir) and the checkpoint format it writes."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import yaml

from sarb.api import load_model
from sarb.checkpoint import load_checkpoint
from sarb.cli import main
from sarb.errors import SarbError
from sarb.presets import PART_FIELDS
from sarb.runs import RunDir
from tests.conftest import tiny_train_args


@pytest.fixture(scope="module")
def sarb_run(tiny_dataset, tmp_path_factory) -> RunDir:
    out = tmp_path_factory.mktemp("runs") / "sarb"
    assert main(tiny_train_args(tiny_dataset, out, "sarb")) == 0
    return RunDir(out)


def test_train_without_out_prints_the_directory_it_wrote(
    tiny_dataset, tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    args = tiny_train_args(tiny_dataset, tmp_path / "unused")
    args = args[: args.index("--out")]  # no --out: runs/<time>-<method>
    assert main([*args, "--epochs", "1"]) == 0
    printed = re.search(r"^run directory: (.+)$", capsys.readouterr().err, re.M).group(1)
    run = RunDir(printed)
    assert run.path.parent == tmp_path / "runs" and run.path.name.endswith("-bce-ignore")
    assert (run / RunDir.METRICS).is_file() and (run / RunDir.BEST).is_file()
    assert yaml.safe_load((run / RunDir.CONFIG).read_text())["out"] == printed
    assert run.read_metrics()["run_dir"] == printed
    assert [p for p in (tmp_path / "runs").iterdir()] == [run.path]  # one directory, not three


def test_best_holds_the_model_and_last_the_training_state(sarb_run: RunDir) -> None:
    best, last = sarb_run.load_best(), sarb_run.load_last()
    assert best["format"] == last["format"] == 2
    assert best["class_embeddings"] == "learned"  # --embeddings learned, recorded as such
    assert {"optimizer", "scheduler", "rng"}.isdisjoint(best) and {"optimizer", "rng"} <= set(last)
    assert "ilrb.weight.raw" in last["augmentations"] and "plrb.prototypes" in last["augmentations"]
    assert not any(k.startswith(("ilrb", "plrb")) for k in last["model"])  # method state apart
    config = last["config"]
    assert (config["head"], config["loss"], config["augment"]) == (
        "csrl", "partial-bce", "ilrb,plrb,contrastive"
    )  # fmt: skip
    assert (sarb_run / RunDir.LAST_PREV).is_file()  # the resume fallback
    assert len(sarb_run.read_log()) == 2


def _as_format_1(payload: dict) -> dict:
    """What sarb 0.1 wrote for the same model: one state dict, no parts in the config."""
    renames = {
        "head.embeddings.weight": "head.embeddings",
        "head.classifier.fc.": "head.head.fc.",
        "head.classifier.per_class.": "head.head.classifier.",
    }
    state = {}
    for key, value in payload["model"].items():
        for new, old in renames.items():
            if key.startswith(new):
                key = old + key[len(new) :]
                break
        state[key] = value
    moved = {
        "ilrb.weight.raw": "head.alpha.raw",
        "plrb.weight.raw": "head.beta.raw",
        "plrb.prototypes": "head.prototypes",
        "plrb.prototype_valid": "head.prototype_valid",
    }
    for new, old in moved.items():
        state[old] = payload["augmentations"][new]
    parts = (*PART_FIELDS, "crop_flip")  # format 1 had none of today's parts
    config = {k: v for k, v in payload["config"].items() if k not in parts}
    config["augment"] = payload["config"]["crop_flip"]
    old = {k: v for k, v in payload.items() if k not in ("format", "augmentations")}
    return {**old, "model": state, "config": config}


def test_a_format_1_checkpoint_loads_through_the_key_migration(sarb_run, tmp_path) -> None:
    old = tmp_path / "old.pt"
    torch.save(_as_format_1(load_checkpoint(sarb_run / RunDir.BEST)), old)
    migrated = load_checkpoint(old)
    assert migrated["migrated_from"] == 1 and "migrated_from" not in load_checkpoint(
        sarb_run / RunDir.BEST
    )
    assert migrated["config"]["augment"] == "ilrb,plrb,contrastive"
    assert migrated["config"]["crop_flip"] is True
    assert migrated["class_embeddings"] == "learned"
    assert migrated["augmentations"]["ilrb.weight.raw"].shape == ()
    images = torch.randn(3, 3, 32, 32)
    expected = load_model(sarb_run.path, device="cpu").predict(images)
    np.testing.assert_array_equal(load_model(old, device="cpu").predict(images), expected)


def test_a_checkpoint_of_an_unknown_format_is_one_line(sarb_run, tmp_path) -> None:
    payload = load_checkpoint(sarb_run / RunDir.BEST)
    path = tmp_path / "future.pt"
    torch.save({**payload, "format": 7}, path)
    with pytest.raises(SarbError, match=r"future\.pt: checkpoint format 7 is not one this sarb"):
        load_checkpoint(path)


def test_a_checkpoint_from_before_bias_init_records_the_uniform_start(sarb_run, tmp_path) -> None:
    payload = load_checkpoint(sarb_run / RunDir.BEST)
    assert payload["config"]["bias_init"] == "prior"  # today's default
    config = {k: v for k, v in payload["config"].items() if k != "bias_init"}
    old = tmp_path / "old.pt"
    torch.save({**payload, "config": config}, old)
    assert load_checkpoint(old)["config"]["bias_init"] == "uniform"


def test_a_checkpoint_from_before_classifier_dim_loads_with_its_2d_wide_classifier(
    sarb_run, tmp_path
) -> None:
    payload = load_checkpoint(sarb_run / RunDir.BEST)
    d = payload["config"]["feat_dim"]
    assert payload["config"]["classifier_dim"] is None  # today: o_c has feat_dim channels
    state = dict(payload["model"])
    assert state["head.classifier.fc.weight"].shape == (d, 2 * d)
    # the same function with o_c of 2D channels whose extra half the classifiers ignore
    fc_w, fc_b = state["head.classifier.fc.weight"], state["head.classifier.fc.bias"]
    state["head.classifier.fc.weight"] = torch.cat([fc_w, torch.randn_like(fc_w)])
    state["head.classifier.fc.bias"] = torch.cat([fc_b, torch.randn_like(fc_b)])
    per_class = state["head.classifier.per_class.weight"]
    state["head.classifier.per_class.weight"] = torch.cat([per_class, 0 * per_class], dim=1)
    config = {k: v for k, v in payload["config"].items() if k != "classifier_dim"}
    old = tmp_path / "old.pt"
    torch.save({**payload, "model": state, "config": config}, old)
    assert load_checkpoint(old)["config"]["classifier_dim"] == 2 * d
    images = torch.randn(3, 3, 32, 32)
    expected = load_model(sarb_run.path, device="cpu").predict(images)
    np.testing.assert_allclose(load_model(old, device="cpu").predict(images), expected, atol=1e-6)
