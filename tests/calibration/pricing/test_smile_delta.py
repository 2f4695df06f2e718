"""Deltas under each smile dynamics against finite differences of a surface moved that way."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from calibration.models.svi import SVIParams
from calibration.pricing.black import black_price
from calibration.pricing.black import delta as black_delta
from calibration.pricing.smile_delta import (
    dynamics_delta,
    hull_white_fit,
    hull_white_vol_move,
    ssr_estimate,
    ssr_vol_move,
)
from calibration.surface import SmileSlice

F0, T = 95_000.0, 30 / 365
SLICE = SmileSlice("svi", SVIParams(0.3 * T, 0.12 * np.sqrt(T), -0.4, 0.02, 0.15), 0, T, F0,
                   -1.0, 1.0)


def _vol(k):
    return SLICE.vol_and_skew(np.asarray(k, dtype=float))


@pytest.mark.parametrize("ssr", [1.0, 0.0, 1.6, -0.5])
@pytest.mark.parametrize("strike, call", [(80_000.0, False), (95_000.0, True),
                                          (110_000.0, True), (100_000.0, False)])
def test_ssr_delta_matches_the_moved_surface(ssr, strike, call):
    """Under SSR R the smile moves in moneyness by (1 - R) of the log-forward move: strike K's
    vol at forward F is s(ln(K / F0) - (1 - R) ln(F / F0)).  R = 1 is sticky strike, 0 sticky
    moneyness."""
    def value(f):
        k = np.log(strike / F0) - (1 - ssr) * np.log(f / F0)
        return float(black_price(f, strike, T, _vol(k)[0], call))

    h = F0 * 1e-4
    fd = (value(F0 + h) - value(F0 - h)) / (2 * h)
    vol, skew = _vol(np.log(strike / F0))
    got = dynamics_delta(F0, strike, T, vol, call, ssr_vol_move(skew, ssr))
    assert_allclose(got, fd, rtol=0, atol=2e-7)
    if ssr == 1.0:
        assert_allclose(got, black_delta(F0, strike, T, vol, call), rtol=1e-14)


def test_the_atm_vol_moves_by_the_ssr_times_the_skew():
    for ssr in (0.0, 1.0, 2.0):
        h = 1e-5
        # ATM at the moved forward: K = F, so k = ln(F/F0) - (1 - R) ln(F/F0) = R ln(F/F0)
        atm = [_vol(ssr * np.log(1 + e))[0] for e in (h, -h)]
        slope = (atm[0] - atm[1]) / (np.log(1 + h) - np.log(1 - h))
        assert_allclose(slope, ssr * _vol(0.0)[1], rtol=1e-6, atol=1e-12)


def test_hull_white_fit_recovers_its_coefficients_and_delta():
    rng = np.random.default_rng(3)
    n = 4000
    d = rng.uniform(0.05, 0.95, n)
    t = rng.choice([7, 30, 90], n) / 365
    dlnf = rng.normal(0, 0.01, n)
    coef = np.array([-0.25, 0.5, -0.4])
    dvol = (coef[0] + coef[1] * d + coef[2] * d * d) * dlnf / np.sqrt(t) + rng.normal(0, 2e-4, n)
    assert_allclose(hull_white_fit(dvol, dlnf, d, t), coef, atol=0.02)
    # the MV delta of a call: Black delta plus vega x the expected move per unit log forward
    vol = _vol(0.0)[0]
    move = hull_white_vol_move(coef, 0.55, T)
    h = F0 * 1e-4

    def value(f):
        return float(black_price(f, F0, T, vol + move * np.log(f / F0), True))

    assert_allclose(dynamics_delta(F0, F0, T, vol, True, move),
                    (value(F0 + h) - value(F0 - h)) / (2 * h), atol=2e-7)


@pytest.mark.parametrize("horizon_s", [1.0, 60.0, 300.0, 1e5])
def test_the_driscoll_kraay_error_is_the_sum_over_every_pair(horizon_s):
    """The standard error with overlapping pairs against its definition summed pair by pair
    (pairs of several expiries share a start time; start times are nanoseconds of 2023):
    every pair of scores whose intervals overlap, in full, or Bartlett's weights of twice the
    horizon where that sum vanishes (at 1e5 s every interval overlaps every other)."""
    rng = np.random.default_rng(7)
    t = 1_700_000_000 * 10**9 + rng.integers(0, 40, 300) * 15 * 10**9
    x = 0.01 * rng.standard_normal(t.size)
    y = 1.3 * x + 0.002 * rng.standard_normal(t.size)
    r, se = ssr_estimate(x, y, t, horizon_s * 1e9)
    e = y - r * x
    gap = np.abs(t[:, None] - t[None, :]) / (horizon_s * 1e9)
    s = (x * e) @ (gap < 1.0).astype(float) @ (x * e)
    starts = np.unique(t)
    g = np.array([np.sum((x * e)[t == u]) for u in starts])
    if not s > 1e-9 * (g @ g):
        s = (x * e) @ np.maximum(0.0, 1.0 - gap / 2.0) @ (x * e)
    want = np.sqrt(s * t.size / (t.size - 1)) / (x @ x)
    assert_allclose(r, (x @ y) / (x @ x), rtol=1e-14)
    assert_allclose(se, want, rtol=1e-10)


def test_the_driscoll_kraay_error_has_the_spread_of_the_estimate():
    """Pairs of surfaces 300 s apart, started every 30 s over a day, with a true SSR of 1.5:
    the mean standard error is the estimate's spread over the paths, and a 95 % interval
    misses 1.5 about 5 % of the time (a Bartlett kernel of bandwidth 300 s gave 0.87 and
    9.8 %: it discounted the overlap a second time)."""
    rng = np.random.default_rng(2)
    n, lag, skew = 2880, 10, -0.1
    t = np.arange(n - lag) * 30e9
    r, se = np.empty(400), np.empty(400)
    for i in range(r.size):
        lnf = np.cumsum(rng.standard_normal(n)) * 5e-4
        atm = 1.5 * skew * lnf + np.cumsum(rng.standard_normal(n)) * 3e-4
        r[i], se[i] = ssr_estimate(skew * (lnf[lag:] - lnf[:-lag]), atm[lag:] - atm[:-lag], t,
                                   300e9)
    assert 0.9 < se.mean() / r.std() < 1.1
    assert np.mean(np.abs(r - 1.5) / se > 1.96) < 0.08
