import math

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.stats import norm

from calibration.pricing.black import gamma as black_gamma
from strategies.greeks import BookLegs
from strategies.hedging.bands import whalley_wilmott_half_width
from strategies.hedging.corridor import Corridor, delta_corridor

K, T, VOL = 50000.0, 30 / 365, 0.6


def book_delta_fn(qty: list[float], is_call: list[bool], basis: float = 1.0,
                  premium_adjusted: bool = False, inverse: bool = False):
    """The numpy delta function of linear (or inverse) legs at ``K, T, VOL``."""
    n = len(qty)
    legs = BookLegs(np.arange(n), np.array(qty), np.full(n, K), np.full(n, T), np.full(n, VOL),
                    np.array(is_call), np.full(n, basis), 50000.0, premium_adjusted,
                    inverse=np.full(n, inverse))
    return legs._numpy_sum_fn("delta", 1)


def call_delta(s: float) -> float:
    """Independent Black delta N(d1) of one call."""
    d1 = (math.log(s / K) + 0.5 * VOL * VOL * T) / (VOL * math.sqrt(T))
    return float(norm.cdf(d1))


def spot_for_delta(d: float) -> float:
    """Inverse of call_delta: S = K exp(N^-1(d) vol sqrt(T) - vol^2 T / 2)."""
    return K * math.exp(norm.ppf(d) * VOL * math.sqrt(T) - 0.5 * VOL * VOL * T)


def test_single_call_corridor_matches_closed_form() -> None:
    s0, band = 52000.0, 0.04
    hedge = call_delta(s0)
    c = delta_corridor(call_delta, s0, hedge, band, vectorised=False)
    # delta increases with S: the upper edge is delta + band, the lower delta - band
    assert_allclose(c.hi, spot_for_delta(hedge + band), rtol=1e-9)
    assert_allclose(c.lo, spot_for_delta(hedge - band), rtol=1e-9)
    assert c.contains(s0) and not c.contains(c.hi * 1.0001)


def test_short_straddle_corridor_maps_back_to_band() -> None:
    fn = book_delta_fn([-3.0, -3.0], [True, False])
    s0, band = 51000.0, 0.1
    hedge = fn(s0) + 0.03  # hedge a little off centre
    c = delta_corridor(fn, s0, hedge, band)
    assert c.lo < s0 < c.hi
    assert_allclose(abs(fn(c.lo) - hedge), band, atol=1e-8)
    assert_allclose(abs(fn(c.hi) - hedge), band, atol=1e-8)
    inside = np.linspace(c.lo, c.hi, 401)[1:-1]
    assert max(abs(fn(s) - hedge) for s in inside) < band  # these are the nearest crossings


def test_state_dependent_band_whalley_wilmott() -> None:
    fn = book_delta_fn([-10.0], [True])

    def ww(s):  # vectorised, as a strategy would pass it
        g = -10.0 * black_gamma(s, K, T, VOL, True)
        return whalley_wilmott_half_width(g, s, 1e-3, 1e-4, r=0.02, tau=T)

    s0 = 50500.0
    c = delta_corridor(fn, s0, fn(s0), ww)
    for s in (c.lo, c.hi):
        assert_allclose(abs(fn(s) - fn(s0)), ww(s), rtol=1e-8)


def test_premium_adjusted_delta() -> None:
    s = 49000.0
    f = 1.01 * s
    d2 = (math.log(f / K) - 0.5 * VOL * VOL * T) / (VOL * math.sqrt(T))
    # premium-adjusted forward delta of a call is K N(d2) / F; chain rule dF/dS = basis for a
    # linear leg, whose USD value is V(F); an inverse one is worth V(F) / basis USD
    linear = book_delta_fn([2.0], [True], basis=1.01, premium_adjusted=True)
    assert_allclose(linear(s), 2.0 * 1.01 * K * norm.cdf(d2) / f, rtol=1e-12)
    inverse = book_delta_fn([2.0], [True], basis=1.01, premium_adjusted=True, inverse=True)
    assert_allclose(inverse(s), 2.0 * K * norm.cdf(d2) / f, rtol=1e-12)


def test_breached_and_unbounded_cases() -> None:
    assert delta_corridor(call_delta, 50000.0, call_delta(50000.0) + 0.2, 0.1,
                          vectorised=False) == Corridor(
        50000.0, 50000.0)
    flat = delta_corridor(lambda s: 1.0, 50000.0, 1.0, 0.1, max_log_move=0.3)
    assert_allclose([flat.lo, flat.hi], [50000.0 * math.exp(-0.3), 50000.0 * math.exp(0.3)],
                    rtol=1e-14)
    with pytest.raises(ValueError):
        delta_corridor(call_delta, 0.0, 0.5, 0.1, vectorised=False)


def test_undefined_delta_shrinks_corridor_instead_of_widening_it() -> None:
    # a delta that cannot be evaluated above 51000 must make the strategy wake there
    def fn(s):
        s = np.asarray(s, dtype=float)
        return np.where(s > 51000.0, np.nan, 0.0)

    c = delta_corridor(fn, 50000.0, 0.0, 0.1)
    assert 50000.0 < c.hi <= 51000.0 and c.hi > 50990.0
    assert_allclose(c.lo, 50000.0 * math.exp(-0.5), rtol=1e-14)
    assert delta_corridor(lambda s: np.full(np.shape(s), np.nan), 50000.0, 0.0, 0.1) == Corridor(
        50000.0, 50000.0)
