"""CSRL (SD, SAM), neck, label graph, GGNN and heads: exact small-scale checks."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from sarb.config import resolve_config
from sarb.models.csrl import Neck, SemanticAttention, SemanticDecoupling, naive_semantic_decoupling
from sarb.models.factory import DataInfo
from sarb.models.ggnn import GGNN, adjacency_from_labels
from sarb.models.heads import HEADS, PerClassLinear, SSGRLClassifier, prior_logits

B, D, E, K, C, H, W = 2, 16, 6, 8, 5, 3, 4


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _sd_inputs(b=B, d=D, h=H, w=W):
    return torch.randn(b, d, h, w), torch.randn(C, E)


# --------------------------------------------------------------------------- CSRL


def test_sd_matches_naive_and_attention_sums_to_one():
    sd = SemanticDecoupling(D, E, hidden_dim=K)
    nn.init.normal_(sd.w3.bias)  # non-zero biases: the folded W4 W3 path must still match
    nn.init.normal_(sd.w4.bias)
    fmap, emb = _sd_inputs()
    out = sd(fmap, emb)
    assert out.shape == (B, C, D)
    torch.testing.assert_close(out, naive_semantic_decoupling(sd, fmap, emb), atol=1e-5, rtol=1e-5)
    att = sd.attention(fmap, emb)
    assert att.shape == (B, C, H * W)
    assert (att >= 0).all()
    torch.testing.assert_close(att.sum(-1), torch.ones(B, C))
    # attention is not uniform: the weighting really depends on the features
    assert att.std(-1).min() > 0


def test_sd_gradients_match_naive():
    """The folded W4 W3 and the in-place tanh give the same gradients as the naive form."""
    sd = SemanticDecoupling(D, E, hidden_dim=K).double()
    fmap, emb = (t.double().requires_grad_(True) for t in _sd_inputs())
    target = torch.randn(B, C, D, dtype=torch.float64)
    grads = []
    for fn in (sd, partial(naive_semantic_decoupling, sd)):
        sd.zero_grad()
        fmap.grad = emb.grad = None
        (fn(fmap, emb) * target).sum().backward()
        grads.append([fmap.grad, emb.grad] + [p.grad.clone() for p in sd.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


def test_sd_attention_logits_equal_unfolded_w4_w3():
    sd = SemanticDecoupling(D, E, hidden_dim=K)
    fmap, emb = _sd_inputs()
    feats = fmap.flatten(2).transpose(1, 2)  # (B, L, D)
    h = torch.tanh(sd.w1(feats)[:, None] * sd.w2(emb)[None, :, None])  # (B, C, L, K)
    expected = sd.w4(sd.w3(h)).squeeze(-1)
    torch.testing.assert_close(sd.logits(feats, emb), expected, atol=1e-6, rtol=1e-5)


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any aten op produces (temporaries and backward included)."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out


def test_sd_never_builds_a_b_l_c_d_tensor():
    """No op of SD's forward or backward produces (B, L, C, D) elements; the naive one does."""
    d = 4 * K  # so that (B, L, C, D) is 4x the inherent (B, C, L, K) tensor
    sd = SemanticDecoupling(d, E, hidden_dim=K)
    fmap, emb = _sd_inputs(d=d)
    fmap.requires_grad_(True)
    big = B * H * W * C * d
    for fn, too_big in [(sd, False), (partial(naive_semantic_decoupling, sd), True)]:
        with _LargestTensor() as mode:
            fn(fmap, emb).square().sum().backward()
        assert (mode.numel >= big) == too_big, (fn, mode.numel, big)


def test_sd_rejects_wrong_embedding_dim():
    sd = SemanticDecoupling(D, E, hidden_dim=K)
    with pytest.raises(ValueError, match="embeddings"):
        sd(torch.randn(B, D, H, W), torch.randn(C, E + 1))


