"""A one-day GBM market for the hedging theory checks: a linear perpetual quoted with zero
spread every minute, one ATM call quoted at its Black-76 price at the true vol, and a book that
buys that call at mid.  ``hedged_pnl`` replays it with a given hedger through the real venue and
marker and returns the final PnL and fees in USD."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from calibration.pricing.black import black_price
from replay.analytics.tables import read_table
from replay.consumers.marker import PnLMarker
from replay.engine.loop import run_replay
from replay.engine.wake import WakeCondition
from replay.model.config import VenueConfig
from replay.store import open_store
from replay.venue.simulator import SimulatedVenue, specs_from_store

NS = 1_000_000_000
T0 = 1_736_150_400 * NS  # 2025-01-06 08:00 UTC
DAY = 86_400 * NS
S0, K, SIGMA = 100_000.0, 100_000.0, 0.6
TICK_S = 60
T_YEARS = 1.0 / 365.0
OPTION = "BTC-7JAN25-100000-C"


def gbm_store(path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = DAY // (TICK_S * NS)
    dt = TICK_S / (365.0 * 86400.0)
    z = rng.standard_normal(n)
    s = S0 * np.exp(np.concatenate([[0.0], np.cumsum(-0.5 * SIGMA**2 * dt + SIGMA * math.sqrt(dt) * z)]))
    ts = T0 + np.arange(n + 1, dtype=np.int64) * TICK_S * NS
    with open_store(path, read_only=False) as st:
        ids = st.ensure_instruments(pa.table({
            "ts_exchange": pa.array([T0 - NS] * 2, pa.int64()),
            "ts_recv": pa.array([T0 - NS] * 2, pa.int64()),
            "name": ["BTC-PERPETUAL", OPTION], "venue": ["test"] * 2,
            "kind": ["perp", "option"], "underlying": ["BTC"] * 2, "quote_currency": ["USD"] * 2,
            "expiry_ns": pa.array([None, T0 + DAY], pa.int64()),
            "strike": pa.array([None, K]), "is_call": pa.array([None, True]),
            "settlement": ["linear", "linear"], "contract_size": [1.0, 1.0],
            "tick_size": [0.0, 0.0]}))
        t_left = (T0 + DAY - ts) / (365.0 * 86400.0 * NS)
        opt = black_price(s, K, t_left, SIGMA, True)
        st.append_ordered("underlying_quotes", pa.table({
            "ts_exchange": ts, "ts_recv": ts,
            "instrument_id": pa.array([ids["BTC-PERPETUAL"]] * ts.size, pa.int32()),
            "bid_price": s, "ask_price": s, "bid_size": np.full(ts.size, 1e6),
            "ask_size": np.full(ts.size, 1e6)}))
        live = t_left > 0  # the option quotes until its expiry
        st.append_ordered("option_quotes", pa.table({
            "ts_exchange": ts[live] + 1, "ts_recv": ts[live] + 1,
            "instrument_id": pa.array([ids[OPTION]] * int(live.sum()), pa.int32()),
            "bid_price": opt[live], "ask_price": opt[live], "underlying_price": s[live]}))


class BuyOneAtMid:
    """Buys one call at mid at the first quote (a negotiated fill) and never trades again."""

    name = "book"

    def __init__(self):
        self.done = False

    def on_start(self, ctx):
        return WakeCondition(deadline=T0 + 30 * NS)

    def on_wake(self, ctx):
        if not self.done:
            iid = int(np.flatnonzero(ctx.instruments.name == OPTION)[0])
            ctx.submit(iid, 1.0, limit_price=float(ctx.market.mid(iid)), latency_ns=0)
            self.done = True
        return None

    def state_dict(self):
        return {"done": self.done}

    def load_state_dict(self, d):
        self.done = d["done"]


def hedged_pnl(db, out, hedger, hedge_bps: float = 0.0) -> tuple[float, float]:
    """Final (total PnL, fees) in USD of the call bought at mid and hedged by ``hedger``."""
    with open_store(db) as st:
        specs = specs_from_store(st.instruments())
    venue = SimulatedVenue(VenueConfig(latency_ms=0.0, option_fee_per_contract=0.0,
                                       hedge_taker_bps=hedge_bps, price_band=1.0), specs)
    marker = PnLMarker(venue, None, every_s=3600.0)
    res = run_replay(db, [BuyOneAtMid(), hedger, marker], out, venue=venue, progress=False)
    assert len(read_table(res.journal_path, "settlements")) == 1, "the call settles at expiry"
    last = read_table(res.journal_path, "pnl").iloc[-1]  # settled call, hedge at the last mid
    return float(last.total_usd), float(last.fees_usd)


def paths(tmp_path, m: int) -> list:
    """``m`` seeded GBM stores (built once per test)."""
    out = []
    for p in range(m):
        db = tmp_path / f"path{p}.duckdb"
        gbm_store(db, seed=p)
        out.append(db)
    return out
