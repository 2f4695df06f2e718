"""Hedging strategies: targets, bands, corridors and wake schedules (strategies.hedging)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from calibration.pricing.black import delta as black_delta
from calibration.pricing.black import gamma as black_gamma
from replay.engine.loop import run_replay
from replay.engine.wake import WakeCondition
from strategies.board import SurfaceBoard
from strategies.books import FixedBook
from strategies.greeks import NS_PER_YEAR, BookLegs, book_greeks, book_legs
from strategies.hedging.band_hedgers import gamma_weighted
from strategies.hedging.bands import (
    leland_vol,
    zakamouline_half_width,
    zakamouline_k,
    zakamouline_modified_vol,
)
from strategies.hedging.registry import (
    DeltaBand,
    GammaVega,
    Leland,
    MoveBased,
    NoHedge,
    Periodic,
    WhalleyWilmott,
    Zakamouline,
)
from tests.strategies.test_base import (
    E1,
    E2,
    FLAT,
    NS,
    SPOT,
    T0,
    FakeCtx,
    LimitOrTouchVenue,
    build_store,
    flat_surface,
    journal_table,
    option_id,
)

COMMON = {"hedge": "perp", "delta_source": "flat", "flat_vol": FLAT, "min_trade": 1.0}
QTY, STRIKE = -10.0, 100_000.0  # the book: short 10 calls of E2


def short_calls(**kw) -> tuple[FakeCtx, float, float, float]:
    """A FakeCtx holding the book; returns it with (t, Black delta, Black gamma) per unit."""
    ctx = FakeCtx(**kw)
    ctx.held[option_id(ctx.instruments, E2, STRIKE, True)] = QTY
    t = (E2 - ctx.now) / NS_PER_YEAR
    return (ctx, t, float(black_delta(SPOT, STRIKE, t, FLAT, True)),
            float(black_gamma(SPOT, STRIKE, t, FLAT, True)))


def hedge_btc(ctx: FakeCtx) -> float:
    """Delta of the perp held (inverse, 10 USD contracts, priced at the perp mid)."""
    return ctx.position(1) * 10.0 / float(ctx.market.mid(1))


def test_each_strategy_hedges_a_single_option_to_its_black_delta():
    cost, ra = 0.002, 1e-4
    _ctx0, t, d, g = short_calls()
    dt = 60.0 / (365 * 86400)
    gam = QTY * g
    ww_h = (1.5 * cost * SPOT * gam ** 2 / ra) ** (1.0 / 3.0)  # WW 1997, r = 0
    k = float(zakamouline_k(gam, SPOT, cost, ra, FLAT, t))
    vol_z = float(zakamouline_modified_vol(FLAT, k, short=True))
    zak_h = float(zakamouline_half_width(gam, SPOT, cost, ra, FLAT, t))
    vol_l = float(leland_vol(FLAT, cost, dt, short=True))
    cases = {
        "periodic": (Periodic(period_ns=60 * NS, **COMMON), -QTY * d, 0.0, 0.0),
        "delta_band": (DeltaBand(band=0.05, **COMMON), -QTY * d, 0.0, 0.05),
        "move_based": (MoveBased(move_pct=0.01, **COMMON), -QTY * d, 0.0, 0.0),
        "leland": (Leland(cost=cost, period_ns=60 * NS, **COMMON),
                   -QTY * float(black_delta(SPOT, STRIKE, t, vol_l, True)), 0.0, 0.0),
        "whalley_wilmott": (WhalleyWilmott(risk_aversion=ra, cost=cost, **COMMON),
                            -QTY * d, ww_h, ww_h),
        "zakamouline": (Zakamouline(risk_aversion=ra, cost=cost, **COMMON),
                        -QTY * float(black_delta(SPOT, STRIKE, t, vol_z, True)), zak_h, zak_h),
    }
    assert vol_l > FLAT and vol_z > FLAT and 0.05 < ww_h < 2.0 and 0.05 < zak_h < 2.0
    for name, (strat, target, edge, half) in cases.items():
        ctx, *_ = short_calls()
        strat.on_start(ctx)
        strat.on_wake(ctx)
        (order,) = ctx.orders
        assert order["instrument_id"] == 1, name
        ctx.fill_all()
        # edge strategies stop at the near edge of their band; one contract is 1e-4 BTC
        assert_allclose(hedge_btc(ctx), target - edge, atol=2e-4, err_msg=name)
        (dec,) = ctx.decisions()
        assert dec["strategy"] == name
        assert_allclose(dec["target_delta"], target, rtol=1e-9, err_msg=name)
        assert_allclose([dec["band_lo"], dec["band_hi"]], [target - half, target + half],
                        rtol=1e-6, atol=1e-12, err_msg=name)
        assert_allclose(dec["book_delta"], QTY * d, rtol=1e-12)


def test_zakamouline_band_along_the_corridor_is_its_formula():
    """The band the corridor search probes (factored once per decision) is
    ``zakamouline_half_width`` at the book's gamma at every ``S``."""
    ctx, *_ = short_calls()
    ctx.held[option_id(ctx.instruments, E1, 95_000.0, False)] = 4.0  # a long put too
    strat = Zakamouline(risk_aversion=1e-4, cost=0.002, r=0.03, **COMMON)
    legs = book_legs(ctx, None, "flat", None, FLAT)
    width = strat.band(ctx, legs)
    s = SPOT * np.exp(np.linspace(-0.3, 0.3, 41))
    tau, sigma = gamma_weighted(legs, legs.t, legs.vol)
    want = zakamouline_half_width(legs.gamma_fn()(s), s, 0.002, 1e-4, sigma, tau, 0.03)
    assert_allclose(width(s), want, rtol=1e-13)