def test_sam_shape_normalisation_and_pooling():
    sam = SemanticAttention(D, C)
    fmap = torch.randn(B, D, H, W)
    out = sam(fmap, torch.randn(C, E))  # embeddings accepted and ignored
    assert out.shape == (B, C, D)
    torch.testing.assert_close(out, sam(fmap))
    att = sam.attention(fmap)
    assert att.shape == (B, C, H * W)
    torch.testing.assert_close(att.sum(-1), torch.ones(B, C))
    # explicit loop: x[b, c] = sum_l att[b, c, l] * f[b, :, l]
    feats = fmap.flatten(2)
    for b in range(B):
        for c in range(C):
            torch.testing.assert_close(out[b, c], (att[b, c] * feats[b]).sum(-1))
    # the ADD-GCN form: sigmoid weights, not a distribution
    sig = SemanticAttention(D, C, normalize="sigmoid")
    assert not torch.allclose(sig.attention(fmap).sum(-1), torch.ones(B, C))


@pytest.mark.parametrize(
    ("pool", "size", "out_size"), [(2, 14, 7), (1, 14, 14), (2, 7, 4), (2, 1, 1)]
)
def test_neck_shapes(pool, size, out_size):
    neck = Neck(12, 6, pool)
    out = neck(torch.randn(2, 12, size, size))
    assert out.shape == (2, 6, out_size, out_size)


def test_neck_pool_is_average_then_conv():
    neck = Neck(3, 2, pool=2).eval()
    x = torch.randn(1, 3, 4, 4)
    expected = neck.bn(neck.conv(nn.functional.avg_pool2d(x, 2)))
    torch.testing.assert_close(neck(x), expected)


# --------------------------------------------------------------------------- label graph


def test_adjacency_hand_computed():
    labels = np.array(
        [
            [1, 1, 0, -1],
            [1, 0, 1, -1],
            [1, 1, 1, 0],
            [0, 1, -1, 0],  # unknown class 0 must not count for class 1's pairs
            [-1, 1, 0, -1],
        ]
    )
    # class 0 known positive in rows 0,1,2; class 1 in 0,2,3,4; class 2 in 1,2; class 3 never
    expected = torch.tensor(
        [
            [3 / 3, 2 / 3, 2 / 3, 0],
            [2 / 4, 4 / 4, 1 / 4, 0],
            [2 / 2, 1 / 2, 2 / 2, 0],
            [0, 0, 0, 0],
        ],
        dtype=torch.float32,
    )
    adj = adjacency_from_labels(labels)
    assert adj.dtype == torch.float32
    torch.testing.assert_close(adj, expected)
    torch.testing.assert_close(adjacency_from_labels(torch.as_tensor(labels)), expected)
    assert torch.isfinite(adj).all()


def test_adjacency_matches_loop_on_random_partial_labels():
    rng = np.random.default_rng(1)
    labels = rng.choice(np.array([1, -1, 0]), size=(40, 7), p=[0.3, 0.4, 0.3])
    labels[:, 3] = np.where(labels[:, 3] == 1, 0, labels[:, 3])  # class 3: no known positive
    adj = adjacency_from_labels(labels).numpy()
    for i in range(7):
        ni = (labels[:, i] == 1).sum()
        for j in range(7):
            nij = ((labels[:, i] == 1) & (labels[:, j] == 1)).sum()
            assert adj[i, j] == pytest.approx(nij / ni if ni else 0.0)


# --------------------------------------------------------------------------- GGNN


def _ggnn_reference(g: GGNN, x, adj):
    """The SSGRL equations with each gate's W / U slice applied separately, step by step."""
    d = g.dim
    wz, wr, wh = g.w.weight.split(d, 0)
    bz, br, bh = g.w.bias.split(d, 0)
    uz, ur = g.u_zr.weight.split(d, 0)
    h = x
    for _ in range(g.steps):
        a = torch.cat([adj @ h, adj.T @ h], -1)
        z = torch.sigmoid(a @ wz.T + bz + h @ uz.T)
        r = torch.sigmoid(a @ wr.T + br + h @ ur.T)
        hh = torch.tanh(a @ wh.T + bh + (r * h) @ g.u_h.weight.T)
        h = (1 - z) * h + z * hh
    return h


