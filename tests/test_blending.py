"""ILRB, PLRB and the learnable blend weights (SARB §5)."""

import pytest
import torch

from sarb.losses import partial_bce
from sarb.methods.blending import BlendWeight, ilrb, plrb


def _features(b: int, c: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, c, d, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- ILRB


def test_ilrb_blends_exactly_unknown_with_positive_partner():
    x = _features(3, 4, 5)
    t = torch.tensor(
        [
            [0.0, 0.0, 1.0, -1.0],
            [1.0, -1.0, 0.0, 0.0],
            [1.0, 1.0, 0.0, 0.0],
        ]
    )
    perm = torch.tensor([2, 0, 1])  # partners: 0 <- 2, 1 <- 0, 2 <- 1
    a = torch.tensor(0.3)
    xo, to = ilrb(x, t, a, perm)
    # image 0 (partner 2): classes 0, 1 unknown and partner-positive -> blended.
    # image 1 (partner 0): classes 2, 3 unknown; partner has 1 / -1 -> class 2 only.
    # image 2 (partner 1): classes 2, 3 unknown; partner has 0 / 0 -> nothing.
    expected = torch.zeros(3, 4, dtype=torch.bool)
    expected[0, 0] = expected[0, 1] = expected[1, 2] = True
    for n in range(3):
        for c in range(4):
            if expected[n, c]:
                m = int(perm[n])
                assert torch.allclose(xo[n, c], 0.3 * x[n, c] + 0.7 * x[m, c], atol=1e-6)
                assert to[n, c].item() == pytest.approx(0.7)
            else:
                assert torch.equal(xo[n, c], x[n, c])  # bit-identical
                assert to[n, c].item() == t[n, c].item()


def test_ilrb_identity_permutation_changes_nothing():
    x = _features(4, 3, 2)
    t = torch.tensor([[0.0, 1.0, -1.0]] * 4)
    xo, to = ilrb(x, t, torch.tensor(0.5), torch.arange(4))
    assert torch.equal(xo, x) and torch.equal(to, t)


def test_ilrb_targets_and_features_carry_gradient_to_alpha():
    weight = BlendWeight(0.5)
    x = _features(2, 2, 3)
    t = torch.tensor([[0.0, -1.0], [1.0, 1.0]])
    xo, to = ilrb(x, t, weight(), torch.tensor([1, 0]))
    assert to.requires_grad and xo.requires_grad
    logits = xo.sum(-1)  # any function of the blended features
    partial_bce(logits, to).backward()
    assert weight.raw.grad is not None and weight.raw.grad.item() != 0.0


# ---------------------------------------------------------------- PLRB

C, K, D = 5, 4, 3


def _prototypes() -> tuple[torch.Tensor, torch.Tensor]:
    protos = 100.0 + torch.arange(C * K * D, dtype=torch.float32).reshape(C, K, D)
    valid = torch.ones(C, K, dtype=torch.bool)
    valid[1] = False  # class 1: no prototype at all
    valid[3, 2:] = False  # class 3: fewer than K prototypes (indices 0, 1)
    return protos, valid


def test_plrb_blends_one_eligible_class_per_image():
    protos, valid = _prototypes()
    b = 64
    x = _features(b, C, D, seed=1)
    gen = torch.Generator().manual_seed(0)
    t = torch.where(torch.rand(b, C, generator=gen) < 0.5, 0.0, 1.0)
    t[:, 4] = -1.0
    t[0] = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0])  # all known: untouched
    t[1] = torch.tensor([1.0, 0.0, 1.0, -1.0, 1.0])  # only unknown class has no prototype
    beta = torch.tensor(0.25)
    xo, to = plrb(x, t, beta, protos, valid, generator=gen)
    changed = to != t  # (B, C)
    for n in range(b):
        eligible = [c for c in range(C) if t[n, c] == 0 and valid[c].any()]
        if not eligible:
            assert torch.equal(xo[n], x[n]) and torch.equal(to[n], t[n])
            continue
        cols = changed[n].nonzero().flatten().tolist()
        assert len(cols) == 1 and cols[0] in eligible
        c = cols[0]
        assert to[n, c].item() == pytest.approx(0.75)
        # the blended feature is 0.25 x + 0.75 p^k_c for a VALID prototype k of c
        p = (xo[n, c] - 0.25 * x[n, c]) / 0.75
        dist = (protos[c] - p).norm(dim=-1)
        k = int(dist.argmin())
        assert dist[k] < 1e-3 and valid[c, k]
        for other in range(C):
            if other != c:
                assert torch.equal(xo[n, other], x[n, other])
    assert torch.equal(xo[0], x[0]) and torch.equal(xo[1], x[1])
    assert not changed[:, 1].any()  # a class without prototypes is never chosen


