"""Implementation shortfall on a store of real Deribit summaries: options and their futures
are defined from the files, and no underlying is quoted.  An option order that never fills
takes the coin's USD rate, as the venue does, from the option's venue forward; an order on
the never-quoted future is measured from the mid the venue filled it against."""

from __future__ import annotations

import math

from numpy.testing import assert_allclose

from replay.analytics import execution as analytics
from replay.engine.loop import run_replay
from replay.engine.wake import WakeCondition
from replay.ingest import ingest
from replay.model.config import VenueConfig
from replay.store import open_store
from replay.venue.simulator import SimulatedVenue, specs_from_store

NAME = "BTC-26DEC25-100000-C"


class Offer:
    """One order a minute in: by default an offer far above the book, which never fills."""

    name = "offer"

    def __init__(self, iid: int, qty: float = -1.0, limit: float = 0.9) -> None:
        self.iid, self.usd, self.qty, self.limit = iid, None, qty, limit

    def on_start(self, ctx):
        return WakeCondition(deadline=ctx.now + 60 * 10 ** 9)

    def on_wake(self, ctx):
        self.usd = ctx.market.spot()
        ctx.submit(self.iid, self.qty, limit_price=self.limit, latency_ns=0)
        return None

    def state_dict(self):
        return {}

    def load_state_dict(self, d):
        pass


def _run(data, tmp_path, orders: dict[str, dict], price_band: float = 1.0):
    """A run of one :class:`Offer` per instrument named in ``orders`` (its arguments) on a
    10-minute summary store: the offers by name, the run and its venue."""
    day = data / "deribit" / "BTC" / "2025" / "12" / "13"
    db = tmp_path / "d.duckdb"
    with open_store(db, read_only=False) as st:
        ingest(st, "deribit-summary", [str(day / f"BTC_2025-12-13_{hm}.parquet")
                                       for hm in ("1558", "1603", "1608")])
    with open_store(db) as st:
        specs = specs_from_store(st.instruments())
        ids = st.instrument_ids()
    venue = SimulatedVenue(VenueConfig(latency_ms=0.0, passive_ttl_s=30.0,
                                       price_band=price_band), specs)
    offers = {name: Offer(ids[name], **order) for name, order in orders.items()}
    for name, offer in offers.items():
        offer.name = name
    res = run_replay(db, list(offers.values()), tmp_path / "run", venue=venue, progress=False)
    return offers, res, db, venue


def _shortfall(data, tmp_path, name: str, **order):
    """The order's shortfall row and the venue's slippage, on a 10-minute summary store."""
    offers, res, db, venue = _run(data, tmp_path, {name: order})
    with analytics.connect(res.journal_path, db) as con:
        return offers[name], analytics.shortfall_table(con).df().iloc[0], venue.slippage_usd


def test_an_unfilled_option_order_is_valued_at_the_venues_coin_rate(shared_data, tmp_path):
    offer, row, _ = _shortfall(shared_data, tmp_path, NAME)
    assert row["filled"] == 0.0 and row["unfilled"] == -1.0
    assert offer.usd > 0 and row["usd_per_price"] == offer.usd  # the venue's rate, to the bit
    assert_allclose(row["shortfall_usd"], -1.0 * (row["end_mid"] - row["decision_mid"])
                    * offer.usd, atol=1e-9)


def test_an_order_on_a_never_quoted_future_counts_its_fees_and_slippage(shared_data, tmp_path):
    """The store quotes no future, so the order has no mid of its own: it was NULL, and left
    out of the run's total with its fees."""
    _, row, slippage = _shortfall(shared_data, tmp_path, "BTC-26DEC25", qty=100.0, limit=math.nan)
    assert row["kind"] == "future" and row["filled"] == 100.0
    assert row["decision_mid"] > 0 and row["fees_usd"] > 0
    # the shortfall prices an inverse contract's move linearly (cs dP / P), the venue exactly
    # (cs (1/mid - 1/price)): they differ by the relative price move, 1e-5 here
    assert_allclose(row["shortfall_usd"], row["fees_usd"] + slippage["hedge"], rtol=1e-4)


def test_an_order_never_quoted_two_sided_is_left_out_of_the_total_and_counted(shared_data,
                                                                              tmp_path):
    """An option quoted only on the ask: a market buy fills against a book with no mid (the
    venue journals a NaN ``arrival_mid``; no price band, as its ask is far from its mark).  Its shortfall is undefined, and it made the run's
    whole total NaN, reported as null; the total is now the other order's, and the metrics
    count the one left out."""
    offers, res, db, _ = _run(shared_data, tmp_path, {
        "BTC-14DEC25-100000-C": {"qty": 1.0, "limit": math.nan}, NAME: {}}, math.inf)
    with analytics.connect(res.journal_path, db) as con:
        rows = analytics.shortfall_table(con).df().set_index("instrument_id")
        arrival = con.sql("SELECT arrival_mid FROM executions").fetchall()
    one_sided = rows.loc[offers["BTC-14DEC25-100000-C"].iid]
    assert one_sided["filled"] == 1.0 and math.isnan(arrival[0][0])
    assert math.isnan(one_sided["shortfall_usd"])  # NULL in SQL
    ex = analytics.execution_metrics(res.journal_path, db, [1.0])
    assert ex["n_orders"] == 2 and ex["shortfall_unpriced_orders"] == 1
    assert_allclose(ex["implementation_shortfall_usd"],
                    rows.loc[offers[NAME].iid, "shortfall_usd"], rtol=1e-12)
