"""Portfolio margin: the risk vector against a direct computation, the kernel against its
reference, hedged books, delta-one books and the extended table."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from calibration.models.svi import SVIParams
from calibration.pricing.black import black_price, delta
from calibration.surface import SmileSlice, Surface
from replay.consumers.margin import PMParams, make_legs, portfolio_margin, standard_margin
from replay.consumers.margin.portfolio import scenarios, surface_vol_after_move

S = 60_000.0
DAY_NS = 86400 * 10**9


def _surface() -> Surface:
    slices = []
    for days in (2, 9, 30, 90):
        t = days / 365
        p = SVIParams(a=0.3 * t, b=0.12 * math.sqrt(t), rho=-0.35, m=0.02, sigma=0.15)
        slices.append(SmileSlice("svi", p, days * DAY_NS, t, S, -1.5, 1.5))
    return Surface(slices, 0)


def _direct_vector(strike, t, call, units, vol_of_k, p: PMParams):
    """The risk vector of one option, scenario by scenario, written out plainly."""
    v_now = vol_of_k(math.log(strike / S))
    mark = float(black_price(S, strike, t, v_now, call))
    dte = max(t * 365, p.min_dte_days)
    power = p.short_term_vega_power if dte < 30 else p.long_term_vega_power
    scale = (30 / dte) ** power
    out = []
    moves = list(np.linspace(-p.price_range, p.price_range, p.n_moves))
    cases = [(m, s) for m in moves for s in ("up", "same", "down")]
    cases += [(m, "up") for m in p.extended_moves]
    for m, state in cases:
        f1 = S * (1 + m)
        v = vol_of_k(math.log(strike / f1))
        if state == "up":
            v = max(v * (1 + p.volatility_range_up * scale), p.min_volatility_for_shock_up)
        elif state == "down":
            v = max(v * (1 - p.volatility_range_down * scale), p.min_volatility)
        out.append(units * (float(black_price(f1, strike, t, v, call)) - mark))
    return np.array(out), mark, v_now


@pytest.mark.parametrize("dynamics", ["sticky_moneyness", "sticky_strike"])
@pytest.mark.parametrize("days", [2.5, 45.0])
def test_risk_vector_of_a_short_call_matches_a_direct_computation(dynamics, days):
    surf = _surface()
    t, strike, p = days / 365, 66_000.0, PMParams(dynamics=dynamics)
    k_now = math.log(strike / S)

    def vol_of_k(k):
        kk = k if dynamics == "sticky_moneyness" else k_now
        return float(np.sqrt(surf.total_variance(np.array([kk]), t)[0] / t))

    want, mark, v_now = _direct_vector(strike, t, True, -2.0, vol_of_k, p)
    legs = make_legs([-2.0], [S], strike=[strike], t=[t], is_call=[True], vol=[v_now])
    assert_allclose(legs.mark, [mark], rtol=1e-14)
    res = portfolio_margin(legs, p, surface_vol_after_move(surf, legs.t))
    assert_allclose(res.pnl[0], want, rtol=1e-9, atol=1e-9 * S)
    counted = np.maximum(-want, 0.0)
    ext = scenarios(p).extended
    le = counted[ext]
    counted[ext] = p.price_range / np.abs(p.extended_moves) * le * le / (le + p.extended_dampener)
    assert res.worst[0] == int(np.argmax(counted))
    delta_shock = p.max_delta_shock * p.price_range * abs(
        -2.0 * float(delta(S, strike, t, v_now, True)) * S)
    assert_allclose(res.im[0], counted.max() + delta_shock, rtol=1e-9)
    assert_allclose(res.mm[0], p.mm_factor * res.im[0], rtol=1e-15)


def test_kernel_agrees_with_the_numpy_reference():
    """Random books of inverse and linear legs (delta-one legs entered away from their mark,
    forwards at a basis to the coin's price), under USD and coin collateral."""
    rng = np.random.default_rng(7)
    surf = _surface()
    for dynamics, coin in (("sticky_moneyness", False), ("sticky_strike", False),
                           ("sticky_moneyness", True), ("sticky_strike", True)):
        p = PMParams(dynamics=dynamics)
        for _ in range(20):
            n = int(rng.integers(1, 60))
            strike = np.where(rng.random(n) < 0.85, S * np.exp(rng.normal(0, 0.4, n)), np.nan)
            t = rng.choice([0.2, 1, 3, 20, 40, 200], n) / 365
            fwd = np.full(n, S) * rng.uniform(0.99, 1.06, n)
            legs = make_legs(rng.normal(0, 5, n), fwd, strike=strike, t=t,
                             is_call=rng.random(n) < 0.5, vol=rng.uniform(0.2, 1.5, n),
                             group=rng.integers(0, 3, n), inverse=rng.random(n) < 0.6,
                             entry=fwd * rng.uniform(0.8, 1.2, n), spot=S)
            vam = surface_vol_after_move(surf, legs.t)
            fast = portfolio_margin(legs, p, vam, coin=coin)
            ref = portfolio_margin(legs, p, vam, reference=True, coin=coin)
            scale = np.abs(legs.units * legs.forward).sum()
            assert_allclose(fast.pnl, ref.pnl, rtol=1e-9, atol=1e-11 * scale)
            assert_allclose(fast.delta_usd, ref.delta_usd, rtol=1e-9, atol=1e-11 * scale)
            assert_allclose(fast.im, ref.im, rtol=1e-9, atol=1e-11 * scale)


def test_kernel_prices_match_vollib():
    from vollib.black import black as vollib_black

    from replay.consumers.margin.revalue import _black

    rng = np.random.default_rng(3)
    for _ in range(300):
        f, k = S, S * math.exp(rng.normal(0, 0.5))
        t, v, call = rng.uniform(0.001, 2.0), rng.uniform(0.05, 2.0), bool(rng.random() < 0.5)
        ref = vollib_black(("c" if call else "p"), f, k, t, 0.0, v)
        assert_allclose(_black(f, k, t, v, call), ref, rtol=1e-10, atol=1e-12 * f)


def test_a_call_spread_needs_less_portfolio_than_standard_margin():
    """Long the 60k call, short the 62k call (30 days): the long leg offsets the short one
    under every scenario, so PM is far below standard margin, which charges the short call
    on its own and the long call its premium."""
    legs = make_legs([1.0, -1.0], [S, S], strike=[60_000.0, 62_000.0], t=[30 / 365] * 2,
                     is_call=[True, True], vol=[0.6, 0.58])
    pm = portfolio_margin(legs, PMParams()).im[0]
    im, _ = standard_margin(legs)
    assert pm < im.sum()
    assert pm <= 2_000.0 * 1.05  # at most about the strike width (plus the delta shock)


def test_delta_one_requirement_is_the_full_range_move():
    p = PMParams(max_delta_shock=0.0, price_range=0.05)
    res = portfolio_margin(make_legs([-3.0], [S]), p)
    assert_allclose(res.im[0], 0.05 * 3 * S, rtol=1e-14)
    assert res.scenarios.labels[int(res.worst[0])].startswith("ext +500%") is False
    assert "+5%" in res.scenarios.labels[int(res.worst[0])]


def test_extended_table_binds_for_a_far_out_of_the_money_short_call():
    """A short call struck 60 % above spot barely moves within +-16 %; the +500 % extended
    scenario is what charges it."""
    legs = make_legs([-10.0], [S], strike=[96_000.0], t=[20 / 365], is_call=[True],
                     vol=[0.7])
    res = portfolio_margin(legs, PMParams())
    assert res.scenarios.extended[int(res.worst[0])]
    std_worst = np.max(-res.pnl[0][~res.scenarios.extended])
    assert res.im[0] > 3 * std_worst


def test_vol_shocks_follow_the_published_formula():
    from replay.consumers.margin.revalue import shocked_vols

    p = PMParams()
    vol = np.array([[0.4, 0.4, 0.4], [0.8, 0.8, 0.8]])
    t = np.array([10 / 365, 60 / 365])
    got = shocked_vols(vol, t, np.array([1, 0, -1]), *p.shock_args())
    s10, s60 = 3.0 ** 0.3, 0.5 ** 0.13
    assert_allclose(got[0], [max(0.4 * (1 + 0.5 * s10), 0.5), 0.4, 0.4 * (1 - 0.25 * s10)])
    assert_allclose(got[1], [0.8 * (1 + 0.5 * s60), 0.8, 0.8 * (1 - 0.25 * s60)])
    # the floor on a shock up binds for a low vol
    low = shocked_vols(np.array([[0.1]]), t[:1], np.array([1]), *p.shock_args())
    assert_allclose(low, [[0.5]])


def test_the_zero_move_costs_nothing_after_the_spot_moved_since_the_fit():
    """The legs are valued at the surface's vol of their strike (moneyness from the fit's
    forward) and carry today's forward; the scenarios' moneyness is measured from the fit's
    forward too, so the unchanged scenario reprices every leg at its own vol: PnL 0.  Measured
    from today's forward it was -1,031 USD on 10 short puts after a 2 % move."""
    from types import SimpleNamespace

    from replay.consumers.margin.book import book_legs, spot_move_since_fit, years_since_fit

    surf = _surface()
    board = SimpleNamespace(surface=surf, spot=S)
    strikes = np.array([54_000.0, 66_000.0])
    # half a day after the fit the legs are still valued at their expiry's fitted vol; read
    # at the time left (29.5 days) the surface blended the 30-day slice with the 9-day one
    for spot_now, now in ((S, 0), (1.02 * S, 0), (0.97 * S, DAY_NS // 2)):
        market = SimpleNamespace(spot=lambda s=spot_now: s, underlying_id=-1,
                                 expiry_forward=lambda e: math.nan)
        ctx = SimpleNamespace(market=market, now=now)
        specs = {i: SimpleNamespace(is_option=True, expiry_ns=30 * DAY_NS, strike=k,
                                    is_call=call, contract_size=1.0, is_inverse=True)
                 for i, (k, call) in enumerate(zip(strikes, (False, True)))}
        legs, _ = book_legs(ctx, specs, {0: -10.0, 1: 4.0}, board, spot_now, 0.6, {0: 0, 1: 0})
        assert_allclose(legs.vol, surf.iv_expiry(strikes, np.full(2, 30 * DAY_NS)), rtol=1e-14)
        assert_allclose(legs.t, 30 / 365 - now / (365 * DAY_NS), rtol=1e-14)
        moved = spot_move_since_fit(ctx, board)
        assert_allclose(moved, spot_now / S, rtol=1e-15)
        t_fit = legs.t + years_since_fit(ctx, board)
        res = portfolio_margin(legs, PMParams(), surface_vol_after_move(surf, t_fit, moved))
        zero = res.scenarios.labels.index("+0% vol same")
        assert_allclose(res.pnl[0, zero], 0.0, atol=1e-9 * S)