def test_plrb_few_prototypes_class_uses_only_valid_ones():
    protos, valid = _prototypes()
    b = 200
    x = torch.zeros(b, C, D)
    t = torch.ones(b, C)
    t[:, 3] = 0.0  # the only eligible class: 2 valid prototypes of 4
    xo, to = plrb(x, t, torch.tensor(0.5), protos, valid, generator=torch.Generator())
    assert torch.all(to[:, 3] == 0.5)
    picked = xo[:, 3] / 0.5  # (B, D) = the prototypes themselves since x = 0
    ks = ((picked[:, None, :] - protos[3][None]).norm(dim=-1)).argmin(dim=1)
    assert set(ks.tolist()) == {0, 1}  # both valid ones occur, never an invalid one


def test_plrb_prototypes_drawn_independently_per_image():
    protos, valid = _prototypes()
    b = 64
    x = torch.zeros(b, C, D)
    t = -torch.ones(b, C)
    t[:, 0] = 0.0  # fixed class, 4 valid prototypes
    xo, _ = plrb(x, t, torch.tensor(0.5), protos, valid, generator=torch.Generator())
    ks = ((xo[:, 0, None, :] / 0.5 - protos[0][None]).norm(dim=-1)).argmin(dim=1)
    assert len(set(ks.tolist())) >= 3  # one shared index per batch would give exactly 1


def test_plrb_is_reproducible_with_generator_and_classes_vary():
    protos, valid = _prototypes()
    x = _features(32, C, D)
    t = torch.zeros(32, C)
    out1 = plrb(x, t, torch.tensor(0.5), protos, valid, torch.Generator().manual_seed(3))
    out2 = plrb(x, t, torch.tensor(0.5), protos, valid, torch.Generator().manual_seed(3))
    assert torch.equal(out1[0], out2[0]) and torch.equal(out1[1], out2[1])
    chosen = (out1[1] != 0).nonzero()[:, 1]
    assert len(chosen) == 32 and set(chosen.tolist()) == {0, 2, 3, 4}


def test_plrb_all_known_or_no_prototypes_is_identity():
    protos, valid = _prototypes()
    x = _features(6, C, D)
    t = torch.ones(6, C)
    xo, to = plrb(x, t, torch.tensor(0.5), protos, valid)
    assert torch.equal(xo, x) and torch.equal(to, t)
    xo, to = plrb(x, torch.zeros(6, C), torch.tensor(0.5), protos, torch.zeros(C, K, dtype=bool))
    assert torch.equal(xo, x) and torch.equal(to, torch.zeros(6, C))


def test_plrb_gradient_reaches_beta():
    protos, valid = _prototypes()
    weight = BlendWeight(0.5)
    x = _features(4, C, D)
    t = torch.ones(4, C)
    t[:, 0] = 0.0
    xo, to = plrb(x, t, weight(), protos, valid, torch.Generator().manual_seed(0))
    partial_bce(0.01 * xo.sum(-1), to).backward()
    assert weight.raw.grad is not None and weight.raw.grad.item() != 0.0


# ---------------------------------------------------------------- BlendWeight


