"""Inverse (coin-margined) conversions and the premium-adjusted delta."""

from __future__ import annotations

import numpy as np
from numpy.testing import assert_allclose

from calibration import black_price, coin_to_usd, delta, premium_adjusted_delta, usd_to_coin


def test_coin_usd_round_trip():
    rng = np.random.default_rng(0)
    f = rng.uniform(2e4, 1.2e5, 100)
    coin = rng.uniform(1e-4, 0.5, 100)
    usd = coin_to_usd(coin, f)
    assert_allclose(usd, coin * f, rtol=1e-15)
    assert_allclose(usd_to_coin(usd, f), coin, rtol=1e-15)
    assert np.isinf(usd_to_coin(1.0, 0.0))


def test_coin_premium_is_black_price_over_forward():
    f, k, t, v = 91000.0, 95000.0, 30 / 365, 0.45
    coin = usd_to_coin(black_price(f, k, t, v, True), f)
    # the payoff in coin is max(S - K, 0) / S; under the F-measure its value is C / F
    assert 0 < coin < 1
    assert_allclose(coin_to_usd(coin, f), black_price(f, k, t, v, True), rtol=1e-15)


def test_premium_adjusted_delta_is_forward_times_coin_value_sensitivity():
    rng = np.random.default_rng(1)
    n = 200
    f = rng.uniform(5e4, 1e5, n)
    k = f * np.exp(rng.uniform(-0.5, 0.5, n))
    t = rng.uniform(0.01, 1.0, n)
    v = rng.uniform(0.2, 1.2, n)
    c = rng.random(n) < 0.5
    h = 1e-4 * f
    coin_up = black_price(f + h, k, t, v, c) / (f + h)
    coin_dn = black_price(f - h, k, t, v, c) / (f - h)
    fd = f * (coin_up - coin_dn) / (2 * h)
    # central difference, truncation O(h^2): 1e-7 absolute on a delta is ample
    assert_allclose(premium_adjusted_delta(f, k, t, v, c), fd, rtol=0, atol=1e-7)
    expected = delta(f, k, t, v, c) - black_price(f, k, t, v, c) / f
    assert_allclose(premium_adjusted_delta(f, k, t, v, c), expected, rtol=1e-14, atol=1e-16)


def test_premium_adjusted_call_minus_put_is_strike_over_forward():
    # C - P = F - K  =>  (delta_C - C/F) - (delta_P - P/F) = 1 - (F - K)/F = K/F
    f, t, v = 90000.0, 0.25, 0.6
    k = np.array([60000.0, 90000.0, 130000.0])
    diff = premium_adjusted_delta(f, k, t, v, True) - premium_adjusted_delta(f, k, t, v, False)
    assert_allclose(diff, k / f, rtol=1e-12)


def test_premium_adjusted_delta_invalid_inputs_are_nan():
    out = premium_adjusted_delta([np.nan, 100.0], [100.0, -1.0], 0.5, 0.5, True)
    assert np.isnan(out).all()
