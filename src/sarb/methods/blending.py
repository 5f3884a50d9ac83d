"""Semantic-aware representation blending (SARB, Pu et al. AAAI 2022).

See docs/method.md#blending.

Both blendings act on category-specific features ``x`` (B, C, D) and targets ``t`` (B, C) in
the package convention (-1 absent, 0 unknown, (0, 1] present, soft allowed) and return new
tensors; entries that are not blended are bit-identical to the inputs.

- ILRB (instance level): ``x^n_c <- a x^n_c + (1 - a) x^m_c``, target ``1 - a``, for every
  class c unknown in image n and known positive in its partner m.
- PLRB (prototype level): ``x^n_c <- b x^n_c + (1 - b) p^k_c``, target ``1 - b``, for one
  random unknown class c of image n and one random prototype k of that class.

The returned targets depend on ``a`` / ``b`` through autograd, so the blend weights are learned
through the classification loss.

Options beyond the paper (docs/method.md#options-beyond-the-paper), all off by default:

- ``scores`` (B, C): an estimate that each entry of the image itself is present, e.g. the
  model's own detached probability. The blended target is then ``a s + (1 - a)`` (ILRB) or
  ``b s + (1 - b)`` (PLRB): the paper's target reads the image's own share as absent (s = 0),
  which is wrong for the unknown labels that are in fact present.
- ``only_blended``: every entry that is not blended becomes unknown (0), so that the blended
  branch's loss covers the blended entries only instead of counting the known labels again.
- ``per_image`` (PLRB): up to that many eligible classes of an image are blended, not one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

_EPS = 1e-6  # the blend weight is clamped to [eps, 1 - eps]: strictly inside (0, 1) in float32


class BlendWeight(nn.Module):
    """A scalar blend weight in (0, 1): ``sigmoid(z)`` of a free parameter z.

    ``z`` starts at ``logit(init)``. With ``learnable=False`` z is a buffer (the paper's "fixed
    a / b" ablation) and the module has no parameters; the state-dict key (``raw``) is the same
    either way. The output is clamped to ``[1e-6, 1 - 1e-6]`` so that it stays strictly inside
    (0, 1) even when z saturates the float32 sigmoid (the clamp is inactive for |z| < 13.8).
    """

    def __init__(self, init: float = 0.5, learnable: bool = True):
        super().__init__()
        if not 0.0 < init < 1.0:
            raise ValueError(f"blend weight init must be in (0, 1), got {init}")
        raw = torch.tensor(math.log(init / (1.0 - init)), dtype=torch.float32)
        if learnable:
            self.raw = nn.Parameter(raw)
        else:
            self.register_buffer("raw", raw)

    def forward(self) -> Tensor:
        """The weight, a 0-d tensor in (0, 1)."""
        return torch.sigmoid(self.raw).clamp(_EPS, 1.0 - _EPS)

    def extra_repr(self) -> str:
        learnable = isinstance(self.raw, nn.Parameter)
        return f"value={float(self.forward()):.4f}, learnable={learnable}"


def _targets(
    blend: Tensor,
    share: Tensor,
    blended: Tensor,
    t: Tensor,
    scores: Tensor | None,
    only_blended: bool,
) -> Tensor:
    """(B, C) targets: ``blended + share * scores`` where ``blend``, else ``t`` (or 0 with
    ``only_blended``); ``share`` is the image's own weight a or b (0-d)."""
    if scores is not None:
        blended = blended + share * scores.to(t.dtype)
    rest = torch.zeros_like(t) if only_blended else t
    return torch.where(blend, blended, rest)


def ilrb(
    features: Tensor,
    targets: Tensor,
    alpha: Tensor,
    perm: Tensor,
    scores: Tensor | None = None,
    only_blended: bool = False,
) -> tuple[Tensor, Tensor]:
    """Instance-level representation blending (ILRB, SARB §5).

    Image n is paired with ``m = perm[n]``. For every class c with ``t^n_c = 0`` (unknown) and
    ``t^m_c > 0`` (partner positive):

        x^n_c <- a x^n_c + (1 - a) x^m_c,    t^n_c <- (1 - a) t^m_c

    which is the paper's ``1 - a`` for the plain labels the method passes (t^m_c = 1); the
    factor t^m_c only matters for an already soft partner target, whose blend is "present" to
    the degree (1 - a) t^m_c. Every other entry keeps its feature and target (bit-identical).
    ``scores`` (B, C) adds ``a s^n_c`` to the blended targets, ``only_blended`` zeroes the
    other targets (module docstring).

    features: (B, C, D); targets: (B, C); alpha: 0-d; perm: (B,) long, typically a random
    permutation (a fixed point n = perm[n] blends nothing, as no class is both unknown and
    positive). Returns (features (B, C, D), targets (B, C) in the features' dtype; the targets
    carry the gradient to ``alpha``).
    """
    t = targets.to(features.dtype)  # (B, C)
    partner_x = features[perm]  # (B, C, D)
    partner_t = t[perm]  # (B, C)
    blend = (t == 0) & (partner_t > 0)  # (B, C)
    mixed_x = alpha * features + (1.0 - alpha) * partner_x  # (B, C, D)
    out_x = torch.where(blend[..., None], mixed_x, features)  # (B, C, D)
    out_t = _targets(blend, alpha, (1.0 - alpha) * partner_t, t, scores, only_blended)  # (B, C)
    return out_x, out_t


def plrb(
    features: Tensor,
    targets: Tensor,
    beta: Tensor,
    prototypes: Tensor,
    valid: Tensor,
    generator: torch.Generator | None = None,
    scores: Tensor | None = None,
    only_blended: bool = False,
    per_image: int = 1,
) -> tuple[Tensor, Tensor]:
    """Prototype-level representation blending (PLRB, SARB §5).

    For each image n with at least one unknown label (``t^n_c = 0``) whose class has at least
    one valid prototype: draw ONE such class c uniformly, then (independently per image) one
    valid prototype k of c uniformly, and set

        x^n_c <- b x^n_c + (1 - b) p^k_c,    t^n_c <- 1 - b.

    Images without such a class are left untouched (the reference code blends class 0 then);
    classes without a valid prototype are never drawn.

    features: (B, C, D); targets: (B, C); beta: 0-d; prototypes: (C, K, D); valid: (C, K) bool.
    ``generator`` (on the features' device) is the only source of randomness; None uses the
    global RNG. ``scores`` and ``only_blended`` as in :func:`ilrb`. ``per_image`` > 1 blends
    up to that many eligible classes of each image (uniformly without replacement), each with
    its own prototype (an option beyond the paper). Returns (features (B, C, D), targets (B, C)
    carrying the gradient to ``beta``).
    """
    t = targets.to(features.dtype)  # (B, C)
    valid = valid.to(device=features.device, dtype=torch.bool)  # (C, K)
    prototypes = prototypes.to(device=features.device, dtype=features.dtype)
    eligible = (t == 0) & valid.any(dim=1)[None, :]  # (B, C)
    if per_image > 1:
        blend, proto = _draw_several(eligible, valid, prototypes, per_image, generator)
    else:
        blend, proto = _draw_one(eligible, valid, prototypes, generator)
    mixed_x = beta * features + (1.0 - beta) * proto  # (B, C, D)
    out_x = torch.where(blend[..., None], mixed_x, features)  # (B, C, D)
    out_t = _targets(blend, beta, 1.0 - beta, t, scores, only_blended)  # (B, C)
    return out_x, out_t


def _draw_one(
    eligible: Tensor, valid: Tensor, prototypes: Tensor, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """The paper's PLRB draw: one eligible class per image, then one of its valid prototypes.
    eligible: (B, C); valid: (C, K); prototypes: (C, K, D). Returns (blend mask (B, C), at most
    one True per row; prototypes (B, 1, D), broadcast over the classes)."""
    has_eligible = eligible.any(dim=1)  # (B,)
    # multinomial rejects all-zero rows: images without an eligible class draw from a dummy
    # uniform row, and their draw is discarded by has_eligible below.
    class_w = torch.where(has_eligible[:, None], eligible, True).to(torch.float32)  # (B, C)
    cls = torch.multinomial(class_w, 1, generator=generator).squeeze(1)  # (B,)
    proto_ok = valid[cls]  # (B, K); all False only for discarded (dummy) draws
    proto_w = torch.where(proto_ok.any(dim=1, keepdim=True), proto_ok, True).to(torch.float32)
    k = torch.multinomial(proto_w, 1, generator=generator).squeeze(1)  # (B,)
    one_hot = torch.arange(eligible.shape[1], device=eligible.device)[None, :] == cls[:, None]
    return one_hot & has_eligible[:, None], prototypes[cls, k][:, None, :]


def _draw_several(
    eligible: Tensor,
    valid: Tensor,
    prototypes: Tensor,
    per_image: int,
    generator: torch.Generator | None,
) -> tuple[Tensor, Tensor]:
    """PLRB's draw of up to ``per_image`` eligible classes per image (random keys, top-k) and of
    one valid prototype for each (image, class). eligible: (B, C); valid: (C, K); prototypes:
    (C, K, D). Returns (blend mask (B, C), prototypes (B, C, D))."""
    b, c = eligible.shape
    keys = torch.rand(b, c, generator=generator, device=eligible.device)  # (B, C)
    keys = torch.where(eligible, keys, -1.0)
    top = keys.topk(min(per_image, c), dim=1).indices  # (B, k)
    blend = torch.zeros_like(eligible).scatter(1, top, eligible.gather(1, top))  # (B, C)
    # a prototype for every (image, class); classes without one draw from a dummy uniform row
    proto_w = torch.where(valid.any(1, keepdim=True), valid, True).to(torch.float32)  # (C, K)
    k = torch.multinomial(proto_w.repeat(b, 1), 1, generator=generator).view(b, c)  # (B, C)
    return blend, prototypes[torch.arange(c, device=eligible.device)[None, :], k]  # (B, C, D)


__all__ = ["BlendWeight", "ilrb", "plrb"]
