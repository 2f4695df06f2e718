"""Books: fixed positions and the market maker, through the engine and on a hand-set market."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from calibration.pricing.black import delta as black_delta
from replay.consumers.marker import PnLMarker
from replay.engine.loop import run_replay
from replay.engine.state import F_LAST_PX, F_LAST_SIDE, F_LAST_SIZE, I_TRADE_TS
from replay.errors import ConfigError
from replay.model.config import VenueConfig
from replay.store import open_store
from replay.venue.simulator import SimulatedVenue, specs_from_store
from strategies.books import FixedBook, MarketMakerBook
from strategies.greeks import NS_PER_YEAR
from tests.strategies.test_base import (
    E1,
    E2,
    FLAT,
    NS,
    SPOT,
    STRIKES,
    FakeCtx,
    build_store,
    journal_table,
    option_id,
)


def test_fixed_straddle_opens_at_start_and_settles_at_expiry(tmp_path):
    start = E1 - 30 * NS
    ids = build_store(tmp_path / "s.duckdb", start, 60, spot_fn=lambda s: 100_000.0 + 50.0 * s)
    book = FixedBook(structure="straddle", expiry="nearest", size=2.0, side="short",
                     min_expiry_ns=0, latency_ns=2_000_000)
    res = run_with_ledger(tmp_path / "s.duckdb", [book], tmp_path / "run")
    call, put = ids["BTC-12DEC25-100000-C"], ids["BTC-12DEC25-100000-P"]
    orders = journal_table(res.journal_path, "orders")
    assert sorted(orders.instrument_id) == sorted([call, put])
    assert (orders.qty == -2.0).all() and orders.limit_price.isna().all()  # market orders
    assert (orders.ts == start + NS).all()  # the first instant the legs are quoted
    assert res.positions == {}  # both legs settled: the venue's books hold nothing
    # the venue settles each leg once, at 08:00, against the index then
    st = journal_table(res.journal_path, "settlements").set_index("instrument_id")
    assert len(st) == 2 and (st.ts == E1).all()
    s_exp = 100_000.0 + 50.0 * 30  # the index at 08:00
    assert_allclose(st.underlying, s_exp)
    assert_allclose(st.loc[call, ["qty", "intrinsic_usd"]].to_numpy(float), [-2.0, s_exp - 1e5])
    assert st.loc[put, "intrinsic_usd"] == 0.0
    assert_allclose(st.loc[call, "price"], (s_exp - 1e5) / s_exp, rtol=1e-12)
    assert_allclose(st.loc[call, "value_usd"], -2.0 * (s_exp - 1e5), rtol=1e-12)
    assert "expiry_settlement" not in set(journal_table(res.journal_path, "journal").kind)


def run_with_ledger(db, consumers, out):
    """Run ``consumers`` with the simulated venue (books' limit orders negotiated at their
    price; it settles expiries) and the PnL marker."""
    with open_store(db) as st:
        specs = specs_from_store(st.instruments())
    venue = SimulatedVenue(VenueConfig(latency_ms=0.0, price_band=1.0), specs)
    return run_replay(db, [*consumers, PnLMarker(venue, None, every_s=3600.0)], out,
                      venue=venue, progress=False)


def test_fixed_book_at_mid_sends_limits_at_mid():
    ctx = FakeCtx()
    book = FixedBook(structure="call", expiry=15, size=3.0, side="long", execution="mid")
    book.on_start(ctx)
    assert book.on_wake(ctx) is None  # opened: nothing left to do (the venue settles)
    (o,) = ctx.orders
    assert o["instrument_id"] == option_id(ctx.instruments, E2, 100_000.0, True)
    assert o["qty"] == 3.0
    assert_allclose(o["limit"], float(ctx.market.mid(o["instrument_id"])), rtol=1e-15)


@pytest.mark.parametrize("structure, signs", [("strangle", (-1.0, -1.0)),
                                              ("risk_reversal", (-1.0, 1.0))])
def test_strikes_by_delta(structure, signs):
    ctx = FakeCtx()
    inst = ctx.instruments
    book = FixedBook(structure=structure, expiry="nearest_monthly", size=1.0, side="short",
                     delta=0.25, delta_source="flat")
    book.on_start(ctx)
    book.on_wake(ctx)
    t = (E2 - ctx.now) / NS_PER_YEAR
    k = np.array(STRIKES)
    want_call = k[np.argmin(np.abs(black_delta(SPOT, k, t, FLAT, True) - 0.25))]
    want_put = k[np.argmin(np.abs(black_delta(SPOT, k, t, FLAT, False) + 0.25))]
    got = {(float(inst.strike[o["instrument_id"]]), bool(inst.is_call[o["instrument_id"]])):
           o["qty"] for o in ctx.orders}
    assert got == {(want_call, True): signs[0], (want_put, False): signs[1]}
    assert want_call > SPOT > want_put


def test_a_strike_by_delta_far_from_its_target_is_refused_while_the_chain_is_partial():
    """A recording's first snapshot listed two calls of the expiry, the nearest to 0.25
    delta at 0.008: the strangle was opened there, a 25-delta leg in name only."""
    from strategies.books import strike_by_delta

    ctx = FakeCtx()
    inst = ctx.instruments
    calls = np.array([option_id(inst, E2, k, True) for k in STRIKES])
    far = calls[[0, -1]]  # 80,000 and 120,000: deltas about 0.99 and 0.07
    with pytest.raises(ConfigError, match=r"^book.delta: no listed strike within 0.1 of delta "
                                          r"0.25 \(2 listed; the nearest, 120000, has 0.0"):
        strike_by_delta(ctx, far, E2, SPOT, 0.25, "flat", None, FLAT)
    got = strike_by_delta(ctx, calls, E2, SPOT, 0.25, "flat", None, FLAT)
    assert float(inst.strike[got]) == 110_000.0


def test_a_book_chooses_among_the_options_listed_by_now():
    """The nearest expiry (E1) is listed an hour from now: a book choosing now takes E2, as it
    would on the store without E1's listing, and takes E1 once it is listed; its strikes
    listed later are not offered either (it chose E1 before E1 existed)."""
    from dataclasses import replace

    ctx = FakeCtx()
    inst = ctx.instruments
    later = ctx.now + 3600 * NS
    listed = np.where(inst.expiry_ns == E1, later, ctx.now - NS)
    listed[option_id(inst, E2, 100_000.0, True)] = later  # a strike of E2 listed later
    ctx.instruments = replace(inst, listed_ns=listed.astype(np.int64))
    book = FixedBook(structure="call", expiry="nearest", size=1.0, side="long")
    book.on_start(ctx)
    book.on_wake(ctx)
    (o,) = ctx.orders
    assert inst.expiry_ns[o["instrument_id"]] == E2
    assert inst.strike[o["instrument_id"]] != 100_000.0  # the nearest strike listed by now
    ctx.now = later
    again = FixedBook(structure="call", expiry="nearest", size=1.0, side="long")
    again.on_start(ctx)
    again.on_wake(ctx)
    assert inst.expiry_ns[ctx.orders[-1]["instrument_id"]] == E1


def test_a_book_waits_for_its_chain_to_be_listed_then_refuses():
    """A recording that begins before the venue lists the chain (real Deribit summaries list
    681 of their first 710 options two minutes after the first): the book tries again at each
    quote, and its config is refused only if the legs still cannot be chosen an hour on; at
    once when no option will be listed (a data selection that leaves them out)."""
    from dataclasses import replace

    from strategies.books.fixed import CHOOSE_GRACE_NS

    ctx = FakeCtx()
    inst = ctx.instruments
    listed = np.where(inst.kind == "option", ctx.now + 120 * NS, ctx.now - NS)
    ctx.instruments = replace(inst, listed_ns=listed.astype(np.int64))
    book = FixedBook(structure="straddle", expiry="nearest", size=1.0)
    book.on_start(ctx)
    start = ctx.now
    assert book.on_wake(ctx).quote_count == 1 and not ctx.orders  # nothing listed yet
    ctx.now = start + 120 * NS
    assert book.on_wake(ctx) is None and len(ctx.orders) == 2  # listed: opened
    late = FixedBook(structure="straddle", expiry="nearest", size=1.0)
    ctx.instruments = replace(inst, listed_ns=np.where(
        inst.kind == "option", start + 2 * CHOOSE_GRACE_NS, start - NS).astype(np.int64))
    ctx.now = start
    late.on_start(ctx)
    assert late.on_wake(ctx).quote_count == 1
    ctx.now = start + CHOOSE_GRACE_NS
    with pytest.raises(ConfigError, match="no BTC option"):
        late.on_wake(ctx)
    never = FixedBook(structure="straddle", expiry="nearest", size=1.0)
    ctx.instruments = inst.within([int(i) for i in inst.ids_of_kind("perp")], None)
    ctx.now = start
    never.on_start(ctx)
    with pytest.raises(ConfigError, match="no BTC option"):
        never.on_wake(ctx)


def test_fixed_book_config_errors():
    with pytest.raises(ConfigError, match="book.structure"):
        FixedBook(structure="butterfly")
    with pytest.raises(ConfigError, match="book.delta"):
        FixedBook(structure="strangle", delta=25)


def test_market_maker_takes_the_other_side_within_cap_and_filter(tmp_path):
    start = E1 - 20 * NS
    s = lambda x: 100_000.0 + 100.0 * x
    ms = NS // 1000
    trades = [
        (start + 2500 * ms, "BTC-12DEC25-100000-C", 0.02, 3.0, 1),    # we sell 2 (cap)
        (start + 4500 * ms, "BTC-12DEC25-95000-P", 0.001, 1.0, -1),   # we buy 1
        (start + 6500 * ms, "BTC-26DEC25-100000-C", 0.05, 1.0, 1),    # E2: beyond max_days
        (start + 8500 * ms, "BTC-12DEC25-100000-C", 0.02, 1.0, 0),    # no aggressor side
        (start + 10500 * ms, "BTC-12DEC25-110000-C", 0.001, 1.0, 1),  # K/F = 1.09 > 1.08
        (start + 12500 * ms, "BTC-12DEC25-100000-P", 0.003, 0.5, 1),  # we sell 0.5
        (start + 12500 * ms, "BTC-12DEC25-105000-C", 0.002, 1.0, -1), # we buy 1
    ]
    ids = build_store(tmp_path / "s.duckdb", start, 40, spot_fn=s, trades=trades)
    mm = MarketMakerBook(size_cap=2.0, max_days=10, max_moneyness=1.08, latency_ns=1_000_000)
    res = run_with_ledger(tmp_path / "s.duckdb", [mm], tmp_path / "run")
    bo = journal_table(res.journal_path, "book_orders")
    taken = {ids[n]: (p, -math.copysign(min(sz, 2.0), sd), t) for t, n, p, sz, sd in
             (trades[i] for i in (0, 1, 5, 6))}
    assert sorted(bo.instrument_id) == sorted(taken)
    for r in bo.itertuples():
        price, qty, t = taken[r.instrument_id]
        assert (r.reason, r.qty, r.price, r.ref_ts) == ("take", qty, price, t)
        assert r.ts == t  # woken by the print itself: never before it, never later
    fills = journal_table(res.journal_path, "fills").set_index("instrument_id")
    for iid, (price, qty, _) in taken.items():
        assert (fills.loc[iid, "price"], fills.loc[iid, "qty"]) == (price, qty)
    assert mm.n_taken == 4 and mm.n_skipped == 3
    # at 08:00 every position of the expiry is settled against the index then
    st = journal_table(res.journal_path, "settlements").set_index("instrument_id")
    assert (st.ts == E1).all() and sorted(st.index) == sorted(taken)
    assert_allclose(st.underlying, s(20.0))
    call = ids["BTC-12DEC25-100000-C"]
    assert_allclose(st.loc[call, "value_usd"], -2.0 * (s(20.0) - 100_000.0), rtol=1e-12)
    assert (st.drop(call).intrinsic_usd == 0.0).all()


@pytest.mark.parametrize("key, lo, hi", [("days", 10.0, 1.0), ("abs_delta", 0.9, 0.1),
                                         ("moneyness", 1.2, 0.8)])
def test_market_maker_refuses_a_range_that_admits_nothing(key, lo, hi):
    """It took nothing, and the run completed with a PnL of 0."""
    with pytest.raises(ConfigError, match=rf"^book.min_{key}: {lo} is above book.max_{key}"):
        MarketMakerBook(**{f"min_{key}": lo, f"max_{key}": hi})


def test_market_maker_filters_by_right_and_delta():
    ctx = FakeCtx()
    inst = ctx.instruments
    mm = MarketMakerBook(rights="put", min_abs_delta=0.2, max_abs_delta=0.6,
                         delta_source="flat")
    t = (E2 - ctx.now) / NS_PER_YEAR
    for k in STRIKES:
        for call in (True, False):
            iid = option_id(inst, E2, k, call)
            d = abs(float(black_delta(SPOT, k, t, FLAT, call)))
            assert mm.accepts(ctx, iid, SPOT) == ((not call) and 0.2 <= d <= 0.6), (k, call)


def test_market_maker_takes_every_print_also_at_one_instant(tmp_path):
    start = E1 - 20 * NS
    t = start + 2500 * (NS // 1000)
    trades = [(t, "BTC-12DEC25-100000-C", 0.02, 0.5, 1), (t, "BTC-12DEC25-100000-C", 0.021, 0.7, 1)]
    ids = build_store(tmp_path / "s.duckdb", start, 10, trades=trades)
    mm = MarketMakerBook(size_cap=2.0, latency_ns=0)
    res = run_with_ledger(tmp_path / "s.duckdb", [mm], tmp_path / "run")
    bo = journal_table(res.journal_path, "book_orders")
    assert list(zip(bo.qty, bo.price, bo.ts)) == [(-0.5, 0.02, t), (-0.7, 0.021, t)]
    assert res.positions[ids["BTC-12DEC25-100000-C"]] == pytest.approx(-1.2, abs=1e-12)


def test_market_maker_watches_an_option_from_the_instant_it_is_listed():
    """An option listed 10.5 minutes into the run joins the trade-count watch at its listing
    (the book wakes then, as on its definition event), and a print at that very instant is
    taken: not missed until the hourly refresh, nor marked seen as it joined.  Nothing listed
    later than now is watched before it is."""
    from dataclasses import replace

    ctx = FakeCtx()
    ctx.printed = None
    inst = ctx.instruments
    new = option_id(inst, E1, 100_000.0, True)
    listing = ctx.now + 630 * NS  # off the book's minute
    listed = np.full(len(inst), ctx.now - NS, np.int64)
    listed[new] = listing
    ctx.instruments = replace(inst, listed_ns=listed)
    mm = MarketMakerBook(max_wake_ns=60 * NS)
    cond = mm.on_start(ctx)
    assert new not in cond.instruments and cond.deadline == ctx.now + 60 * NS
    while cond.deadline < listing:  # the book's quiet wakes up to the listing
        ctx.now = cond.deadline
        cond = mm.on_wake(ctx)
    assert cond.deadline == listing  # not the minute after it
    # its first row is a buy print at the listing instant, folded before the book's wake
    _takes_a_print_at(ctx, mm, new, listing)


def _takes_a_print_at(ctx, mm, iid: int, ts: int) -> None:
    """Fold a 0.5-lot buy print of ``iid`` at ``ts``, wake the book then: it watches ``iid``
    and takes that print, at its instant."""
    f, i = ctx.state.fstate, ctx.state.istate
    f[iid, F_LAST_PX], f[iid, F_LAST_SIZE], f[iid, F_LAST_SIDE] = 0.02, 0.5, 1.0
    i[iid, I_TRADE_TS] = ts
    ctx.now = ts
    cond = mm.on_wake(ctx)
    assert iid in cond.instruments
    (taken,) = [e for k, e in ctx.events if k == "book_order"]
    assert (taken["instrument_id"], taken["qty"], taken["ref_ts"]) == (iid, -0.5, ts)


def test_market_maker_watches_an_expiry_from_the_instant_max_days_admits_it():
    """An expiry that comes within ``max_days`` 10.5 minutes into the run joins the watch
    then (the book wakes at that instant), and a print at that instant is taken at its own
    price: it was picked up at the next hourly refresh or deadline, late and at the last
    print's price only."""
    ctx, mm, opt, enters = _until_max_days_admits_e1()
    _takes_a_print_at(ctx, mm, opt, enters)


