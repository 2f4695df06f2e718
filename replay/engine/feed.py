"""The feed: every market table of a store, merged into one globally ordered event stream.

Global replay order
-------------------
Events are ordered by ``(ts_recv, ts_exchange, stream priority, seq)``.  The priority is
:data:`replay.model.schema.STREAM_PRIORITY` (instruments 0 < funding 1 < underlying_quotes 2 <
underlying_trades 3 < option_quotes 4 < option_trades 5): at equal clocks an instrument is
defined before it trades, a funding rate is in force before prices move, an option quote sees the
underlying it was priced off, and a trade prints against the quote that was displayed.  ``seq``
orders rows of one table, which the store keeps in replay order, so within a stream the order
is the stored order.

How it streams
--------------
Each table is read by one streaming ordered scan (:meth:`MarketStore.scan`, its own cursor, so
k scans are consumed side by side; time range, cursor and instrument filters are bound as SQL
parameters; an ordered table needs no sort) in Arrow batches of ``2**17`` rows.  The replay
range ``[start, end)`` of ``ts_recv`` is cut into windows of ``window_ns``: for each window the
rows with ``ts_recv`` below its end are cut from every table's stream (a binary search in the
sorted column, no re-query) and the k sorted runs are merged by a numba kernel
(:func:`replay.engine.merge.merge_runs`) into one
columnar :class:`EventBatch`.  Windows partition ``ts_recv``, the first sort key, so merging
window by window is exact; memory is bounded by one window plus one scan batch per table (and
the prefetched windows), never by the length of history.  Stretches with no data are skipped by
jumping to the next window that holds an event.

The EventBatch union layout
---------------------------
Besides ``ts_recv``, ``ts_exchange``, ``stream`` (int8, the priority above), ``seq`` and
``instrument_id``, every event carries ``NV = 6`` float64 values ``v[:, 0:6]`` whose meaning
depends on the stream (NaN where a source field is NULL or the stream has no such field):

==================  ==========  ==========  ============  ===========  ===========  ========
stream              v0          v1          v2            v3           v4           v5
==================  ==========  ==========  ============  ===========  ===========  ========
instruments         NaN         NaN         NaN           NaN          NaN          NaN
funding             rate        interval_s  mark_price    index_price  NaN          NaN
underlying quotes   bid         ask         bid_size      ask_size     NaN          NaN
option quotes       bid         ask         bid_size      ask_size     venue fwd    mark_iv
trades              price       size        side (+1/-1/0) NaN         NaN          NaN
==================  ==========  ==========  ============  ===========  ===========  ========

Option quotes carry the venue's forward of their expiry (``underlying_price``) and its mark IV,
because calibration needs both and some sources (Deribit summaries) have no other tape.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa

from replay.engine.merge import merge_runs
from replay.errors import StoreError, error_line
from replay.model.schema import STREAM_PRIORITY
from replay.store.database import MarketStore

#: Streams in priority order; the stream code of an event is its index here.
STREAMS: tuple[str, ...] = tuple(sorted(STREAM_PRIORITY, key=STREAM_PRIORITY.__getitem__))
S_INSTRUMENTS = STREAM_PRIORITY["instruments"]
S_FUNDING = STREAM_PRIORITY["funding"]
S_UNDERLYING_QUOTES = STREAM_PRIORITY["underlying_quotes"]
S_UNDERLYING_TRADES = STREAM_PRIORITY["underlying_trades"]
S_OPTION_QUOTES = STREAM_PRIORITY["option_quotes"]
S_OPTION_TRADES = STREAM_PRIORITY["option_trades"]

#: Source columns that fill v0..v3, per table (see the module docstring).
VALUE_COLUMNS: dict[str, tuple[str, ...]] = {
    "instruments": (),
    "funding": ("funding_rate", "interval_s", "mark_price", "index_price"),
    "underlying_quotes": ("bid_price", "ask_price", "bid_size", "ask_size"),
    "underlying_trades": ("price", "size", "side"),
    "option_quotes": ("bid_price", "ask_price", "bid_size", "ask_size", "underlying_price",
                      "mark_iv"),
    "option_trades": ("price", "size", "side"),
}
OPTION_TABLES = ("option_quotes", "option_trades")
#: number of value columns per event
NV = 6
DEFAULT_WINDOW_NS = 600 * 1_000_000_000


@dataclass(frozen=True)
class EventBatch:
    """A run of market events in global replay order, as numpy columns (union layout)."""

    ts_recv: np.ndarray  # int64
    ts_exchange: np.ndarray  # int64
    stream: np.ndarray  # int8, STREAM_PRIORITY code
    seq: np.ndarray  # int64, per-table seq
    instrument_id: np.ndarray  # int32
    v: np.ndarray  # float64 (n, NV), meaning per stream

    def __len__(self) -> int:
        return len(self.ts_recv)

    def slice(self, i0: int, i1: int) -> EventBatch:
        return EventBatch(self.ts_recv[i0:i1], self.ts_exchange[i0:i1], self.stream[i0:i1],
                          self.seq[i0:i1], self.instrument_id[i0:i1], self.v[i0:i1])


@dataclass(frozen=True)
class FeedCursor:
    """Where a feed (re)starts: every event with ``ts_recv < ts`` is consumed, and of the rest a
    table's rows with ``seq <= after_seq[table]`` are consumed too.  Because a table's ``seq``
    follows its replay order, this identifies the exact position after the last folded event."""

    ts: int
    after_seq: tuple[tuple[str, int], ...] = field(default_factory=tuple)

    def seq_of(self, table: str) -> int | None:
        return dict(self.after_seq).get(table)


class _TableStream:
    """One table's ordered Arrow stream, cut at window boundaries without re-querying."""

    def __init__(self, reader: pa.RecordBatchReader):
        self.reader = reader
        self.pending: list[pa.RecordBatch] = []
        self.done = False

    def _pull(self) -> None:
        try:
            b = self.reader.read_next_batch()
        except StopIteration:
            self.done = True
            return
        if b.num_rows:
            self.pending.append(b)

    def peek_ts(self) -> int | None:
        while not self.pending and not self.done:
            self._pull()
        return int(self.pending[0].column(0)[0].as_py()) if self.pending else None

    def take_until(self, w1: int) -> list[pa.RecordBatch]:
        """Rows with ``ts_recv < w1`` (the stream is sorted by ts_recv)."""
        while not self.done and (not self.pending or self.pending[-1].column(0)[-1].as_py() < w1):
            self._pull()
        out = []
        while self.pending:
            b = self.pending[0]
            ts = b.column(0).to_numpy()
            if ts[-1] < w1:
                out.append(b)
                self.pending.pop(0)
                continue
            k = int(np.searchsorted(ts, w1, side="left"))
            if k:
                out.append(b.slice(0, k))
                self.pending[0] = b.slice(k)
            break
        return out


