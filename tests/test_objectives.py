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


@pytest.mark.parametrize(
    "loss",
    ["an-ls", "wan", "epr", "role", "asl", "hill", "splc", "ll-r", "ll-ct", "ll-cp", "em"],
)
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


# --------------------------------------------------------------------------- losses with state


def test_splc_by_hand():
    from sarb.methods.objectives import SPLC

    loss = SPLC(tau=0.6, start=1, margin=1.0, gamma=2.0)
    logits = torch.tensor([[0.5, -1.0, 2.0, 0.0]], dtype=torch.float64)  # unknown p(2) = 0.88
    targets = torch.tensor([[1.0, -1.0, 0.0, 0.0]], dtype=torch.float64)
    pos = (1 - _p(0.5 - 1.0)) ** 2 * _nlp(0.5 - 1.0)  # focal margin
    neg = _nl1mp(-1.0)
    focal_neg = lambda x: _p(x) ** 2 * _nl1mp(x)  # noqa: E731
    before = (pos + neg + focal_neg(2.0) + focal_neg(0.0)) / 4
    after = (pos + neg + (1 - _p(2.0)) ** 2 * _nlp(2.0) + focal_neg(0.0)) / 4  # 2.0 corrected
    index = torch.arange(1)
    assert float(loss(logits, targets, index, epoch=0)) == pytest.approx(before, rel=1e-12)
    assert float(loss(logits, targets, index, epoch=1)) == pytest.approx(after, rel=1e-12)


