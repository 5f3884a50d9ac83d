"""SARB as composed by ``sarb.methods``: one GGNN pass, prototype refresh, schedule, and the
composition of a method from its parts (head, loss, augmentations) and presets."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

import sarb.methods.augmentations as augmentations
from sarb.config import add_config_arguments, resolve_config
from sarb.errors import SarbError
from sarb.methods import Method, build_method, check_parts
from sarb.models.factory import DataInfo

C, D_IN = 4, 128  # D_IN: channels of the cnn3 backbone's feature map
LABELS = np.array([[1, -1, 0, 1], [1, 1, -1, 0], [0, 1, -1, -1]])
SMALL = dict(
    backbone="cnn3", weights="random", feat_dim=6, hidden_dim=5, neck_pool=1, num_prototypes=3,
    blend_start=1, proto_every=2,
)  # fmt: skip


def _config(**overrides):
    return resolve_config(None, **{**SMALL, **overrides})


def _build(cfg, seed: int = 0) -> Method:
    torch.manual_seed(seed)
    method = build_method(cfg, DataInfo(list("abcd"), None, LABELS))
    method.model.takes_feature_maps = True  # the tests feed backbone feature maps directly
    return method


def _method(name: str, **overrides) -> Method:
    return _build(_config(method=name, **overrides))


def _batches(labels: torch.Tensor, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    fmaps = torch.randn(len(labels), D_IN, 3, 3, generator=gen)
    return lambda: [(fmaps[i : i + 4], labels[i : i + 4]) for i in range(0, len(labels), 4)]


def _step(method: Method, fmap: torch.Tensor, targets: torch.Tensor, epoch: int):
    return method(fmap, targets, torch.arange(len(targets)), epoch)


def _refresh(method: Method, batches, seed: int = 0) -> None:
    method.augmentations["plrb"].refresh_prototypes(method.model.head, batches, seed=seed)


def test_branches_share_one_ggnn_pass() -> None:
    method = _method("sarb")
    labels = torch.tensor([[1, 1, -1, 1]] * 6 + [[1, 0, 0, 1]] * 6, dtype=torch.float32)
    _refresh(method, _batches(labels))
    calls = []
    method.model.head.ggnn.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    targets = torch.tensor([[0, 1, -1, 0], [1, 0, 0, -1], [1, 1, 1, 0]], dtype=torch.float32)
    fmap = torch.randn(3, D_IN, 3, 3)
    loss, terms = _step(method, fmap, targets, epoch=1)
    assert calls == [9]  # plain + ILRB + PLRB, batched: 3 x 3 images
    assert set(terms) == {"bce", "bce_ilrb", "bce_plrb", "contrastive"}
    assert torch.isfinite(loss)
    calls.clear()
    _, terms = _step(method, fmap, targets, epoch=0)  # before blend_start: the plain branch only
    assert calls == [3] and set(terms) == {"bce", "contrastive"}


def test_teacher_targets_score_the_batch_once_and_keep_its_loss() -> None:
    labels = torch.tensor([[1, 1, -1, 1]] * 6 + [[1, 0, 0, 1]] * 6, dtype=torch.float32)
    targets = torch.tensor([[0, 1, -1, 0], [1, 0, 0, -1], [1, 1, 1, 0]], dtype=torch.float32)
    fmap = torch.randn(3, D_IN, 3, 3)
    out = {}
    for option in ("paper", "teacher"):
        method = _method("sarb", blend_targets=option)
        _refresh(method, _batches(labels))
        calls: list[int] = []
        method.model.head.ggnn.register_forward_hook(
            lambda m, i, o, calls=calls: calls.append(i[0].shape[0])
        )
        torch.manual_seed(0)
        out[option] = _step(method, fmap, targets, epoch=1)[1], calls
    (paper, paper_calls), (teacher, teacher_calls) = out["paper"], out["teacher"]
    assert paper_calls == [9] and teacher_calls == [3, 6]  # the batch first, then the blends
    assert torch.allclose(paper["bce"], teacher["bce"])
    # the blended targets differ (a s + 1 - a instead of 1 - a), so the blended losses do
    assert not torch.allclose(paper["bce_ilrb"], teacher["bce_ilrb"])
    method = _method("sarb", blend_targets="teacher")  # before blending: the paper's one pass
    calls.clear()
    method.model.head.ggnn.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    _step(method, fmap, targets, epoch=0)
    assert calls == [3]


def test_blend_options_need_blending() -> None:
    with pytest.raises(SarbError, match="--blend-targets teacher needs --augment ilrb or plrb"):
        check_parts(_config(method="ssgrl", blend_targets="teacher"))
    cfg = _config(method="sarb", blend_targets="teacher", blend_loss="blended")
    assert cfg.method == "csrl+partial-bce+ilrb+plrb+contrastive+teacher+blended"


def test_ssgrl_has_no_blending_and_no_contrastive_term() -> None:
    method = _method("ssgrl")
    _, terms = _step(method, torch.randn(2, D_IN, 3, 3), torch.ones(2, C), epoch=9)
    assert set(terms) == {"bce"}
    assert len(method.augmentations) == 0
    assert not any("prototypes" in k or "weight.raw" in k for k in method.state_dict())


def test_prototype_refresh_handles_rare_and_absent_classes(monkeypatch) -> None:
    method = _method("sarb-plrb")
    plrb = method.augmentations["plrb"]
    # class 0: 12 known positives; class 1: 2; class 2: none (only negatives/unknown); class 3: 5
    labels = torch.full((12, C), -1.0)
    labels[:, 0] = 1
    labels[:2, 1] = 1
    labels[:, 2] = torch.tensor([0, -1] * 6, dtype=torch.float32)
    labels[3:8, 3] = 1
    batches = _batches(labels)
    method.eval()
    _refresh(method, batches)
    valid = plrb.prototype_valid
    assert valid.sum(1).tolist() == [3, 2, 0, 3]
    with torch.no_grad():
        feats = torch.cat([method.model.head.features(f) for f, _ in batches()])  # (12, C, D)
    rare = plrb.prototypes[1][valid[1]]
    expected = feats[:2, 1]
    assert torch.allclose(torch.sort(rare, 0).values, torch.sort(expected, 0).values, atol=1e-6)
    first = plrb.prototypes.clone()
    _refresh(method, batches)
    assert torch.equal(first, plrb.prototypes)  # seeded
    monkeypatch.setattr(augmentations, "MAX_POINTS_PER_CLASS", 4)  # class 0 sampled down to 4
    _refresh(method, batches)
    assert plrb.prototype_valid.sum(1).tolist() == [3, 2, 0, 3]
    pool = feats[:, 0]
    dist = torch.cdist(plrb.prototypes[0], pool).min(1).values
    assert float(dist.max()) < float(torch.cdist(pool, pool).max())


@pytest.mark.parametrize(("epoch", "due"), [(0, False), (1, True), (2, False), (3, True)])
def test_prototypes_follow_the_schedule(epoch: int, due: bool) -> None:
    method = _method("sarb")
    method.on_epoch_start(epoch, _batches(torch.ones(8, C)))
    assert bool(method.augmentations["plrb"].prototype_valid.any()) is due


def test_checkpoint_state_holds_prototypes_and_blend_weights() -> None:
    method = _method("sarb")
    _refresh(method, _batches(torch.ones(8, C)))
    # the engine checkpoints the model and the augmentations separately
    model_state, aug_state = method.model.state_dict(), method.augmentations.state_dict()
    assert "head.adjacency" in model_state
    assert {"plrb.prototypes", "plrb.prototype_valid", "ilrb.weight.raw", "plrb.weight.raw"} <= set(
        aug_state
    )
    assert not any("prototypes" in k or "weight.raw" in k for k in model_state)  # not the model's
    clone = _method("sarb")
    clone.model.load_state_dict(model_state)
    clone.augmentations.load_state_dict(aug_state)
    assert torch.equal(
        clone.augmentations["plrb"].prototypes, method.augmentations["plrb"].prototypes
    )
    fmap = torch.randn(2, D_IN, 3, 3)
    method.eval(), clone.eval()
    assert torch.equal(method.model(fmap), clone.model(fmap))


def test_plrb_follows_loaded_and_refreshed_prototypes() -> None:
    """The 'any prototype valid' flag is cached (no device read per step), but a refresh or a
    loaded checkpoint must be seen by the next step."""
    targets = torch.tensor([[0, 1, -1, 0], [1, 0, 0, -1]], dtype=torch.float32)
    fmap = torch.randn(2, D_IN, 3, 3)
    method = _method("sarb")
    assert "bce_plrb" not in _step(method, fmap, targets, epoch=1)[1]  # no prototypes yet
    trained = _method("sarb")
    _refresh(trained, _batches(torch.ones(8, C)))
    method.load_state_dict(trained.state_dict())
    assert "bce_plrb" in _step(method, fmap, targets, epoch=1)[1]
    method.load_state_dict(_method("sarb").state_dict())  # back to no valid prototype
    assert "bce_plrb" not in _step(method, fmap, targets, epoch=1)[1]
    method.augmentations.load_state_dict(trained.augmentations.state_dict())  # as on resume
    assert "bce_plrb" in _step(method, fmap, targets, epoch=1)[1]
    method.augmentations.load_state_dict(_method("sarb").augmentations.state_dict())
    assert "bce_plrb" not in _step(method, fmap, targets, epoch=1)[1]
    _refresh(method, _batches(torch.ones(8, C)))
    assert "bce_plrb" in _step(method, fmap, targets, epoch=1)[1]


def test_compiled_loss_without_blending_compiles_once() -> None:
    """SSGRL never blends: its compiled step must not guard on (and recompile for) the epoch."""
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()  # a fresh cache: no entries (or recompile limit) from other tests
    method = _method("ssgrl")
    counter = CompileCounter()
    step = torch.compile(method, backend=counter)
    labels = torch.tensor([[1, 1, -1, 1]] * 2 + [[1, 0, 0, 1]] * 2, dtype=torch.float32)
    for epoch in range(3):
        step(torch.randn(4, D_IN, 3, 3), labels, torch.arange(4), epoch)
    assert counter.frame_count == 1


# --------------------------------------------------------------------------- composition


def _one_line_error(**parts) -> str:
    cfg = _config(**parts)
    with pytest.raises(SarbError) as err:
        check_parts(cfg)
    with pytest.raises(SarbError) as built:  # build_method checks before building anything
        build_method(cfg, DataInfo(list("abcd"), None, LABELS))
    assert str(built.value) == str(err.value)
    assert "\n" not in str(err.value)
    return str(err.value)


def test_check_parts_rejects_parts_that_do_not_fit() -> None:
    text = _one_line_error(head="linear", augment="ilrb")
    assert text.startswith("--augment ilrb") and "--head" in text and "linear" in text
    assert "csrl" in text  # names a head that fits
    text = _one_line_error(head="gcn", attention="sam")
    assert text.startswith("--attention sam") and "--head" in text and "gcn" in text
    # the same parts with a head that fits are accepted, in the order they run
    assert check_parts(_config(head="csrl", augment="ilrb")) == ["ilrb"]
    assert check_parts(_config(head="csrl", attention="sam")) == []


def test_parts_resolve_to_the_preset_or_a_composed_name() -> None:
    cfg = resolve_config(None, head="csrl", loss="partial-bce", augment="ilrb,plrb,contrastive")
    assert cfg.method == "sarb"
    cfg = resolve_config(None, head="csrl", augment="plrb,ilrb")
    assert cfg.method == "csrl+partial-bce+plrb+ilrb"
    assert (cfg.loss, cfg.attention, cfg.blend_weights) == ("partial-bce", "sd", "learned")
    assert check_parts(cfg) == ["ilrb", "plrb"]  # augmentations run in registry order


def test_a_part_flag_overrides_the_preset() -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(["--method", "sarb", "--augment", "ilrb,plrb"])
    cfg = resolve_config(args, **SMALL)
    assert (cfg.head, cfg.loss, cfg.augment) == ("csrl", "partial-bce", "ilrb,plrb")
    assert cfg.method == "csrl+partial-bce+ilrb+plrb"  # no longer the sarb preset
    method = _build(cfg)
    assert list(method.augmentations) == ["ilrb", "plrb"]  # no contrastive augmentation
    labels = torch.tensor([[1, 1, -1, 1]] * 4, dtype=torch.float32)
    _refresh(method, _batches(labels))
    targets = torch.tensor([[0, 1, -1, 0], [1, 0, 0, -1], [1, 1, 1, 0]], dtype=torch.float32)
    _, terms = _step(method, torch.randn(3, D_IN, 3, 3), targets, epoch=1)
    assert set(terms) == {"bce", "bce_ilrb", "bce_plrb"}
    full = _method("sarb")
    assert list(full.augmentations) == ["ilrb", "plrb", "contrastive"]


def test_preset_and_its_parts_build_the_same_method() -> None:
    preset = _config(method="sarb")
    parts = _config(head="csrl", loss="partial-bce", augment="contrastive,plrb,ilrb")
    assert parts.method == "sarb" and parts.augment != preset.augment
    a, b = _build(preset, seed=3), _build(parts, seed=3)
    assert list(a.augmentations) == list(b.augmentations) == ["ilrb", "plrb", "contrastive"]
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)  # bit-identical parameters and buffers
    labels = torch.tensor([[1, 1, -1, 1]] * 6 + [[1, 0, 0, 1]] * 6, dtype=torch.float32)
    _refresh(a, _batches(labels))
    _refresh(b, _batches(labels))
    targets = torch.tensor([[0, 1, -1, 0], [1, 0, 0, -1], [1, 1, 1, 0]], dtype=torch.float32)
    fmap = torch.randn(3, D_IN, 3, 3)
    results = []
    for method in (a, b):
        torch.manual_seed(7)  # ILRB's partners and PLRB's classes are random
        results.append(_step(method, fmap, targets, epoch=1))
    (loss_a, terms_a), (loss_b, terms_b) = results
    assert set(terms_a) == {"bce", "bce_ilrb", "bce_plrb", "contrastive"}
    assert torch.equal(loss_a, loss_b)
    assert terms_a.keys() == terms_b.keys()
    assert all(torch.equal(terms_a[k], terms_b[k]) for k in terms_a)


def test_contrastive_weight_ramps_over_the_first_epoch_only() -> None:
    method = _method("sarb")
    targets = torch.tensor([[1, -1, -1, 1], [1, 1, -1, -1], [-1, 1, 1, -1]], dtype=torch.float32)
    fmap = torch.randn(3, D_IN, 3, 3)
    losses = {}
    for epoch, fraction in [(0, 0.0), (0, 0.5), (1, 0.0)]:
        method.on_step(epoch, fraction)
        loss, terms = _step(method, fmap, targets, epoch)
        bce = sum(v for k, v in terms.items() if k.startswith("bce"))
        losses[epoch, fraction] = (loss - bce).item() / terms["contrastive"].item()
    assert losses[0, 0.0] == 0.0
    assert losses[0, 0.5] == pytest.approx(0.025, rel=1e-4)  # lambda 0.05, half-way through epoch 0
    assert losses[1, 0.0] == pytest.approx(0.05, rel=1e-4)
    steady = _method("sarb", contrastive_warmup=False)
    steady.on_step(0, 0.0)
    assert float(steady.augmentations["contrastive"].penalty_scale()) == pytest.approx(0.05)


def test_the_backbone_trains_at_its_own_learning_rate() -> None:
    method = _method("ssgrl", trainable="all")
    plain = method.param_groups(1e-3)
    assert len(plain) == 1  # one learning rate for all
    groups = method.param_groups(1e-3, backbone_lr_mult=0.1)
    backbone = {id(p) for p in method.model.backbone.parameters()}
    assert [g.get("lr") for g in groups] == [None, pytest.approx(1e-4)]
    assert {id(p) for p in groups[1]["params"]} == backbone
    assert backbone.isdisjoint(id(p) for p in groups[0]["params"])
    assert sum(len(g["params"]) for g in groups) == len(plain[0]["params"])


def test_sarb_plus_is_ilrb_with_a_fixed_and_no_contrastive_loss() -> None:
    cfg = _config(method="sarb-plus")
    assert (cfg.head, cfg.loss, cfg.augment) == ("csrl", "partial-bce", "ilrb")
    assert (cfg.blend_weights, cfg.blend_targets, cfg.blend_loss) == ("fixed", "paper", "paper")
    # the same parts given without --method carry the preset's name; the paper's ablation
    # with a fixed keeps the contrastive loss and its own name
    assert _config(head="csrl", augment="ilrb", blend_weights="fixed").method == "sarb-plus"
    assert _config(method="sarb-ilrb-fixed").augment == "ilrb,contrastive"
    assert _config(method="sarb-plus", augment="ilrb,contrastive").method == "sarb-ilrb-fixed"
    assert _config(method="sarb-plus", blend_targets="teacher").method == (
        "csrl+partial-bce+ilrb+fixed+teacher"
    )
    method = _build(cfg)
    assert set(method.augmentations) == {"ilrb"}
    assert not list(method.augmentations["ilrb"].parameters())  # a is a buffer: it never moves
    targets = torch.tensor([[0, 1, -1, 0], [1, 0, 0, -1], [1, 1, 1, 0]], dtype=torch.float32)
    loss, terms = _step(method, torch.randn(3, D_IN, 3, 3), targets, epoch=1)
    assert set(terms) == {"bce", "bce_ilrb"} and torch.isfinite(loss)
    loss.backward()
    assert float(method.augmentations["ilrb"].weight()) == pytest.approx(0.5)
