"""Implementation shortfall of an option order that never fills, on a store of real Deribit
summaries: options and their futures are defined from the files, and no underlying is
quoted, so the coin's USD rate comes, as the venue's does, from the option's venue forward."""

from __future__ import annotations

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
    """One offer a minute in, far above the book: it never fills."""

    name = "offer"

    def __init__(self, iid: int) -> None:
        self.iid, self.usd = iid, None

    def on_start(self, ctx):
        return WakeCondition(deadline=ctx.now + 60 * 10 ** 9)

    def on_wake(self, ctx):
        self.usd = ctx.market.usd_per_coin(self.iid)
        ctx.submit(self.iid, -1.0, limit_price=0.9, latency_ns=0)
        return None

    def state_dict(self):
        return {}

    def load_state_dict(self, d):
        pass


def test_an_unfilled_option_order_is_valued_at_the_venues_coin_rate(shared_data, tmp_path):
    day = shared_data / "deribit" / "BTC" / "2025" / "12" / "13"
    db = tmp_path / "d.duckdb"
    with open_store(db, read_only=False) as st:
        ingest(st, "deribit-summary", [str(day / f"BTC_2025-12-13_{hm}.parquet")
                                       for hm in ("1558", "1603", "1608")])
    with open_store(db) as st:
        specs = specs_from_store(st.instruments())
        iid = st.instrument_ids()[NAME]
    venue = SimulatedVenue(VenueConfig(latency_ms=0.0, passive_ttl_s=30.0, price_band=1.0),
                           specs)
    offer = Offer(iid)
    res = run_replay(db, [offer], tmp_path / "run", venue=venue, progress=False)
    with analytics.connect(res.journal_path, db) as con:
        row = analytics.shortfall_table(con).df().iloc[0]
    assert row["filled"] == 0.0 and row["unfilled"] == -1.0
    assert offer.usd > 0 and row["usd_per_price"] == offer.usd  # the venue's rate, to the bit
    assert_allclose(row["shortfall_usd"], -1.0 * (row["end_mid"] - row["decision_mid"])
                    * offer.usd, atol=1e-9)