def test_blend_weight_init_and_fixed_variant():
    assert BlendWeight().forward().item() == 0.5
    assert BlendWeight(0.2)().item() == pytest.approx(0.2, abs=1e-6)
    fixed = BlendWeight(0.5, learnable=False)
    assert list(fixed.parameters()) == []
    assert "raw" in fixed.state_dict() and "raw" in BlendWeight().state_dict()
    assert fixed().item() == 0.5 and not fixed().requires_grad
    with pytest.raises(ValueError):
        BlendWeight(1.0)


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_blend_weight_stays_in_open_interval(direction):
    weight = BlendWeight(0.5)
    opt = torch.optim.SGD(weight.parameters(), lr=1e4)
    for _ in range(5):
        opt.zero_grad()
        (direction * weight()).backward()
        opt.step()
    value = weight().item()
    assert 0.0 < value < 1.0
    assert (value < 0.01) if direction > 0 else (value > 0.99)


# ---------------------------------------------------------------- sarb-plus target options


def test_blended_targets_add_the_own_share_times_the_scores():
    x = _features(2, 3, 4)
    t = torch.tensor([[0.0, 0.0, -1.0], [1.0, 1.0, 0.0]])
    s = torch.tensor([[0.9, 0.2, 0.4], [0.6, 0.7, 0.1]])
    a = torch.tensor(0.3)
    _, paper = ilrb(x, t, a, torch.tensor([1, 0]))
    _, teacher = ilrb(x, t, a, torch.tensor([1, 0]), scores=s)
    blended = paper != t  # image 0, classes 0 and 1
    assert blended.tolist() == [[True, True, False], [False, False, False]]
    assert torch.allclose(teacher[blended], 0.3 * s[blended] + 0.7)
    assert torch.equal(teacher[~blended], t[~blended])
    protos, valid = _prototypes()
    xb, tb = _features(8, C, D, seed=2), torch.zeros(8, C)
    sb = torch.rand(8, C, generator=torch.Generator().manual_seed(3))
    _, to = plrb(xb, tb, torch.tensor(0.25), protos, valid,
                 generator=torch.Generator().manual_seed(0), scores=sb)  # fmt: skip
    hit = to != 0
    assert hit.sum(1).tolist() == [1] * 8
    assert torch.allclose(to[hit], 0.25 * sb[hit] + 0.75)


def test_only_blended_leaves_every_other_entry_unknown():
    x = _features(2, 3, 4)
    t = torch.tensor([[0.0, 1.0, -1.0], [1.0, -1.0, 0.0]])
    _, to = ilrb(x, t, torch.tensor(0.5), torch.tensor([1, 0]), only_blended=True)
    assert to.tolist() == [[0.5, 0.0, 0.0], [0.0, 0.0, 0.0]]
    protos, valid = _prototypes()
    tb = torch.tensor([[0.0, 1.0, -1.0, -1.0, -1.0]] * 4)
    _, tp = plrb(_features(4, C, D), tb, torch.tensor(0.25), protos, valid, only_blended=True)
    assert torch.equal(tp[:, 0], torch.full((4,), 0.75)) and not tp[:, 1:].any()


def test_plrb_blends_several_eligible_classes_per_image_when_asked():
    protos, valid = _prototypes()
    t = torch.zeros(64, C)
    t[:, 4] = 1.0  # eligible: classes 0, 2, 3 (1 has no prototype, 4 is known)
    t[0, :] = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0])  # one eligible class only (0)
    x = _features(64, C, D, seed=4)
    xo, to = plrb(x, t, torch.tensor(0.25), protos, valid,
                  generator=torch.Generator().manual_seed(0), per_image=2)  # fmt: skip
    blended = to != t
    assert blended[1:].sum(1).tolist() == [2] * 63 and blended[0].tolist() == [1, 0, 0, 0, 0]
    assert not blended[:, 1].any() and not blended[:, 4].any()
    assert len({tuple(r) for r in blended[1:].tolist()}) == 3  # every pair of 0, 2, 3 drawn
    for n, c in blended.nonzero().tolist():
        p = (xo[n, c] - 0.25 * x[n, c]) / 0.75  # a valid prototype of that class
        dist = (protos[c] - p).norm(dim=-1)
        assert dist.min() < 1e-3 and valid[c, dist.argmin()]
    untouched = ~blended[..., None].expand_as(x)
    assert torch.equal(xo[untouched], x[untouched])
