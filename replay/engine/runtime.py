"""The decision side of a run: the consumer protocol, the contexts consumers and the venue act
through, and :class:`Runtime`, which holds everything a run decides with.

A consumer is a plain Python object:

* ``name: str`` (unique within a run; it is the journal ``source``);
* ``on_start(ctx) -> WakeCondition | None``: called once before the first event (not again
  when a run resumes from a snapshot: the restored state carries the pending condition);
* ``on_wake(ctx) -> WakeCondition | None``: called when its condition is met; returns the next
  condition (``None``: never again);
* ``state_dict() -> dict`` / ``load_state_dict(d)``: everything it needs to resume.

A consumer whose wakes and journal events are all known in advance (the calibration
consumer replaying a recorded surface stream) may say so with ``recorded = True`` and define
``catch_up(rt, until, inclusive) -> int``.  The engine then never wakes it: before every other
action (a wake, an order arrival, a snapshot, the end) it asks it to journal its recorded
wakes that come first, by the same order of timers as a live wake at a deadline, so the journal
is the one a live run writes.  A day of 1 s calibration wakes then costs no engine stops.

``ctx`` (:class:`Context`) is valid during the call only.  It offers the market as of
``ctx.now`` (:class:`replay.engine.state.MarketView`), the instruments, the positions (the venue's), the
run's numpy Generator, and the only ways to act: ``ctx.emit`` (journal an event) and
``ctx.submit`` (send an order that reaches the venue at ``now + latency_ns``).

The venue is any object with ``on_arrival(order, vctx)`` (``order`` is the one order type,
:class:`replay.model.orders.Order`); the engine calls it when the replay
reaches ``order.arrival_ts`` (before the first event with ``ts_recv > arrival_ts``) with the book
as of that instant, and ``vctx.fill`` journals a fill.  Fill logic and the books of the run
(positions, cash, funding, settlement) live in the venue, never in the engine: the venue is the
one ledger.  ``ctx.position(iid)`` asks the venue (``venue.position(iid)``; 0 without a venue),
and a venue may own consumers of its own (``venue.consumers``: resting orders, funding and
settlement), woken after the user's.

:class:`Runtime` (consumers and their wake conditions, pending orders, RNG, journal, snapshot
schedule) is shared by the fast engine (:mod:`replay.engine.loop`) and the per-event
reference engine (:mod:`replay.engine.reference`); the two differ only in how they order, fold
and scan market events, which is exactly what the equivalence test checks.

Timers (consumer deadlines, order arrivals, time-based snapshots) fire *before* the first event
with ``ts_recv`` greater than their time; at one instant in the order (arrivals by order id,
deadlines by consumer index, snapshot).  Corridor and quote-count wakes fire right after the
event that met them; event-count snapshots after that.  See :mod:`replay.engine.wake`.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from replay.engine.journal import Journal
from replay.engine.state import Instruments, MarketState, MarketView
from replay.engine.wake import NO_DEADLINE, WakeCondition, WakeCosts, WakeTable
from replay.model.events import KINDS, columns_of, payload_digest
from replay.model.orders import Order


class Consumer(Protocol):
    name: str

    def on_start(self, ctx: Context) -> WakeCondition | None: ...

    def on_wake(self, ctx: Context) -> WakeCondition | None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, d: dict) -> None: ...


class Context:
    """What a consumer sees and may do during one wake."""

    def __init__(self, rt: Runtime, consumer: str, now: int, reason: str,
                 quotes_left: int | None = None):
        self._rt = rt
        self.consumer = consumer
        self.now = int(now)
        self.reason = reason
        self.quotes_left = quotes_left  # left of a quote_count that a deadline cut short
        self._market: MarketView | None = None
        self._acted = False

    @property
    def market(self) -> MarketView:
        """The market as of ``now`` (built on first use: many wakes never look)."""
        if self._market is None:
            self._market = MarketView(self._rt.state, self._rt.instruments, self.now)
        return self._market

    @property
    def instruments(self) -> Instruments:
        return self._rt.instruments

    @property
    def events(self) -> int:
        """Market events folded so far (the replay position of this wake)."""
        return self._rt.state.n_events

    @property
    def cause(self) -> tuple[int, int]:
        """The journal cause of what this wake emits: (stream, seq) of the last folded event."""
        return self._rt.state.cause()

    @property
    def printed(self) -> int | None:
        """At a ``trade_count`` wake, the instrument whose print (the event just folded) woke
        us; None at any other wake.  Several prints at one timestamp wake once each."""
        return self._rt.state.last_instrument if self.reason == "trade_count" else None

    @property
    def rng(self) -> np.random.Generator:
        return self._rt.rng

    def position(self, instrument_id: int) -> float:
        """Contracts held in ``instrument_id``, as the venue's books say."""
        return self._rt.position(int(instrument_id))

    def positions(self) -> dict[int, float]:
        """Every non-zero position (contracts per instrument id), as the venue's books say."""
        return self._rt.positions()

    def entry_price(self, instrument_id: int) -> float:
        """The position's average entry price on the venue's books; NaN flat or without one."""
        price = getattr(self._rt.venue, "entry_price", None)
        return math.nan if price is None else float(price(int(instrument_id)))

    def _mark_acted(self) -> None:
        # "wake-ups that acted" are journaled, lazily, before the first thing they do
        if not self._acted:
            self._acted = True
            self._rt.journal_wake(self.now, self.consumer, self.reason)

    def emit(self, kind: str, **fields: Any) -> int:
        """Journal a derived event (fields as declared by its kind); returns its seq."""
        self._mark_acted()
        return self._rt.journal_event(kind, self.now, self.consumer, fields)

    def emit_columns(self, kind: str, n: int, cols: dict[str, list], digest: bytes) -> int:
        """:meth:`emit` of ``n`` rows already checked by
        :func:`replay.model.events.columns_of`, with their payload digest: a caller that also
        records the rows (a stream's recorder) checks and digests them once."""
        self._mark_acted()
        rt = self._rt
        return rt.journal.append_columns(KINDS[kind], self.now, rt.state.cause(), self.consumer,
                                         n, cols, digest)

    def emit_block(self, kind: str, digest: bytes, table: Any, i0: int, i1: int) -> int:
        """Journal a recorded event: its payload rows are rows ``[i0, i1)`` of an Arrow
        ``table`` and ``digest`` their payload digest (see
        :meth:`replay.engine.journal.Journal.append_block`)."""
        self._mark_acted()
        rt = self._rt
        return rt.journal.append_block(kind, self.now, rt.state.cause(), self.consumer, digest,
                                       table, i0, i1)

    def venue_context(self) -> VenueContext:
        """The venue's view of this instant (fills, funding), for consumers the venue owns."""
        return VenueContext(self._rt, self.now)

    def submit(self, instrument_id: int, qty: float, *, limit_price: float = math.nan,
               latency_ns: int | None = None) -> int:
        """Send an order; it is journaled now and reaches the venue at now + latency_ns.

        ``latency_ns=None`` takes the venue's latency model (``venue.latency_ns(rng)``, drawn
        from the run's seeded generator, so jitter is reproducible and snapshotted), or 0
        when the venue has none."""
        if latency_ns is None:
            venue = self._rt.venue
            latency_ns = venue.latency_ns(self._rt.rng) if hasattr(venue, "latency_ns") else 0
        if latency_ns < 0:
            raise ValueError("latency_ns must be >= 0")
        self._mark_acted()
        #: when the last order sent reaches the venue (consumers track orders in flight by it)
        self.last_arrival_ts = self.now + int(latency_ns)
        return self._rt.submit_order(self.consumer, self.now, int(instrument_id), float(qty),
                                     float(limit_price), int(latency_ns))