class _Arena:
    """Growable scratch arrays reused from window to window.  Fresh large numpy arrays are
    mmapped and page-faulted on first touch, which on a VM costs more than the merge itself;
    reusing a few buffers keeps the faults to the first windows."""

    def __init__(self) -> None:
        self._a: dict[str, np.ndarray] = {}

    def get(self, key: str, n: int, dtype, width: int = 0) -> np.ndarray:
        a = self._a.get(key)
        if a is None or a.shape[0] < n:
            cap = max(n, int(1.25 * (0 if a is None else a.shape[0])), 1024)
            a = np.empty((cap, width) if width else cap, dtype)
            self._a[key] = a
        return a[:n]


class Feed:
    """Ordered, windowed, filtered event stream over a store.

    ``instrument_ids`` restricts every table; ``expiries`` (expiry_ns values) restricts the
    option tables to options of those expiries while the underlying and funding streams stay
    complete (an option replay still needs its underlying).  ``tables`` defaults to all
    market tables.
    """

    def __init__(self, store: MarketStore, *, start: int | None = None, end: int | None = None,
                 window_ns: int = DEFAULT_WINDOW_NS, batch_rows: int = 1 << 20,
                 instrument_ids: Sequence[int] | None = None, expiries: Sequence[int] | None = None,
                 tables: Sequence[str] | None = None, cursor: FeedCursor | None = None,
                 reuse_buffers: bool = False, prefetch_depth: int = 2):
        if window_ns <= 0:
            raise ValueError("window_ns must be positive")
        self.store = store
        self.window_ns = int(window_ns)
        self.batch_rows = int(batch_rows)
        self.scan_rows = 1 << 17  # Arrow batch size of the table scans
        self.tables = [t for t in STREAMS if tables is None or t in tables]
        self.cursor = cursor
        # With reuse_buffers, a batch stays valid only while the next few are produced (the
        # engine folds a batch before asking for more); without, every window is fresh memory.
        self.reuse_buffers = reuse_buffers
        self.prefetch_depth = int(prefetch_depth)
        self._scratch = _Arena()
        self._ring = [_Arena() for _ in range(self.prefetch_depth + 3)]
        self._n_windows = 0
        self._ids: dict[str, list[int] | None] = {t: None for t in self.tables}
        base = None if instrument_ids is None else sorted({int(i) for i in instrument_ids})
        for t in self.tables:
            self._ids[t] = base
        if expiries is not None:
            opt = self._option_ids(expiries)
            for t in OPTION_TABLES:
                if t in self._ids:
                    cur = self._ids[t]
                    self._ids[t] = opt if cur is None else sorted(set(cur) & set(opt))
        # the span costs a scan of every partition of a Parquet store: only when needed
        lo, hi = self._span() if start is None or end is None else (None, None)
        self.start = int(start) if start is not None else lo
        self.end = int(end) if end is not None else (None if hi is None else hi + 1)
        self.opened = self.start  # where the replay began, a resumed one's too
        if cursor is not None:
            self.start = max(self.start, int(cursor.ts)) if self.start is not None else cursor.ts

    # -- set-up ---------------------------------------------------------------------------
    def _option_ids(self, expiries: Sequence[int]) -> list[int]:
        rows = self.store.con.cursor().execute(
            "SELECT instrument_id FROM instruments WHERE kind = 'option' "
            "AND list_contains($exp, expiry_ns) ORDER BY instrument_id",
            {"exp": [int(e) for e in expiries]}).fetchall()
        return [r[0] for r in rows]

    def _where(self, table: str, lo_param: str) -> tuple[str, dict]:
        where, params = [f"ts_recv >= ${lo_param}"], {}
        if self._ids[table] is not None:
            where.append("list_contains($ids, instrument_id)")
            params["ids"] = self._ids[table]
        return " AND ".join(where), params

    def _span(self) -> tuple[int | None, int | None]:
        """(min, max) ts_recv over the included tables and filters (a table read whole: the
        store's span of it, which a Parquet store has in its manifest)."""
        lo = hi = None
        for t in self.tables:
            if self._ids[t] is None:
                a, b = self.store.time_span(t)
            else:
                a, b = self.store.con.cursor().execute(
                    f"SELECT min(ts_recv), max(ts_recv) FROM {t} "
                    "WHERE list_contains($ids, instrument_id)", {"ids": self._ids[t]}
                ).fetchall()[0]
            if a is not None:
                lo = a if lo is None else min(lo, a)
                hi = b if hi is None else max(hi, b)
        return lo, hi

    def _open_streams(self) -> dict[str, _TableStream]:
        """One streaming ordered scan per table over the whole range (the cursor's seq
        filter applies to all of it, since a table's seq follows its replay order)."""
        out = {}
        for t in self.tables:
            after = self.cursor.seq_of(t) if self.cursor is not None else None
            cols = ["ts_recv", "ts_exchange", "seq", "instrument_id", *VALUE_COLUMNS[t]]
            out[t] = _TableStream(self.store.scan(t, self.start, self.end, cols, after_seq=after,
                                                  instrument_ids=self._ids[t],
                                                  batch_rows=self.scan_rows))
        return out

    def _read_window(self, w0: int, w1: int) -> EventBatch:
        runs = []
        for t in self.tables:
            parts = self._streams[t].take_until(w1)
            if parts:
                runs.append((t, parts))
        n = sum(b.num_rows for _, parts in runs for b in parts)
        out_arena = (self._ring[self._n_windows % len(self._ring)] if self.reuse_buffers
                     else _Arena())
        # only a window with rows takes a slot of the ring: the read-ahead thread reads
        # empty windows that are never handed out, and counting them let it wrap onto the
        # batch being folded
        self._n_windows += n > 0
        # one run needs no merge: read it straight into the output buffers
        tmp = out_arena if len(runs) == 1 else self._scratch
        ts = tmp.get("ts", n, np.int64)
        tx = tmp.get("tx", n, np.int64)
        sq = tmp.get("sq", n, np.int64)
        ii = tmp.get("ii", n, np.int32)
        vv = tmp.get("v", n, np.float64, NV)
        starts, ends, streams = [], [], []
        off = 0
        for t, parts in runs:
            vals = VALUE_COLUMNS[t]
            m0 = off
            for b in parts:
                m = b.num_rows
                sl = slice(off, off + m)
                ts[sl] = b.column(0).to_numpy()
                tx[sl] = b.column(1).to_numpy()
                sq[sl] = b.column(2).to_numpy()
                ii[sl] = b.column(3).to_numpy()
                for j in range(NV):
                    vv[sl, j] = (b.column(4 + j).to_numpy(zero_copy_only=False)
                                 if j < len(vals) else np.nan)
                off += m
            m = off - m0
            off = m0
            run_seq, run_ts = sq[m0:m0 + m], ts[m0:m0 + m]  # the merge relies on both
            if m > 1 and ((run_seq[1:] <= run_seq[:-1]).any() or (run_ts[1:] < run_ts[:-1]).any()):
                raise StoreError(f"table {t} was scanned out of replay order (seq or ts_recv "
                                 "decreases); the store or its scan is broken (a damaged file?)")
            starts.append(off)
            ends.append(off + m)
            streams.append(STREAM_PRIORITY[t])
            off += m
        if len(runs) <= 1:
            st = out_arena.get("st", n, np.int8)
            st[:] = streams[0] if streams else 0
            return EventBatch(ts, tx, st, sq, ii, vv)
        a = out_arena
        out = EventBatch(a.get("ts", n, np.int64), a.get("tx", n, np.int64),
                         a.get("st", n, np.int8),
                         a.get("sq", n, np.int64), a.get("ii", n, np.int32),
                         a.get("v", n, np.float64, NV))
        merge_runs(ts, tx, sq, ii, vv, np.array(starts, np.int64), np.array(ends, np.int64),
                    np.array(streams, np.int8), out.ts_recv, out.ts_exchange, out.stream,
                    out.seq, out.instrument_id, out.v)
        return out

    def windows(self) -> Iterator[EventBatch]:
        """Merged windows in replay order (each at most one window of data); a store file that
        cannot be read (DuckDB's error, or Arrow's OSError relaying it) is a StoreError."""
        if self.start is None or self.end is None:
            return
        try:
            self._streams = self._open_streams()
            w0 = self.start
            while w0 < self.end:
                w1 = min(w0 + self.window_ns, self.end)
                batch = self._read_window(w0, w1)
                if len(batch):
                    yield batch
                    w0 = w1
                    continue
                heads = [h for h in (s.peek_ts() for s in self._streams.values())
                         if h is not None]
                nxt = min(heads) if heads else None
                if nxt is None or nxt >= self.end:
                    return
                # jump over the empty stretch, keeping windows aligned to the grid from start
                w0 = max(w1, self.start + (nxt - self.start) // self.window_ns * self.window_ns)
        except (duckdb.IOException, duckdb.InvalidInputException, OSError) as e:
            raise StoreError(f"store {self.store.path} cannot be read: {error_line(e)}") from None

    def __iter__(self) -> Iterator[EventBatch]:
        for batch in self.windows():
            n = len(batch)
            for i0 in range(0, n, self.batch_rows):
                yield batch.slice(i0, min(n, i0 + self.batch_rows))

    def prefetched(self) -> Iterator[EventBatch]:
        """Like iterating the feed, but windows are read and merged in a background thread so
        that the scan of window k+1 overlaps the fold of window k (DuckDB and the numba merge
        release the GIL).  Memory: at most ``prefetch_depth + 3`` windows."""
        q: queue.Queue = queue.Queue(maxsize=self.prefetch_depth)
        stop = threading.Event()
        done = object()

        def produce() -> None:
            try:
                for b in self:
                    while not stop.is_set():
                        try:
                            q.put(b, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                q.put(done)
            except BaseException as e:  # noqa: BLE001 - re-raised in the consumer thread
                q.put(e)

        th = threading.Thread(target=produce, name="volreplay-feed", daemon=True)
        th.start()
        try:
            while True:
                item = q.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while th.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    th.join(0.05)
