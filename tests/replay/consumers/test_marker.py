"""The PnL marker's greeks: those of an inverse option's USD value in the coin's price, at
the option's own forward."""

from __future__ import annotations

import math

import pytest
from numpy.testing import assert_allclose

from calibration.pricing.black_one import greeks_one
from replay.consumers.marker import _basis, _greeks_in_spot

K, T, VOL = 105_000.0, 90 / 365, 0.6


def _value(s: float, vol: float = VOL, t: float = T, b: float = 1.03) -> float:
    """USD value of one inverse call: its coin premium ``Black(F) / F`` times ``S``."""
    return greeks_one(b * s, K, t, vol, True)[0] / b


@pytest.mark.parametrize("b", [0.97, 1.0, 1.03])
def test_the_greeks_are_the_usd_values_derivatives_in_spot(b):
    """Each greek against a central difference of ``V(S) = Black(b S) / b`` (theta: the
    value lost per year as the option ages)."""
    s, hs, hv, ht = 100_000.0, 10.0, 1e-4, 1e-5
    g = _greeks_in_spot(greeks_one(b * s, K, T, VOL, True), b)

    def v(ds: float = 0.0, dv: float = 0.0, dt: float = 0.0) -> float:
        return _value(s + ds, VOL + dv, T + dt, b)

    assert_allclose(g["price"], v(), rtol=1e-14)
    assert_allclose(g["delta"], (v(hs) - v(-hs)) / (2 * hs), rtol=1e-7)
    assert_allclose(g["gamma"], (v(hs) - 2 * v() + v(-hs)) / hs**2, rtol=1e-4)
    assert_allclose(g["vega"], (v(dv=hv) - v(dv=-hv)) / (2 * hv), rtol=1e-7)
    assert_allclose(g["volga"], (v(dv=hv) - 2 * v() + v(dv=-hv)) / hv**2, rtol=1e-4)
    assert_allclose(g["vanna"], (v(hs, hv) - v(hs, -hv) - v(-hs, hv) + v(-hs, -hv))
                    / (4 * hs * hv), rtol=1e-5)
    assert_allclose(g["theta"], -(v(dt=ht) - v(dt=-ht)) / (2 * ht), rtol=1e-6)


def test_a_spot_move_is_explained_at_the_forward():
    """A 1 % move of the coin with a 3 % basis on a 90-day call: delta and gamma at the
    forward explain the value's change to its third-order remainder; at the spot (the
    greeks before) they missed about 7 % of it."""
    s0, s1, b = 100_000.0, 101_000.0, 1.03
    true = _value(s1) - _value(s0)
    g = _greeks_in_spot(greeks_one(b * s0, K, T, VOL, True), b)
    explained = g["delta"] * (s1 - s0) + 0.5 * g["gamma"] * (s1 - s0) ** 2
    assert abs(explained / true - 1) < 2e-3
    at_spot = greeks_one(s0, K, T, VOL, True)
    missed = at_spot[1] * (s1 - s0) + 0.5 * at_spot[2] * (s1 - s0) ** 2
    assert abs(missed / true - 1) > 0.05


def test_the_basis_is_the_first_usable_ratio():
    assert _basis(math.nan, 1.02) == 1.02
    assert _basis(1.01, 1.02) == 1.01
    assert _basis(math.nan, -1.0, math.inf) == 1.0


def test_the_surface_mark_moves_with_the_coin_between_refits():
    """Marked to the surface, an inverse call's USD value between two refits changes as the
    explain's delta and gamma at ``F = b S`` say (the surface's forward moved with the coin).
    Priced at the fit's own forward its coin premium stood still, and the step's USD PnL was
    the premium times the coin's move: a fifth of the explained move on a 2 % rise."""
    from types import SimpleNamespace

    from replay.consumers.marker import mark_price
    from tests.strategies.test_base import E2, flat_surface

    now, s_fit, b = E2 - int(T * 365 * 86_400 * 10**9), 100_000.0, 1.03
    board = SimpleNamespace(surface=flat_surface(VOL, now, forward=b * s_fit), spot=s_fit)
    spec = SimpleNamespace(is_option=True, expiry_ns=E2, strike=K, is_call=True,
                           is_inverse=True)

    def usd_value(s: float) -> float:
        market = SimpleNamespace(mid=lambda i: math.nan, spot=lambda: s,
                                 underlying_id=-1)
        return mark_price(SimpleNamespace(market=market, now=now), spec, 0, board,
                          "surface") * s

    s0, s1 = 101_000.0, 103_020.0  # the coin moved since the fit, and moves again
    g = _greeks_in_spot(greeks_one(b * s0, K, T, VOL, True), b)
    explained = g["delta"] * (s1 - s0) + 0.5 * g["gamma"] * (s1 - s0) ** 2
    assert_allclose(usd_value(s1) - usd_value(s0), explained, rtol=2e-3)
    assert_allclose(usd_value(s0), _value(s0), rtol=1e-12)


