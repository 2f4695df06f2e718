"""The hedge instrument (strategies/hedge.py): the spot a hedger sees, which instrument it
trades and when a future hedge rolls, among the instruments listed by then, and the
conversions between its contracts and delta."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from replay.engine.state import F_ASK, F_BID, F_VENUE_FWD, Instruments
from replay.errors import ConfigError
from strategies.greeks import book_legs
from strategies.hedge import (
    contracts_delta,
    current_hedge,
    hedge_contracts,
    instrument_price,
    resolve_hedge,
    spot_of,
)
from tests.strategies.test_base import (
    E1,
    E2,
    FLAT,
    FUT,
    NS,
    SPOT,
    FakeCtx,
    instrument_rows,
    make_instruments,
    option_id,
)


def test_spot_without_an_underlying_tape_is_the_nearest_venue_forward():
    ctx = FakeCtx()
    f = ctx.state.fstate
    f[:4, F_BID] = f[:4, F_ASK] = np.nan  # no index, perp, future or spot quote
    assert math.isnan(spot_of(ctx))
    inst = ctx.instruments
    f[inst.expiry_ns == E1, F_VENUE_FWD] = 99_500.0
    f[inst.expiry_ns == E2, F_VENUE_FWD] = 99_800.0
    assert spot_of(ctx) == 99_500.0
    # the future (same expiry as E2) is priced by its expiry's venue forward
    assert instrument_price(ctx, 2, math.nan) == 99_800.0
    ctx.held[option_id(inst, E2, 100_000.0, True)] = 1.0
    legs = book_legs(ctx, None, "flat", None, FLAT)
    assert_allclose(legs.forward, [99_800.0], rtol=1e-15)


def test_resolve_hedge_by_kind():
    ctx = FakeCtx()
    inst = ctx.instruments
    assert resolve_hedge(inst, "perp", ctx.now) == 1
    assert resolve_hedge(inst, "future", ctx.now) == 2
    assert resolve_hedge(inst, "spot", ctx.now) == 3
    with pytest.raises(ConfigError, match="no future"):
        resolve_hedge(inst, "future", FUT + 1)
    with pytest.raises(ConfigError):
        resolve_hedge(inst, "perp", ctx.now, underlying="ETH")


def test_the_opening_universe_is_listed_before_the_first_event():
    """``on_start`` runs just before the replay's first event.  The instruments defined at
    that first instant are the opening universe, which a hedger resolving its future at the
    start must see (the real Deribit straddle found no future without it); a definition that
    comes later stays unlisted until it does."""
    from dataclasses import replace

    ctx = FakeCtx()
    start = ctx.now
    inst = replace(ctx.instruments, listed_ns=np.full(len(ctx.instruments), start, np.int64))
    with pytest.raises(ConfigError, match="no future"):
        resolve_hedge(inst, "future", start - 1)
    opened = inst.opened_at(start)
    assert resolve_hedge(opened, "future", start - 1) == 2
    later = replace(inst, listed_ns=np.full(len(inst), start + NS, np.int64)).opened_at(start)
    with pytest.raises(ConfigError, match="no future"):
        resolve_hedge(later, "future", start)
    assert resolve_hedge(later, "future", start + NS) == 2


def test_a_future_hedge_rolls_once_the_venue_has_settled_it():
    """The hedge is the nearest live future, with a wake just after its expiry; at the expiry
    it stays while the venue has not settled it yet (the position is not flat), then rolls to
    the next future.  A perpetual never rolls."""
    ctx = FakeCtx()
    rows = instrument_rows() + [{"name": "BTC-27MAR26", "kind": "future",
                                 "settlement": "inverse", "contract_size": 10.0,
                                 "expiry_ns": FUT + 90 * 86_400 * NS}]
    inst = make_instruments()
    ctx.instruments = Instruments(**{f: np.append(getattr(inst, f), [v]) for f, v in (
        ("name", rows[-1]["name"]), ("kind", "future"), ("expiry_ns", rows[-1]["expiry_ns"]),
        ("strike", np.nan), ("is_call", -1), ("settlement", "inverse"),
        ("contract_size", 10.0))})
    nxt = len(rows) - 1
    assert current_hedge(ctx, -1, "future") == (2, FUT + 1)
    assert current_hedge(ctx, -1, "perp") == (1, None)
    ctx.now, ctx.held = FUT, {2: -500.0}  # expiring, not yet settled
    assert current_hedge(ctx, 2, "future") == (2, FUT + 1)
    ctx.now = FUT + 1
    assert current_hedge(ctx, 2, "future") == (2, FUT + 1)  # still held: no roll yet
    ctx.held = {}  # settled by the venue
    assert current_hedge(ctx, 2, "future") == (nxt, FUT + 90 * 86_400 * NS + 1)


def test_hedge_contract_conversions():
    # inverse perp: 10 USD contracts; a book delta of +2 BTC at 100k needs -20000 contracts
    assert_allclose(hedge_contracts(2.0, 100_000.0, 10.0, True), -20_000.0)
    assert_allclose(contracts_delta(-20_000.0, 100_000.0, 10.0, True), -2.0)
    # linear: contract_size coin per contract
    assert_allclose(hedge_contracts(2.0, 100_000.0, 0.1, False), -20.0)
    assert_allclose(contracts_delta(-20.0, 100_000.0, 0.1, False), -2.0)



@pytest.mark.parametrize("hedge_vol", ["surface", "flat"])
def test_a_premium_adjusted_delta_stays_so_at_a_flat_vol(hedge_vol):
    """``delta_source=premium_adjusted`` with ``hedge_vol=flat``: the book delta is still the
    premium-adjusted one, ``N(d1) - V / F`` per call (the flat vol dropped the adjustment:
    -5.2677 for -4.7323 on 10 short calls)."""
    from calibration.pricing.black import black_price
    from calibration.pricing.black import delta as black_delta
    from strategies.greeks import NS_PER_YEAR
    from strategies.hedging.registry import Periodic

    ctx = FakeCtx()
    ctx.held[option_id(ctx.instruments, E2, 100_000.0, True)] = -10.0
    st = Periodic(hedge="perp", flat_vol=0.6, min_trade=1.0, period_ns=60 * NS,
                  delta_source="premium_adjusted", hedge_vol=hedge_vol)
    st.on_start(ctx)
    st.on_wake(ctx)
    t = (E2 - ctx.now) / NS_PER_YEAR
    want = -10 * (float(black_delta(SPOT, 1e5, t, 0.6, True))
                  - float(black_price(SPOT, 1e5, t, 0.6, True)) / SPOT)
    assert_allclose(ctx.decisions()[0]["book_delta"], want, rtol=1e-12)


def test_a_held_inverse_hedge_counts_at_its_entry_price():
    """5 BTC of the inverse perp bought at 90,000, the perp now at 100,000: the ledger books
    its PnL in coin, so its USD delta is ``n cs / avg`` = 5 BTC (finite differences of the
    Portfolio's mark), not ``n cs / P`` = 4.5.  The hedger counts 5 and trades the rest of
    the book's delta at the price now."""
    from replay.model.orders import Fill, InstrumentSpec
    from replay.venue.accounting import Portfolio
    from strategies.hedging.registry import Periodic

    ctx = FakeCtx()
    ctx.held[option_id(ctx.instruments, E2, 100_000.0, True)] = -10.0
    n, avg = 5.0 * 90_000.0 / 10.0, 90_000.0
    ctx.held[1], ctx.entry[1] = n, avg
    book = Portfolio({1: InstrumentSpec(1, "perp", "inverse", 10.0)})
    book.apply_fill(Fill(0, 1, 0, 1, avg, n, "taker"), avg)
    h = 1.0
    up, down = (book.mark({1: SPOT + d}, SPOT + d).total_usd for d in (h, -h))
    assert_allclose((up - down) / (2 * h), 5.0, rtol=1e-9)
    st = Periodic(hedge="perp", flat_vol=FLAT, min_trade=0.0, period_ns=60 * NS,
                  delta_source="flat")
    st.on_start(ctx)
    st.on_wake(ctx)
    dec = ctx.decisions()[0]
    assert_allclose(dec["current_hedge"], 5.0, rtol=1e-12)
    (order,) = ctx.orders
    price = float(ctx.market.mid(1))
    assert_allclose(5.0 + order["qty"] * 10.0 / price, -dec["book_delta"], rtol=1e-12)


@pytest.mark.parametrize("book_calls, target_delta", [(0.0, 0.0), (-10.0, None)])
def test_a_reducing_hedge_trade_counts_at_the_entry_price(book_calls, target_delta):
    """An inverse perp of 100,000 contracts bought at 90,000 (11.11 BTC of ledger delta),
    the perp now at 100,000.  With no options the hedger closes it exactly (it sold 111,111
    contracts at cs / P each and ended 1.11 BTC short); against 10 short calls it cuts it to
    the book's delta, and the ledger's delta after the fill is what it aimed at."""
    from replay.model.orders import Fill, InstrumentSpec
    from replay.venue.accounting import Portfolio
    from strategies.hedging.registry import Periodic

    ctx = FakeCtx()
    if book_calls:
        ctx.held[option_id(ctx.instruments, E2, 100_000.0, True)] = book_calls
    n, avg = 100_000.0, 90_000.0
    ctx.held[1], ctx.entry[1] = n, avg
    st = Periodic(hedge="perp", flat_vol=FLAT, min_trade=0.0, period_ns=60 * NS,
                  delta_source="flat")
    st.on_start(ctx)
    st.on_wake(ctx)
    dec = ctx.decisions()[0]
    assert_allclose(dec["current_hedge"], n * 10.0 / avg, rtol=1e-12)
    (order,) = ctx.orders
    if target_delta == 0.0:
        assert order["qty"] == -n  # flat, not short
    price = float(ctx.market.mid(1))
    book = Portfolio({1: InstrumentSpec(1, "perp", "inverse", 10.0)})
    book.apply_fill(Fill(0, 1, 0, 1, avg, n, "taker"), avg)
    book.apply_fill(Fill(1, 1, 0, -1, price, -order["qty"], "taker"), price)
    h = 1.0
    up, down = (book.mark({1: price + d}, SPOT + d).total_usd for d in (h, -h))
    assert_allclose((up - down) / (2 * h), dec["target_delta"], rtol=1e-9, atol=1e-9)


def test_a_future_hedge_sends_nothing_that_would_reach_it_at_or_after_its_expiry():
    """At the expiry instant (a periodic grid lands on 08:00) the venue has not settled the
    future yet, so the hedge had not rolled and the order went to the expired future, to be
    refused.  Now the hedger waits for the roll, just after the settlement; earlier, it
    hedges with the future as before."""
    from strategies.hedging.registry import DeltaBand

    ctx = FakeCtx(now=FUT - 3_600 * NS)
    ctx.held[option_id(ctx.instruments, E2, 100_000.0, True)] = -10.0
    h = DeltaBand(hedge="future", delta_source="flat", latency_ns=5_000_000)
    h.on_start(ctx)
    h.decide(ctx)
    assert [o["instrument_id"] for o in ctx.orders] == [2]
    ctx.fill_all()
    ctx.set_spot(SPOT * 1.05)  # far outside the band: a rehedge is due
    for now in (FUT - 1_000_000, FUT):  # the order would arrive after the expiry; at it
        ctx.now, ctx.reason = now, "corridor"
        cond = h.decide(ctx)
        assert ctx.orders == [] and cond.deadline == FUT + 1 and cond.corridor is None