@pytest.mark.parametrize("hedge, iid, per_contract", [("future", 2, 10.0 / SPOT),
                                                      ("spot", 3, 1.0)])
def test_hedge_instrument_by_config(hedge, iid, per_contract):
    ctx, _, d, _ = short_calls(half_spread=0.0)
    s = DeltaBand(band=0.05, **{**COMMON, "hedge": hedge})
    s.on_start(ctx)
    s.on_wake(ctx)
    (order,) = ctx.orders
    assert order["instrument_id"] == iid
    assert_allclose(order["qty"] * per_contract, -QTY * d, rtol=1e-12)


@pytest.mark.parametrize("make", [lambda: DeltaBand(band=0.2, **COMMON),
                                  lambda: WhalleyWilmott(risk_aversion=1e-4, cost=0.002, **COMMON)])
def test_band_holds_inside_and_trades_when_the_corridor_is_left(make):
    ctx, *_ = short_calls()
    s = make()
    s.on_start(ctx)
    s.on_wake(ctx)
    ctx.fill_all()
    cond = s.on_wake(ctx)  # same market: inside the band
    assert ctx.orders == [] and ctx.decisions()[-1]["trade_delta"] == 0.0
    lo, hi = cond.corridor
    assert lo < SPOT < hi and hi / lo < 1.2
    assert cond.deadline == ctx.now + s.max_wake_ns
    # anywhere strictly inside the corridor: no trade
    for spot in (lo + 0.02 * (SPOT - lo), SPOT + 0.98 * (hi - SPOT)):
        ctx.set_spot(spot)
        ctx.reason = "quote_count"
        c2 = s.on_wake(ctx)
        assert ctx.orders == [], spot
        assert c2.corridor[0] < spot < c2.corridor[1]
    # just beyond the upper edge (the book is short calls: its delta falls): the hedge buys
    ctx.set_spot(hi * 1.0005)
    ctx.reason = "corridor"
    s.on_wake(ctx)
    (order,) = ctx.orders
    assert order["qty"] > 0
    dec = ctx.decisions()[-1]
    assert not dec["band_lo"] <= dec["current_hedge"] <= dec["band_hi"]


def test_move_based_rehedges_only_after_the_move():
    ctx, *_ = short_calls()
    s = MoveBased(move_pct=0.01, **COMMON)
    s.on_start(ctx)
    cond = s.on_wake(ctx)
    ctx.fill_all()
    assert_allclose(cond.corridor, (SPOT * 0.99, SPOT * 1.01), rtol=1e-12)
    ctx.set_spot(SPOT * 1.009)  # the delta moved, the price not enough
    ctx.reason = "deadline"
    s.on_wake(ctx)
    assert ctx.orders == []
    ctx.set_spot(SPOT * 1.0101)
    ctx.reason = "corridor"
    cond = s.on_wake(ctx)
    assert len(ctx.orders) == 1
    assert_allclose(cond.corridor, (SPOT * 1.0101 * 0.99, SPOT * 1.0101 * 1.01), rtol=1e-12)


def test_move_based_rehedges_whenever_the_engine_wakes_it_outside_its_corridor():
    """A mid of exactly 90,450 is above the corridor's 90,449.99999999999 (90,000 x 1.005),
    so the engine wakes the hedger, while 90,450 / 90,000 - 1 is an ulp under 0.005: before,
    it did not rehedge and set the same corridor, to be woken at every quote on that tick."""
    from tests.strategies.test_base import E2, FakeCtx, option_id

    ctx = FakeCtx(spot=90_000.0)
    s = MoveBased(hedge="perp", delta_source="flat", move_pct=0.005)
    s.on_start(ctx)
    ctx.held[option_id(ctx.instruments, E2, 100_000.0, True)] = -10.0
    ctx.reason, ctx.now = "deadline", ctx.now + 10**9
    s.decide(ctx)
    ctx.fill_all()
    ctx.set_spot(90_450.0)
    ctx.reason, ctx.now = "corridor", ctx.now + 10**8
    cond = s.decide(ctx)
    assert ctx.orders and s.ref_spot == 90_450.0 and cond.corridor[0] < 90_450.0 < cond.corridor[1]