def _ll_case():
    logits = torch.tensor([[3.0, 2.0, -1.0, 0.5], [1.0, -2.0, 4.0, 0.0]], dtype=torch.float64)
    targets = torch.tensor([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
    an = [[_nl1mp(3.0), _nl1mp(2.0), _nlp(-1.0), _nl1mp(0.5)],
          [_nl1mp(1.0), _nl1mp(-2.0), _nl1mp(4.0), _nlp(0.0)]]  # fmt: skip
    return logits, targets, an


@pytest.mark.parametrize("scheme", ["reject", "temporary", "permanent"])
def test_large_loss_rejects_or_corrects_exactly_the_k_largest_unknown_losses(scheme):
    from sarb.methods.objectives import LargeLoss

    logits, targets, an = _ll_case()
    # unknown-entry losses: (0,0) 3.05, (0,1) 2.13, (0,3) 0.97, (1,1) 0.13, (1,2) 4.02;
    # the known (1,0) negative's 1.31 is larger than two of them but is never chosen
    loss = LargeLoss(scheme, delta=0.25, num_images=2, num_classes=4)
    index = torch.arange(2)
    assert float(loss(logits, targets, index, epoch=0)) == pytest.approx(
        sum(map(sum, an)) / 8, rel=1e-12
    )  # epoch 0: plain assume negative
    epoch = 1  # rate 0.25 (ll-r, ll-ct: 0.25 x epoch): k = ceil(8 x 0.25) = 2 -> (1,2), (0,0)
    got = float(loss(logits, targets, index, epoch=epoch))
    changed = {(1, 2): 4.0, (0, 0): 3.0}
    expected = [[v for v in row] for row in an]
    for (r, c), x in changed.items():
        expected[r][c] = 0.0 if scheme == "reject" else _nlp(x)
    assert got == pytest.approx(sum(map(sum, expected)) / 8, rel=1e-12)
    if scheme == "permanent":  # the corrections stay: next time they are known positives
        assert loss.corrected.nonzero().tolist() == [[0, 0], [1, 2]]
        assert loss.rate(5) == 0.25  # a constant rate
    else:
        assert loss.rate(2) == 0.5  # grows with the epoch
        assert not hasattr(loss, "corrected")


def test_large_loss_permanent_records_only_from_the_batch_itself():
    from sarb.methods.objectives import LargeLoss

    logits, targets, _ = _ll_case()
    loss = LargeLoss("permanent", delta=0.25, num_images=2, num_classes=4)
    loss(logits, targets, torch.arange(2), epoch=1, primary=False)  # a blended branch
    assert not loss.corrected.any()


def test_role_by_hand_and_its_initial_estimates():
    from sarb.methods.objectives import ROLE

    labels = np.array([[1, 0], [-1, 0]])
    torch.manual_seed(0)
    role = ROLE(labels, expected=1.0, lr_mult=10.0)
    est = torch.sigmoid(role.estimates.detach()).double()
    assert est[0, 0] == pytest.approx(0.995) and est[1, 0] == pytest.approx(0.005)
    assert 0.4 <= est[0, 1] <= 0.6 and 0.4 <= est[1, 1] <= 0.6 and role.lr_mult == 10.0
    logits = torch.tensor([[0.5, -1.0], [1.0, 0.0]], dtype=torch.float64)
    targets = torch.tensor(labels, dtype=torch.float64)

    def entry(x: float, g: float, kind: str) -> float:
        p = _p(x)
        cross = (g * -math.log(p) + (1 - g) * -math.log(1 - p)
                 + p * -math.log(g) + (1 - p) * -math.log(1 - g))  # fmt: skip
        if kind == "pos":
            return 0.5 * (-math.log(p) - math.log(g)) + 0.5 * cross
        return _nl1mp(x) if kind == "neg" else 0.5 * cross

    e = est.numpy()
    kinds = [["pos", "unk"], ["neg", "unk"]]
    total = sum(
        entry(float(logits[r, c]), e[r, c], kinds[r][c]) for r in range(2) for c in range(2)
    )
    p = torch.sigmoid(logits).numpy()
    reg = 0.5 * ((p.sum(1).mean() - 1) ** 2 / 4 + (e.sum(1).mean() - 1) ** 2 / 4)
    got = float(role(logits, targets, torch.arange(2), epoch=0).detach())
    assert got == pytest.approx(total / 4 + reg, rel=1e-6)
    got_t = role(logits.float(), targets.float(), torch.tensor([1, 0]), epoch=0)
    got_t.backward()
    assert role.estimates.grad.abs().sum() > 0  # the estimates learn


def test_role_trains_its_estimates_at_a_higher_learning_rate(tiny_dataset, tmp_path):
    from sarb.config import resolve_config
    from sarb.methods import build_method
    from sarb.models.factory import DataInfo

    labels = np.array([[1, -1, 0], [0, 1, -1]])
    cfg = resolve_config(None, method="role", backbone="cnn3", weights="random")
    method = build_method(cfg, DataInfo(["a", "b", "c"], None, labels))
    groups = method.param_groups(1e-3)
    assert len(groups) == 2 and groups[1]["lr"] == pytest.approx(1e-2)
    assert groups[1]["params"] == [method.loss.estimates]
    assert all(p is not method.loss.estimates for p in groups[0]["params"])


def test_em_by_hand_and_asymmetric_pseudo_labelling():
    from sarb.methods.objectives import EntropyMaximization

    labels = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0], [0, 0, 0]])
    em = EntropyMaximization(labels, alpha=0.1, beta=0.9, proportion=0.5, start=2, epochs=4)
    # 3 unknown entries per class: int(0.5 x 3 / (4 - 2) rounds) = 0 per round
    assert em.per_round.tolist() == [0, 0, 0]
    em = EntropyMaximization(labels, alpha=0.1, beta=0.9, proportion=1.0, start=2, epochs=3)
    assert em.per_round.tolist() == [3, 3, 3]  # one round labels every unknown entry
    em = EntropyMaximization(labels, alpha=0.1, beta=0.9, proportion=1.0, start=2, epochs=5)
    assert em.per_round.tolist() == [1, 1, 1]

    logits = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64)
    targets = torch.tensor([[1.0, 0.0, -1.0]], dtype=torch.float64)
    ent = _p(-1.0) * _nlp(-1.0) + (1 - _p(-1.0)) * _nl1mp(-1.0)
    expected = (_nlp(0.5) - 0.1 * ent + _nl1mp(2.0)) / 3
    got = float(em(logits, targets, torch.tensor([0]), epoch=0).detach())
    assert got == pytest.approx(expected, rel=1e-12)

    # APL: scores of the 4 training images; per class, the lowest unknown ones become soft
    # negatives with their probability as target
    scores = torch.logit(torch.tensor(
        [[0.9, 0.2, 0.3], [0.4, 0.1, 0.8], [0.05, 0.7, 0.6], [0.5, 0.3, 0.02]]
    ))  # fmt: skip

    class Head(torch.nn.Module):
        def forward(self, fmap):
            return fmap

    batches = lambda: [(scores, torch.tensor(labels, dtype=torch.float32))]  # noqa: E731
    em.on_epoch_start(1, Head(), batches)  # before apl_start: nothing
    assert not em.soft_negatives.any()
    em.on_epoch_start(2, Head(), batches)
    chosen = (em.soft_negatives > 0).nonzero().tolist()
    assert chosen == [[1, 1], [2, 0], [3, 2]]  # the lowest unknown entry of each class
    assert em.soft_negatives[2, 0] == pytest.approx(0.05)
    em.on_epoch_start(3, Head(), batches)  # the next round takes the next lowest, never twice
    assert (em.soft_negatives > 0).nonzero().tolist() == [
        [0, 1], [0, 2], [1, 0], [1, 1], [2, 0], [3, 2]
    ]  # fmt: skip
    # a soft negative's loss: beta x BCE with its soft target
    x = torch.tensor([[0.0, 0.3, 0.0]], dtype=torch.float64)
    t = torch.tensor([[0.0, 0.0, 0.0]], dtype=torch.float64)
    got = float(em(x, t, torch.tensor([1]), epoch=0).detach())
    s = 0.4
    soft = 0.9 * (s * _nlp(0.0) + (1 - s) * _nl1mp(0.0))
    soft1 = 0.9 * (0.1 * _nlp(0.3) + 0.9 * _nl1mp(0.3))
    ent0 = _p(0.0) * _nlp(0.0) + (1 - _p(0.0)) * _nl1mp(0.0)
    assert got == pytest.approx((soft + soft1 - 0.1 * ent0) / 3, rel=1e-5)
