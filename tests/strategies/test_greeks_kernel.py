"""The compiled book sums of delta and gamma against their numpy reference twin
(``BookLegs._numpy_sum_fn``), on random books with calls and puts, smile-dynamics terms,
legs whose greeks are not finite, and prices far in the wings."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from numpy.testing import assert_allclose

import strategies.greeks_kernel
from strategies.greeks import BookLegs


def _legs(rng: np.random.Generator, n: int, dvol: bool) -> BookLegs:
    spot = 9e4
    return BookLegs(
        instrument_id=np.arange(n), qty=rng.normal(0, 5, n),
        strike=spot * np.exp(rng.normal(0, 0.3, n)), t=rng.uniform(1e-3, 1.0, n),
        vol=rng.uniform(0.2, 1.5, n), is_call=rng.random(n) < 0.5,
        basis=rng.uniform(0.99, 1.02, n), spot=spot,
        dvol_dlnf=rng.normal(0, 0.3, n) if dvol else None, inverse=rng.random(n) < 0.5)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("which,power", [("delta", 1), ("gamma", 2)])
def test_compiled_sums_equal_the_numpy_twin(seed, which, power):
    rng = np.random.default_rng(seed)
    legs = _legs(rng, int(rng.integers(1, 12)), dvol=seed % 2 == 1)
    s = legs.spot * np.exp(np.linspace(-0.8, 0.8, 161))
    fast, ref = legs._sum_fn(which, power), legs._numpy_sum_fn(which, power)
    # erfc-based N(x) against scipy's ndtr: a few ulps per leg, summed over signed legs
    scale = np.sum(np.abs(legs.qty * legs.basis ** power)) * (1.0 if which == "delta" else 1e-4)
    assert_allclose(fast(s), ref(s), rtol=1e-12, atol=1e-14 * scale)
    assert isinstance(fast(legs.spot), float)
    assert fast(s.reshape(7, 23)).shape == (7, 23)


def test_legs_without_finite_greeks_count_as_nan_to_num_makes_them():
    """A leg with a NaN vol adds nothing; a leg at zero time to expiry gives the numpy
    path's values too (its gamma is infinite at the strike: the largest finite float)."""
    legs = BookLegs(np.arange(3), np.array([1.0, 2.0, -1.0]), np.array([9e4, 9e4, 1e5]),
                    np.array([0.1, 0.0, 0.2]), np.array([np.nan, 0.5, 0.6]),
                    np.array([True, False, True]), np.ones(3), 9e4,
                    inverse=np.array([True, False, True]))
    s = np.array([8e4, 9e4, 1e5])
    for which, power in (("delta", 1), ("gamma", 2)):
        with np.errstate(all="ignore"):
            assert_allclose(legs._sum_fn(which, power)(s), legs._numpy_sum_fn(which, power)(s),
                            rtol=1e-12)


def test_docstring_examples():
    assert doctest.testmod(strategies.greeks_kernel).failed == 0