def test_orders_in_flight_are_not_sent_twice():
    ctx, *_ = short_calls()
    s = DeltaBand(band=0.05, latency_ns=5_000_000, **COMMON)
    s.on_start(ctx)
    s.on_wake(ctx)
    ctx.reason = "corridor"  # the arrival at now + 5 ms has not happened
    s.on_wake(ctx)
    assert len(ctx.orders) == 1
    ctx.now += 5_000_000
    ctx.reason = "deadline"  # arrivals at now fire before deadlines; the order did not fill
    s.on_wake(ctx)
    assert len(ctx.orders) == 2
    assert_allclose(ctx.orders[1]["qty"], ctx.orders[0]["qty"], rtol=1e-6)  # time decay only


def test_no_hedge_never_acts():
    ctx, *_ = short_calls()
    s = NoHedge(**COMMON)
    assert s.on_start(ctx) is None
    assert ctx.orders == [] and ctx.decisions()[0]["strategy"] == "none"


def test_periodic_deadlines_on_the_grid():
    ctx, *_ = short_calls()
    s = Periodic(period_ns=7 * NS, **COMMON)
    c = s.on_start(ctx)
    assert c.deadline % (7 * NS) == 0 and 0 < c.deadline - ctx.now <= 7 * NS
    ctx.now = c.deadline
    assert s.on_wake(ctx) == WakeCondition(deadline=ctx.now + 7 * NS)


def test_gamma_vega_neutralises_then_hedges_delta():
    ctx = FakeCtx()
    inst = ctx.instruments
    # outside the span of the hedge options (E1 and E2 100k calls): both are needed
    ctx.held[option_id(inst, E1, 105_000.0, True)] = -10.0
    ctx.held[option_id(inst, E2, 90_000.0, False)] = 4.0
    before = book_greeks(ctx, None, "flat", None, FLAT)
    s = GammaVega(expiry_1=4, expiry_2=30, period_ns=60 * NS, **COMMON)
    s.on_start(ctx)
    s.on_wake(ctx)
    traded = {o["instrument_id"] for o in ctx.orders}
    assert 1 in traded and len(traded) == 3
    assert {int(inst.expiry_ns[i]) for i in traded - {1}} == {E1, E2}
    ctx.fill_all()
    after = book_greeks(ctx, None, "flat", None, FLAT)
    assert abs(after.gamma) < 1e-9 * abs(before.gamma)
    assert abs(after.vega) < 1e-9 * abs(before.vega)
    assert abs(after.delta + hedge_btc(ctx)) < 1e-4  # within one 10 USD contract
    ctx.now += 60 * NS  # nothing moved: nothing left to do but time decay's small delta
    ctx.set_spot(SPOT)
    s.on_wake(ctx)
    assert all(o["instrument_id"] == 1 for o in ctx.orders)


def test_gamma_vega_takes_the_hedge_options_greeks_at_the_book_s_own_vol():
    """With ``hedge_vol=flat`` the book's greeks are at ``flat_vol``; the hedge options' must
    be too, whatever the published surface says (at the surface's 0.8 they left about a
    quarter of the gamma unhedged)."""
    ctx = FakeCtx()
    inst = ctx.instruments
    ctx.held[option_id(inst, E1, 105_000.0, True)] = -10.0
    ctx.held[option_id(inst, E2, 90_000.0, False)] = 4.0
    board = SurfaceBoard()
    board.publish(flat_surface(0.8, ctx.now), ctx.now)
    common = {**COMMON, "delta_source": "surface", "hedge_vol": "flat"}
    s = GammaVega(expiry_1=4, expiry_2=30, period_ns=60 * NS, board=board, **common)
    before = book_greeks(ctx, None, "flat", None, FLAT)
    s.on_start(ctx)
    s.on_wake(ctx)
    ctx.fill_all()
    after = book_greeks(ctx, None, "flat", None, FLAT)
    assert abs(after.gamma) < 1e-9 * abs(before.gamma)
    assert abs(after.vega) < 1e-9 * abs(before.vega)


