"""SD's chunked tanh attention: gradients, equality with the naive SD, memory, autocast, compile."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sarb.bench import peak_memory
from sarb.models.csrl import SemanticDecoupling, naive_semantic_decoupling, tanh_attention_logits

B, D, E, K, C, H, W = 2, 16, 6, 8, 5, 3, 4
L = H * W
TWO_CLASSES = 2 * B * L * K  # chunk_elements for chunks of 2, 2 and 1 of the C = 5 classes
CHUNKINGS = [1, TWO_CLASSES, TWO_CLASSES + 1, 10**9]  # 5 chunks, 3, 3, one


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _pqv(dtype=torch.float64):
    return [torch.randn(*s, dtype=dtype, requires_grad=True) for s in ((B, L, K), (C, K), (K,))]


def _unchunked(p, q, v):
    """The former formulation: the whole (B, C, L, K) tanh tensor, autograd's backward."""
    return torch.einsum("bclk,k->bcl", torch.tanh(p[:, None] * q[None, :, None]), v)


@pytest.mark.parametrize("chunk_elements", CHUNKINGS)
def test_tanh_attention_logits_gradcheck(chunk_elements):
    fn = lambda *t: tanh_attention_logits(*t, chunk_elements)  # noqa: E731
    assert torch.autograd.gradcheck(fn, tuple(_pqv()))


@pytest.mark.parametrize("chunk_elements", CHUNKINGS)
def test_tanh_attention_logits_equal_unchunked(chunk_elements):
    p, q, v = _pqv()
    target = torch.randn(B, C, L, dtype=torch.float64)
    results = []
    for fn in (lambda *t: tanh_attention_logits(*t, chunk_elements), _unchunked):
        out = fn(p, q, v)
        results.append([out, *torch.autograd.grad((out * target).sum(), (p, q, v))])
    for ours, ref in zip(*results, strict=True):
        torch.testing.assert_close(ours, ref)


def test_tanh_attention_logits_dtypes():
    """Computed in the promoted dtype; each gradient comes back in its input's dtype."""
    dtypes = [torch.bfloat16, torch.float32, torch.bfloat16]
    p, q, v = (t.detach().to(dt).requires_grad_() for t, dt in zip(_pqv(), dtypes, strict=True))
    out = tanh_attention_logits(p, q, v, TWO_CLASSES)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert [t.grad.dtype for t in (p, q, v)] == dtypes


@pytest.mark.parametrize("chunk_elements", [1, TWO_CLASSES, None])
def test_sd_forward_and_gradients_equal_naive(chunk_elements):
    """Logits, outputs and the gradients of W1..W4, the map and the embeddings, chunked or not."""
    sd = SemanticDecoupling(D, E, hidden_dim=K).double()
    if chunk_elements is not None:
        sd.chunk_elements = chunk_elements
    nn.init.normal_(sd.w3.bias)
    nn.init.normal_(sd.w4.bias)
    fmap = torch.randn(B, D, H, W, dtype=torch.float64, requires_grad=True)
    emb = torch.randn(C, E, dtype=torch.float64, requires_grad=True)
    target = torch.randn(B, C, D, dtype=torch.float64)
    feats = fmap.flatten(2).transpose(1, 2)
    unfolded = sd.w4(sd.w3(torch.tanh(sd.w1(feats)[:, None] * sd.w2(emb)[None, :, None])))
    torch.testing.assert_close(sd.logits(feats, emb), unfolded.squeeze(-1))
    results = []
    for fn in (sd, lambda f, e: naive_semantic_decoupling(sd, f, e)):
        out = fn(fmap, emb)
        inputs = (fmap, emb, *sd.parameters())
        results.append([out, *torch.autograd.grad((out * target).sum(), inputs)])
    for ours, ref in zip(*results, strict=True):
        torch.testing.assert_close(ours, ref)


