"""The consumer protocol (calibration schemes, strategies), the venue hook, and toy consumers.

A consumer is a plain Python object:

* ``name: str`` (unique within a run; it is the journal ``source``);
* ``on_start(ctx) -> WakeCondition | None``: called once before the first event (not again
  when a run resumes from a snapshot: the restored state carries the pending condition);
* ``on_wake(ctx) -> WakeCondition | None``: called when its condition is met; returns the next
  condition (``None``: never again);
* ``state_dict() -> dict`` / ``load_state_dict(d)``: everything it needs to resume.

``ctx`` (:class:`Context`) is valid during the call only.  It offers the market as of
``ctx.now`` (:class:`replay.state.MarketView`), the instruments, positions and cash, the run's
numpy Generator, and the only ways to act: ``ctx.emit`` (journal an event) and ``ctx.submit``
(send an order that reaches the venue at ``now + latency_ns``).

The venue is any object with ``on_arrival(order, vctx)``; the engine calls it when the replay
reaches ``order.arrival_ts`` (before the first event with ``ts_recv > arrival_ts``) with the book
as of that instant, and ``vctx.fill`` journals a fill and updates the ledger.  Fill logic lives
in the venue, never in the engine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from replay.state import Instruments, MarketView
from replay.wake import WakeCondition

if TYPE_CHECKING:  # pragma: no cover
    from replay.engine import Runtime


class Consumer(Protocol):
    name: str

    def on_start(self, ctx: Context) -> WakeCondition | None: ...

    def on_wake(self, ctx: Context) -> WakeCondition | None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, d: dict) -> None: ...


@dataclass(frozen=True)
class Order:
    """An order as decided at ``ts``; it reaches the venue at ``arrival_ts``."""

    order_id: int
    ts: int
    arrival_ts: int
    instrument_id: int
    qty: float  # signed contracts, > 0 buy
    limit_price: float  # NaN: market order
    consumer: str


class Context:
    """What a consumer sees and may do during one wake."""

    def __init__(self, rt: Runtime, consumer: str, now: int, reason: str):
        self._rt = rt
        self.consumer = consumer
        self.now = int(now)
        self.reason = reason
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
    def printed(self) -> int | None:
        """At a ``trade_count`` wake, the instrument whose print (the event just folded) woke
        us; None at any other wake.  Several prints at one timestamp wake once each."""
        return self._rt.state.last_instrument if self.reason == "trade_count" else None

    @property
    def rng(self) -> np.random.Generator:
        return self._rt.rng

    def position(self, instrument_id: int) -> float:
        return self._rt.ledger.positions.get(int(instrument_id), 0.0)

    @property
    def cash(self) -> float:
        return self._rt.ledger.cash

    def _mark_acted(self) -> None:
        # "wake-ups that acted" are journaled, lazily, before the first thing they do
        if not self._acted:
            self._acted = True
            self._rt.journal_event("wake", self.now, "engine",
                                   {"consumer": self.consumer, "reason": self.reason})

    def emit(self, kind: str, **fields: Any) -> int:
        """Journal a derived event (fields as declared by its kind); returns its seq."""
        self._mark_acted()
        return self._rt.journal_event(kind, self.now, self.consumer, fields)

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

    def pay_funding(self, instrument_id: int, position: float, rate: float,
                    amount: float) -> int:
        """Journal a funding payment (``amount`` > 0 paid by us) and book it."""
        return self._rt.record_funding(self.now, int(instrument_id), position, rate, amount)

    def emit(self, kind: str, **fields: Any) -> int:
        return self._rt.journal_event(kind, self.now, "venue", fields)

    def set_wake(self, consumer: str, cond: WakeCondition | None) -> None:
        """Set the wake condition of a consumer the venue owns (``venue.consumers``)."""
        self._rt.set_wake(consumer, cond, self.now)


# -- toy consumers (tests and bench) ------------------------------------------------------
class Periodic:
    """Wakes every ``every_ns`` of market time and marks the underlying mid and one quote."""

    def __init__(self, name: str, every_ns: int, instrument_id: int = -1):
        self.name, self.every_ns, self.instrument_id = name, int(every_ns), int(instrument_id)
        self.n = 0

    def on_start(self, ctx: Context) -> WakeCondition:
        return WakeCondition(deadline=(ctx.now // self.every_ns + 1) * self.every_ns)

    def on_wake(self, ctx: Context) -> WakeCondition:
        self.n += 1
        iid = self.instrument_id if self.instrument_id >= 0 else ctx.market.underlying_id
        ctx.emit("mark", instrument_id=iid, price=float(ctx.market.mid(iid)),
                 value=ctx.market.underlying_mid())
        return WakeCondition(deadline=ctx.now + self.every_ns)

    def state_dict(self) -> dict:
        return {"n": self.n}

    def load_state_dict(self, d: dict) -> None:
        self.n = d["n"]


class Idle:
    """Wakes every ``every_ns`` and does nothing (measures pure wake overhead)."""

    def __init__(self, name: str, every_ns: int):
        self.name, self.every_ns, self.n = name, int(every_ns), 0

    def on_start(self, ctx: Context) -> WakeCondition:
        return WakeCondition(deadline=(ctx.now // self.every_ns + 1) * self.every_ns)

    def on_wake(self, ctx: Context) -> WakeCondition:
        self.n += 1
        return WakeCondition(deadline=ctx.now + self.every_ns)

    def state_dict(self) -> dict:
        return {"n": self.n}

    def load_state_dict(self, d: dict) -> None:
        self.n = d["n"]


class CorridorHedger:
    """Re-centres a ±``width`` relative corridor on the underlying mid each time the mid leaves
    it, and trades ``qty`` of the underlying against the move (with order latency)."""

    def __init__(self, name: str, width: float, qty: float = 1.0, latency_ns: int = 0):
        self.name, self.width, self.qty, self.latency_ns = name, width, qty, int(latency_ns)
        self.center = math.nan

    def _around(self, mid: float) -> WakeCondition:
        if not math.isfinite(mid):  # no two-sided book yet: wait for any quote update
            return WakeCondition(quote_count=1)
        self.center = mid
        return WakeCondition(corridor=(mid * (1 - self.width), mid * (1 + self.width)))

    def on_start(self, ctx: Context) -> WakeCondition:
        return self._around(ctx.market.underlying_mid())

    def on_wake(self, ctx: Context) -> WakeCondition:
        mid = ctx.market.underlying_mid()
        if math.isfinite(mid) and math.isfinite(self.center):
            side = -1.0 if mid > self.center else 1.0
            ctx.submit(ctx.market.underlying_id, side * self.qty, latency_ns=self.latency_ns)
        return self._around(mid)

    def state_dict(self) -> dict:
        return {"center": self.center}

    def load_state_dict(self, d: dict) -> None:
        self.center = d["center"]


class QuoteCounter:
    """Wakes after every ``n`` quote updates (trade prints with ``trades=True``, ``n`` of
    either with ``quotes=True`` too) of ``instruments`` if given, marks the instrument that
    quoted last, and draws from the run's RNG (so RNG state matters)."""

    def __init__(self, name: str, n: int, instruments: tuple[int, ...] | None = None,
                 trades: bool = False, quotes: bool | None = None):
        self.name, self.n, self.instruments = name, int(n), instruments
        self.trades, self.quotes = trades, (not trades) if quotes is None else quotes
        self.wakes = 0

    def _next(self) -> WakeCondition:
        return WakeCondition(quote_count=self.n if self.quotes else None,
                             trade_count=self.n if self.trades else None,
                             instruments=self.instruments)

    def on_start(self, ctx: Context) -> WakeCondition:
        return self._next()

    def on_wake(self, ctx: Context) -> WakeCondition:
        self.wakes += 1
        iid = int(np.argmax(ctx.market.quote_ts))
        ctx.emit("mark", instrument_id=iid, price=float(ctx.market.mid(iid)),
                 value=float(ctx.rng.standard_normal()))
        return self._next()

    def state_dict(self) -> dict:
        return {"wakes": self.wakes}

    def load_state_dict(self, d: dict) -> None:
        self.wakes = d["wakes"]


class TouchVenue:
    """Toy venue: fills the whole order at the touch as of arrival (ask for buys, bid for
    sells) with a proportional fee; no touch, no fill.  A stand-in for the real venue."""

    def __init__(self, fee_rate: float = 0.0005):
        self.fee_rate = fee_rate

    def on_arrival(self, order: Order, vctx: VenueContext) -> None:
        iid = order.instrument_id
        px = vctx.market.ask[iid] if order.qty > 0 else vctx.market.bid[iid]
        if math.isfinite(px):
            vctx.fill(order, order.qty, float(px), fee=abs(order.qty) * float(px) * self.fee_rate)
