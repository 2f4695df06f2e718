"""Toy consumers and a toy venue for the engine's tests: small, deterministic, and each
exercising one kind of wake condition or venue call."""

from __future__ import annotations

import math

import duckdb
import numpy as np

from replay.engine.runtime import Context, VenueContext
from replay.engine.wake import WakeCondition
from replay.model.events import KINDS
from replay.model.orders import Order


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


class HeldPositions:
    """The books of a test venue: contracts per instrument, as the engine asks a venue for them
    (``position``, ``positions``) and snapshots them (``state_dict``)."""

    def __init__(self) -> None:
        self.held: dict[int, float] = {}

    def book(self, order: Order, vctx: VenueContext, price: float, fee: float = 0.0) -> None:
        """Fill ``order`` whole at ``price`` (journaled) and book it."""
        vctx.fill(order, order.signed_qty, price, fee=fee)
        self.held[order.instrument_id] = self.held.get(order.instrument_id, 0.0) \
            + order.signed_qty

    def position(self, iid: int) -> float:
        return self.held.get(iid, 0.0)

    def positions(self) -> dict[int, float]:
        return {i: q for i, q in self.held.items() if q != 0}

    def state_dict(self) -> dict:
        return {"held": dict(self.held)}

    def load_state_dict(self, d: dict) -> None:
        self.held = dict(d["held"])


class TouchVenue(HeldPositions):
    """Toy venue: fills the whole order at the touch as of arrival (ask for buys, bid for
    sells) with a proportional fee; no touch, no fill.  A stand-in for the real venue."""

    def __init__(self, fee_rate: float = 0.0005):
        super().__init__()
        self.fee_rate = fee_rate

    def on_arrival(self, order: Order, vctx: VenueContext) -> None:
        iid = order.instrument_id
        px = vctx.market.ask[iid] if order.side > 0 else vctx.market.bid[iid]
        if math.isfinite(px):
            self.book(order, vctx, float(px), fee=order.qty * float(px) * self.fee_rate)


class Replayed:
    """The journal events of a live consumer, read back from that run's journal and spliced
    into another run as a recorded consumer (``recorded = True``: never woken, it journals its
    wakes when the engine asks it to catch up)."""

    recorded = True

    def __init__(self, name: str, journal_path, kind: str = "mark"):
        k = KINDS[kind]
        fields = [f for f, _ in k.fields]
        with duckdb.connect(str(journal_path), read_only=True) as con:
            # each event of the consumer with the wake event before it
            self.rows = con.sql(
                f"SELECT j.ts, j.cause_stream, j.cause_seq, {', '.join('p.' + f for f in fields)} "
                f"FROM journal j JOIN {k.table} p USING (seq) WHERE j.source = $s ORDER BY j.seq",
                params={"s": name}).fetchall()
        self.name, self.kind, self.fields, self.row = name, kind, fields, 0

    def on_start(self, ctx: Context) -> None:
        return None

    def on_wake(self, ctx: Context) -> None:
        raise AssertionError("a recorded consumer is never woken")

    def catch_up(self, rt, until: int, inclusive: bool) -> int:
        n = 0
        while self.row < len(self.rows):
            ts, cs, cq, *vals = self.rows[self.row]
            if ts > until or (ts == until and not inclusive):
                break
            rt.journal_wake(ts, self.name, "deadline", (cs, cq))
            rt.journal.append(self.kind, ts, (cs, cq), self.name, dict(zip(self.fields, vals)))
            self.row, n = self.row + 1, n + 1
        return n

    def state_dict(self) -> dict:
        return {"row": self.row}

    def load_state_dict(self, d: dict) -> None:
        self.row = d["row"]
