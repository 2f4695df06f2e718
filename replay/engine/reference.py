"""The reference engine: a plain per-event Python loop with the engine's semantics.

It shares the decision side (:class:`replay.engine.runtime.Runtime`: consumers, timers, orders,
journal) with the fast engine but re-implements independently everything the fast path
optimises: the global order is a Python ``sorted`` over all rows by
``(ts_recv, ts_exchange, STREAM_PRIORITY[table], seq)`` instead of windowed numba merges, the
fold is Python statements instead of the numba kernel, and wake conditions are checked event
by event instead of by the batch-splitting kernel.  Identical journals from both engines are
what proves the fast path exact.  Meant for small data only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from replay.engine.feed import NV, VALUE_COLUMNS, Feed
from replay.engine.state import (
    C_EVENTS,
    C_LAST_IID,
    C_LAST_SEQ,
    C_LAST_STREAM,
    C_NOW,
    C_STREAM_SEQ,
    F_ASK,
    F_ASK_SIZE,
    F_BID,
    F_BID_SIZE,
    F_FUNDING_INDEX,
    F_FUNDING_INTERVAL,
    F_FUNDING_RATE,
    F_LAST_PX,
    F_LAST_SIDE,
    F_LAST_SIZE,
    F_MARK,
    F_MARK_IV,
    F_VENUE_FWD,
    I_DEFINED_TS,
    I_FUNDING_TS,
    I_QUOTE_TS,
    I_TRADE_TS,
    I_UPDATE_TS,
    NEVER,
)
from replay.model.schema import STREAM_PRIORITY
from replay.store.database import MarketStore

if TYPE_CHECKING:  # pragma: no cover
    from replay.engine.runtime import Runtime

_QUOTES = ("option_quotes", "underlying_quotes")
_TRADES = ("option_trades", "underlying_trades")


def _f(x) -> float:
    return math.nan if x is None else float(x)


def load_events(store: MarketStore, feed: Feed) -> list[tuple]:
    """All events of the feed's range and filters, sorted by the documented global key."""
    rows = []
    for t in feed.tables:
        cols = ["ts_recv", "ts_exchange", "seq", "instrument_id", *VALUE_COLUMNS[t]]
        tbl = store.scan(t, feed.start, feed.end, cols, instrument_ids=feed._ids[t]).read_all()
        prio = STREAM_PRIORITY[t]
        for r in zip(*(tbl.column(c).to_pylist() for c in cols)):
            vals = [_f(x) for x in r[4:]]
            vals += [math.nan] * (NV - len(vals))
            rows.append((r[0], r[1], prio, r[2], t, r[3], vals))
    rows.sort(key=lambda e: (e[0], e[1], e[2], e[3]))
    return rows


def apply(rt: Runtime, ev: tuple) -> None:
    ts, _tx, prio, seq, table, iid, v = ev
    f, i, c = rt.state.fstate, rt.state.istate, rt.state.clock
    c[C_NOW] = ts
    c[C_EVENTS] += 1
    c[C_LAST_STREAM] = prio
    c[C_LAST_SEQ] = seq
    c[C_LAST_IID] = iid
    c[C_STREAM_SEQ + prio] = seq
    i[iid, I_UPDATE_TS] = ts
    if table in _QUOTES:
        f[iid, F_BID], f[iid, F_ASK], f[iid, F_BID_SIZE], f[iid, F_ASK_SIZE] = v[:4]
        i[iid, I_QUOTE_TS] = ts
        if table == "option_quotes":
            f[iid, F_VENUE_FWD], f[iid, F_MARK_IV] = v[4:6]
    elif table in _TRADES:
        f[iid, F_LAST_PX], f[iid, F_LAST_SIZE], f[iid, F_LAST_SIDE] = v[:3]
        i[iid, I_TRADE_TS] = ts
    elif table == "funding":
        rate, interval_s = float(f[iid, F_FUNDING_RATE]), float(f[iid, F_FUNDING_INTERVAL])
        if i[iid, I_FUNDING_TS] != NEVER and rate == rate and interval_s > 0.0:
            # the old rate accrued until now: state.accrued_rate, written out again
            dt_s = (int(ts) - int(i[iid, I_FUNDING_TS])) / 1e9
            f[iid, F_FUNDING_INDEX] = float(f[iid, F_FUNDING_INDEX]) + rate * dt_s / interval_s
        f[iid, F_FUNDING_RATE], f[iid, F_FUNDING_INTERVAL], f[iid, F_MARK] = v[:3]
        i[iid, I_FUNDING_TS] = ts
    else:
        i[iid, I_DEFINED_TS] = ts


def check(rt: Runtime, ev: tuple) -> bool:
    """Corridor, quote-count and trade-count conditions after folding ``ev``; flags
    ``wakes.met``."""
    _ts, _tx, _prio, _seq, table, iid, _v = ev
    if table not in _QUOTES and table not in _TRADES:
        return False
    w, f = rt.wakes, rt.state.fstate
    hit = False
    if table == "underlying_quotes" and iid == rt.state.underlying_id:
        mid = 0.5 * (f[iid, F_BID] + f[iid, F_ASK])
        for c in range(len(rt.consumers)):
            if mid < w.lo[c] or mid > w.hi[c]:
                w.met[c] = hit = True
    left = w.trade_left if table in _TRADES else w.count_left
    for c in range(len(rt.consumers)):
        if left[c] > 0 and (w.count_all[c] or w.count_mask[c, iid]):
            left[c] -= 1
            if left[c] == 0:
                w.met[c] = hit = True
    return hit


def run_reference(rt: Runtime, store: MarketStore, feed: Feed,
                  on_batch: Callable[[int, int], None] | None = None) -> None:
    for ev in load_events(store, feed):
        rt.fire_timers(ev[0])
        apply(rt, ev)
        if check(rt, ev):
            rt.fire_conditions()
        rt.after_events()
    if on_batch is not None:
        on_batch(rt.state.n_events, rt.state.now)
