"""Black-76 prices, the normalised Black function and greeks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.integrate import quad
from scipy.special import ndtr, ndtri

from calibration import black_price, greeks
from calibration.pricing import black as bl


def _closed_form(f, k, t, v, is_call):
    s = v * np.sqrt(t)
    d1 = np.log(f / k) / s + 0.5 * s
    d2 = d1 - s
    call = f * ndtr(d1) - k * ndtr(d2)
    return np.where(is_call, call, call - (f - k))


def _grid(n: int, seed: int, z_max: float = 3.0):
    rng = np.random.default_rng(seed)
    t = np.exp(rng.uniform(np.log(1 / 8760), np.log(3.0), n))
    v = np.exp(rng.uniform(np.log(0.05), np.log(5.0), n))
    z = rng.uniform(-z_max, z_max, n)
    f = rng.uniform(1e3, 1e5, n)
    k = f * np.exp(z * v * np.sqrt(t))
    return f, k, t, v, rng.random(n) < 0.5


def test_price_matches_textbook_formula_where_it_is_well_conditioned():
    f, k, t, v, c = _grid(5000, 1, z_max=2.0)
    ours = black_price(f, k, t, v, c)
    # the textbook difference cancels; its own error is a few ulps of the larger term
    scale = np.maximum(f, k)
    assert_allclose(ours / scale, _closed_form(f, k, t, v, c) / scale, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(
    "x,s",
    [
        (-0.02, 0.01), (-0.5, 0.1), (-3.0, 0.3),  # small t
        (-1e-8, 0.2), (0.0, 1e-3), (0.0, 2.0),  # at the money
        (-1.0, 1.0), (-5.0, 3.0), (-0.1, 8.0),  # direct form
        (-20.0, 1.5), (-40.0, 3.0), (-12.0, 1.0),  # asymptotic regime (h + t < -9)
        (-6.0, 0.65), (-2.0, 0.215), (-2.0, 0.205),  # around the regime boundaries
    ],
)
def test_normalised_black_against_vega_integral(x, s):
    # b(x, s) = integral_0^s b'(x, u) du for x <= 0, with b' the closed-form normalised vega:
    # an independent reference for all three evaluation regimes (deep OTM included)
    def vega(u):
        return math.exp(-0.5 * (x * x / (u * u) + 0.25 * u * u)) / math.sqrt(2 * math.pi)

    peak = math.sqrt(2 * abs(x)) if x != 0 else 0.0
    points = [p for p in (peak,) if 0 < p < s] or None
    ref, _ = quad(vega, 0.0, s, epsabs=0.0, epsrel=2e-14, limit=400, points=points)
    ours = bl.normalised_black_otm(x, s)
    assert_allclose(ours, ref, rtol=5e-13)
    # exp(-(h^2+t^2)/2): rounding of the argument costs up to (h^2+t^2)/2 ulps
    assert_allclose(bl.normalised_black_otm_vega(x, s)[1], vega(s), rtol=1e-13)


def _direct(h, t):
    x = 2 * h * t
    return math.exp(0.5 * x) * ndtr(h + t) - math.exp(-0.5 * x) * ndtr(h - t)


def test_regimes_agree_at_their_boundaries():
    # the same (h, t) through two regimes; the worst case of the small-t expansion is ~1e-12
    # near h = -8.5 (documented in black.py)
    for h in (-8.3, -5.0, -1.0, -0.01):
        assert_allclose(bl._small_t_otm(h, 0.21)[0], _direct(h, 0.21), rtol=2e-12)
    for t in (0.01, 0.1, 0.2):
        h = -8.5 - t
        assert_allclose(bl._asymptotic_otm(h, t)[0], bl._small_t_otm(h, t)[0], rtol=2e-12)
    for t in (0.5, 2.0):
        h = -8.5 - t
        assert_allclose(bl._asymptotic_otm(h, t)[0], _direct(h, t), rtol=1e-13)


def test_put_call_parity_and_symmetry():
    f, k, t, v, _ = _grid(2000, 2)
    call = black_price(f, k, t, v, True)
    put = black_price(f, k, t, v, False)
    scale = np.maximum(f, k)
    assert_allclose((call - put) / scale, (f - k) / scale, rtol=0, atol=1e-13)
    # swapping F and K swaps calls and puts
    assert_allclose(black_price(k, f, t, v, False), call, rtol=1e-12, atol=1e-300)


def test_deep_otm_keeps_relative_accuracy():
    # 12 standard deviations out of the money: the naive formula returns noise or 0 here
    f, t, v = 100.0, 0.25, 0.5
    k = f * np.exp(12 * v * np.sqrt(t))
    x, s = math.log(f / k), v * math.sqrt(t)
    ref, _ = quad(lambda u: math.exp(-0.5 * (x * x / (u * u) + 0.25 * u * u)), 0, s,
                  epsabs=0.0, epsrel=2e-14, limit=400)
    ref *= math.sqrt(f * k) / math.sqrt(2 * math.pi)
    ours = float(black_price(f, k, t, v, True))
    assert ours > 0
    assert_allclose(ours, ref, rtol=1e-12)


def test_expiry_zero_vol_and_invalid_inputs():
    assert_allclose(black_price(100.0, [80.0, 120.0], 0.0, 0.5, True), [20.0, 0.0])
    assert_allclose(black_price(100.0, [80.0, 120.0], 1.0, 0.0, False), [0.0, 20.0])
    bad = black_price([np.nan, -1.0, 100.0, 100.0, 100.0], [100, 100, 0, 100, 100],
                      [1, 1, 1, -1, 1], [0.5, 0.5, 0.5, 0.5, np.nan], True)
    assert np.isnan(bad).all()


def test_broadcasting_shapes():
    out = black_price(100.0, np.array([[90.0], [110.0]]), np.array([0.1, 0.5, 1.0]), 0.6,
                      np.array([True, False, True]))
    assert out.shape == (2, 3)
    assert np.ndim(black_price(100.0, 100.0, 1.0, 0.5, True)) == 0


def _fd(fun, args, i, h):
    up = list(args)
    dn = list(args)
    up[i] = args[i] + h
    dn[i] = args[i] - h
    return (fun(*up) - fun(*dn)) / (2 * h)


def test_greeks_against_finite_differences():
    f, k, t, v, c = _grid(400, 3, z_max=2.0)
    g = greeks(f, k, t, v, c)
    args = (f, k, t, v, c)
    # steps relative to the scale of each variable (F moves the price on the scale F vol sqrt(t))
    hf, hv, ht = 1e-3 * f * v * np.sqrt(t), 1e-4 * v, 1e-4 * t

    def price(*a):
        return black_price(*a)

    def dv(*a):
        return bl.delta(*a)

    def vg(*a):
        return bl.vega(*a)

    # central differences: truncation O(h^2) ~ 1e-8 relative, round-off ~ eps/h ~ 1e-12
    tol = {"rtol": 2e-5}
    scale_p = np.maximum(g["price"], 1e-6 * f)
    assert_allclose(g["delta"], _fd(price, args, 0, hf), rtol=0, atol=1e-6)
    assert_allclose(g["gamma"] * f, _fd(dv, args, 0, hf) * f, rtol=2e-5, atol=1e-7)
    assert_allclose(g["vega"] / scale_p, _fd(price, args, 3, hv) / scale_p, **tol, atol=1e-7)
    assert_allclose(g["theta"] * t / scale_p, -_fd(price, args, 2, ht) * t / scale_p, **tol,
                    atol=1e-7)
    assert_allclose(g["vanna"] * f / scale_p, _fd(vg, args, 0, hf) * f / scale_p, rtol=1e-4,
                    atol=1e-7)
    assert_allclose(g["volga"] / scale_p, _fd(vg, args, 3, hv) / scale_p, **tol, atol=1e-7)


def test_single_greek_functions_match_greeks_dict():
    f, k, t, v, c = _grid(50, 4)
    g = greeks(f, k, t, v, c)
    for name in ("delta", "gamma", "vega", "theta", "vanna", "volga"):
        assert_allclose(getattr(bl, name)(f, k, t, v, c), g[name], rtol=1e-15)
    assert_allclose(g["price"], black_price(f, k, t, v, c), rtol=1e-15)
    # vega has a path of its own (a refit may weigh every quote by it): the same bits,
    # at expiry, at zero vol and for invalid inputs too
    edge = (np.append(f[:4], [100.0, 100.0, -1.0, np.nan]), np.append(k[:4], [90.0] * 4),
            np.append(t[:4], [0.0, 0.5, 0.5, 0.5]), np.append(v[:4], [0.5, 0.0, 0.5, 0.5]),
            True)
    for a in ((f, k, t, v, c), edge):
        assert bl.vega(*a).tobytes() == greeks(*a)["vega"].tobytes()
    # put delta = call delta - 1, other greeks are the same for calls and puts
    gc, gp = greeks(f, k, t, v, True), greeks(f, k, t, v, False)
    assert_allclose(gc["delta"] - gp["delta"], 1.0, rtol=1e-13)
    for name in ("gamma", "vega", "theta", "vanna", "volga"):
        assert_allclose(gc[name], gp[name], rtol=1e-15)


def test_greeks_at_expiry_are_limits():
    g = greeks(100.0, np.array([90.0, 110.0]), 0.0, 0.5, True)
    assert_allclose(g["delta"], [1.0, 0.0])
    for name in ("gamma", "vega", "theta", "vanna", "volga"):
        assert_allclose(g[name], 0.0)


def test_inverse_norm_cdf_approximation():
    p = np.concatenate([np.logspace(-300, -1, 400), np.linspace(0.01, 0.99, 400)])
    ours = np.array([bl.inverse_norm_cdf(q) for q in p])
    assert_allclose(ours, ndtri(p), rtol=2e-9)
    assert bl.inverse_norm_cdf(0.0) == -math.inf and bl.inverse_norm_cdf(1.0) == math.inf
