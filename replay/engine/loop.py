"""The fast engine: feed -> numba fold -> wake-ups of consumers -> journal, and
:func:`run_replay`, which opens the store, wires a :class:`~replay.engine.runtime.Runtime`,
resumes from a snapshot if asked, and runs the fast or the reference engine.
"""

from __future__ import annotations

import gc
import logging
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from replay.engine.feed import DEFAULT_WINDOW_NS, Feed, FeedCursor
from replay.engine.journal import Journal
from replay.engine.runtime import Consumer, Runtime
from replay.engine.state import Instruments, MarketState
from replay.engine.wake import STOP_CONDITION, STOP_TIMER, fold_until_wake
from replay.errors import ConfigError, RefusedAtStart
from replay.store import open_store
from replay.units import iso_z

PROGRESS_EVERY_S = 10.0  # wall seconds between progress lines when stderr is not a terminal
log = logging.getLogger(__name__)


def run_fast(rt: Runtime, batches: Iterable, on_batch: Callable[[int, int], None] | None = None
             ) -> None:
    """Fold batches, splitting each exactly at the wake-ups the kernel finds."""
    st, w = rt.state, rt.wakes
    for b in batches:
        n, i = len(b), 0
        ts, tx, ss, sq, ii, v = b.ts_recv, b.ts_exchange, b.stream, b.seq, b.instrument_id, b.v
        # the kernel indexes state without bounds checks: refuse ids the instruments lack
        if n and (ii.min() < 0 or ii.max() >= st.fstate.shape[0]):
            raise ValueError("market events reference instrument ids outside "
                             f"0..{st.fstate.shape[0] - 1}; the instruments table is incomplete")
        while i < n:
            i1 = n
            if rt.next_snap_events is not None:
                i1 = min(n, i + rt.next_snap_events - st.n_events)
            # the kernel skips the corridor test entirely when no corridor is set
            und = st.underlying_id if np.isfinite(w.lo).any() or np.isfinite(w.hi).any() else -1
            i, code = fold_until_wake(ts, tx, ss, sq, ii, v, i, i1, rt.next_timer(),
                                      st.fstate, st.istate, st.clock, und,
                                      w.lo, w.hi, w.count_left, w.trade_left, w.count_all,
                                      w.count_mask, w.met)
            if code == STOP_TIMER:
                rt.fire_timers(int(ts[i]))
            elif code == STOP_CONDITION:
                rt.fire_conditions()
            rt.after_events()
        if on_batch is not None:
            on_batch(st.n_events, st.now)


class ProgressLog:
    """Progress lines for logs that are not a terminal (CI, cluster jobs): events, market
    time and rate, at most one per ``every_s`` wall seconds.  The engine calls it between
    batches, so the per-event loop is untouched and the journal cannot change."""

    def __init__(self, n_events: int = 0, every_s: float | None = None):
        self.every_s = PROGRESS_EVERY_S if every_s is None else every_s
        self.last_t, self.last_n = time.monotonic(), n_events

    def __call__(self, n_events: int, now: int) -> None:
        t = time.monotonic()
        if t - self.last_t < self.every_s:
            return
        rate = (n_events - self.last_n) / max(t - self.last_t, 1e-9)
        self.last_t, self.last_n = t, n_events
        log.info("replay: %s events, market time %s, %s events/s", f"{n_events:,}", iso_z(now),
                 f"{rate:,.0f}")


@dataclass(frozen=True)
class ReplayResult:
    events: int  # market events folded in this process (after a resume: since the snapshot)
    total_events: int  # market events folded over the whole run
    wall_seconds: float
    events_per_second: float
    journal_hash: str
    journal_path: Path | None  # None: a replay run with keep_journal=False
    n_wakes: int
    positions: dict[int, float]  # contracts per instrument at the end, from the venue's books
    #: per consumer: its wakes in this process and the time spent in them (WakeCosts.summary)
    consumer_costs: dict[str, dict]
    #: what storing the journal's rows cost in this process (Journal.costs)
    journal_costs: dict[str, float | int] = field(default_factory=dict)


def _progress(progress: Any, feed: Feed) -> tuple[Callable | None, Callable[[], None]]:
    if callable(progress):
        return progress, lambda: None
    if progress is False or (progress is None and not sys.stderr.isatty()):
        return None, lambda: None
    from tqdm import tqdm

    span = max((feed.end or 0) - (feed.start or 0), 1)
    bar = tqdm(total=100, unit="%", file=sys.stderr, desc="replay")

    def tick(n_events: int, now: int) -> None:
        pct = 100.0 * (now - feed.start) / span
        bar.n = round(min(max(pct, 0.0), 100.0), 1)
        bar.set_postfix_str(f"{n_events:,} events, market {np.datetime64(now, 'ns')}")

    return tick, bar.close


