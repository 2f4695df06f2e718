"""Passive limit orders through the engine: queue fills at prints, expiry, determinism."""

from __future__ import annotations

import math

import pytest
from numpy.testing import assert_allclose

from replay.config import VenueConfig
from replay.engine import run_replay
from replay.store import open_store
from replay.venue.fills import BookView, RestingOrder
from replay.venue.orders import Order as VenueOrder
from replay.venue.passive import crossed_through
from replay.venue.simulator import SimulatedVenue, specs_from_store
from replay.wake import WakeCondition
from tests.strategies.test_base import E1, NS, build_store, journal_table

START = E1 - 3600 * NS
A, B = "BTC-26DEC25-100000-C", "BTC-26DEC25-110000-C"
# prints on A: at 5 s one through our bid (fills 0.5 of 1 contract), at 6 s one above it (no
# fill), at 7 s one through again (fills the other 0.5); B never trades
TRADES = [(START + 5 * NS, A, 0.001, 0.5, -1), (START + 6 * NS, A, 0.9, 3.0, 1),
          (START + 7 * NS, A, 0.001, 2.0, -1)]


class PostOnce:
    """At 2 s: a bid inside the spread on A and an offer inside the spread on B."""

    name = "poster"

    def __init__(self, ids):
        self.ids, self.done = ids, False

    def on_start(self, ctx):
        return WakeCondition(deadline=START + 2 * NS)

    def on_wake(self, ctx):
        m = ctx.market
        a, b = self.ids[A], self.ids[B]
        ctx.submit(a, 1.0, limit_price=round(float(m.mid(a)) * 0.995, 4), latency_ns=0)
        ctx.submit(b, -1.0, limit_price=round(float(m.mid(b)) * 1.005, 4), latency_ns=0)
        return None

    def state_dict(self):
        return {}

    def load_state_dict(self, d):
        pass


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    p = tmp_path_factory.mktemp("passive") / "s.duckdb"
    return p, build_store(p, START, 120, trades=TRADES)


def run(store, out, engine="fast", queue="conservative"):
    p, ids = store
    with open_store(p) as st:
        specs = specs_from_store(st.instruments())
    venue = SimulatedVenue(VenueConfig(latency_ms=0.0, queue=queue, passive_ttl_s=30.0), specs)
    return run_replay(p, [PostOnce(ids)], out, venue=venue, progress=False, engine=engine), ids


def test_resting_bid_fills_at_prints_through_it_and_the_offer_expires(store, tmp_path):
    res, ids = run(store, tmp_path / "run")
    resting = journal_table(res.journal_path, "resting").set_index("instrument_id")
    assert sorted(resting.index) == sorted([ids[A], ids[B]])
    assert (resting.queue_ahead == 0.0).all()  # both improve the touch: nobody ahead
    ex = journal_table(res.journal_path, "executions")
    assert list(ex.instrument_id) == [ids[A], ids[A]] and list(ex.ts) == [START + 5 * NS,
                                                                           START + 7 * NS]
    assert_allclose(ex.qty, [0.5, 0.5], rtol=0, atol=0)
    assert (ex.liquidity == "maker").all() and (ex.price == resting.loc[ids[A], "price"]).all()
    rej = journal_table(res.journal_path, "rejections")
    assert list(rej.reason) == ["expired"] and rej.instrument_id.iloc[0] == ids[B]
    assert rej.ts.iloc[0] == START + 32 * NS and rej.qty.iloc[0] == -1.0
    assert res.positions == {ids[A]: 1.0}


def test_fast_and_reference_engines_agree_on_passive_fills(store, tmp_path):
    for queue in ("conservative", "probabilistic"):
        fast, _ = run(store, tmp_path / f"fast_{queue}", queue=queue)
        ref, _ = run(store, tmp_path / f"ref_{queue}", engine="reference", queue=queue)
        assert fast.journal_hash == ref.journal_hash


def test_a_book_moving_through_the_limit_crosses_it():
    order = VenueOrder(1, 7, 1, 1.0, "limit", 0.05, 0, "x")
    r = RestingOrder(order, 0.05, 1.0, 0, 0.0)

    def book(bid, ask):
        return BookView(ts=1, bid_price=bid, ask_price=ask, bid_size=1.0, ask_size=1.0,
                        tick_size=0.0005)

    assert crossed_through(r, book(0.04, 0.049))  # an ask below our bid
    assert not crossed_through(r, book(0.04, 0.05))  # locked at our price: not through
    assert not crossed_through(r, book(0.04, math.nan))  # no ask at all
