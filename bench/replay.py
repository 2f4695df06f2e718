"""Bench case ``replay``: market replay throughput, against a raw DuckDB scan, RSS, and with a
consumer waking every second of market time.

The store is built once per synthesis and cached in the bench cache folder
(:func:`replay.app.bench.synth_store`):
``bench_large.duckdb`` (synth ``scale="large"``) or, with ``--quick``, ``bench_quick.duckdb``
(synth ``scale="small"``).  If the
synthetic market cannot be built, a plain generated store is used instead (vectorised numpy
rows appended in order: a perp and an index book, 200 option books, trades and funding) and
the output says so under ``"store"``.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from replay.app.bench import dataset_path
from replay.engine.feed import STREAMS, VALUE_COLUMNS
from replay.engine.loop import run_replay
from replay.engine.wake import WakeCondition
from replay.model.schema import MARKET_TABLES
from replay.store import open_store

S = 1_000_000_000


class Idle:
    """A consumer that wakes every ``every_ns`` of market time and does nothing: the replay
    figure includes the engine's wake machinery, not a consumer's work."""

    def __init__(self, name: str, every_ns: int):
        self.name, self.every_ns = name, int(every_ns)

    def on_start(self, ctx) -> WakeCondition:  # noqa: ANN001
        return WakeCondition(deadline=(ctx.now // self.every_ns + 1) * self.every_ns)

    def on_wake(self, ctx) -> WakeCondition:  # noqa: ANN001
        return WakeCondition(deadline=ctx.now + self.every_ns)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, d: dict) -> None:
        pass


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _fallback(path: Path, hours: float, seed: int = 0) -> None:
    """Generated store: ~2.5k events per second of market time, in hourly appends."""
    rng = np.random.default_rng(seed)
    t0 = 1_736_121_600 * S
    n_opt = 200
    names = ["BTC-PERPETUAL", "BTC-USD"] + [f"BTC-OPT-{k}" for k in range(n_opt)]
    kinds = ["perp", "index"] + ["option"] * n_opt
    n = len(names)
    with open_store(path, read_only=False) as st:
        ids = st.ensure_instruments(pa.table({
            "ts_exchange": [t0] * n, "ts_recv": [t0] * n, "name": names, "venue": ["gen"] * n,
            "kind": kinds, "underlying": ["BTC"] * n, "quote_currency": ["USD"] * n,
            "expiry_ns": pa.array([None, None] + [t0 + 30 * 86400 * S] * n_opt, pa.int64()),
            "strike": pa.array([None, None] + list(np.linspace(5e4, 1.5e5, n_opt)), pa.float64()),
            "is_call": pa.array([None, None] + [k % 2 == 0 for k in range(n_opt)], pa.bool_()),
            "settlement": ["inverse"] * n, "contract_size": [10.0, 1.0] + [1.0] * n_opt,
            "tick_size": [0.5] * n}))
        perp, index = ids["BTC-PERPETUAL"], ids["BTC-USD"]
        opt = np.array([ids[x] for x in names[2:]], np.int32)
        px = 90_000.0
        rates = {"underlying_quotes": 600, "underlying_trades": 100, "option_quotes": 1700,
                 "option_trades": 100}
        for h in range(int(np.ceil(hours))):
            frac = min(1.0, hours - h)
            a, b = t0 + h * 3600 * S + 1, t0 + h * 3600 * S + int(frac * 3600 * S)
            for t, rate in rates.items():
                m = int(rate * 3600 * frac)
                tx = np.sort(rng.integers(a, b, m))
                tr = tx + rng.integers(0, 5_000_000, m)
                o = np.lexsort((tx, tr))
                tx, tr = tx[o], tr[o]
                if t == "underlying_quotes":
                    mid = px * np.exp(np.cumsum(rng.normal(0, 2e-5, m)))
                    px = float(mid[-1])
                    cols = {"instrument_id": np.where(np.arange(m) % 10 == 0, index, perp).astype(np.int32),
                            "bid_price": mid - 0.5, "ask_price": mid + 0.5,
                            "bid_size": rng.uniform(1, 100, m), "ask_size": rng.uniform(1, 100, m)}
                elif t == "option_quotes":
                    bid = rng.uniform(0.001, 0.2, m)
                    cols = {"instrument_id": rng.choice(opt, m), "bid_price": bid,
                            "ask_price": bid + 0.0005, "bid_size": rng.uniform(1, 50, m),
                            "ask_size": rng.uniform(1, 50, m)}
                else:
                    cols = {"instrument_id": np.full(m, perp, np.int32) if t == "underlying_trades"
                            else rng.choice(opt, m), "price": rng.uniform(1, 2, m),
                            "size": rng.uniform(1, 10, m), "side": rng.choice(np.array([-1, 1], np.int8), m)}
                st.append_ordered(t, pa.table({"ts_exchange": tx, "ts_recv": tr, **cols}))
            ft = np.arange(a + 59 * S, b, 60 * S)
            st.append_ordered("funding", pa.table({
                "ts_exchange": ft, "ts_recv": ft, "instrument_id": np.full(len(ft), perp, np.int32),
                "funding_rate": rng.normal(0, 1e-4, len(ft)), "interval_s": np.full(len(ft), 28800.0)}))


def _store(quick: bool) -> tuple[Path, str]:
    from replay.app.bench import synth_store
    from replay.synth import SynthConfig

    name = "bench_quick.duckdb" if quick else "bench_large.duckdb"
    try:
        return synth_store(name, SynthConfig(scale="small" if quick else "large", seed=0)), \
            "synth"
    except Exception as e:  # noqa: BLE001 - the generated fallback keeps the case measurable
        path = dataset_path(name)
        tmp = path.with_name(path.name + ".building")
        tmp.unlink(missing_ok=True)
        _fallback(tmp, 0.25 if quick else 20)
        os.replace(tmp, path)
        path.with_name(path.name + ".synth").unlink(missing_ok=True)  # not a synthesis
        return path, f"generated (synth failed: {type(e).__name__}: {e})"


def _raw_scan(path: Path) -> tuple[int, float]:
    """Drain an Arrow reader of each market table (the feed's columns), no merge, no fold."""
    n = 0
    t0 = time.perf_counter()
    with open_store(path) as st:
        for t in STREAMS:
            cols = ["ts_recv", "ts_exchange", "seq", "instrument_id", *VALUE_COLUMNS[t]]
            for b in st.scan(t, cols=cols):
                n += b.num_rows
    return n, time.perf_counter() - t0


def run(quick: bool) -> dict:
    path, how = _store(quick)
    with open_store(path) as st:
        events = sum(st.count(t) for t in MARKET_TABLES)
    out: dict = {"events": events, "store": f"{path.name} ({how})"}
    marks: dict[str, float] = {}

    def watch(n_events: int, now: int) -> None:
        for label, at in (("rss_mb_10m", 10_000_000), ("rss_mb_40m", 40_000_000)):
            if label not in marks and n_events >= at:
                marks[label] = round(_status_mb("VmRSS"), 1)

    with tempfile.TemporaryDirectory() as d:
        with open_store(path) as st:
            t0 = st.time_span()[0]
        # warm-up on one minute of data: numba's cached kernels load once per process
        run_replay(path, [Idle("warm", S)], Path(d) / "warm", end=t0 + 60 * S, progress=False)
        res = run_replay(path, [], Path(d) / "bare", progress=watch)
        # the replay's peak, read before the raw scan (which keeps DuckDB's default cache)
        out["peak_rss_mb"] = round(_status_mb("VmHWM"), 1)
        raw_n, raw_s = _raw_scan(path)
        out["events_per_second"] = round(res.events_per_second, 1)
        out["raw_scan_events_per_second"] = round(raw_n / raw_s, 1)
        out["ratio_vs_raw_scan"] = round(res.events_per_second / (raw_n / raw_s), 3)
        out["rss_mb_10m"] = marks.get("rss_mb_10m")
        out["rss_mb_40m"] = marks.get("rss_mb_40m")
        if out["rss_mb_40m"] is None:
            out["note"] = f"store has {events:,} events: fewer than needed for an RSS mark"
        res1 = run_replay(path, [Idle("idle_1s", S)], Path(d) / "idle", progress=False)
        out["consumer_1s_events_per_second"] = round(res1.events_per_second, 1)
        out["consumer_1s_wakes"] = res1.n_wakes
    return out
