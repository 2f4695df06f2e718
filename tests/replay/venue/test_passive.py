"""Passive limit orders through the engine: fills at prints in price-time priority, fills when
the book moves through the limit (never from liquidity already taken), expiry, both queue
models, and agreement of the fast and reference engines."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from numpy.testing import assert_allclose

from replay.engine.loop import run_replay
from replay.engine.wake import WakeCondition
from replay.model.config import VenueConfig
from replay.model.orders import Order as VenueOrder
from replay.store import open_store
from replay.venue.fills import BookView, RestingOrder
from replay.venue.passive import crossed_through
from replay.venue.simulator import SimulatedVenue, specs_from_store
from tests.strategies.test_base import E1, NS, instrument_rows, journal_table

START = E1 - 3600 * NS
A, B, C = "BTC-26DEC25-100000-C", "BTC-26DEC25-110000-C", "BTC-26DEC25-95000-C"
# (bid, ask) per option, 50 contracts each side, requoted every second (C's ask improves at 10 s)
BOOKS = {A: (0.049, 0.051), B: (0.059, 0.061), C: (0.020, 0.021)}
C_BETTER_ASK = (0.0205, 20.0)
# option prints (ts, name, price, size, aggressor side)
TRADES = [
    (START + 5 * NS, A, 0.0495, 1.0, -1),   # through both of our 0.0500 bids: 1 lot to share
    (START + 6 * NS, A, 0.0495, 0.5, -1),   # two prints at one instant: both count
    (START + 6 * NS, A, 0.0495, 0.5, -1),
    (START + 5 * NS, B, 0.061, 10.0, 1),    # at our offer's level, 50 ahead of us
    (START + 6 * NS, B, 0.061, 100.0, 1),   # at our level, big enough to reach us
    # sells at B's bid, where 50 are shown: the queue of test_our_own_orders_keep_their_order
    *((START + s * NS, B, 0.059, 5.0, -1) for s in range(8, 31)),
]


def build(path) -> dict[str, int]:
    rows = instrument_rows()
    n = len(rows)
    with open_store(path, read_only=False) as st:
        ids = st.ensure_instruments(pa.table({
            "ts_exchange": pa.array([START] * n, pa.int64()),
            "ts_recv": pa.array([START] * n, pa.int64()),
            "name": [r["name"] for r in rows], "venue": ["test"] * n,
            "kind": [r["kind"] for r in rows], "underlying": ["BTC"] * n,
            "quote_currency": ["USD"] * n,
            "expiry_ns": pa.array([r.get("expiry_ns") for r in rows], pa.int64()),
            "strike": pa.array([r.get("strike") for r in rows], pa.float64()),
            "is_call": pa.array([r.get("is_call") for r in rows], pa.bool_()),
            "settlement": [r["settlement"] for r in rows],
            "contract_size": [r["contract_size"] for r in rows],
            "tick_size": [0.0005] * n}))
        secs = np.arange(1, 61)
        ts = START + secs * NS
        st.append_ordered("underlying_quotes", pa.table({
            "ts_exchange": ts, "ts_recv": ts,
            "instrument_id": pa.array([ids["BTC-PERPETUAL"]] * ts.size, pa.int32()),
            "bid_price": np.full(ts.size, 99_999.5), "ask_price": np.full(ts.size, 100_000.5),
            "bid_size": np.full(ts.size, 1e6), "ask_size": np.full(ts.size, 1e6)}))
        q = [(t, ids[name], bid, ask, 50.0) if not (name == C and t >= START + 10 * NS)
             else (t, ids[name], bid, C_BETTER_ASK[0], C_BETTER_ASK[1])
             for t in ts + 1 for name, (bid, ask) in BOOKS.items()]
        q.sort(key=lambda r: (r[0], r[1]))
        st.append_ordered("option_quotes", pa.table({
            "ts_exchange": pa.array([r[0] for r in q], pa.int64()),
            "ts_recv": pa.array([r[0] for r in q], pa.int64()),
            "instrument_id": pa.array([r[1] for r in q], pa.int32()),
            "bid_price": [r[2] for r in q], "ask_price": [r[3] for r in q],
            "bid_size": [50.0] * len(q), "ask_size": [r[4] for r in q],
            "underlying_price": [100_000.0] * len(q)}))
        tr = sorted(TRADES, key=lambda x: (x[0], ids[x[1]]))
        st.append_ordered("option_trades", pa.table({
            "ts_exchange": pa.array([x[0] + 2 for x in tr], pa.int64()),
            "ts_recv": pa.array([x[0] + 2 for x in tr], pa.int64()),
            "instrument_id": pa.array([ids[x[1]] for x in tr], pa.int32()),
            "price": [x[2] for x in tr], "size": [x[3] for x in tr],
            "side": pa.array([x[4] for x in tr], pa.int8())}))
    return ids


class Poster:
    """At 2 s: two 1-lot bids at 0.0500 on A, a 1-lot offer at B's ask, and a 100-lot bid on C
    above its ask, below the venue's next depth level (partly marketable: it takes the 50
    shown and rests the other 50)."""

    name = "poster"

    def __init__(self, ids):
        self.ids = ids

    def on_start(self, ctx):
        return WakeCondition(deadline=START + 2 * NS)

    def on_wake(self, ctx):
        a, b, c = self.ids[A], self.ids[B], self.ids[C]
        for iid, qty, px in ((a, 1.0, 0.05), (a, 1.0, 0.05), (b, -1.0, 0.061),
                             (c, 100.0, 0.0213)):
            ctx.submit(iid, qty, limit_price=px, latency_ns=0)
        return None

    def state_dict(self):
        return {}

    def load_state_dict(self, d):
        pass


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    p = tmp_path_factory.mktemp("passive") / "s.duckdb"
    return p, build(p)


class TwoBids(Poster):
    """At 2 s: two 1-lot bids at B's bid, 0.059, behind the 50 shown there."""

    def on_wake(self, ctx):
        for _ in range(2):
            ctx.submit(self.ids[B], 1.0, limit_price=0.059, latency_ns=0)
        return None