class VenueContext:
    """What the venue sees when an order arrives: the book as of ``now = arrival_ts``."""

    def __init__(self, rt: Runtime, now: int):
        self._rt = rt
        self.now = int(now)
        self.market = MarketView(rt.state, rt.instruments, now)

    @property
    def instruments(self) -> Instruments:
        return self._rt.instruments

    def fill(self, order: Order, qty: float, price: float, fee: float = 0.0,
             multiplier: float = 1.0) -> int:
        return self._rt.record_fill(self.now, order, qty, price, fee, multiplier)

    def emit(self, kind: str, **fields: Any) -> int:
        return self._rt.journal_event(kind, self.now, "venue", fields)

    def set_wake(self, consumer: str, cond: WakeCondition | None) -> None:
        """Set the wake condition of a consumer the venue owns (``venue.consumers``)."""
        self._rt.set_wake(consumer, cond, self.now)


# the order of actions at one instant: corridor and count wakes (and event-count snapshots) at
# the event that met them, then timers (arrivals, deadlines, snapshot), then the end of data
_CONDITION, _ARRIVAL, _DEADLINE, _SNAPSHOT, _END = -1, 0, 1, 2, 3


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
        self.costs = WakeCosts(names)
        self.orders: list[tuple[int, int, Order]] = []
        self.next_order_id = 0
        self.rng = np.random.default_rng(seed)
        self.n_wakes = 0
        self.snap_every_events, self.snap_every_ns = snapshot_every_events, snapshot_every_ns
        self.next_snap_events = snapshot_every_events
        self.next_snap_ts: int | None = None
        self.snapshotter = snapshotter
        self._recorded = [(c, cons) for c, cons in enumerate(consumers)
                          if getattr(cons, "recorded", False)]
        self._wake_rows: dict[tuple[str, str], tuple] = {}  # (rows, digest)

    # -- actions ------------------------------------------------------------------------
    def journal_event(self, kind: str, ts: int, source: str, fields: dict) -> int:
        return self.journal.append(kind, ts, self.state.cause(), source, fields)

    def journal_wake(self, now: int, consumer: str, reason: str,
                     cause: tuple[int, int] | None = None) -> int:
        """The ``wake`` event of a wake-up that acted; ``cause``: a recorded wake's, else
        now's."""
        cols, digest = self.wake_payload(consumer, reason)
        return self.journal.append_columns(KINDS["wake"], now, cause or self.state.cause(),
                                           "engine", 1, cols, digest)

    def wake_payload(self, consumer: str, reason: str) -> tuple[dict[str, list], bytes]:
        """The payload columns and digest of a ``wake`` event (checked and computed once per
        consumer and reason)."""
        done = self._wake_rows.get((consumer, reason))
        if done is None:
            k = KINDS["wake"]
            cols = columns_of(k, {"consumer": consumer, "reason": reason})[1]
            done = self._wake_rows[(consumer, reason)] = (cols, payload_digest(k, cols))
        return done

    def submit_order(self, consumer: str, now: int, iid: int, qty: float, limit: float,
                     latency_ns: int) -> int:
        oid = self.next_order_id
        self.next_order_id += 1
        order = Order.from_signed(oid, iid, qty, limit, now, now + latency_ns, consumer)
        self.journal_event("order", now, consumer, {
            "order_id": oid, "instrument_id": iid, "qty": qty, "limit_price": limit,
            "arrival_ts": order.arrival_ts, "consumer": consumer})
        heapq.heappush(self.orders, (order.arrival_ts, oid, order))
        return oid

    def record_fill(self, now: int, order: Order, qty: float, price: float, fee: float,
                    multiplier: float) -> int:
        return self.journal_event("fill", now, "venue", {
            "order_id": order.order_id, "instrument_id": order.instrument_id, "qty": qty,
            "price": price, "fee": fee, "multiplier": multiplier})

    def position(self, iid: int) -> float:
        return float(self.venue.position(iid)) if hasattr(self.venue, "position") else 0.0

    def positions(self) -> dict[int, float]:
        """Every non-zero position, as the venue's books say."""
        return dict(self.venue.positions()) if hasattr(self.venue, "positions") else {}

    # -- wakes --------------------------------------------------------------------------
    def start(self, now: int) -> None:
        """Ask every consumer for its first condition; ``now`` precedes every event."""
        if self.snap_every_ns:
            self.next_snap_ts = (now // self.snap_every_ns + 1) * self.snap_every_ns
        for c, cons in enumerate(self.consumers):
            ctx = Context(self, cons.name, now, "start")
            self.wakes.set(c, cons.on_start(ctx), now)

    def catch_up(self, t: int, cls: int, ident: int = 0) -> None:
        """Let the recorded consumers journal what they did before the action ``(t, cls,
        ident)`` (a deadline of theirs at ``t`` comes first when ``(_DEADLINE, their index) <
        (cls, ident)``)."""
        for c, cons in self._recorded:
            t0 = time.perf_counter_ns()
            n = cons.catch_up(self, t, (_DEADLINE, c) < (cls, ident))
            self.n_wakes += n
            self.costs.add(c, n, time.perf_counter_ns() - t0)

    def _wake(self, c: int, now: int, reason: str) -> None:
        cons = self.consumers[c]
        self.n_wakes += 1
        if self._recorded:
            self.catch_up(now, _DEADLINE if reason == "deadline" else _CONDITION, c)
        left = int(self.wakes.count_left[c])
        self.wakes.clear(c)
        t0 = time.perf_counter_ns()
        cond = cons.on_wake(Context(self, cons.name, now, reason, left if left > 0 else None))
        self.costs.add(c, 1, time.perf_counter_ns() - t0)
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
                if self._recorded:
                    self.catch_up(t, _ARRIVAL, ident)
                if self.venue is not None:
                    self.venue.on_arrival(order, VenueContext(self, t))
            elif cls == _DEADLINE:
                self._wake(ident, t, "deadline")
            else:
                self.next_snap_ts = t + self.snap_every_ns
                self.snapshot(t, _SNAPSHOT)

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
            self.snapshot(self.state.now, _CONDITION)

    def snapshot(self, now: int, cls: int) -> None:
        if self._recorded:
            self.catch_up(now, cls)
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
        if self._recorded:  # without a bound, timers at the last event's instant never fire
            self.catch_up(now, _END if bound is not None else _CONDITION)
        for cons in self.consumers:
            if hasattr(cons, "on_finish"):
                cons.on_finish(Context(self, cons.name, now, "finish"))
        self.journal.flush()
