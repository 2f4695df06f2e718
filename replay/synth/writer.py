"""Stream a synthetic market into a store, block by block, in replay order.

Each block of ``BLOCK_S`` market seconds is simulated, turned into events, stamped with a
receive time ``ts_recv = ts_exchange + latency`` (1-20 ms, log-normal around 4 ms, seeded), sorted
per table by ``(ts_recv, ts_exchange, instrument_id)`` and appended with
:meth:`MarketStore.append_ordered`.  Latency can push an event's receive time past the block
end; such rows are held back and written with the next block, so every table stays in replay
order.  Memory is bounded: the generator holds one block at a time and DuckDB's cache is capped
at :data:`WRITER_MEMORY_LIMIT` while writing, so resident memory levels off (about 0.5 GB on a
15M-event run) instead of growing with the store (3 GB for 54M events without the cap).

Determinism guarantee: for the same :class:`SynthConfig` (seed included) every table of the
store (market and ``truth_*``) has identical content in identical ``seq`` order, on any machine
with the same numpy (PCG64 streams are stable across platforms).  Different seeds give
different content.  A shorter run is a prefix of a longer one with the same seed (same rows
before its end).  DuckDB may lay out identical content in different file bytes, so compare
stores by their rows, not by file hashes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from replay.errors import StoreError
from replay.model.schema import MARKET_TABLES, arrow_schema
from replay.store import open_store
from replay.store.database import MarketStore
from replay.synth.chain import (
    Chain,
    build_chain,
    expiry_schedule,
    instrument_defs,
    quote_updates,
)
from replay.synth.flow import option_trades, perp_trades
from replay.synth.paths import (
    NS_PER_S,
    PERP_CONTRACT_USD,
    PERP_TICK,
    ModelParams,
    PathBlock,
    funding_prints,
    index_ticks,
    initial_state,
    jump_variance,
    perp_book,
    simulate_block,
)

if TYPE_CHECKING:
    from replay.synth.config import SynthConfig

PERP_NAME, INDEX_NAME = "BTC-PERPETUAL", "BTC-USD"
WRITER_MEMORY_LIMIT = "256MB"
_TABLES = ("funding", "underlying_quotes", "underlying_trades", "option_quotes", "option_trades")
# Random sub-stream ids (part of the reproducibility contract: do not renumber).  Each table
# draws its latencies from its own stream, before the run's end cuts the last block, so that
# a shorter run is exactly a prefix of a longer one.
_PATH, _PERP_BOOK, _PERP_TRADES, _OPT_QUOTES, _OPT_TRADES = range(5)
_LATENCY = {t: 5 + i for i, t in enumerate(_TABLES)}


def _rng(seed: int, component: int, block: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(
        np.random.SeedSequence(seed, spawn_key=(component, block))))


def _latency_ns(rng: np.random.Generator, n: int) -> np.ndarray:
    ms = np.clip(np.exp(np.log(4.0) + 0.6 * rng.standard_normal(n)), 1.0, 20.0)
    return (ms * 1e6).astype(np.int64)


def _to_arrow(table: str, cols: dict[str, np.ndarray]) -> pa.Table:
    arrays, names = [], []
    for f in arrow_schema(table):
        if f.name not in cols:
            continue
        v = cols[f.name]
        if pa.types.is_string(f.type):  # trade ids are kept as integers until written
            arr = pa.array(v).cast(pa.string())
        else:
            arr = pa.array(v, type=f.type, from_pandas=True)  # NaN -> NULL (no bid, ...)
        arrays.append(arr)
        names.append(f.name)
    return pa.table(arrays, names=names)


class _OrderedTable:
    """Holds back the rows whose receive time falls beyond the current block."""

    def __init__(self, store: MarketStore, table: str):
        self.store, self.table = store, table
        self.carry: dict[str, np.ndarray] | None = None
        self.written = 0

    def push(self, cols: dict[str, np.ndarray], cutoff_ns: int | None) -> None:
        if self.carry is not None:
            cols = {k: np.concatenate([self.carry[k], cols[k]]) for k in cols}
        order = np.lexsort((cols["instrument_id"], cols["ts_exchange"], cols["ts_recv"]))
        cols = {k: v[order] for k, v in cols.items()}
        n = cols["ts_recv"].shape[0]
        cut = n if cutoff_ns is None else int(np.searchsorted(cols["ts_recv"], cutoff_ns))
        self.carry = {k: v[cut:] for k, v in cols.items()}
        if cut:
            self.written += self.store.append_ordered(
                self.table, _to_arrow(self.table, {k: v[:cut] for k, v in cols.items()}))


class _AuxAppender:
    """Appends to the ``truth_*`` side tables block by block."""

    def __init__(self, store: MarketStore):
        self.store, self.made = store, set()

    def append(self, name: str, table: pa.Table) -> None:
        if name not in self.made:
            self.store.write_aux(name, table, replace=True)
            self.made.add(name)
        elif table.num_rows:
            con = self.store.con
            con.register("_aux_rows", table)
            con.execute(f"INSERT INTO {name} SELECT * FROM _aux_rows").fetchall()
            con.unregister("_aux_rows")


def _underlying_defs(start_ns: int) -> pa.Table:
    two = [start_ns, start_ns]
    return pa.table({
        "ts_exchange": two, "ts_recv": two, "name": [INDEX_NAME, PERP_NAME],
        "venue": ["synth", "synth"], "kind": ["index", "perp"], "underlying": ["BTC", "BTC"],
        "quote_currency": ["USD", "USD"], "expiry_ns": pa.nulls(2, pa.int64()),
        "strike": pa.nulls(2, pa.float64()), "is_call": pa.nulls(2, pa.bool_()),
        "settlement": ["linear", "inverse"], "contract_size": [1.0, PERP_CONTRACT_USD],
        "tick_size": [0.01, PERP_TICK],
    })


def _truth_params(cfg: SynthConfig, end_ns: int, step_ns: int, ref_vol: float) -> pa.Table:
    rows: list[tuple[str, float | None, str | None]] = [
        ("model", None, cfg.model), ("scale", None, cfg.scale), ("seed", float(cfg.seed), None),
        ("hours", cfg.run_hours, None), ("start_ns", float(cfg.start_ns), None),
        ("end_ns", float(end_ns), None), ("step_ns", float(step_ns), None),
        ("ref_vol", ref_vol, None),
        ("smile", None, ("SSVI w(k)=theta/2(1+rho phi k+sqrt((phi k+rho)^2+1-rho^2)), "
                         "phi=eta/(theta^gamma (1+theta)^(1-gamma)), theta=E[int v dt] (+jumps); "
                         "eta=0 for gbm")),
        ("direction", None, ("delta direction = side * (+1 call, -1 put); informed trades "
                             "take sign(log S(t+horizon)/S(t)) of the index")),
    ]
    for prefix, obj in (("model.", cfg.params), ("chain.", cfg.chain), ("flow.", cfg.flow)):
        rows += [(prefix + k, None if v is None else float(v), None)
                 for k, v in asdict(obj).items()]
    from replay.synth.config import BLOCK_S

    rows.append(("block_s", float(BLOCK_S), None))
    return pa.table({"key": [r[0] for r in rows],
                     "value": pa.array([r[1] for r in rows], pa.float64()),
                     "text": pa.array([r[2] for r in rows], pa.string())})


def _truth_path(block: PathBlock, end_ns: int, jumps: float = 0.0) -> pa.Table:
    """The true state every second; ``total_variance`` adds the jumps' variance rate
    ``jumps`` (:func:`replay.synth.paths.jump_variance`) to the diffusion's ``variance``:
    the rate of the price's whole quadratic variation, which forecasts are scored against."""
    every = NS_PER_S
    first = -(-block.t0_ns // every) * every
    ts = np.arange(first, min(block.t1_ns, end_ns), every, dtype=np.int64)
    i = block.index(ts)
    return pa.table({"ts": ts, "spot": block.spot[i], "variance": block.var[i],
                     "vol": np.sqrt(block.var[i]), "total_variance": block.var[i] + jumps,
                     "funding_rate": block.funding[i], "perp_mid": block.perp_mid()[i],
                     "smile_variance": block.smile_var[i]})


def _before(cols: dict[str, np.ndarray], end_ns: int) -> dict[str, np.ndarray]:
    keep = cols["ts_exchange"] < end_ns
    return cols if keep.all() else {k: v[keep] for k, v in cols.items()}


@dataclass(frozen=True)
class _Run:
    """Everything fixed for one synthesis run."""

    cfg: SynthConfig
    start: int
    end: int
    step_ns: int
    n_steps: int
    n_blocks: int
    chain: Chain
    perp_id: int
    index_id: int


def _block_events(run: _Run, k: int, cur: PathBlock, ahead: PathBlock
                  ) -> dict[str, dict[str, np.ndarray]]:
    """Market events of block ``k`` (exchange clock only), cut at the run's end."""
    cfg, seed = run.cfg, run.cfg.seed
    model, p, spec = cfg.model, cfg.params, cfg.spec
    book = perp_book(cur, _rng(seed, _PERP_BOOK, k))
    ticks = index_ticks(cur)
    uq = {c: np.concatenate([book[c], ticks[c]]) for c in book}
    uq["instrument_id"] = np.concatenate([np.full(book["ts_exchange"].shape[0], run.perp_id),
                                          np.full(ticks["ts_exchange"].shape[0], run.index_id)])
    pt = perp_trades(cur, book, cfg.flow.perp_trade_rate * spec.trade_mult,
                     _rng(seed, _PERP_TRADES, k))
    fu = funding_prints(cur)
    for cols in (pt, fu):
        cols["instrument_id"] = np.full(cols["ts_exchange"].shape[0], run.perp_id)
    oq = quote_updates(run.chain, cur, model, p, cfg.chain, _rng(seed, _OPT_QUOTES, k),
                       spec.quote_mult)
    ot, met = option_trades(run.chain, cur, ahead, model, p, cfg.chain, cfg.flow,
                            _rng(seed, _OPT_TRADES, k), spec.trade_mult)
    events = {"funding": fu, "underlying_quotes": uq, "underlying_trades": pt,
              "option_quotes": oq, "option_trades": ot}
    for t, cols in events.items():
        lat = _latency_ns(_rng(seed, _LATENCY[t], k), cols["ts_exchange"].shape[0])
        cols["ts_recv"] = cols["ts_exchange"] + lat
    # the book each print met, received with it (folded before it: quotes precede trades)
    met["ts_recv"] = ot["ts_recv"]
    events["option_quotes"] = {c: np.concatenate([oq[c], met[c]]) for c in oq}
    return {t: _before(c, run.end) for t, c in events.items()}


def _truth_trades(ot: dict[str, np.ndarray]) -> pa.Table:
    return pa.table({
        "trade_id": pa.array(ot["trade_id"]).cast(pa.string()),
        "ts_exchange": ot["ts_exchange"], "instrument_id": ot["instrument_id"],
        "informed": ot["informed"], "direction": ot["direction"],
        "future_return": ot["future_return"]})


def _write(store: MarketStore, cfg: SynthConfig, start: int, end: int) -> dict[str, int]:
    """Write the instruments, the truth and every block; return rows per market table."""
    from replay.synth.config import BLOCK_S

    busy = {t: store.count(t) for t in MARKET_TABLES if store.count(t)}
    if busy:
        raise StoreError(
            f"store {store.path} already holds market data ({json.dumps(busy)}); synth writes "
            "only into a new store so that a seed always gives the same content: choose a new "
            "--db path")
    model, p, seed = cfg.model, cfg.params, cfg.seed
    step_ns = cfg.spec.step_ms * 1_000_000
    n_steps = BLOCK_S * NS_PER_S // step_ns
    ref_vol = math.sqrt(p.initial_variance(model) if model == "gbm" else p.theta)
    ids = store.ensure_instruments(_underlying_defs(start))
    listings = {t for t in expiry_schedule(start, end).values() if t > start}
    chain = build_chain(start, end, p, ref_vol, cfg.chain,
                        _spots_at(model, p, seed, start, n_steps, step_ns, listings))
    ids = store.ensure_instruments(instrument_defs(chain))
    run = _Run(cfg, start, end, step_ns, n_steps, math.ceil((end - start) / (n_steps * step_ns)),
               chain.with_ids(ids), ids[PERP_NAME], ids[INDEX_NAME])
    aux = _AuxAppender(store)
    aux.append("truth_params", _truth_params(cfg, end, step_ns, ref_vol))
    out = {t: _OrderedTable(store, t) for t in _TABLES}
    trade_no = {"option_trades": 0, "underlying_trades": 0}

    state = initial_state(model, p)
    cur, state = simulate_block(model, p, state, start, n_steps, step_ns, _rng(seed, _PATH, 0))
    for k in range(run.n_blocks):
        # the path runs one block ahead: informed traders see the next horizon_s seconds
        ahead, state = simulate_block(model, p, state, cur.t1_ns, n_steps, step_ns,
                                      _rng(seed, _PATH, k + 1))
        events = _block_events(run, k, cur, ahead)
        for t, done in trade_no.items():
            n = events[t]["ts_exchange"].shape[0]
            events[t]["trade_id"] = done + 1 + np.arange(n, dtype=np.int64)
            trade_no[t] = done + n
        aux.append("truth_trades", _truth_trades(events["option_trades"]))
        aux.append("truth_path", _truth_path(cur, end, jump_variance(model, p)))
        last = k == run.n_blocks - 1
        store.con.execute("BEGIN TRANSACTION").fetchall()
        for t in _TABLES:
            out[t].push(events[t], None if last else cur.t1_ns)
        store.con.execute("COMMIT").fetchall()
        cur = ahead
    return {t: out[t].written for t in _TABLES}


def _spots_at(model: str, p: ModelParams, seed: int, start: int, n_steps: int,
              step_ns: int, times: set[int]) -> dict[int, float]:
    """The path's spot at each of ``times`` (listing instants after the start), from a pass
    over the path's blocks as :func:`_write` simulates them (the same sub-streams, so the
    same path) before any option is listed: an expiry's strikes are fixed at its listing."""
    todo = np.sort(np.fromiter(times, np.int64, len(times)))
    out: dict[int, float] = {}
    state, k, i = initial_state(model, p), 0, 0
    while i < todo.size:  # one sorted pass: the times in each block, in order
        block, state = simulate_block(model, p, state, start + k * n_steps * step_ns, n_steps,
                                      step_ns, _rng(seed, _PATH, k))
        j = int(np.searchsorted(todo, block.t1_ns))
        out.update(zip(todo[i:j].tolist(), block.spot[block.index(todo[i:j])].tolist()))
        i, k = j, k + 1
    return out


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS_PER_S, UTC).isoformat()