def test_periodic_in_the_engine_wakes_exactly_every_period(tmp_path):
    start = T0 + 3600 * NS
    ids = build_store(tmp_path / "s.duckdb", start, 40,
                      spot_fn=lambda s: SPOT * np.exp(2e-4 * np.sin(s / 3.0)))
    book = FixedBook(structure="call", expiry="nearest_monthly", size=10.0)
    hedger = Periodic(name="hedger", period_ns=5 * NS, latency_ns=1_000_000, **COMMON)
    res = run_replay(tmp_path / "s.duckdb", [book, hedger], tmp_path / "run",
                     venue=LimitOrTouchVenue(), progress=False)
    dec = journal_table(res.journal_path, "hedge_decisions")
    # Until the book's first fill the hedger polls (idle wakes); it hedges the new book at
    # once, then follows its grid exactly.
    first = int(np.flatnonzero(dec["trade_delta"].abs().to_numpy() > 0)[0])
    assert (dec["book_delta"].iloc[:first].fillna(0.0) == 0.0).all()
    dec = dec.iloc[first:].reset_index(drop=True)
    ts = dec["ts"].to_numpy()
    assert len(ts) >= 7
    assert (ts[1:] % (5 * NS) == 0).all() and (np.diff(ts[1:]) == 5 * NS).all()
    assert ts[1] - ts[0] <= 5 * NS
    assert dec["trade_delta"].abs().iloc[0] > 1.0  # the first hedge covered the whole call
    call = ids["BTC-26DEC25-100000-C"]
    assert res.positions[call] == -10.0
    # every decision's order filled and brought the hedge to its target: the next decision
    # finds n contracts worth target_k at the price P_k it was decided at (n cs / P)
    p = dec["spot"].to_numpy()  # the perp is the underlying; its mid priced the hedge
    assert_allclose(dec["current_hedge"].to_numpy()[1:] * p[1:],
                    dec["target_delta"].to_numpy()[:-1] * p[:-1], rtol=1e-9)
    filled = journal_table(res.journal_path, "fills")
    assert (filled.instrument_id == ids["BTC-PERPETUAL"]).sum() == len(ts) - 1  # last: after end


def test_leland_adjusts_a_book_by_its_gamma_not_leg_by_leg():
    """Hoggard, Whalley and Wilmott (1994): the sign of Leland's adjustment is the book's.
    Long calls against short puts of one strike are a synthetic forward: no gamma, and a
    delta of one a contract at any vol, which the adjusted book keeps (a leg-by-leg sign
    gave 9.12 of 10 here).  A net short book takes the short side's higher vol on every
    leg, a long one the lower."""
    strike, t, vol, spot = 100_000.0, 14 / 365, 0.6, 95_000.0

    def legs(qty):
        n = len(qty)
        return BookLegs(np.arange(n), np.asarray(qty, float), np.full(n, strike), np.full(n, t),
                        np.full(n, vol), np.array([True, False][:n]), np.ones(n), spot,
                        inverse=np.zeros(n, bool))

    hedger = Leland(cost=0.001, period_ns=300 * NS, delta_source="flat")
    dt = 300.0 / (365 * 86400)
    forward = hedger.center_legs(legs([10.0, -10.0]))
    assert_allclose(forward.delta(spot), 10.0, rtol=1e-12)
    up, down = (float(leland_vol(vol, 0.001, dt, short=s)) for s in (True, False))
    assert_allclose(hedger.center_legs(legs([-10.0, 4.0])).vol, [up, up], rtol=1e-15)
    assert_allclose(hedger.center_legs(legs([10.0, -4.0])).vol, [down, down], rtol=1e-15)


@pytest.mark.parametrize("lot, avg, sent", [(1.0, 110_000.0, 1.0), (0.0, 90_000.0, 0.0)])
def test_the_minimum_order_is_counted_in_contracts_at_the_delta_it_moves(lot, avg, sent):
    """A long inverse hedge entered at ``avg`` is reduced: each contract sold moves its delta
    by cs / avg, not cs / price.  Before, the minimum was a delta at cs / price: above it
    (avg 110,000) the one contract the need rounded to was not sent, and the corridor came
    back empty (a wake at every quote); below it (avg 90,000, no lot) 0.92 contracts, under
    ``min_trade`` = 1, were sent."""
    from tests.strategies.test_base import E2, FakeCtx, option_id

    ctx = FakeCtx()
    h = DeltaBand(hedge="perp", delta_source="flat", min_trade=1.0, lot=lot, band=0.1,
                  rebalance="edge")
    h.on_start(ctx)
    ctx.held[option_id(ctx.instruments, E2, 100_000.0, True)] = -10.0
    spot, m = ctx.market.spot(), 10.0 / float(ctx.market.mid(1))
    excess = 1.1 * m if lot else 1.02 * m  # past the band's edge by about one contract
    ctx.held[1] = (-h.legs(ctx).delta(spot) + 0.1 + excess) * avg / 10.0
    ctx.entry[1] = avg
    ctx.reason, ctx.now = "corridor", ctx.now + 10**8
    cond = h.decide(ctx)
    assert [o["qty"] for o in ctx.orders] == ([-sent] if sent else [])
    lo, hi = cond.corridor
    assert lo < spot < hi  # never the empty corridor that polls