def test_ggnn_matches_reference_equations():
    g = GGNN(D, steps=3)
    x, adj = torch.randn(B, C, D), torch.rand(C, C)
    torch.testing.assert_close(g(x, adj), _ggnn_reference(g, x, adj), atol=1e-5, rtol=1e-5)


def test_ggnn_zero_row_stays_finite():
    labels = torch.tensor([[1, 1, 0], [1, -1, 0], [0, 1, -1]])  # class 2: no known positive
    adj = adjacency_from_labels(labels)
    assert (adj[2] == 0).all()
    g = GGNN(D, steps=3)
    out = g(torch.randn(B, 3, D), adj)
    assert out.shape == (B, 3, D)
    assert torch.isfinite(out).all()


def test_ggnn_zero_adjacency_still_updates_through_gates():
    g = GGNN(D, steps=2)
    x, adj = torch.randn(B, C, D), torch.zeros(C, C)
    out = g(x, adj)
    assert out.shape == x.shape
    assert not torch.allclose(out, x)  # h changes through z, r, U_h and the bias
    torch.testing.assert_close(out, g(x, adj), rtol=0, atol=0)  # deterministic
    torch.testing.assert_close(out, _ggnn_reference(g, x, adj), atol=1e-6, rtol=1e-5)
    # with no edges, a node only sees itself: permuting the nodes permutes the output
    perm = torch.randperm(C)
    torch.testing.assert_close(g(x[:, perm], adj), out[:, perm], atol=1e-6, rtol=1e-5)


def test_ggnn_batch_independence():
    g = GGNN(D, steps=3)
    adj = torch.rand(C, C)
    xs = [torch.randn(B, C, D) for _ in range(3)]
    joint = g(torch.cat(xs), adj)
    separate = torch.cat([g(x, adj) for x in xs])
    torch.testing.assert_close(joint, separate, atol=1e-6, rtol=1e-5)


def test_ggnn_rejects_wrong_adjacency():
    with pytest.raises(ValueError, match="adjacency"):
        GGNN(D)(torch.randn(B, C, D), torch.rand(C + 1, C + 1))


# --------------------------------------------------------------------------- heads


def test_per_class_linear_equals_loop_and_init_range():
    pcl = PerClassLinear(C, D)
    x = torch.randn(B, C, D)
    out = pcl(x)
    assert out.shape == (B, C)
    for c in range(C):
        torch.testing.assert_close(out[:, c], x[:, c] @ pcl.weight[c] + pcl.bias[c])
    bound = 1 / D**0.5
    assert pcl.weight.abs().max() <= bound and pcl.bias.abs().max() <= bound
    assert pcl.weight.std() > bound / 4  # not degenerate (e.g. all zeros)


def test_ssgrl_classifier_formula():
    head = SSGRLClassifier(C, D, out_dim=12)
    h, x = torch.randn(B, C, D), torch.randn(B, C, D)
    o = torch.tanh(torch.cat([h, x], -1) @ head.fc.weight.T + head.fc.bias)  # (B, C, 12)
    expected = (o * head.per_class.weight).sum(-1) + head.per_class.bias
    torch.testing.assert_close(head(h, x), expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["linear", "csrl", "gcn", "kggr"])
def test_head_is_features_then_classify(name):
    """Every head runs in two stages; category-specific ones give (B, C, D) features."""
    assert set(HEADS.names()) == {"linear", "csrl", "gcn", "kggr"}
    cfg = resolve_config(None, head=name, feat_dim=D, hidden_dim=K, neck_pool=1)
    labels = np.array([[1, 1, 0, -1, 1], [1, -1, 1, 0, -1], [0, 1, 1, -1, 1]])
    head = HEADS.create(name, cfg, 10, DataInfo(list("abcde"), None, labels)).eval()
    fmap = torch.randn(B, 10, H, W)
    z = head.features(fmap)
    if head.category_specific:
        assert z.shape == (B, C, D)
    else:
        assert z.dim() == 2 and z.shape[0] == B
    torch.testing.assert_close(head(fmap), head.classify(z), rtol=0, atol=0)
    assert head.classify(torch.cat([z, z])).shape == (2 * B, C)


