"""The Python API: checkpoints rebuild the trained model exactly; predict, labels, train."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sarb import api
from sarb.checkpoint import load_checkpoint
from sarb.cli import main
from sarb.config import TrainConfig
from sarb.data.embeddings import glove_available
from sarb.data.manifest import read_manifest
from sarb.data.splits import load_splits
from sarb.data.transforms import preprocess
from sarb.errors import SarbError
from sarb.methods import build_method
from sarb.models.factory import DataInfo, build_model, embeddings_for
from sarb.models.ggnn import adjacency_from_labels
from tests.conftest import CLASSES, tiny_train_args


def _train(tiny: dict[str, Path], out: Path, method: str, *extra: str) -> Path:
    args = tiny_train_args(tiny, out, method)
    # blend from epoch 0, so that best.pt (possibly epoch 1) holds trained prototypes and a, b
    args[args.index("--blend-start") + 1] = "0"
    assert main([*args, *extra]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tiny_dataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("api_runs")
    return {m: _train(tiny_dataset, root / m, m) for m in ("sarb", "bce-ignore")}


def _train_info(cfg: TrainConfig) -> DataInfo:
    """What the engine knows of the data when it builds the model: from the training split."""
    train = load_splits(cfg).train
    return DataInfo(train.class_names, embeddings_for(cfg, train.class_names), train.labels)


def _reference(run: Path) -> tuple[torch.nn.Module, dict, TrainConfig]:
    """The trained model as the engine has it in memory: built from the training data, then
    best.pt's weights."""
    payload = load_checkpoint(run / "best.pt")
    cfg = TrainConfig(**payload["config"])
    model = build_model(cfg, _train_info(cfg))
    model.load_state_dict(payload["model"])
    return model.eval(), payload, cfg


def _test_batch(tiny: dict[str, Path], size: int) -> tuple[list[Path], torch.Tensor]:
    data = read_manifest(tiny["test"])
    paths = data.images[:10]
    return paths, preprocess([Image.open(p) for p in paths], size)


@pytest.mark.parametrize("method", ["sarb", "bce-ignore"])
def test_checkpoint_round_trip_is_bit_identical(runs, tiny_dataset, method: str) -> None:
    ref, payload, cfg = _reference(runs[method])
    predictor = api.load_model(runs[method], device="cpu")
    assert predictor.class_names == CLASSES == payload["class_names"]
    assert predictor.config == cfg and predictor.image_size == 32
    assert not predictor.model.training
    paths, batch = _test_batch(tiny_dataset, cfg.image_size)
    with torch.no_grad():
        expected_logits = ref(batch)
        got_logits = predictor.model(batch)
    assert torch.equal(got_logits, expected_logits)
    expected = torch.sigmoid(expected_logits).numpy()
    probs = predictor.predict(batch)
    assert probs.dtype == np.float32 and probs.shape == (len(paths), len(CLASSES))
    assert np.array_equal(probs, expected)
    assert np.array_equal(predictor.predict(paths), expected)  # paths: the same preprocessing
    assert np.array_equal(predictor.predict([Image.open(p) for p in paths]), expected)
    ref_state = ref.state_dict()
    for key, value in predictor.model.state_dict().items():
        assert torch.equal(value, ref_state[key]), key


def test_sarb_state_comes_back(runs) -> None:
    ref, payload, cfg = _reference(runs["sarb"])
    state, aug_state = payload["model"], payload["augmentations"]
    # the round trip is only meaningful if training moved these away from their initial values
    assert aug_state["plrb.prototype_valid"].any() and aug_state["plrb.prototypes"].abs().sum() > 0
    assert float(aug_state["ilrb.weight.raw"]) != 0.0 and float(aug_state["plrb.weight.raw"]) != 0.0
    # the method's state (blend weights, prototypes) rebuilds a method exactly, as a resume does
    method = build_method(cfg, _train_info(cfg))
    method.augmentations.load_state_dict(aug_state)  # strict: every key fits
    ilrb, plrb = method.augmentations["ilrb"], method.augmentations["plrb"]
    assert torch.equal(plrb.prototypes, aug_state["plrb.prototypes"])
    assert torch.equal(plrb.prototype_valid, aug_state["plrb.prototype_valid"])
    assert torch.equal(ilrb.weight.raw, aug_state["ilrb.weight.raw"])
    assert torch.equal(plrb.weight.raw, aug_state["plrb.weight.raw"])
    assert 0 < float(ilrb.weight().detach()) < 1
    assert plrb._ready  # loaded prototypes switch PLRB on without a refresh
    assert method.logged_values()["a"] == float(ilrb.weight().detach())
    # inference needs none of it: the model alone is rebuilt, without the method's state
    predictor = api.load_model(runs["sarb"], device="cpu")
    head = predictor.model.head
    assert not any(k.startswith(("ilrb.", "plrb.")) for k in predictor.model.state_dict())
    assert not any("prototype" in k or "weight.raw" in k for k in predictor.model.state_dict())
    # the label graph comes from the checkpoint, not from the all-unknown labels of the rebuild
    train_adjacency = adjacency_from_labels(load_splits(cfg).train.labels)
    assert train_adjacency.abs().sum() > 0
    assert torch.equal(head.adjacency, train_adjacency)
    assert torch.equal(head.adjacency, ref.head.adjacency)
    assert torch.equal(head.embeddings.weight, state["head.embeddings.weight"])
    assert isinstance(head.embeddings.weight, torch.nn.Parameter)  # --embeddings learned


