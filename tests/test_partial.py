"""The partial-label protocols; ``hcp`` must equal the paper's mask protocol bit for bit."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from sarb.data.partial import PROTOCOLS, SINGLE_POSITIVE, mask_labels, single_positive
from sarb.errors import SarbError

BY_FRACTION = [p for p in PROTOCOLS if p != SINGLE_POSITIVE]
SHAPES = [(1, 1), (7, 3), (50, 20), (200, 80)]
PROPORTIONS = [0.1, 0.3, 0.5, 0.7, 0.9]


def _full(shape, seed=123):
    return np.random.default_rng(seed).choice(np.array([1, -1]), size=shape)


def _spec_expectation(full, known, seed=0):
    """The paper's mask protocol with the legacy *global* RNG, as the reference code does."""
    state = np.random.get_state()  # noqa: NPY002
    try:
        np.random.seed(seed)  # noqa: NPY002
        u = np.random.random(full.shape)  # noqa: NPY002
    finally:
        np.random.set_state(state)  # noqa: NPY002
    return np.where(u < known, full, 0)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("known", PROPORTIONS)
def test_hcp_equals_spec(shape, known):
    full = _full(shape)
    out = mask_labels(full, known)  # the default protocol is hcp, the default seed 0
    assert out.dtype == np.int8
    np.testing.assert_array_equal(out, _spec_expectation(full, known))
    np.testing.assert_array_equal(mask_labels(full, known, seed=0, protocol="hcp"), out)


@pytest.mark.parametrize("seed", [1, 7, 2**32 - 1])
def test_hcp_other_seeds_equal_spec(seed):
    full = _full((30, 11))
    np.testing.assert_array_equal(
        mask_labels(full, 0.4, seed=seed), _spec_expectation(full, 0.4, seed)
    )


def test_hcp_masks_zeros_and_negatives_alike():
    # Entries already 0 still draw a number: the mask of the non-zero entries does not
    # depend on where the zeros are.
    full = _full((40, 10))
    holey = full.copy()
    holey[::3, ::2] = 0
    a, b = mask_labels(full, 0.5), mask_labels(holey, 0.5)
    keep = holey != 0
    np.testing.assert_array_equal(a[keep], b[keep])
    # negatives are hidden as often as positives
    all_neg = -np.ones((200, 50), dtype=int)
    assert 0.45 < (mask_labels(all_neg, 0.5) != 0).mean() < 0.55


def test_hcp_leaves_global_rng_alone():
    np.random.seed(99)  # noqa: NPY002
    expected = np.random.random(3)  # noqa: NPY002
    np.random.seed(99)  # noqa: NPY002
    mask_labels(_full((5, 5)), 0.5)
    np.testing.assert_array_equal(np.random.random(3), expected)  # noqa: NPY002


@pytest.mark.parametrize("protocol", BY_FRACTION)
def test_nested_across_proportions(protocol):
    full = _full((60, 25))
    known_sets = [mask_labels(full, p, protocol=protocol) != 0 for p in [*PROPORTIONS, 1.0]]
    for smaller, larger in itertools.pairwise(known_sets):
        assert not (smaller & ~larger).any()
        assert smaller.sum() <= larger.sum()


@pytest.mark.parametrize("protocol", BY_FRACTION)
def test_known_values_are_kept_unchanged(protocol):
    full = _full((30, 9))
    out = mask_labels(full, 0.5, protocol=protocol)
    kept = out != 0
    np.testing.assert_array_equal(out[kept], full[kept])


@pytest.mark.parametrize("protocol", BY_FRACTION)
def test_known_one_is_a_copy(protocol):
    full = _full((5, 4))
    out = mask_labels(full, 1, protocol=protocol)
    np.testing.assert_array_equal(out, full)
    assert out.dtype == np.int8
    out[0, 0] = 0
    assert full[0, 0] != 0


@pytest.mark.parametrize("protocol", ["per-image", "generator"])
def test_other_protocols_differ_from_hcp_and_keep_p(protocol):
    full = _full((400, 80))
    for p in PROPORTIONS:
        out = mask_labels(full, p, protocol=protocol)
        assert not np.array_equal(out, mask_labels(full, p))
        assert abs((out != 0).mean() - p) < 0.02
        np.testing.assert_array_equal(out, mask_labels(full, p, protocol=protocol))  # seeded
        assert not np.array_equal(out, mask_labels(full, p, seed=1, protocol=protocol))