def test_prior_logits_hand_computed():
    labels = torch.tensor([[1, -1, 0], [1, -1, 0], [-1, -1, 0], [-1, 1, 0]])
    # class 0: 2 of 4 known positive -> (2+1)/(4+2) = 0.5; class 1: 1 of 4 -> 2/6; class 2: none
    expected = torch.tensor([0.0, np.log(2 / 4), 0.0], dtype=torch.float32)
    torch.testing.assert_close(prior_logits(labels), expected)
    torch.testing.assert_close(prior_logits(labels.numpy()), expected)


def test_csrl_head_starts_at_the_class_prior():
    """``--bias-init prior``: an untrained csrl head's sigmoid sits near each class's share of
    known positives; ``uniform`` keeps PyTorch's start; kggr's biases start at 0 either way."""
    rng = np.random.default_rng(0)
    share = np.array([0.02, 0.05, 0.2, 0.5, 0.8])
    labels = np.where(rng.random((400, C)) < share, 1, -1)
    labels[rng.random((400, C)) < 0.5] = 0  # half unknown
    info = DataInfo(list("abcde"), None, labels)
    cfg = resolve_config(None, head="csrl", feat_dim=D, hidden_dim=K, neck_pool=1)
    bias = HEADS.create("csrl", cfg, 10, info).classifier.per_class.bias
    known = labels != 0
    observed = ((labels == 1) & known).sum(0) / known.sum(0)
    np.testing.assert_allclose(torch.sigmoid(bias).detach().numpy(), observed, atol=0.01)
    assert bias.requires_grad
    uniform = resolve_config(None, head="csrl", feat_dim=D, hidden_dim=K, bias_init="uniform")
    assert HEADS.create("csrl", uniform, 10, info).classifier.per_class.bias.abs().max() <= D**-0.5
    kggr = resolve_config(None, head="kggr", feat_dim=D, hidden_dim=K, neck_pool=1)
    assert HEADS.create("kggr", kggr, 10, info).bias.abs().max() == 0


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("variant", ["sd", "sam"])
def test_gradients_reach_every_parameter(variant):
    neck = Neck(10, D, pool=2, relu=True)
    csrl = SemanticDecoupling(D, E, K) if variant == "sd" else SemanticAttention(D, C)
    ggnn, head = GGNN(D, steps=2), SSGRLClassifier(C, D, out_dim=12)
    emb = nn.Parameter(torch.randn(C, E))
    adj = adjacency_from_labels(torch.tensor([[1, 1, 0, 1, -1], [1, 0, 1, -1, 1]]))
    x = csrl(neck(torch.randn(B, 10, 6, 6)), emb)
    logits = head(ggnn(torch.cat([x, x.flip(0), 0.5 * x]), adj), torch.cat([x, x, x]))
    assert logits.shape == (3 * B, C)
    logits.sum().backward()
    modules = [neck, csrl, ggnn, head]
    params = [(n, p) for m in modules for n, p in m.named_parameters()]
    if variant == "sd":
        params.append(("embeddings", emb))
    # a per-class constant added to the logits of a softmax over locations has zero gradient:
    # these biases are kept for the paper's parameterisation but cannot learn anything
    shift_invariant = {"w3.bias", "w4.bias", "cam.bias"}
    for name, p in params:
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        if name not in shift_invariant:
            assert p.grad.abs().sum() > 0, name


def test_pipeline_runs_under_autocast():
    """Mixed precision: no op may insist on matching dtypes (e.g. lerp of fp32 and bf16)."""
    neck, sd, sam = Neck(10, D), SemanticDecoupling(D, E, K), SemanticAttention(D, C)
    ggnn, head = GGNN(D), SSGRLClassifier(C, D, out_dim=12)
    adj = torch.rand(C, C)
    fmap, emb = torch.randn(B, 10, 6, 6), torch.randn(C, E)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for csrl in (sd, sam):
            x = csrl(neck(fmap), emb)
            logits = head(ggnn(x, adj), x)
            assert logits.shape == (B, C)
            assert torch.isfinite(logits).all()