def run(store, out, engine="fast", queue="conservative", poster=Poster, seed=0):
    p, ids = store
    with open_store(p) as st:
        specs = specs_from_store(st.instruments())
    venue = SimulatedVenue(VenueConfig(latency_ms=0.0, queue=queue, passive_ttl_s=30.0,
                                       price_band=1.0), specs)
    return run_replay(p, [poster(ids)], out, venue=venue, progress=False, engine=engine,
                      seed=seed)


def fills_by_order(res) -> dict[int, list[tuple[int, float, str]]]:
    ex = journal_table(res.journal_path, "executions")
    out: dict[int, list] = {}
    for r in ex.itertuples():
        out.setdefault(int(r.order_id), []).append((int(r.ts - START), float(r.qty), r.liquidity))
    return out


def test_prints_are_shared_in_price_time_priority_and_each_print_counts(store, tmp_path):
    f = fills_by_order(run(store, tmp_path / "run"))
    # order 0 was first at 0.0500: the 1-lot print at 5 s is all its; order 1 then fills
    # from the two half-lot prints of 6 s (same timestamp, both seen)
    assert f[0] == [(5 * NS + 2, 1.0, "maker")]
    assert f[1] == [(6 * NS + 2, 0.5, "maker"), (6 * NS + 2, 0.5, "maker")]


def test_a_partly_marketable_order_does_not_refill_from_what_it_took(store, tmp_path):
    res = run(store, tmp_path / "run")
    f = fills_by_order(res)[3]
    # 50 taken on arrival at the ask; the same ask requoted at 3..9 s is the liquidity we
    # already took, not new sellers; at 10 s a better ask of 20 lots crosses our bid
    assert f == [(2 * NS, 50.0, "taker"), (10 * NS + 1, 20.0, "maker")]
    ex = journal_table(res.journal_path, "executions")
    assert_allclose(ex.loc[ex.order_id == 3, "price"], [0.021, 0.0213], rtol=0, atol=0)
    rej = journal_table(res.journal_path, "rejections").set_index("order_id")
    assert rej.loc[3, "reason"] == "expired" and rej.loc[3, "qty"] == 30.0
    assert rej.loc[3, "ts"] == START + 32 * NS


@pytest.mark.parametrize("queue", ["conservative", "probabilistic"])
def test_queue_models_at_the_level_and_engine_agreement(store, tmp_path, queue):
    fast = run(store, tmp_path / "fast", queue=queue)
    ref = run(store, tmp_path / "ref", engine="reference", queue=queue)
    assert fast.journal_hash == ref.journal_hash
    resting = journal_table(fast.journal_path, "resting").set_index("order_id")
    assert resting.loc[2, "queue_ahead"] == 50.0  # at B's ask: the 50 shown are ahead of us
    f = fills_by_order(fast)
    if queue == "conservative":  # prints at our level never reach us
        assert 2 not in f
    else:  # the 100-lot print at our level fills us with certainty (100 >= 50 ahead + 1)
        assert f[2][-1] == (6 * NS + 2, -1.0, "maker")


def test_a_book_moving_through_the_limit_crosses_it():
    order = VenueOrder(1, 7, 1, 1.0, "limit", 0.05, 0, "x")
    r = RestingOrder(order, 0.05, 1.0, 0, 0.0)

    def book(bid, ask):
        return BookView(ts=1, bid_price=bid, ask_price=ask, bid_size=1.0, ask_size=1.0,
                        tick_size=0.0005)

    assert crossed_through(r, book(0.04, 0.049))  # an ask below our bid
    assert not crossed_through(r, book(0.04, 0.05))  # locked at our price: not through
    assert not crossed_through(r, book(0.04, math.nan))  # no ask at all


