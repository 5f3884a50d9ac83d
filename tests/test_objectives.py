"""The loss-based partial-label methods: exact values on hand-computed cases, and training."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from sarb.cli import main
from sarb.data.splits import load_splits
from sarb.errors import SarbError
from sarb.losses import (
    an_ls_loss,
    asl_loss,
    epr_loss,
    expected_positives,
    hill_loss,
    wan_loss,
)
from tests.conftest import tiny_train_args

# one row per kind of entry: known positive, known negative, unknown, soft positive 0.25
LOGITS = torch.tensor([[0.5, -1.0, 2.0, 0.0]], dtype=torch.float64)
TARGETS = torch.tensor([[1.0, -1.0, 0.0, 0.25]], dtype=torch.float64)


def _p(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _nlp(x: float) -> float:  # -log p
    return -math.log(_p(x))


def _nl1mp(x: float) -> float:  # -log (1 - p)
    return -math.log(1.0 - _p(x))


def test_an_ls_by_hand():
    e = 0.1
    pos = lambda x: (1 - e) * _nlp(x) + e * _nl1mp(x)  # noqa: E731
    entries = [
        pos(0.5),
        _nl1mp(-1.0),  # a known negative: plain BCE
        (1 - e) * _nl1mp(2.0) + e * _nlp(2.0),  # unknown: a smoothed negative
        0.25 * pos(0.0) + 0.75 * _nl1mp(0.0),
    ]
    assert float(an_ls_loss(LOGITS, TARGETS, e)) == pytest.approx(sum(entries) / 4, rel=1e-12)


def test_wan_by_hand():
    entries = [_nlp(0.5), _nl1mp(-1.0), _nl1mp(2.0) / 3, 0.25 * _nlp(0.0) + 0.75 * _nl1mp(0.0)]
    assert float(wan_loss(LOGITS, TARGETS)) == pytest.approx(sum(entries) / 4, rel=1e-12)


def test_epr_by_hand():
    k = 1.5
    bce = (_nlp(0.5) + _nl1mp(-1.0) + 0 + 0.25 * _nlp(0.0) + 0.75 * _nl1mp(0.0)) / 4
    reg = (sum(_p(x) for x in (0.5, -1.0, 2.0, 0.0)) - k) ** 2 / 4**2
    assert float(epr_loss(LOGITS, TARGETS, k)) == pytest.approx(bce + reg, rel=1e-12)


def test_asl_by_hand():
    gp, gn, m = 1.0, 4.0, 0.05

    def neg(x: float) -> float:
        pm = max(_p(x) - m, 0.0)
        return pm**gn * -math.log(1 - pm)

    pos = lambda x: (1 - _p(x)) ** gp * _nlp(x)  # noqa: E731
    entries = [pos(0.5), neg(-1.0), 0.25 * pos(0.0) + 0.75 * neg(0.0)]  # unknown: nothing
    got = float(asl_loss(LOGITS, TARGETS, gamma_pos=gp, gamma_neg=gn, clip=m))
    assert got == pytest.approx(sum(entries) / 3, rel=1e-12)  # over the 3 known entries
    # the clip zeroes a negative whose probability is below it
    low = torch.tensor([[-5.0]], dtype=torch.float64)
    assert float(asl_loss(low, torch.tensor([[-1.0]], dtype=torch.float64))) == 0.0


def test_hill_by_hand():
    lam, margin, gamma = 1.5, 1.0, 2.0
    pos = lambda x: (1 - _p(x - margin)) ** gamma * _nlp(x - margin)  # noqa: E731
    entries = [
        pos(0.5),
        _nl1mp(-1.0),
        (lam - _p(2.0)) * _p(2.0) ** 2,  # unknown: the Hill term
        0.25 * pos(0.0) + 0.75 * _nl1mp(0.0),
    ]
    assert float(hill_loss(LOGITS, TARGETS)) == pytest.approx(sum(entries) / 4, rel=1e-12)


def test_losses_ignore_nothing_known_and_are_differentiable():
    logits = torch.randn(5, 6, requires_grad=True)
    targets = torch.tensor(np.random.default_rng(0).choice([-1.0, 0.0, 1.0], (5, 6)))
    for fn in (an_ls_loss, wan_loss, asl_loss, hill_loss, lambda x, t: epr_loss(x, t, 2.0)):
        loss = fn(logits, targets)
        (grad,) = torch.autograd.grad(loss, logits)
        assert torch.isfinite(loss) and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_expected_positives_from_partial_labels():
    labels = np.array([[1, -1, 0], [1, 0, -1], [-1, 1, 0], [0, 1, 1]])
    # class rates among known entries: 2/3, 2/3, 1/2
    assert expected_positives(labels, None) == pytest.approx(2 / 3 + 2 / 3 + 1 / 2)
    assert expected_positives(labels, 2.5) == 2.5
    with pytest.raises(SarbError, match="--expected-positives"):
        expected_positives(np.array([[1, 0], [0, 1]]), None)  # single positive: no negatives


@pytest.mark.parametrize("loss", ["an-ls", "wan", "epr", "asl", "hill"])
@pytest.mark.parametrize("head", ["linear", "csrl"])
def test_every_loss_trains_with_the_linear_and_the_csrl_head(tiny_dataset, tmp_path, loss, head):
    args = tiny_train_args(tiny_dataset, tmp_path / "run")
    args = [a for a in args if a != "bce-ignore"]
    args.remove("--method")
    args += ["--head", head, "--loss", loss, "--epochs", "1", "--max-steps", "3"]
    assert main(args) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["method"] == (loss if head == "linear" else f"csrl+{loss}")
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert math.isfinite(log[0]["loss"]) and log[0]["loss"] > 0


def test_single_positive_training(tiny_dataset, tmp_path, capsys):
    from sarb.config import resolve_config

    common = {"dataset": "manifest", "train": str(tiny_dataset["train"]),
              "test": str(tiny_dataset["test"]), "mask_protocol": "single-positive"}  # fmt: skip
    splits = load_splits(resolve_config(None, **common))
    for part in (splits.train, splits.val):
        assert set(np.unique(part.labels)) <= {0, 1} and ((part.labels == 1).sum(1) <= 1).all()
    assert (splits.selection_labels != 0).all()  # every unknown counts as absent for selection
    assert set(np.unique(splits.test.labels)) == {-1, 1}  # the test split stays complete
    args = tiny_train_args(tiny_dataset, tmp_path / "run")
    args[args.index("--known") + 1] = "1"
    args += ["--mask-protocol", "single-positive", "--method", "an-ls", "--epochs", "1"]
    assert main(args) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["mask_protocol"] == "single-positive" and metrics["method"] == "an-ls"
    capsys.readouterr()
    args[args.index("--known") + 1] = "0.5"
    assert main(args) == 2
    assert "does not apply" in capsys.readouterr().err