@pytest.mark.skipif(not glove_available(), reason="GloVe vectors not installed")
def test_fixed_glove_embeddings_come_back_as_a_buffer(tiny_dataset, tmp_path: Path) -> None:
    run = _train(tiny_dataset, tmp_path / "glove", "ssgrl", "--embeddings", "glove",
                 "--epochs", "1", "--max-steps", "2")  # fmt: skip
    ref, payload, cfg = _reference(run)
    predictor = api.load_model(run, device="cpu")
    head = predictor.model.head
    assert head.embeddings.weight.shape == (len(CLASSES), 50)
    assert "embeddings.weight" in dict(head.named_buffers())
    assert "embeddings.weight" not in dict(head.named_parameters())
    assert torch.equal(head.embeddings.weight, payload["model"]["head.embeddings.weight"])
    _, batch = _test_batch(tiny_dataset, cfg.image_size)
    with torch.no_grad():
        expected = torch.sigmoid(ref(batch)).numpy()
    assert np.array_equal(predictor.predict(batch, batch_size=64), expected)


def test_amp_runs_are_scored_as_the_engine_scored_them(tiny_dataset, tmp_path: Path) -> None:
    run = _train(tiny_dataset, tmp_path / "amp", "bce-ignore", "--amp", "--epochs", "1",
                 "--max-steps", "1")  # fmt: skip
    predictor = api.load_model(run, device="cpu")
    assert predictor.config.amp
    metrics = json.loads((run / "metrics.json").read_text())
    got = predictor.evaluate(read_manifest(tiny_dataset["test"]))
    assert got["ap_per_class"] == metrics["ap_per_class"]
    paths, batch = _test_batch(tiny_dataset, 32)
    bf16 = predictor.predict(paths)
    ref, _, _ = _reference(run)
    with torch.no_grad():
        fp32 = torch.sigmoid(ref(batch)).numpy()
    assert not np.array_equal(bf16, fp32)  # autocast is really on
    np.testing.assert_allclose(bf16, fp32, atol=0.02)


def test_predict_labels_thresholds_the_scores(runs, tiny_dataset) -> None:
    predictor = api.load_model(runs["bce-ignore"], device="cpu")
    paths, _ = _test_batch(tiny_dataset, 32)
    scores = predictor.predict(paths, batch_size=3)
    assert ((scores >= 0) & (scores <= 1)).all()
    for threshold in (0.0, 0.5, float(np.median(scores)), 1.0):
        labels = predictor.predict_labels(paths, threshold=threshold)
        assert len(labels) == len(paths)
        for row, names in zip(scores, labels, strict=True):
            assert names == [c for c, p in zip(CLASSES, row, strict=True) if p >= threshold]
    assert predictor.predict([]).shape == (0, len(CLASSES))


def test_evaluate_matches_metrics_json(runs, tiny_dataset) -> None:
    predictor = api.load_model(runs["sarb"], device="cpu")
    metrics = json.loads((runs["sarb"] / "metrics.json").read_text())
    got = predictor.evaluate(read_manifest(tiny_dataset["test"]))
    assert got["mAP"] == metrics["mAP"] and got["ap_per_class"] == metrics["ap_per_class"]
    # columns are matched by class name
    test = read_manifest(tiny_dataset["test"])
    order = [2, 0, 1]
    shuffled = dataclasses.replace(
        test, labels=test.labels[:, order], class_names=[CLASSES[i] for i in order]
    )
    assert predictor.evaluate(shuffled)["mAP"] == metrics["mAP"]


def test_bad_inputs_are_one_line_errors(runs, tmp_path: Path) -> None:
    bogus = tmp_path / "model.pt"
    bogus.write_bytes(b"not a checkpoint at all")
    with pytest.raises(SarbError, match="model.pt"):
        api.load_model(bogus)
    with pytest.raises(SarbError, match="checkpoint not found"):
        api.load_model(tmp_path / "missing.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(SarbError, match="other.pt: not a sarb checkpoint"):
        api.load_model(tmp_path / "other.pt")
    payload = load_checkpoint(runs["sarb"] / "best.pt")
    payload["config"]["feat_dim"] = 16  # weights of another shape than the config's model
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(SarbError, match="mismatch.pt: the weights do not fit"):
        api.load_model(tmp_path / "mismatch.pt")
    predictor = api.load_model(runs["bce-ignore"], device="cpu")
    with pytest.raises(SarbError, match="tensor input"):
        predictor.predict(torch.zeros(2, 32, 32))
    with pytest.raises(SarbError, match="nope.png"):
        predictor.predict([tmp_path / "nope.png"])


def test_train_from_a_dict_and_from_yaml(tiny_dataset, tmp_path: Path) -> None:
    settings = {
        "dataset": "manifest",
        "train": tiny_dataset["train"],  # a Path is accepted
        "test": str(tiny_dataset["test"]),
        "backbone": "cnn3",
        "weights": "random",
        "trainable": "all",
        "image-size": 32,  # dashes or underscores
        "embeddings": "learned",
        "epochs": 1,
        "batch_size": 8,
        "lr": 1e-3,
        "workers": 0,
        "known": 0.5,
        "out": str(tmp_path / "dict_run"),
    }
    metrics = api.train(settings, quiet=True)
    assert metrics["mAP"] is not None and 0 <= metrics["mAP"] <= 100
    assert metrics["method"] == "sarb"  # the default method
    assert json.loads((tmp_path / "dict_run" / "metrics.json").read_text()) == metrics
    yaml_path = tmp_path / "run.yaml"
    yaml_path.write_text(
        "\n".join(f"{k}: {v}" for k, v in {**settings, "out": tmp_path / "yaml_run"}.items())
    )
    assert api.train(yaml_path, quiet=True)["mAP"] == metrics["mAP"]  # same seed, same run
    with pytest.raises(SarbError, match="unknown config key 'epoch'"):
        api.train({**settings, "epoch": 3})