def test_shortfall_values_an_expired_remainder_at_the_mid_when_it_expired(store, tmp_path):
    from replay.analytics import execution as analytics

    res = run(store, tmp_path / "run")
    with analytics.connect(res.journal_path, store[0]) as con:
        is_ = shortfall_row(con, 3)
        never = shortfall_row(con, 2)
    # an order that never filled has no fees: its shortfall is its opportunity cost (it was
    # NULL, and left out of the run's total)
    assert never["filled"] == 0.0 and never["shortfall_usd"] == never["opportunity_usd"]
    usd = 100_000.0  # the perpetual's mid: the coin's USD rate
    decision, end = (0.020 + 0.021) / 2, (0.020 + C_BETTER_ASK[0]) / 2  # at 2 s and 32 s
    assert (is_["filled"], is_["unfilled"]) == (70.0, 30.0)
    assert_allclose(is_["execution_usd"], (50 * 0.021 + 20 * 0.0213 - 70 * decision) * usd,
                    rtol=1e-12)
    assert_allclose(is_["opportunity_usd"], 30 * (end - decision) * usd, rtol=1e-12)


def shortfall_row(con, order_id: int) -> dict:
    from replay.analytics import execution as analytics

    df = analytics.shortfall_table(con).df().set_index("order_id")
    return df.loc[order_id].to_dict()


def test_shortfall_of_an_option_order_before_any_fill_takes_the_underlyings_mid(store, tmp_path):
    """The run's only order, an offer on B that never fills: no fill gives the coin's USD
    rate, so its coin premium is converted at the underlying's mid at the decision (its
    shortfall was NULL and left out of the run's total)."""
    from replay.analytics import execution as analytics

    class Offer(Poster):
        def on_wake(self, ctx):
            ctx.submit(self.ids[B], -1.0, limit_price=0.061, latency_ns=0)

    p, ids = store
    with open_store(p) as st:
        specs = specs_from_store(st.instruments())
    venue = SimulatedVenue(VenueConfig(latency_ms=0.0, passive_ttl_s=30.0, price_band=1.0), specs)
    res = run_replay(p, [Offer(ids)], tmp_path / "run", venue=venue, progress=False)
    assert journal_table(res.journal_path, "executions").empty
    with analytics.connect(res.journal_path, p) as con:
        row = shortfall_row(con, 0)
    decision, end = (0.059 + 0.061) / 2, (0.059 + 0.061) / 2  # B's book never moves
    assert row["unfilled"] == -1.0 and row["usd_per_price"] == 100_000.0  # the perp's mid
    assert_allclose(row["shortfall_usd"], -1.0 * (end - decision) * 100_000.0, atol=1e-12)


def test_our_own_orders_at_one_price_keep_their_order(store, tmp_path):
    """Probabilistic queue, two of our bids at one price: a print that does not reach the
    first cannot reach the one behind it (each order draws alone, and the later one filled
    first in half of the seeds)."""
    firsts = []
    for seed in range(6):
        res = run(store, tmp_path / f"s{seed}", queue="probabilistic", poster=TwoBids, seed=seed)
        f = fills_by_order(res)
        first = {o: min(ts for ts, _, _ in fills) for o, fills in f.items()}
        assert 0 in first and (1 not in first or first[0] <= first[1]), (seed, first)
        firsts.append(first[0])
    assert len(set(firsts)) > 1  # the draws do differ between seeds


def test_an_order_still_resting_when_the_data_ends_is_counted_unfilled(store, tmp_path):
    """A time to live beyond the data: the rests still open at its end are journaled as
    ``data_end`` rejections (they were reported nowhere, and the shortfall took them as
    neither filled nor given up), so the execution analytics count them unfilled."""
    from replay.analytics import execution as analytics

    p, ids = store
    with open_store(p) as st:
        specs = specs_from_store(st.instruments())
    venue = SimulatedVenue(VenueConfig(latency_ms=0.0, passive_ttl_s=3600.0, price_band=1.0),
                           specs)
    res = run_replay(p, [Poster(ids)], tmp_path / "run", venue=venue, progress=False)
    rej = journal_table(res.journal_path, "rejections").set_index("order_id")
    end = rej[rej.reason == "data_end"]
    # the offer on B never fills (no print through it); C's bid took 50 on arrival and 20
    # at 10 s; the two bids on A filled
    assert end["qty"].to_dict() == {2: -1.0, 3: 30.0}
    with analytics.connect(res.journal_path, p) as con:
        assert shortfall_row(con, 3)["unfilled"] == 30.0
        assert shortfall_row(con, 2)["unfilled"] == -1.0  # signed: a sell
