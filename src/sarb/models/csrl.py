"""Category-specific representation learning (CSRL): one feature vector per class and image.

Two variants (docs/method.md#model), both ``forward(fmap (B, D, H, W), embeddings) -> (B, C, D)``:

- :class:`SemanticDecoupling` (SD), from SSGRL (Chen et al., "Learning Semantic-Specific Graph
  Representation for Multi-Label Image Recognition", ICCV 2019): class-embedding-guided attention
  over the locations of the feature map.
- :class:`SemanticAttention` (SAM), from ADD-GCN (Ye et al., "Attention-Driven Dynamic Graph
  Convolutional Network for Multi-Label Image Recognition", ECCV 2020): class activation maps from
  a 1x1 convolution used as per-class pooling weights.

Both pool the feature map with an attention tensor of shape (B, C, H*W) through a single
``einsum('bcl,bdl->bcd')``; no (B, H*W, C, D) tensor is ever built (the naive formulation kept in
:func:`naive_semantic_decoupling` does, and exists only so that benchmarks and tests can compare).
SD's (B, C, H*W, K) tanh tensor is never held whole either: :func:`tanh_attention_logits` computes
it a chunk of classes at a time and recomputes it in backward, so SD's forward + backward hold
at most two chunks of ``chunk_elements`` elements beyond their inputs and outputs.

:class:`Neck` is the channel reduction between the backbone and CSRL used by the SARB reference
(Pu et al., AAAI 2022): 2x2 average pooling then a 1x1 convolution + BatchNorm.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable


class Neck(nn.Module):
    """Backbone map (B, in_dim, H, W) -> (B, out_dim, H/pool, W/pool): avg pool, 1x1 conv, BN.

    As in the SARB reference (Pu et al., AAAI 2022): a ``pool`` x ``pool`` average pool (14x14 ->
    7x7 at 448 px input; ``pool=1`` disables it) then a 1x1 convolution without bias and a
    BatchNorm reducing the channels (2048 -> 1024). ``relu=True`` appends a ReLU (not in the paper).
    The pool uses ``ceil_mode`` so that an odd-sized map keeps its last row/column (7x7 -> 4x4)
    and a map smaller than the window still works; even sizes are unaffected.
    """

    def __init__(self, in_dim: int, out_dim: int = 1024, pool: int = 2, relu: bool = False):
        super().__init__()
        if pool < 1:
            raise ValueError(f"Neck pool must be >= 1, got {pool}")
        self.pool = nn.AvgPool2d(pool, stride=pool, ceil_mode=True) if pool > 1 else nn.Identity()
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_dim)
        self.act = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, fmap: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(self.pool(fmap))))


def _pool(attention: Tensor, features: Tensor) -> Tensor:
    """Attention (B, C, L) x features (B, L, D) -> per-class features (B, C, D)."""
    return torch.einsum("bcl,bld->bcd", attention, features)


#: Elements of one class chunk (B, c, L, K) of SD's tanh tensor: 2^22 (16 MB in fp32). Forward
#: holds one such chunk and backward two, whatever the number of classes. On a CPU, chunks of
#: 2^20 to 2^22 elements run faster than the whole tensor (they stay nearer the caches); on a GPU
#: each elementwise kernel still covers millions of elements.
CHUNK_ELEMENTS = 2**22


class _TanhAttentionLogits(torch.autograd.Function):
    """logits[b, c, l] = sum_k v[k] tanh(p[b, l, k] q[c, k]), by chunks of classes.

    Saves only p, q, v: backward recomputes each chunk's tanh. Computes in the promoted dtype of
    the inputs with autocast off, so forward and backward agree under autocast; accumulates the
    gradients in at least float32 and returns each in its input's dtype.
    """

    @staticmethod
    def forward(p: Tensor, q: Tensor, v: Tensor, chunk: int) -> Tensor:
        dtype = torch.promote_types(torch.promote_types(p.dtype, q.dtype), v.dtype)
        p, q, v = p.to(dtype), q.to(dtype), v.to(dtype)
        out = p.new_empty(p.shape[0], q.shape[0], p.shape[1])  # (B, C, L)
        with torch.autocast(p.device.type, enabled=False):
            for c0 in range(0, q.shape[0], chunk):
                h = torch.mul(p[:, None], q[c0 : c0 + chunk, None]).tanh_()  # (B, c, L, K)
                out[:, c0 : c0 + chunk] = h @ v  # (B, c, L)
        return out

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.chunk = inputs[3]
        ctx.save_for_backward(*inputs[:3])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        p_in, q_in, v_in = ctx.saved_tensors
        dtype = grad.dtype  # the forward's compute dtype
        acc = torch.promote_types(dtype, torch.float32)
        p, q, v = p_in.to(dtype), q_in.to(dtype), v_in.to(dtype)
        k, chunk = p.shape[-1], ctx.chunk
        grad_p = torch.zeros_like(p, dtype=acc)  # (B, L, K), times v at the end
        grad_q = torch.empty_like(q, dtype=acc)  # (C, K), times v at the end
        grad_v = torch.zeros_like(v, dtype=acc)  # (K,)
        with torch.autocast(p.device.type, enabled=False):
            for c0 in range(0, q.shape[0], chunk):
                qc, gc = q[c0 : c0 + chunk, None], grad[:, c0 : c0 + chunk]  # (c, 1, K), (B, c, L)
                h = torch.mul(p[:, None], qc).tanh_()  # (B, c, L, K)
                grad_v += gc.reshape(-1) @ h.reshape(-1, k)
                dz = h.square_().sub_(1).mul_(-gc[..., None])  # g (1 - h²) = dlogits/d(pq) / v
                grad_q[c0 : c0 + chunk] = (dz * p[:, None]).sum((0, 2))  # (c, K)
                grad_p += dz.mul_(qc).sum(1)
        return (grad_p * v).to(p_in.dtype), (grad_q * v).to(q_in.dtype), grad_v.to(v_in.dtype), None


def tanh_attention_logits(
    p: Tensor, q: Tensor, v: Tensor, chunk_elements: int = CHUNK_ELEMENTS
) -> Tensor:
    """``einsum('bclk,k->bcl', tanh(p[:, None] * q[None, :, None]), v)`` without the (B, C, L, K)
    tensor: p (B, L, K), q (C, K), v (K,) -> (B, C, L), computed and differentiated by chunks of
    classes of at most ``chunk_elements`` elements (at least one class per chunk).

    Under ONNX export it is the plain formula instead: an exported graph is inference only (no
    backward to save memory for), and its batch size is dynamic, so no chunk size is fixed.
    """
    if torch.onnx.is_in_onnx_export():
        return torch.tanh(p[:, None] * q[None, :, None]) @ v  # (B, C, L, K) @ (K,) -> (B, C, L)
    b, n, k = p.shape
    return _TanhAttentionLogits.apply(p, q, v, max(1, chunk_elements // (b * n * k)))


class SemanticDecoupling(nn.Module):
    """SD of SSGRL (Chen et al., ICCV 2019): class-embedding-guided attention pooling.

    For every location feature f (D) and class embedding w_c (E)::

        h = tanh(W1 f * W2 w_c)           (hidden_dim; W1, W2 without bias)
        a = W4 (W3 h)                     (scalar; W3: hidden -> hidden, W4: hidden -> 1)
        attention = softmax of a over the H*W locations
        x_c = sum over locations of attention * f

    W3 and W4 are kept as two ``nn.Linear`` (the paper's parameterisation, so checkpoints have
    the same tensors) but, being linear with nothing in between, they are applied as the single
    vector ``W4 @ W3`` (K,): mathematically identical. Their biases only add a constant per
    class, which the softmax over locations cancels; it is still added so that the logits equal
    the unfolded ones. The (B, C, L, K) tanh tensor is computed by :func:`tanh_attention_logits`
    in chunks of classes of at most ``chunk_elements`` elements and recomputed in backward, so
    forward + backward hold a few chunks instead of three (B, C, L, K) tensors; (B, L, C, D)
    never exists.
    """

    def __init__(
        self,
        feat_dim: int,
        embed_dim: int,
        hidden_dim: int = 512,
        chunk_elements: int = CHUNK_ELEMENTS,
    ):
        super().__init__()
        self.feat_dim, self.embed_dim, self.hidden_dim = feat_dim, embed_dim, hidden_dim
        self.chunk_elements = chunk_elements
        self.w1 = nn.Linear(feat_dim, hidden_dim, bias=False)
        self.w2 = nn.Linear(embed_dim, hidden_dim, bias=False)
        self.w3 = nn.Linear(hidden_dim, hidden_dim)
        self.w4 = nn.Linear(hidden_dim, 1)

    def logits(self, features: Tensor, embeddings: Tensor) -> Tensor:
        """Attention logits (B, C, L) from location features (B, L, D) and embeddings (C, E)."""
        if embeddings.dim() != 2 or embeddings.shape[1] != self.embed_dim:
            raise ValueError(
                f"embeddings must be (C, {self.embed_dim}), got {tuple(embeddings.shape)}"
            )
        p = self.w1(features)  # (B, L, K)
        q = self.w2(embeddings)  # (C, K)
        v = (self.w4.weight @ self.w3.weight).squeeze(0)  # (K,)  == W4 W3
        const = self.w4.weight @ self.w3.bias + self.w4.bias  # (1,)  == W4 b3 + b4
        return tanh_attention_logits(p, q, v, self.chunk_elements) + const  # (B, C, L)

    def attention(self, fmap: Tensor, embeddings: Tensor) -> Tensor:
        """Attention weights (B, C, H*W), summing to 1 over the locations of each class."""
        features = fmap.flatten(2).transpose(1, 2)  # (B, L, D)
        return self.logits(features, embeddings).softmax(dim=-1)

    def forward(self, fmap: Tensor, embeddings: Tensor) -> Tensor:
        """Feature map (B, D, H, W) and class embeddings (C, E) -> class features (B, C, D)."""
        features = fmap.flatten(2).transpose(1, 2)  # (B, L, D)
        attention = self.logits(features, embeddings).softmax(dim=-1)  # (B, C, L)
        return _pool(attention, features)  # (B, C, D)


def naive_semantic_decoupling(
    module: SemanticDecoupling, fmap: Tensor, embeddings: Tensor
) -> Tensor:
    """The SD forward pass written the obvious way -- for benchmarks and tests only.

    Applies W3 then W4 separately and weights the features through broadcasting, which builds
    (B, L, C, K) twice and a (B, L, C, D) copy of the features (L = H*W). It computes the same
    result as ``module(fmap, embeddings)``; never use it in a model.
    """
    features = fmap.flatten(2).transpose(1, 2)  # (B, L, D)
    h = torch.tanh(module.w1(features)[:, :, None, :] * module.w2(embeddings)[None, None])
    a = module.w4(module.w3(h))  # (B, L, C, 1)
    attention = a.softmax(dim=1)  # over locations
    return (attention * features[:, :, None, :]).sum(dim=1)  # (B, L, C, D) -> (B, C, D)


class SemanticAttention(nn.Module):
    """SAM of ADD-GCN (Ye et al., ECCV 2020): class activation maps as pooling weights.

    A 1x1 convolution (D -> C) gives one activation map per class; it is normalised over the
    H*W locations and pools the feature map per class -> (B, C, D). ``normalize="softmax"``
    (default, the paper's) makes each map a distribution over locations; ``"sigmoid"`` is ADD-GCN's
    original form (independent sigmoid weights, not normalised).
    """

    def __init__(self, feat_dim: int, num_classes: int, normalize: str = "softmax"):
        super().__init__()
        if normalize not in ("softmax", "sigmoid"):
            raise ValueError(f"normalize must be 'softmax' or 'sigmoid', got {normalize!r}")
        self.normalize = normalize
        self.cam = nn.Conv2d(feat_dim, num_classes, kernel_size=1)

    def attention(self, fmap: Tensor) -> Tensor:
        """Pooling weights (B, C, H*W) of a feature map (B, D, H, W)."""
        maps = self.cam(fmap).flatten(2)  # (B, C, L)
        return maps.softmax(dim=-1) if self.normalize == "softmax" else maps.sigmoid()

    def forward(self, fmap: Tensor, embeddings: Tensor | None = None) -> Tensor:
        """Feature map (B, D, H, W) -> class features (B, C, D); ``embeddings`` is ignored."""
        features = fmap.flatten(2).transpose(1, 2)  # (B, L, D)
        return _pool(self.attention(fmap), features)  # (B, C, D)