def test_per_image_exact_count():
    full = _full((100, 20))
    for p, expected in [(0.1, 2), (0.33, 7), (0.5, 10), (0.9, 18), (0.01, 1)]:
        out = mask_labels(full, p, protocol="per-image")
        np.testing.assert_array_equal((out != 0).sum(axis=1), np.full(100, expected))


def test_per_image_is_uniform_over_classes():
    full = np.ones((4000, 10), dtype=int)
    freq = (mask_labels(full, 0.3, protocol="per-image") != 0).mean(axis=0)
    assert np.allclose(freq, 0.3, atol=0.03)


def test_generator_uses_default_rng():
    full = _full((20, 6))
    u = np.random.default_rng(5).random(full.shape)
    np.testing.assert_array_equal(
        mask_labels(full, 0.6, seed=5, protocol="generator"), np.where(u < 0.6, full, 0)
    )


@pytest.mark.parametrize("known", [0, 0.0, -0.1, 1.5, 1.0000001, float("nan"), float("inf")])
def test_bad_known(known):
    with pytest.raises(SarbError, match="--known") as info:
        mask_labels(_full((3, 3)), known)
    assert str(known) in str(info.value)


@pytest.mark.parametrize("known", ["0.5", None, True])
def test_known_not_a_number(known):
    with pytest.raises(SarbError, match="--known"):
        mask_labels(_full((3, 3)), known)


def test_unknown_protocol_lists_valid_names():
    with pytest.raises(SarbError) as info:
        mask_labels(_full((3, 3)), 0.5, protocol="stratified")
    message = str(info.value)
    assert "stratified" in message
    assert all(name in message for name in PROTOCOLS)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5])
def test_bad_seed(seed):
    with pytest.raises(SarbError, match="seed"):
        mask_labels(_full((3, 3)), 0.5, seed=seed)


def test_bad_label_values():
    with pytest.raises(SarbError, match="found 2"):
        mask_labels(np.array([[1, 2]]), 0.5)


# --------------------------------------------------------------------------- single positive


def _dense(n: int, c: int, seed: int, density: float = 0.3) -> np.ndarray:
    return np.where(np.random.default_rng(seed).random((n, c)) < density, 1, -1).astype(np.int8)


def test_single_positive_keeps_one_positive_per_image_and_nothing_else():
    full = _dense(500, 12, 0)
    full[:5] = -1  # five images without a positive
    out = mask_labels(full, 1.0, seed=3, protocol="single-positive")
    assert out.dtype == np.int8 and set(np.unique(out)) <= {0, 1}  # no negative is kept
    has = (full == 1).any(axis=1)
    assert ((out == 1).sum(axis=1) == has).all()  # exactly one where there is any, else none
    assert (full[out == 1] == 1).all()  # the kept label is one of the image's positives
    assert (out[:5] == 0).all()


def test_single_positive_is_reproducible_and_differs_across_seeds():
    full = _dense(300, 10, 1)
    a = mask_labels(full, 1.0, seed=7, protocol="single-positive")
    np.testing.assert_array_equal(a, mask_labels(full, 1.0, seed=7, protocol="single-positive"))
    assert (a != mask_labels(full, 1.0, seed=8, protocol="single-positive")).any()


def test_single_positive_picks_uniformly_among_an_images_positives():
    """Every image has the same 4 positives: over 20,000 images each must be kept about 5,000
    times; a chi-square test with 3 degrees of freedom at p = 0.001 (critical value 16.27)."""
    full = -np.ones((20_000, 9), dtype=np.int8)
    full[:, [1, 4, 5, 8]] = 1

    def chi2(kept: np.ndarray) -> float:
        counts = (kept == 1).sum(axis=0)[[1, 4, 5, 8]]
        return float(((counts - 5_000) ** 2 / 5_000).sum())

    assert chi2(single_positive(full, seed=0)) < 16.27
    first = np.zeros_like(full)  # the statistic catches a biased pick (the first positive)
    first[:, 1] = 1
    assert chi2(first) > 16.27


def test_single_positive_rejects_a_fraction():
    with pytest.raises(SarbError, match="--known 0.5 does not apply"):
        mask_labels(_dense(5, 3, 0), 0.5, protocol="single-positive")
