"""SARB as assembled in ``sarb.methods.sarb``: one GGNN pass, prototype refresh, schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sarb.methods.sarb as sarb_method
from sarb.config import resolve_config
from sarb.methods import MethodContext, create_method

C, D_IN = 4, 8


def _method(name: str, **overrides) -> sarb_method.CategorySpecificModel:
    cfg = resolve_config(
        None, feat_dim=6, hidden_dim=5, neck_pool=1, num_prototypes=3, blend_start=1,
        proto_every=2, **overrides,
    )  # fmt: skip
    labels = np.array([[1, -1, 0, 1], [1, 1, -1, 0], [0, 1, -1, -1]])
    ctx = MethodContext(C, D_IN, list("abcd"), None, labels, cfg)
    torch.manual_seed(0)
    return create_method(name, ctx)


def _batches(labels: torch.Tensor, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    fmaps = torch.randn(len(labels), D_IN, 3, 3, generator=gen)
    return lambda: [(fmaps[i : i + 4], labels[i : i + 4]) for i in range(0, len(labels), 4)]


def test_branches_share_one_ggnn_pass() -> None:
    model = _method("sarb")
    labels = torch.tensor([[1, 1, -1, 1]] * 6 + [[1, 0, 0, 1]] * 6, dtype=torch.float32)
    model.refresh_prototypes(_batches(labels), seed=0)
    calls = []
    model.ggnn.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    targets = torch.tensor([[0, 1, -1, 0], [1, 0, 0, -1], [1, 1, 1, 0]], dtype=torch.float32)
    fmap = torch.randn(3, D_IN, 3, 3)
    loss, terms = model.loss(fmap, targets, epoch=1)
    assert calls == [9]  # plain + ILRB + PLRB, batched: 3 x 3 images
    assert set(terms) == {"bce", "bce_ilrb", "bce_plrb", "contrastive"}
    assert torch.isfinite(loss)
    calls.clear()
    _, terms = model.loss(fmap, targets, epoch=0)  # before blend_start: the plain branch only
    assert calls == [3] and set(terms) == {"bce", "contrastive"}


def test_ssgrl_has_no_blending_and_no_contrastive_term() -> None:
    model = _method("ssgrl")
    _, terms = model.loss(torch.randn(2, D_IN, 3, 3), torch.ones(2, C), epoch=9)
    assert set(terms) == {"bce"}
    assert not hasattr(model, "alpha") and not hasattr(model, "prototypes")


def test_prototype_refresh_handles_rare_and_absent_classes(monkeypatch) -> None:
    model = _method("sarb-plrb")
    # class 0: 12 known positives; class 1: 2; class 2: none (only negatives/unknown); class 3: 5
    labels = torch.full((12, C), -1.0)
    labels[:, 0] = 1
    labels[:2, 1] = 1
    labels[:, 2] = torch.tensor([0, -1] * 6, dtype=torch.float32)
    labels[3:8, 3] = 1
    batches = _batches(labels)
    model.eval()
    model.refresh_prototypes(batches, seed=0)
    valid = model.prototype_valid
    assert valid.sum(1).tolist() == [3, 2, 0, 3]
    with torch.no_grad():
        feats = torch.cat([model.features(f) for f, _ in batches()])  # (12, C, D)
    rare = model.prototypes[1][valid[1]]
    expected = feats[:2, 1]
    assert torch.allclose(torch.sort(rare, 0).values, torch.sort(expected, 0).values, atol=1e-6)
    first = model.prototypes.clone()
    model.refresh_prototypes(batches, seed=0)
    assert torch.equal(first, model.prototypes)  # seeded
    monkeypatch.setattr(sarb_method, "MAX_POINTS_PER_CLASS", 4)  # class 0 is sampled down to 4
    model.refresh_prototypes(batches, seed=0)
    assert model.prototype_valid.sum(1).tolist() == [3, 2, 0, 3]
    pool = feats[:, 0]
    dist = torch.cdist(model.prototypes[0], pool).min(1).values
    assert float(dist.max()) < float(torch.cdist(pool, pool).max())


@pytest.mark.parametrize(("epoch", "due"), [(0, False), (1, True), (2, False), (3, True)])
def test_prototypes_follow_the_schedule(epoch: int, due: bool) -> None:
    model = _method("sarb")
    labels = torch.ones(8, C)
    model.on_epoch_start(epoch, _batches(labels))
    assert bool(model.prototype_valid.any()) is due


def test_checkpoint_state_holds_prototypes_and_blend_weights() -> None:
    model = _method("sarb")
    model.refresh_prototypes(_batches(torch.ones(8, C)), seed=0)
    state = model.state_dict()
    assert {"prototypes", "prototype_valid", "alpha.raw", "beta.raw", "adjacency"} <= set(state)
    clone = _method("sarb")
    clone.load_state_dict(state)
    fmap = torch.randn(2, D_IN, 3, 3)
    model.eval(), clone.eval()
    assert torch.equal(model(fmap), clone(fmap))


def test_plrb_follows_loaded_and_refreshed_prototypes() -> None:
    """The 'any prototype valid' flag is cached (no device read per step), but a refresh or a
    loaded checkpoint must be seen by the next step."""
    targets = torch.tensor([[0, 1, -1, 0], [1, 0, 0, -1]], dtype=torch.float32)
    fmap = torch.randn(2, D_IN, 3, 3)
    model = _method("sarb")
    assert "bce_plrb" not in model.loss(fmap, targets, epoch=1)[1]  # no prototypes yet
    trained = _method("sarb")
    trained.refresh_prototypes(_batches(torch.ones(8, C)), seed=0)
    model.load_state_dict(trained.state_dict())
    assert "bce_plrb" in model.loss(fmap, targets, epoch=1)[1]
    model.load_state_dict(_method("sarb").state_dict())  # back to no valid prototype
    assert "bce_plrb" not in model.loss(fmap, targets, epoch=1)[1]
    model.refresh_prototypes(_batches(torch.ones(8, C)), seed=0)
    assert "bce_plrb" in model.loss(fmap, targets, epoch=1)[1]


def test_compiled_loss_without_blending_compiles_once() -> None:
    """SSGRL never blends: its compiled loss must not guard on (and recompile for) the epoch."""
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()  # a fresh cache: no entries (or recompile limit) from other tests
    model = _method("ssgrl")
    counter = CompileCounter()
    loss = torch.compile(model.loss, backend=counter)
    labels = torch.tensor([[1, 1, -1, 1]] * 2 + [[1, 0, 0, 1]] * 2, dtype=torch.float32)
    for epoch in range(3):
        loss(torch.randn(4, D_IN, 3, 3), labels, epoch)
    assert counter.frame_count == 1
