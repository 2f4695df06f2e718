"""Carry: funding paid for the time a position was held, and settlement at expiry of options
and dated futures; and the venue refusing to trade an instrument that has expired."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from numpy.testing import assert_allclose

from replay.engine.feed import NV, S_FUNDING, S_UNDERLYING_QUOTES
from replay.engine.state import NEVER, MarketState, MarketView, fold_batch
from replay.model.config import VenueConfig
from replay.model.orders import REJECT_EXPIRED, Fill, InstrumentSpec, Order
from replay.venue.simulator import SimulatedVenue

NS = 10 ** 9
FUT = InstrumentSpec(0, "future", "inverse", 10.0, 0.5, expiry_ns=100 * NS)
OPT = InstrumentSpec(1, "option", "inverse", 1.0, 0.0001, strike=50_000.0, expiry_ns=100 * NS,
                     is_call=True)
PERP = InstrumentSpec(2, "perp", "inverse", 10.0, 0.5)
RATE, INTERVAL_S = 0.0005, 28_800.0  # per 8 hours: large, so that the amounts show


class _Market:
    """What carry and the venue read of the market: a flat 51,000 (the perp funding at RATE),
    and the last quotes of the future and the option (bid, ask)."""

    funding_rate = np.array([np.nan, np.nan, RATE])
    funding_interval_s = np.array([np.nan, np.nan, INTERVAL_S])
    funding_ts = np.zeros(3, np.int64)  # the rate was set before the runs start
    funding_index_at_ts = np.zeros(3)
    funding_index = MarketView.funding_index
    bid = np.array([49_990.0, 0.0100, 50_990.0])
    ask = np.array([50_010.0, 0.0102, 51_010.0])
    bid_size = ask_size = np.full(3, np.nan)
    mark_price = venue_forward = mark_iv = np.full(3, np.nan)  # no venue marks

    def __init__(self, now: int) -> None:
        self.now = now

    def reference_price(self, i: int) -> float:
        return 51_000.0

    def spot(self) -> float:
        return 51_000.0

    def expiry_forward(self, expiry_ns: int) -> float:
        return 51_000.0

    def mid(self, i: int) -> float:
        return 51_000.0


def _venue() -> tuple[SimulatedVenue, list]:
    venue = SimulatedVenue(VenueConfig(), {0: FUT, 1: OPT, 2: PERP})
    events: list = []
    return venue, events


def _ctx(now: int, events: list, market: _Market | None = None):
    market = market or _Market(now)
    vctx = SimpleNamespace(now=now, market=market,
                           emit=lambda kind, **kw: events.append((now, kind, kw)),
                           fill=lambda *a, **kw: None)
    inst = SimpleNamespace(name={0: "BTC-X", 1: "BTC-X-50000-C", 2: "BTC-PERPETUAL"},
                           expiry_ns={i: FUT.expiry_ns for i in range(3)},
                           ids_of_kind=lambda kind: [])
    return SimpleNamespace(now=now, venue_context=lambda: vctx, instruments=inst,
                           market=market)


def test_a_dated_future_is_settled_at_its_expiry_with_the_options():
    """Carry wakes at the future's expiry as at an option's and closes it at the settlement
    index: the inverse future's PnL ``q cs (1/avg - 1/S)`` in coin becomes realised, and a
    fold of the journal's settlement (:meth:`Portfolio.settle`) does the same."""
    venue, events = _venue()
    carry, pf = venue.carry, venue.portfolio
    carry.on_start(_ctx(0, events))
    pf.apply_fill(Fill(1, 0, NS, -1, 50_000.0, 5_000, "taker"), 50_000.0)  # short 5,000
    pf.apply_fill(Fill(2, 1, NS, 1, 0.02, 1, "taker"), 50_000.0)
    assert carry.held_expiries(NS) == [100 * NS, 100 * NS]
    carry.on_wake(_ctx(100 * NS, events))
    assert pf.net_qty() == {}
    settled = {kw["instrument_id"]: kw for _, kind, kw in events if kind == "settlement"}
    assert settled.keys() == {0, 1}
    assert settled[0]["price"] == settled[0]["underlying"] == 51_000.0
    assert math.isnan(settled[0]["value_usd"]) and settled[1]["value_usd"] == 1_000.0
    expected = -5_000 * 10.0 * (1 / 50_000.0 - 1 / 51_000.0)  # a short loses as S rises
    assert_allclose(pf.position(0).realized_coin, expected, rtol=1e-12)
    assert_allclose(pf.position(1).realized_coin, 1_000 / 51_000 - 0.02, rtol=1e-12)


