"""Small hand-built stores for the engine tests (no dependency on the synthetic market).

Timestamps sit on a coarse grid so that events of different tables tie on ``ts_recv`` and
often on ``ts_exchange`` too, which exercises the stream-priority tie-break.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from replay.model.events import EventKind, register_kind
from replay.store import open_store

#: the engine tests' own event (the toy consumers mark an instrument); declared here, as a
#: plug-in declares its kinds, since the package itself journals no such event
MARK = register_kind(EventKind("mark", "marks", (("instrument_id", "int"), ("price", "float"),
                                                  ("value", "float"))))

T0 = 1_765_152_000_000_000_000  # 2025-12-08 00:00 UTC
MS = 1_000_000
EXPIRY = 1_765_526_400_000_000_000  # 2025-12-12 08:00 UTC
EXPIRY2 = 1_766_736_000_000_000_000  # 2025-12-26 08:00 UTC


def _instruments() -> pa.Table:
    names, kinds, exp, strikes, calls, settle, size = [], [], [], [], [], [], []
    for n, k in (("BTC-PERPETUAL", "perp"), ("BTC-INDEX", "index")):
        names.append(n), kinds.append(k), exp.append(None), strikes.append(None)
        calls.append(None), settle.append("inverse"), size.append(10.0)
    for e, tag in ((EXPIRY, "12DEC25"), (EXPIRY2, "26DEC25")):
        for k in (80_000.0, 90_000.0, 100_000.0):
            for cp in ("C", "P"):
                names.append(f"BTC-{tag}-{int(k)}-{cp}"), kinds.append("option"), exp.append(e)
                strikes.append(k), calls.append(cp == "C"), settle.append("inverse")
                size.append(1.0)
    n = len(names)
    return pa.table({
        "ts_exchange": pa.array([T0] * n, pa.int64()), "ts_recv": pa.array([T0] * n, pa.int64()),
        "name": names, "venue": ["test"] * n, "kind": kinds, "underlying": ["BTC"] * n,
        "quote_currency": ["USD"] * n, "expiry_ns": pa.array(exp, pa.int64()),
        "strike": pa.array(strikes, pa.float64()), "is_call": pa.array(calls, pa.bool_()),
        "settlement": settle, "contract_size": size, "tick_size": [0.5] * n})


def _times(rng: np.random.Generator, n: int, span_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (ts_recv, ts_exchange) on a 10 ms grid with 0-20 ms receive latency."""
    tx = np.sort(rng.integers(0, span_ms // 10, n)) * 10 * MS + T0
    lat = rng.integers(0, 3, n) * 10 * MS
    tr = tx + lat
    order = np.lexsort((tx, tr))
    return tr[order], tx[order]


def build_store(path: str | Path, seed: int = 0, n_under: int = 400, n_opt: int = 600,
                span_ms: int = 60_000) -> dict[str, int]:
    """Write a small store: perp + index quotes, option quotes (with one-sided books),
    trades and funding, all tying on the time grid.  Returns name -> instrument_id."""
    rng = np.random.default_rng(seed)
    with open_store(path, read_only=False) as st:
        ids = st.ensure_instruments(_instruments())
        perp, index = ids["BTC-PERPETUAL"], ids["BTC-INDEX"]
        opts = np.array([i for n, i in ids.items() if n.count("-") == 3], np.int32)
        # underlying quotes: perp and index random walk
        tr, tx = _times(rng, n_under, span_ms)
        iid = np.where(rng.random(n_under) < 0.7, perp, index).astype(np.int32)
        mid = 90_000 * np.exp(np.cumsum(rng.normal(0, 4e-4, n_under)))
        half = np.where(iid == index, 0.0, 0.25 + rng.integers(0, 4, n_under) * 0.5)
        st.append_ordered("underlying_quotes", pa.table({
            "ts_exchange": tx, "ts_recv": tr, "instrument_id": iid,
            "bid_price": np.round(mid - half, 1), "ask_price": np.round(mid + half, 1),
            "bid_size": rng.integers(1, 50, n_under) * 10.0,
            "ask_size": rng.integers(1, 50, n_under) * 10.0}))
        # underlying trades
        m = n_under // 4
        tr, tx = _times(rng, m, span_ms)
        st.append_ordered("underlying_trades", pa.table({
            "ts_exchange": tx, "ts_recv": tr, "instrument_id": np.full(m, perp, np.int32),
            "price": np.round(90_000 + rng.normal(0, 50, m), 1), "size": rng.integers(1, 9, m) * 10.0,
            "side": rng.choice(np.array([-1, 1], np.int8), m)}))
        # option quotes, some one-sided
        tr, tx = _times(rng, n_opt, span_ms)
        oid = rng.choice(opts, n_opt)
        bid = np.round(rng.uniform(0.001, 0.1, n_opt), 4)
        ask = bid + 0.0005 * rng.integers(1, 5, n_opt)
        bid_s = [None if x < 0.1 else b for x, b in zip(rng.random(n_opt), bid)]
        st.append_ordered("option_quotes", pa.table({
            "ts_exchange": tx, "ts_recv": tr, "instrument_id": oid,
            "bid_price": pa.array(bid_s, pa.float64()), "ask_price": ask,
            "bid_size": rng.integers(1, 20, n_opt) * 1.0, "ask_size": rng.integers(1, 20, n_opt) * 1.0,
            "mark_iv": rng.uniform(0.4, 0.6, n_opt)}))
        m = n_opt // 5
        tr, tx = _times(rng, m, span_ms)
        st.append_ordered("option_trades", pa.table({
            "ts_exchange": tx, "ts_recv": tr, "instrument_id": rng.choice(opts, m),
            "price": np.round(rng.uniform(0.001, 0.1, m), 4), "size": rng.integers(1, 5, m) * 0.1,
            "side": rng.choice(np.array([-1, 0, 1], np.int8), m)}))
        # funding every 10 s of the span, exactly on the grid (ties with everything)
        ft = T0 + np.arange(0, span_ms, 10_000) * MS
        st.append_ordered("funding", pa.table({
            "ts_exchange": ft, "ts_recv": ft, "instrument_id": np.full(len(ft), perp, np.int32),
            "funding_rate": rng.normal(0, 1e-4, len(ft)), "interval_s": np.full(len(ft), 28800.0)}))
    return ids
