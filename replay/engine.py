"""The replay engine: feed -> numba fold -> wake-ups of consumers -> journal.

:class:`Runtime` holds everything a run decides with (consumers and their wake conditions,
pending orders, ledger, RNG, journal, snapshot schedule) and is shared by the fast engine below
and the per-event reference engine (:mod:`replay.reference`); the two differ only in how they
order, fold and scan market events, which is exactly what the equivalence test checks.

Timers (consumer deadlines, order arrivals, time-based snapshots) fire *before* the first event
with ``ts_recv`` greater than their time; at one instant in the order (arrivals by order id,
deadlines by consumer index, snapshot).  Corridor and quote-count wakes fire right after the
event that met them; event-count snapshots after that.  See :mod:`replay.wake`.
"""

from __future__ import annotations

import heapq
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from replay.consumer import Consumer, Context, Order, VenueContext
from replay.feed import DEFAULT_WINDOW_NS, Feed, FeedCursor
from replay.journal import Journal
from replay.state import Instruments, Ledger, MarketState
from replay.store import open_store
from replay.wake import (
    NO_DEADLINE,
    STOP_CONDITION,
    STOP_TIMER,
    WakeCondition,
    WakeTable,
    fold_until_wake,
)

_ARRIVAL, _DEADLINE, _SNAPSHOT = 0, 1, 2