def run_replay(store_path: str | Path, consumers: Sequence[Consumer], out_dir: str | Path, *,
               start: int | None = None, end: int | None = None,
               window_ns: int = DEFAULT_WINDOW_NS, snapshot_every_events: int | None = None,
               snapshot_every_ns: int | None = None, resume: str | Path | None = None,
               progress: Any = None, venue: Any = None, seed: int = 0,
               underlying_id: int | None = None, instrument_ids: Sequence[int] | None = None,
               expiries: Sequence[int] | None = None, batch_rows: int = 1 << 20,
               engine: str = "fast", prefetch: bool = True,
               duckdb_memory_limit: str = "256MB",
               copy_tables: Mapping[str, Path] | None = None,
               keep_journal: bool = True) -> ReplayResult:
    """Replay a store into consumers, journaling to ``out_dir/journal.duckdb``.

    ``resume`` is a run directory or a snapshot file: the run continues from the last good
    snapshot (torn ones are skipped with a warning) and the journal in ``out_dir`` is cut back
    to that snapshot.  ``progress``: None (a bar on a terminal, quiet otherwise), False, or a
    callable ``(n_events, now_ns)`` called after each batch.  ``engine="reference"`` runs the
    per-event Python reference (small data only; no resume).  ``copy_tables``: journal tables
    copied from Parquet files while the replay runs (:meth:`Journal.copy_table`).
    ``keep_journal=False``: the journal's hash is computed but no row is stored (no
    ``journal.duckdb``; ``journal_path`` is None), for a replay whose journal nobody reads.
    """
    from replay.engine import snapshot as snap

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jpath, sdir = out / "journal.duckdb", out / "snapshots"
    if any(n is not None and n <= 0 for n in (snapshot_every_events, snapshot_every_ns)):
        raise ValueError("snapshot_every_events and snapshot_every_ns must be positive")
    payload = snap.load_latest(resume) if resume is not None else None
    if payload is not None and not keep_journal:
        raise ValueError("a resumed replay continues its stored journal: keep_journal=True")
    if payload is not None and engine == "reference":
        raise ValueError("the reference engine does not resume")
    if payload is None:
        for p in (jpath, Path(str(jpath) + ".wal")):
            p.unlink(missing_ok=True)
        shutil.rmtree(sdir, ignore_errors=True)
    t0 = time.perf_counter()
    with open_store(store_path) as store:
        # DuckDB keeps blocks it has read cached up to its memory limit (80 % of RAM by
        # default), so a long replay's RSS would grow with history; a scan needs little.
        store.con.execute("SET memory_limit = ?", [duckdb_memory_limit]).fetchall()
        instruments = Instruments.from_arrow(store.instruments())
        und = instruments.default_underlying(start) if underlying_id is None else int(underlying_id)
        state = MarketState.empty(len(instruments), und)
        journal = Journal(jpath if keep_journal else None)
        try:  # the journal is let go of whatever fails, a consumer's on_start included
            want_snaps = bool(snapshot_every_events or snapshot_every_ns)
            rt = Runtime(consumers, instruments, state, journal, venue=venue, seed=seed,
                         snapshot_every_events=snapshot_every_events,
                         snapshot_every_ns=snapshot_every_ns,
                         snapshotter=((lambda r: snap.write(sdir, snap.capture(r)))
                                      if want_snaps else None))
            cursor = None
            if payload is not None:  # checked against this run before the journal is cut
                snap.restore(rt, payload)
                journal.truncate_after(payload["journal_seq"], payload["journal_hash"])
                cursor = FeedCursor(state.now, state.stream_seqs())
            for table, parquet in (copy_tables or {}).items():
                journal.copy_table(table, parquet)
            n0 = state.n_events
            feed = Feed(store, start=start, end=end, window_ns=window_ns, batch_rows=batch_rows,
                        instrument_ids=instrument_ids, expiries=expiries, cursor=cursor,
                        reuse_buffers=engine == "fast")
            # a resumed run lists what the run it resumes listed: from where that one began
            rt.instruments = instruments.opened_at(feed.opened).within(instrument_ids, expiries)
            if payload is None:
                try:
                    rt.start((feed.start if feed.start is not None else 0) - 1)
                except ConfigError as e:  # a consumer's on_start: nothing replayed yet
                    raise RefusedAtStart(str(e)) from None
            tick, close = _progress(progress, feed)
            with _collector_for_replay():
                try:
                    if engine == "fast":
                        with closing(feed.prefetched()) if prefetch else nullcontext(feed) as src:
                            run_fast(rt, src, tick)  # the read-ahead thread ends with the run
                    elif engine == "reference":
                        from replay.engine.reference import run_reference

                        run_reference(rt, store, feed, tick)
                    else:
                        raise ValueError(f"engine must be 'fast' or 'reference', not {engine!r}")
                    rt.finish(None if feed.end is None else feed.end - 1)
                finally:
                    close()
        finally:
            journal.close()
    wall = time.perf_counter() - t0
    n = state.n_events - n0
    return ReplayResult(n, state.n_events, wall, n / wall if wall > 0 else 0.0, journal.hash_hex,
                        jpath if keep_journal else None, rt.n_wakes, rt.positions(),
                        rt.costs.summary(), journal.costs())


@contextmanager
def _collector_for_replay() -> Iterator[None]:
    """Python's cyclic garbage collector set for a replay, and restored after it.

    A replay allocates millions of short-lived containers (rows, payloads, snapshots) that
    reference counting frees, and keeps a large heap alive throughout (the instruments, the
    consumers' state, the compiled kernels' dispatchers).  With the default thresholds the
    collector ran every 700 allocations and rescanned that heap at every full collection: 7 %
    of a stream build's samples.  Objects alive at the start are frozen out of its scans, and
    a young collection waits for 50,000 allocations; the 2-hour store's build and replay then
    took 11.6-11.75 s against 12.1-12.4 s.  Reference cycles are still collected, later."""
    old, frozen_before = gc.get_threshold(), gc.get_freeze_count()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*old)
        if not frozen_before:  # a caller that froze its own heap (before a fork) keeps it so
            gc.unfreeze()