def test_an_expiry_without_a_known_price_is_settled_once_there_is_one():
    """No index, no forward of the expiry and no coin price (a data selection without the
    options that carry them): the settlement waits for a price rather than book a NaN."""
    class Unpriced(_Market):
        def spot(self) -> float:
            return math.nan

        def expiry_forward(self, expiry_ns: int) -> float:
            return math.nan

    venue, events = _venue()
    carry, pf = venue.carry, venue.portfolio
    carry.on_start(_ctx(0, events))
    pf.apply_fill(Fill(1, 0, NS, -1, 50_000.0, 5_000, "taker"), 50_000.0)
    carry.on_wake(_ctx(100 * NS, events, Unpriced(100 * NS)))
    assert pf.net_qty() == {0: -5_000.0} and not events
    carry.on_wake(_ctx(101 * NS, events))
    assert pf.net_qty() == {} and events[0][2]["price"] == 51_000.0

def test_funding_is_paid_for_the_time_a_position_was_held():
    """A perp bought at 59 s pays 1 s of funding at the 60 s accrual (it paid for the whole
    minute before: the accrual read the position held at its end), and one bought at 61 s
    and sold at 119 s pays for its 58 s."""
    venue, events = _venue()
    carry = venue.carry
    carry.on_start(_ctx(0, events))
    per_s = -(100_000 * 10.0 / 51_000.0) * RATE / INTERVAL_S  # a long pays: coin a second

    def trade(order_id: int, now: int, side: int) -> None:
        order = Order(order_id, 2, side, 100_000.0, "market", None, now, "hedger", now)
        venue.book_fills(order, (Fill(order_id, 2, now, side, 51_000.0, 100_000.0,
                                      "taker"),), 51_000.0, _ctx(now, events).venue_context())

    def funding(since: int) -> float:
        return sum(kw["amount"] for t, kind, kw in events if kind == "funding" and t > since)

    trade(1, 59 * NS, 1)
    carry.on_wake(_ctx(60 * NS, events))
    assert_allclose(funding(0), per_s * 1.0, rtol=1e-12)
    trade(2, 60 * NS, -1)  # flat again
    trade(3, 61 * NS, 1)
    trade(4, 119 * NS, -1)
    carry.on_wake(_ctx(120 * NS, events))
    assert_allclose(funding(60 * NS), per_s * 58.0, rtol=1e-12)


def _fold(state: MarketState, events: list[tuple[int, int, tuple]]) -> None:
    """Fold ``(ts, stream, values)`` events of instrument 2 (the perpetual) through the
    engine's kernel."""
    n = len(events)
    ts = np.array([t for t, _, _ in events], np.int64)
    v = np.full((n, NV), np.nan)
    for j, (_, _, vals) in enumerate(events):
        v[j, :len(vals)] = vals
    fold_batch(ts, ts, np.array([s for _, s, _ in events], np.int8), np.arange(n, dtype=np.int64),
               np.full(n, 2, np.int32), v, 0, n, state.fstate, state.istate, state.clock)


def test_funding_accrues_every_rate_in_force_however_many_updates_an_interval_holds():
    """A perpetual's rate updated many times between two accruals (a venue's ticker may
    publish one a second): each rate is paid for the time it was in force, through the
    market state's funding index, as :func:`replay.venue.funding.accrue` integrates the
    stored records independently.  One ``funding`` row an accrual, its ``rate`` the
    time-average per interval; an update at the accrual instant starts the next interval."""
    from replay.venue.funding import accrue

    venue, events = _venue()
    carry, pf = venue.carry, venue.portfolio
    state = MarketState.empty(3, 2)
    inst = SimpleNamespace(kind=np.array(["future", "option", "perp"], dtype=object),
                           expiry_ns=np.array([NEVER] * 3, dtype=np.int64))
    updates = [(0, RATE), (5, -2 * RATE), (17, 3 * RATE), (29, 0.0), (44, 7 * RATE),
               (58, RATE / 3), (60, 2 * RATE), (90, -RATE)]  # (s, rate)
    stream = [(0, S_UNDERLYING_QUOTES, (50_990.0, 51_010.0, 1.0, 1.0))] + [
        (t * NS, S_FUNDING, (r, INTERVAL_S, 51_000.0)) for t, r in updates]

    def at(now: int):  # the market as of now: the events up to now folded
        _fold(state, [e for e in stream if e[0] <= now])
        del stream[:sum(e[0] <= now for e in stream)]
        return _ctx(now, events, MarketView(state, inst, now))

    carry.on_start(at(0))
    pf.apply_fill(Fill(1, 2, 0, 1, 51_000.0, 100_000.0, "taker"), 51_000.0)
    carry.on_wake(at(60 * NS))
    carry.on_wake(at(120 * NS))
    rows = [(t, kw) for t, kind, kw in events if kind == "funding"]
    ts, rates = [t * NS for t, _ in updates], [r for _, r in updates]

    def expected(t0: int, t1: int) -> float:
        return accrue(PERP, 100_000.0, t0, t1, ts, rates, INTERVAL_S, 51_000.0)

    assert [t for t, _ in rows] == [60 * NS, 120 * NS]
    assert_allclose([kw["amount"] for _, kw in rows],
                    [expected(0, 60 * NS), expected(60 * NS, 120 * NS)], rtol=1e-12)
    notional = 100_000 * 10.0 / 51_000.0
    assert_allclose([-notional * kw["rate"] * 60 / INTERVAL_S for _, kw in rows],
                    [kw["amount"] for _, kw in rows], rtol=1e-12)
    assert_allclose(pf.funding_coin, expected(0, 120 * NS), rtol=1e-12)