def synthesize(db_path: str | PathLike, cfg: SynthConfig) -> dict:
    """Write the synthetic market described by ``cfg`` into a new store at ``db_path``.

    Refuses a store that already holds market data (a seed must always give the same
    content); a store this call created is removed again if writing fails.  Returns a
    JSON-able summary: events per table, time span, wall seconds and events per second.
    """
    t_wall = time.perf_counter()
    start = cfg.start_ns
    end = start + round(cfg.run_hours * 3600 * NS_PER_S)
    fresh = not Path(db_path).exists()
    try:
        with open_store(db_path, read_only=False) as store:
            # DuckDB would otherwise keep every written block cached (up to 80 % of RAM); the
            # generator holds one block at a time, so a capped cache keeps RSS bounded.
            store.con.execute(f"SET memory_limit = '{WRITER_MEMORY_LIMIT}'").fetchall()
            counts = _write(store, cfg, start, end)
            n_inst = store.count("instruments")
    except BaseException:
        if fresh:  # do not leave a half-written store behind that a rerun would refuse
            for f in (Path(db_path), Path(f"{db_path}.wal")):
                f.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - t_wall
    events = sum(counts.values())
    return {"db": str(db_path), "model": cfg.model, "scale": cfg.scale, "seed": cfg.seed,
            "hours": cfg.run_hours, "start": _iso(start), "end": _iso(end), "start_ns": start,
            "end_ns": end, "instruments": n_inst, "events": events, "tables": counts,
            "seconds": round(seconds, 3),
            "events_per_second": round(events / seconds, 1) if seconds > 0 else None}
