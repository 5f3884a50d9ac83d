"""Simulated partial labels: hide a fraction of the entries of a complete label matrix.

``hcp`` is the protocol behind the paper's published numbers and must stay bit for bit
identical to it; the others are options, never silent replacements. See
docs/method.md#partial-labels.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from sarb.errors import SarbError

PROTOCOLS: tuple[str, ...] = ("hcp", "per-image", "generator", "single-positive")
SINGLE_POSITIVE = "single-positive"


def check_known(known: float) -> float:
    """The known-label fraction (``--known``), checked: a number in (0, 1]."""
    if isinstance(known, bool) or not isinstance(known, numbers.Real):
        raise SarbError(f"--known must be a number in (0, 1], got {known!r}")
    value = float(known)
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise SarbError(f"--known must be in (0, 1], got {known}")
    return value


def _check_seed(seed: int, limit: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < limit:
        raise SarbError(f"the mask seed must be an integer in [0, {limit - 1}], got {seed!r}")
    return int(seed)


def _hcp(full: np.ndarray, known: float, seed: int) -> np.ndarray:
    # The paper's protocol: np.random.seed(seed); u = np.random.random(shape);
    # where(u < known, full, 0).
    # A private RandomState(seed) draws exactly the same numbers as the legacy global RNG
    # after np.random.seed(seed): both are MT19937 seeded by init_genrand(seed), and
    # np.random.random is RandomState.random_sample of the global instance (53-bit doubles,
    # row-major fill). tests/test_partial.py checks the equality against the global RNG.
    # A private instance leaves the caller's global RNG state untouched.
    rng = np.random.RandomState(seed)
    u = rng.random_sample(full.shape)
    return np.where(u < known, full, 0)


def _generator(full: np.ndarray, known: float, seed: int) -> np.ndarray:
    u = np.random.default_rng(seed).random(full.shape)
    return np.where(u < known, full, 0)


def _per_image(full: np.ndarray, known: float, seed: int) -> np.ndarray:
    if full.ndim != 2:
        raise SarbError(
            f"the per-image protocol needs an N x C label matrix, got shape {full.shape}"
        )
    n, c = full.shape
    keep = max(1, round(known * c))
    # Random keys per entry; an image keeps its `keep` smallest keys, which is a uniform
    # random subset of its C entries. Same seed -> same keys, so known sets are nested in p.
    keys = np.random.default_rng(seed).random((n, c))
    ranks = np.argsort(np.argsort(keys, axis=1, kind="stable"), axis=1, kind="stable")
    return np.where(ranks < keep, full, 0)


def single_positive(full: np.ndarray, seed: int = 0) -> np.ndarray:
    """Single positive labels (Cole et al., CVPR 2021): each image with at least one positive
    keeps exactly one of them, chosen uniformly with ``np.random.default_rng(seed)``; every other
    entry becomes unknown (0), and an image without a positive becomes all unknown. Returns int8.
    """
    full = np.asarray(full)
    if full.ndim != 2:
        raise SarbError(f"single positive labels need an N x C label matrix, got {full.shape}")
    keys = np.where(full == 1, np.random.default_rng(seed).random(full.shape), -1.0)  # (N, C)
    has = (full == 1).any(axis=1)  # (N,)
    out = np.zeros(full.shape, dtype=np.int8)
    rows = np.flatnonzero(has)
    out[rows, keys[rows].argmax(axis=1)] = 1  # the largest of iid uniforms: a uniform positive
    return out


def mask_labels(full: np.ndarray, known: float, seed: int = 0, protocol: str = "hcp") -> np.ndarray:
    """Hide label entries of ``full`` (values in {1, -1, 0}) so that a proportion ``known`` stays.

    Protocols (all deterministic in ``seed``, all nested across ``known`` for one seed):

    - ``hcp`` (default, the paper's): entry-wise with the legacy NumPy RNG,
      ``u = RandomState(seed).random_sample(full.shape)``, keep where ``u < known``.
      Every entry draws a number and may be hidden, positives and negatives (and entries
      already 0) alike. Bit for bit what the published numbers used with ``seed=0``.
    - ``per-image``: each image keeps exactly ``max(1, round(known * C))`` of its C entries
      (Python's round, half to even), chosen uniformly with ``np.random.default_rng(seed)``.
    - ``generator``: entry-wise like ``hcp`` but drawn with ``np.random.default_rng(seed)``.
    - ``single-positive``: :func:`single_positive` (``known`` does not apply and must be 1).

    ``known`` must be in (0, 1]; ``known == 1`` returns a copy of ``full``. Returns int8.
    """
    if protocol not in PROTOCOLS:
        raise SarbError(
            f"unknown partial-label protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}"
        )
    known = check_known(known)
    seed = _check_seed(seed, 2**32 if protocol == "hcp" else 2**63)
    full = np.asarray(full)
    if full.size and not np.isin(full, (-1, 0, 1)).all():
        bad = full[~np.isin(full, (-1, 0, 1))].flat[0]
        raise SarbError(f"labels must be 1, -1 or 0 before masking, found {bad}")
    if protocol == SINGLE_POSITIVE:
        if known != 1.0:
            raise SarbError(f"--known {known} does not apply to single positive labels")
        return single_positive(full, seed)
    if known == 1.0:
        return full.astype(np.int8, copy=True)
    if protocol == "hcp":
        out = _hcp(full, known, seed)
    elif protocol == "generator":
        out = _generator(full, known, seed)
    else:
        out = _per_image(full, known, seed)
    return out.astype(np.int8)