def test_a_position_opened_between_the_carrys_wakes_settles_at_its_expiry():
    """On a grid that does not fall on the expiry (every 90 s; an option expiring at 100 s),
    an option bought at 95 s, after the carry's 90 s wake set its next one at 180 s: the
    venue moves that wake to the expiry, so the option settles against the index of its
    expiry, not of a later instant."""
    venue = SimulatedVenue(VenueConfig(funding_every_s=90.0), {0: FUT, 1: OPT, 2: PERP})
    events: list = []
    wakes: list = []
    carry = venue.carry
    assert carry.on_start(_ctx(0, events)).deadline == 90 * NS
    assert carry.on_wake(_ctx(90 * NS, events)).deadline == 180 * NS
    vctx = _ctx(95 * NS, events).venue_context()
    vctx.set_wake = lambda name, cond: wakes.append((name, cond.deadline))
    order = Order(1, 1, 1, 1.0, "market", None, 95 * NS, "book", 95 * NS)
    venue.book_fills(order, (Fill(1, 1, 95 * NS, 1, 0.0101, 1.0, "taker"),), 0.0101, vctx)
    assert wakes == [(carry.name, 100 * NS)]
    carry.on_wake(_ctx(100 * NS, events))
    assert [(t, kw["instrument_id"]) for t, kind, kw in events if kind == "settlement"] == \
        [(100 * NS, 1)]


def test_an_order_on_an_expired_instrument_is_rejected():
    """After its expiry an instrument's last quotes are stale and its settlement value is
    known: an order that arrives then is refused (``expired``), not filled."""
    venue, events = _venue()
    vctx = _ctx(200 * NS, events).venue_context()
    for order_id, iid in ((1, 1), (2, 0)):
        venue.on_arrival(Order(order_id, iid, 1, 5.0, "market", None, 199 * NS, "hedger",
                               200 * NS), vctx)
    assert [kw["reason"] for _, kind, kw in events if kind == "rejection"] == \
        [REJECT_EXPIRED] * 2
    assert not any(kind == "execution" for _, kind, _ in events)
    assert venue.portfolio.net_qty() == {}
    venue.on_arrival(Order(3, 2, 1, 5.0, "market", None, 199 * NS, "hedger", 200 * NS), vctx)
    assert venue.portfolio.net_qty() == {2: 5.0}  # a perpetual never expires


def test_a_resting_order_ends_when_its_instrument_expires():
    """A limit order resting on an option expiring before its time to live ends at the
    expiry: a book through its limit at that instant (quotes of an expired option are stale)
    fills nothing, and the rest is rejected as expired, saying why."""
    from replay.venue.fills import RestingOrder

    venue, events = _venue()
    wakes: list = []
    vctx = _ctx(90 * NS, events).venue_context()
    vctx.set_wake = lambda name, cond: wakes.append((name, cond.deadline))
    order = Order(7, 1, 1, 2.0, "limit", 0.0101, 90 * NS, "book", 90 * NS)
    venue.passive.add(order, RestingOrder(order, 0.0101, 2.0, 90 * NS, 0.0), (), vctx)
    assert wakes == [(venue.passive.name, 100 * NS)]  # not 90 s + the hour it may rest
    market = _Market(100 * NS)
    market.ask = np.array([50_010.0, 0.0090, 51_010.0])  # through the bid: it would fill
    market.last_size = np.full(3, np.nan)
    ctx = _ctx(100 * NS, events, market)
    ctx.printed, ctx.rng = -1, np.random.default_rng(0)
    venue.passive.on_wake(ctx)
    assert not any(kind == "execution" for _, kind, _ in events)
    (reject,) = [kw for _, kind, kw in events if kind == "rejection"]
    assert reject["reason"] == "expired" and "instrument expired" in reject["detail"]
    assert reject["qty"] == 2.0 and venue.passive.orders == {}