class Runtime:
    """Decision-side state of a run and the wake/timer dispatch shared by both engines."""

    def __init__(self, consumers: Sequence[Consumer], instruments: Instruments,
                 state: MarketState, journal: Journal, *, venue: Any = None, seed: int = 0,
                 snapshot_every_events: int | None = None, snapshot_every_ns: int | None = None,
                 snapshotter: Callable[[Runtime], None] | None = None):
        # a venue may own consumers (its passive orders), woken like any other, after ours
        consumers = [*consumers, *getattr(venue, "consumers", ())]
        names = [c.name for c in consumers]
        if len(set(names)) != len(names):
            raise ValueError(f"consumer names must be unique: {names}")
        self.consumers = consumers
        self.instruments, self.state, self.journal, self.venue = instruments, state, journal, venue
        self.wakes = WakeTable(len(consumers), len(instruments))
        self.orders: list[tuple[int, int, Order]] = []
        self.next_order_id = 0
        self.rng = np.random.default_rng(seed)
        self.ledger = Ledger()
        self.n_wakes = 0
        self.snap_every_events, self.snap_every_ns = snapshot_every_events, snapshot_every_ns
        self.next_snap_events = snapshot_every_events
        self.next_snap_ts: int | None = None
        self.snapshotter = snapshotter

    # -- actions ------------------------------------------------------------------------
    def journal_event(self, kind: str, ts: int, source: str, fields: dict) -> int:
        return self.journal.append(kind, ts, self.state.cause(), source, fields)

    def submit_order(self, consumer: str, now: int, iid: int, qty: float, limit: float,
                     latency_ns: int) -> int:
        oid = self.next_order_id
        self.next_order_id += 1
        order = Order(oid, now, now + latency_ns, iid, qty, limit, consumer)
        self.journal_event("order", now, consumer, {
            "order_id": oid, "instrument_id": iid, "qty": qty, "limit_price": limit,
            "arrival_ts": order.arrival_ts, "consumer": consumer})
        heapq.heappush(self.orders, (order.arrival_ts, oid, order))
        return oid

    def record_fill(self, now: int, order: Order, qty: float, price: float, fee: float,
                    multiplier: float) -> int:
        seq = self.journal_event("fill", now, "venue", {
            "order_id": order.order_id, "instrument_id": order.instrument_id, "qty": qty,
            "price": price, "fee": fee, "multiplier": multiplier})
        self.ledger.apply_fill(order.instrument_id, qty, price, fee, multiplier)
        return seq

    def record_funding(self, now: int, iid: int, position: float, rate: float,
                       amount: float) -> int:
        seq = self.journal_event("funding", now, "venue", {
            "instrument_id": iid, "position": position, "rate": rate, "amount": amount})
        self.ledger.apply_funding(amount)
        return seq

    # -- wakes --------------------------------------------------------------------------
    def start(self, now: int) -> None:
        """Ask every consumer for its first condition; ``now`` precedes every event."""
        if self.snap_every_ns:
            self.next_snap_ts = (now // self.snap_every_ns + 1) * self.snap_every_ns
        for c, cons in enumerate(self.consumers):
            ctx = Context(self, cons.name, now, "start")
            self.wakes.set(c, cons.on_start(ctx), now)

    def _wake(self, c: int, now: int, reason: str) -> None:
        self.wakes.clear(c)
        cons = self.consumers[c]
        self.n_wakes += 1
        cond = cons.on_wake(Context(self, cons.name, now, reason))
        self.wakes.set(c, cond, now)

    def set_wake(self, name: str, cond: WakeCondition | None, now: int) -> None:
        """Replace the wake condition of consumer ``name`` outside its own wake (the venue
        does this for its passive-order consumer when an order starts resting)."""
        c = next(i for i, cons in enumerate(self.consumers) if cons.name == name)
        self.wakes.set(c, cond, now)

    def next_timer(self) -> int:
        t = int(self.wakes.deadline.min()) if len(self.consumers) else NO_DEADLINE
        if self.orders:
            t = min(t, self.orders[0][0])
        if self.next_snap_ts is not None:
            t = min(t, self.next_snap_ts)
        return t

    def _next_timer_item(self) -> tuple[int, int, int] | None:
        best = None
        if self.orders:
            best = (self.orders[0][0], _ARRIVAL, self.orders[0][1])
        if len(self.consumers):
            c = int(np.argmin(self.wakes.deadline))  # first index among equal deadlines
            d = int(self.wakes.deadline[c])
            if d != NO_DEADLINE and (best is None or (d, _DEADLINE, c) < best):
                best = (d, _DEADLINE, c)
        snap_item = (self.next_snap_ts, _SNAPSHOT, 0)
        if self.next_snap_ts is not None and (best is None or snap_item < best):
            best = snap_item
        return best

    def fire_timers(self, until: int, inclusive: bool = False) -> None:
        """Fire, in order, every timer earlier than ``until`` (or equal, if ``inclusive``)."""
        while True:
            item = self._next_timer_item()
            if item is None or item[0] > until or (item[0] == until and not inclusive):
                return
            t, cls, ident = item
            if cls == _ARRIVAL:
                _, _, order = heapq.heappop(self.orders)
                if self.venue is not None:
                    self.venue.on_arrival(order, VenueContext(self, t))
            elif cls == _DEADLINE:
                self._wake(ident, t, "deadline")
            else:
                self.next_snap_ts = t + self.snap_every_ns
                self.snapshot(t)

    def fire_conditions(self) -> None:
        """Wake, in consumer order, every consumer whose corridor or count the last folded
        event met (the kernel flagged them in ``wakes.met``)."""
        w, st = self.wakes, self.state
        now = st.now
        for c in np.flatnonzero(w.met):
            w.met[c] = False
            reason = w.counted(int(c)) or "corridor"
            self._wake(int(c), now, reason)

    def after_events(self) -> None:
        """Event-count snapshot when due (after the wakes of that event)."""
        if self.next_snap_events is not None and self.state.n_events >= self.next_snap_events:
            self.next_snap_events = self.state.n_events + self.snap_every_events
            self.snapshot(self.state.now)

    def snapshot(self, now: int) -> None:
        self.journal_event("snapshot", now, "engine", {"n_events": self.state.n_events})
        if self.snapshotter is not None:
            self.journal.flush()
            self.snapshotter(self)

    def finish(self, bound: int | None) -> None:
        """End of data: fire the timers up to and including ``bound`` (the last ts_recv of
        the replay range), then flush the journal."""
        if bound is not None:
            self.fire_timers(bound, inclusive=True)
        # consumers that account for time (marks, attribution) close their last step here
        now = max(self.state.now, bound if bound is not None else self.state.now)
        for cons in self.consumers:
            if hasattr(cons, "on_finish"):
                cons.on_finish(Context(self, cons.name, now, "finish"))
        self.journal.flush()


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


@dataclass(frozen=True)
class ReplayResult:
    events: int  # market events folded in this process (after a resume: since the snapshot)
    total_events: int  # market events folded over the whole run
    wall_seconds: float
    events_per_second: float
    journal_hash: str
    journal_path: Path
    n_wakes: int
    positions: dict[int, float]
    cash: float


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
               duckdb_memory_limit: str = "256MB") -> ReplayResult:
    """Replay a store into consumers, journaling to ``out_dir/journal.duckdb``.

    ``resume`` is a run directory or a snapshot file: the run continues from the last good
    snapshot (torn ones are skipped with a warning) and the journal in ``out_dir`` is cut back
    to that snapshot.  ``progress``: None (a bar on a terminal, quiet otherwise), False, or a
    callable ``(n_events, now_ns)`` called after each batch.  ``engine="reference"`` runs the
    per-event Python reference (small data only; no resume).
    """
    from replay import snapshot as snap

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jpath, sdir = out / "journal.duckdb", out / "snapshots"
    payload = snap.load_latest(resume) if resume is not None else None
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
        und = instruments.default_underlying() if underlying_id is None else int(underlying_id)
        state = MarketState.empty(len(instruments), und)
        journal = Journal(jpath)
        want_snaps = bool(snapshot_every_events or snapshot_every_ns)
        rt = Runtime(consumers, instruments, state, journal, venue=venue, seed=seed,
                     snapshot_every_events=snapshot_every_events,
                     snapshot_every_ns=snapshot_every_ns,
                     snapshotter=((lambda r: snap.write(sdir, snap.capture(r)))
                                  if want_snaps else None))
        cursor = None
        if payload is not None:
            journal.truncate_after(payload["journal_seq"], payload["journal_hash"])
            snap.restore(rt, payload)
            cursor = FeedCursor(state.now, state.stream_seqs())
        n0 = state.n_events
        feed = Feed(store, start=start, end=end, window_ns=window_ns, batch_rows=batch_rows,
                    instrument_ids=instrument_ids, expiries=expiries, cursor=cursor,
                    reuse_buffers=engine == "fast")
        if payload is None:
            rt.start((feed.start if feed.start is not None else 0) - 1)
        tick, close = _progress(progress, feed)
        try:
            if engine == "fast":
                run_fast(rt, feed.prefetched() if prefetch else feed, tick)
            elif engine == "reference":
                if payload is not None:
                    raise ValueError("the reference engine does not resume")
                from replay.reference import run_reference

                run_reference(rt, store, feed, tick)
            else:
                raise ValueError(f"engine must be 'fast' or 'reference', not {engine!r}")
            rt.finish(None if feed.end is None else feed.end - 1)
        finally:
            close()
            journal.close()
    wall = time.perf_counter() - t0
    n = state.n_events - n0
    return ReplayResult(n, state.n_events, wall, n / wall if wall > 0 else 0.0, journal.hash_hex,
                        jpath, rt.n_wakes, dict(rt.ledger.positions), rt.ledger.cash)