def test_sd_state_dict_unchanged():
    """Same tensors as before the chunking, so existing checkpoints load."""
    keys = {"w1.weight", "w2.weight", "w3.weight", "w3.bias", "w4.weight", "w4.bias"}
    assert set(SemanticDecoupling(D, E, K).state_dict()) == keys


def test_sd_peak_memory_is_a_few_chunks():
    """Forward + backward hold a few class chunks, not the whole (B, C, L, K) tensor."""
    b, c, side, k = 2, 40, 6, 64
    sd = SemanticDecoupling(8, E, hidden_dim=k)
    fmap, emb = torch.randn(b, 8, side, side, requires_grad=True), torch.randn(c, E)
    whole = b * c * side * side * k * 4  # bytes of one fp32 (B, C, L, K) tensor
    peaks = {}
    for chunk_elements in (b * side * side * k, 10**9):  # one class per chunk; all in one
        sd.chunk_elements = chunk_elements
        peaks[chunk_elements] = peak_memory(
            lambda: sd(fmap, emb).square().sum().backward(), torch.device("cpu")
        )
    one_class, unchunked = peaks.values()
    assert one_class < whole / 4 < whole <= unchunked, peaks


def test_sd_no_grad_matches():
    sd = SemanticDecoupling(D, E, K, chunk_elements=TWO_CLASSES)
    fmap, emb = torch.randn(B, D, H, W), torch.randn(C, E)
    with torch.no_grad():
        out = sd(fmap, emb)
    assert not out.requires_grad
    torch.testing.assert_close(out, naive_semantic_decoupling(sd, fmap, emb))


def _loss_and_grads(sd, fmap, emb, target):
    sd.zero_grad()
    fmap.grad = None
    out = sd(fmap, emb)
    (out.float() * target).sum().backward()
    return [out.float(), fmap.grad, *(p.grad for p in sd.parameters())]


def test_sd_bf16_autocast_close_to_fp32():
    """Under CPU bf16 autocast, forward + backward run, and grads stay fp32 and near fp32's."""
    sd = SemanticDecoupling(D, E, K, chunk_elements=TWO_CLASSES)
    fmap = torch.randn(B, D, H, W, requires_grad=True)
    emb, target = torch.randn(C, E), torch.randn(B, C, D)
    ref = [t.clone() for t in _loss_and_grads(sd, fmap, emb, target)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = _loss_and_grads(sd, fmap, emb, target)
    for a, r in zip(low, ref, strict=True):  # the biases' gradients are 0 up to rounding
        assert a.dtype == torch.float32 and a.isfinite().all()
        torch.testing.assert_close(a, r, atol=0.05 * r.abs().max().item() + 1e-6, rtol=0.05)


def test_sd_torch_compile_matches_eager():
    sd = SemanticDecoupling(D, E, K, chunk_elements=TWO_CLASSES)
    fmap = torch.randn(B, D, H, W, requires_grad=True)
    emb, target = torch.randn(C, E), torch.randn(B, C, D)
    ref = [t.clone() for t in _loss_and_grads(sd, fmap, emb, target)]
    compiled = torch.compile(sd, backend="aot_eager")
    for a, r in zip(_loss_and_grads(compiled, fmap, emb, target), ref, strict=True):
        torch.testing.assert_close(a, r)


def test_tanh_attention_logits_non_contiguous_inputs():
    """Transposed p and q (e.g. from a permuted feature map) give the same values and grads."""
    p = torch.randn(B, K, L, dtype=torch.float64).transpose(1, 2).requires_grad_()
    q = torch.randn(K, C, dtype=torch.float64).T.requires_grad_()
    v = torch.randn(K, dtype=torch.float64, requires_grad=True)
    for chunk_elements in CHUNKINGS:
        fn = lambda *t: tanh_attention_logits(*t, chunk_elements)  # noqa: E731, B023
        assert torch.autograd.gradcheck(fn, (p, q, v))
