"""Derman & Kamal (1999): the P&L of an option delta-hedged N times at the true vol, with no
costs, has std ``~ sqrt(pi/4) * vega * sigma / sqrt(N)``.

Checked end to end: GBM paths written into a store, a book that buys one ATM call at mid, the
``periodic`` hedger at the true flat vol, the simulated venue with zero fees and a zero
spread, and the marker settling the option at expiry (200 one-day replays, about 40 s).
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
from scipy import stats

from calibration.black import black_price, vega
from replay.config import VenueConfig
from replay.engine import run_replay
from replay.journal import read_table
from replay.pnl import PnLMarker
from replay.store import open_store
from replay.venue.simulator import SimulatedVenue, specs_from_store
from replay.wake import WakeCondition
from strategies.hedging.strategies import Periodic

NS = 1_000_000_000
T0 = 1_736_150_400 * NS  # 2025-01-06 08:00 UTC
DAY = 86_400 * NS
S0, K, SIGMA = 100_000.0, 100_000.0, 0.6
TICK_S = 60
T_YEARS = 1.0 / 365.0
OPTION = "BTC-7JAN25-100000-C"


def _store(path, seed: int) -> None:
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


def _hedged_pnl(db, out, n_hedges: int) -> float:
    with open_store(db) as st:
        specs = specs_from_store(st.instruments())
    venue = SimulatedVenue(VenueConfig(latency_ms=0.0, option_fee_per_contract=0.0,
                                       hedge_taker_bps=0.0, price_band=1.0), specs)
    hedger = Periodic(period_ns=DAY // n_hedges, anchor_ns=T0, hedge="perp",
                      delta_source="flat", flat_vol=SIGMA, min_trade=0.0, latency_ns=0,
                      max_wake_ns=DAY)
    marker = PnLMarker(venue, None, every_s=3600.0)
    res = run_replay(db, [BuyOneAtMid(), hedger, marker], out, venue=venue, progress=False)
    pnl = read_table(res.journal_path, "pnl")
    settled = read_table(res.journal_path, "settlements")
    assert len(settled) == 1, "the option must settle at expiry"
    return float(pnl.total_usd.iloc[-1])  # option settled, hedge marked at the last mid


def test_hedging_error_scales_as_derman_kamal(tmp_path):
    m_paths = 100
    v0 = float(vega(S0, K, T_YEARS, SIGMA, True))
    for n in (24, 96):
        pnl = []
        for p in range(m_paths):
            db = tmp_path / f"p{p}.duckdb"
            if not db.exists():
                _store(db, seed=p)
            pnl.append(_hedged_pnl(db, tmp_path / f"run{n}_{p}", n))
        std = float(np.std(pnl, ddof=1))
        want = math.sqrt(math.pi / 4) * v0 * SIGMA / math.sqrt(n)
        # 99.9 % confidence band of a sample std from m normal draws, widened by 10 % for the
        # asymptotic (large-N, ATM) nature of the Derman-Kamal formula
        lo = math.sqrt((m_paths - 1) / stats.chi2.ppf(0.9995, m_paths - 1))
        hi = math.sqrt((m_paths - 1) / stats.chi2.ppf(0.0005, m_paths - 1))
        assert want * lo * 0.9 <= std <= want * hi * 1.1, (n, std, want)