@pytest.mark.parametrize("settlement", ["inverse", "linear"])
def test_an_options_greeks_in_spot_follow_its_settlement(settlement):
    """Without a surface the option's vol is its mid's, inverted as it is quoted (a coin
    premium ``Black(F) / F``, or a linear option's USD ``Black(F)``), and its greeks are those
    of its USD value in the coin's price ``S`` at a 3 % basis: ``Black(b S) / b`` inverse,
    ``Black(b S)`` linear (finite differences)."""
    from types import SimpleNamespace as NS_

    from calibration.pricing.black import black_price
    from replay.consumers.marker import PnLMarker
    from replay.model.orders import InstrumentSpec

    day = 86_400 * 10**9
    spec = InstrumentSpec(1, "option", settlement, 1.0, 0.0001, strike=50_000.0,
                          expiry_ns=30 * day, is_call=True)
    s, b, t, vol = 50_000.0, 1.03, 30 / 365, 0.6

    def value(x: float, bb: float = b) -> float:  # USD, per unit of underlying
        v = float(black_price(bb * x, 50_000.0, t, vol, True))
        return v / bb if settlement == "inverse" else v

    premium = float(black_price(b * s, 50_000.0, t, vol, True))
    mid = premium / (b * s) if settlement == "inverse" else premium
    market = NS_(mid=lambda i: mid, venue_forward={1: b * s}, spot=lambda: s,
                 underlying_id=-1)
    venue = NS_(specs={1: spec}, portfolio=NS_(net_qty=lambda: {1: 1.0}),
                slippage_usd={"hedge": 0.0, "option": 0.0})
    state = PnLMarker(venue, board=None)._state(
        NS_(market=market, now=0), [1], NS_(total_usd=0.0, hedge_usd=0.0, fees_usd=0.0,
                                            funding_usd=0.0))
    o = state["opt"][1]
    assert_allclose(o["sigma"], vol, rtol=1e-9)
    h = 1.0
    assert_allclose(o["g"]["price"], value(s), rtol=1e-9)
    assert_allclose(o["g"]["delta"], (value(s + h) - value(s - h)) / (2 * h), rtol=1e-6)
    assert_allclose(o["g"]["gamma"], (value(s + h) - 2 * value(s) + value(s - h)) / h**2,
                    rtol=1e-4)
    db = 1e-6  # the basis bucket's dV/db, the coin's price held
    assert_allclose(o["g"]["basis"], (value(s, b + db) - value(s, b - db)) / (2 * db),
                    rtol=1e-6)


@pytest.mark.parametrize("inverse", [True, False])
def test_a_step_that_moves_the_basis_is_explained_to_second_order(inverse):
    """A step that moves the coin, the vol and the basis together (as a refit does): the
    buckets, the basis's cross terms included, explain the value's change to its third-order
    remainder, which shrinks 8-fold as the moves halve.  Without the cross terms the
    remainder was second order (a term of the size of the gamma bucket)."""
    from replay.consumers.marker import attribute_step

    s0, b0, n = 100_000.0, 1.03, -10.0

    def value(s: float, vol: float, b: float) -> float:
        v = greeks_one(b * s, K, T, vol, True)[0]
        return v / b if inverse else v

    def remainder(eps: float) -> float:
        s1, v1, b1 = s0 * (1 + 0.01 * eps), VOL + 0.02 * eps, b0 + 0.004 * eps
        g = _greeks_in_spot(greeks_one(b0 * s0, K, T, VOL, True), b0, inverse, b0 * s0)
        state = {"ts": 0, "total": 0.0, "hedge": 0.0, "hedge_slippage": 0.0, "fees": 0.0,
                 "funding": 0.0, "slippage": 0.0}
        a = {**state, "opt": {1: {"F": s0, "b": b0, "sigma": VOL, "t": T, "n": n, "g": g}}}
        total = n * (value(s1, v1, b1) - value(s0, VOL, b0))
        b = {**state, "total": total, "opt": {1: {"F": s1, "b": b1, "sigma": v1, "t": T}}}
        return attribute_step(a, b, s1)["residual"]

    r = [abs(remainder(e)) for e in (1.0, 0.5, 0.25)]
    assert 6.0 < r[0] / r[1] < 10.0 and 6.0 < r[1] / r[2] < 10.0, r


def test_an_option_without_a_book_nor_a_surface_is_marked_at_the_venues_mark():
    """``calibration=none``, an option held while its book is one-sided: it had no price,
    and the marker dropped every mark of the run (a market maker's PnL was null)."""
    from types import SimpleNamespace

    import numpy as np

    from calibration.pricing.black_one import greeks_one
    from replay.consumers.marker import mark_price
    from replay.model.orders import InstrumentSpec

    day = 86_400 * 10**9
    spec = InstrumentSpec(1, "option", "inverse", 1.0, 0.0001, strike=90_000.0,
                          expiry_ns=30 * day, is_call=True)
    market = SimpleNamespace(mid=lambda i: math.nan, now=0, mark_iv=np.array([0.0, 0.55]),
                             venue_forward=np.array([0.0, 91_000.0]), mark_price=np.zeros(2),
                             reference_price=lambda i: math.nan)
    px = mark_price(SimpleNamespace(market=market, now=0), spec, 1, None)
    want = greeks_one(91_000.0, 90_000.0, 30 / 365, 0.55, True)[0] / 91_000.0
    assert_allclose(px, want, rtol=1e-15)
