"""One option's compiled price and greeks against the numpy greeks (the reference twin), on a
grid of moneyness, maturity and vol, at expiry and for invalid inputs."""

from __future__ import annotations

import math

import numpy as np
from numpy.testing import assert_allclose

from calibration.pricing.black import greeks
from calibration.pricing.black_one import GREEK_NAMES, greeks_one


def test_one_option_greeks_are_the_numpy_greeks():
    rng = np.random.default_rng(5)
    f = rng.uniform(20_000.0, 150_000.0, 3000)
    k = f * np.exp(rng.normal(0.0, 0.4, f.size))
    t = np.exp(rng.uniform(np.log(1e-5), np.log(2.0), f.size))
    v = rng.uniform(0.05, 2.5, f.size)
    c = rng.random(f.size) < 0.5
    want = greeks(f, k, t, v, c)
    got = np.array([greeks_one(*a) for a in zip(f, k, t, v, c)])
    for j, name in enumerate(GREEK_NAMES):
        # delta: erfc against scipy's ndtr, a few ulp apart; the others share their formula
        scale = np.maximum(np.abs(want[name]), 1e-300 if name != "delta" else 1e-16)
        assert_allclose(got[:, j] / scale, want[name] / scale, rtol=1e-13, atol=1e-13,
                        err_msg=name)


def test_limits_and_invalid_inputs_as_the_numpy_greeks():
    cases = [(100.0, 90.0, 0.0, 0.5, True), (100.0, 110.0, 0.0, 0.5, False),
             (100.0, 100.0, 0.0, 0.5, True), (100.0, 90.0, 0.3, 0.0, False),
             (-1.0, 90.0, 0.3, 0.5, True), (100.0, 90.0, math.nan, 0.5, True),
             (100.0, 90.0, 0.3, -0.1, True)]
    for a in cases:
        want = greeks(*a)
        got = greeks_one(*a)
        for j, name in enumerate(GREEK_NAMES):
            assert_allclose(got[j], float(want[name]), rtol=1e-15, atol=0, err_msg=f"{a} {name}")


def test_an_infinite_forward_or_strike_gives_nan_greeks_on_both_paths():
    """The module docstring's invalid inputs: before, F = inf gave delta 1 and gamma 0 beside
    a NaN price."""
    for f, k in ((np.inf, 100.0), (100.0, np.inf)):
        assert all(np.isnan(g) for g in greeks_one(f, k, 0.1, 0.5, True))
        assert all(np.isnan(v) for v in greeks(f, k, 0.1, 0.5, True).values())