def _until_max_days_admits_e1():
    """A market maker whose ``max_days`` admits expiry E1 10.5 minutes into the run, woken
    until then (its deadline is that instant): ``(ctx, book, an E1 call, the instant)``."""
    ctx = FakeCtx()
    ctx.printed = None
    opt = option_id(ctx.instruments, E1, 100_000.0, True)
    enters = ctx.now + 630 * NS
    mm = MarketMakerBook(max_wake_ns=60 * NS, max_days=(E1 - enters) / (86_400 * NS))
    cond = mm.on_start(ctx)
    assert not cond.instruments  # no expiry within max_days yet: nothing to watch
    while cond.deadline < enters:
        ctx.now = cond.deadline
        cond = mm.on_wake(ctx)
    assert cond.deadline == enters
    return ctx, mm, opt, enters


def test_market_maker_leaves_a_print_made_before_max_days_admitted_its_expiry():
    """A print half a second before the expiry enters ``max_days``, read at the window's
    deadline wake: it was taken, at its stale price."""
    ctx, mm, opt, enters = _until_max_days_admits_e1()
    f, i = ctx.state.fstate, ctx.state.istate
    f[opt, F_LAST_PX], f[opt, F_LAST_SIZE], f[opt, F_LAST_SIDE] = 0.02, 0.5, 1.0
    i[opt, I_TRADE_TS] = enters - NS // 2
    ctx.now = enters
    mm.on_wake(ctx)
    assert not [e for k, e in ctx.events if k == "book_order"] and mm.n_skipped == 1
