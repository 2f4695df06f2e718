"""Passive limit orders: the part of the simulated venue that lives between order arrivals.

A limit order that does not cross the book on arrival rests (:func:`replay.venue.fills.rest`
estimates the queue ahead of it).  :class:`PassiveOrders` keeps those orders and is an engine
consumer owned by the venue (the engine registers ``venue.consumers`` after the user's), so
that it wakes at exactly the market events that can fill them:

* after each **trade print** of an instrument with a resting order: the configured queue
  model (:class:`~replay.venue.fills.ConservativeQueue`: fills only on a print strictly
  through the limit; :class:`~replay.venue.fills.ProbabilisticQueue`: also at the level, with
  probability ``min(1, v / (Q + q))``, drawn from the run's seeded generator) decides the fill;
* after each **quote update** of such an instrument: the queue estimate shrinks with the
  displayed size ahead of us (probabilistic model), and a book whose opposite touch moved
  strictly through the limit (an ask below our bid, a bid above our ask) fills the rest at
  the limit: a market that trades at a better price than ours would have met our order;
* at the order's **expiry**, ``venue.passive_ttl_s`` after its arrival: the unfilled rest is
  journaled as a rejection with reason ``expired`` (implementation shortfall then counts its
  opportunity cost).

Fills are maker fills at the limit price; fees, accounting and the ``execution`` journal go
through the same path as fills on arrival (:meth:`SimulatedVenue.book_fills`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from typing import Any

from replay.consumer import Order as EngineOrder
from replay.journal import EventKind, register_kind
from replay.venue.fills import BookView, QueueModel, RestingOrder, TradePrint
from replay.venue.orders import Fill
from replay.venue.orders import Order as VenueOrder
from replay.wake import WakeCondition

#: a limit order starts resting: ``queue_ahead`` contracts estimated in front of it
RESTING = register_kind(EventKind("resting", "resting", (
    ("order_id", "int"), ("instrument_id", "int"), ("qty", "float"), ("price", "float"),
    ("queue_ahead", "float"), ("expires_ts", "int"))))


def crossed_through(r: RestingOrder, book: BookView) -> bool:
    """Whether the opposite touch is strictly better than our limit (we would have traded)."""
    side, price = r.order.side, r.price
    other = book.ask_price if side > 0 else book.bid_price
    return math.isfinite(other) and side * (price - other) > 1e-12 * max(1.0, abs(price))


class PassiveOrders:
    """Engine consumer holding the venue's resting limit orders (see the module docstring)."""

    name = "venue.passive"

    def __init__(self, venue: Any, queue: QueueModel, ttl_ns: int):
        self.venue, self.queue, self.ttl_ns = venue, queue, int(ttl_ns)
        #: order id -> (engine order, resting state, expiry ts, last trade ts seen)
        self.orders: dict[int, tuple[EngineOrder, RestingOrder, int, int]] = {}

    # -- called by the venue at an order's arrival --------------------------------------
    def add(self, order: EngineOrder, resting: RestingOrder, vctx: Any) -> None:
        expires = vctx.now + self.ttl_ns
        last_trade = int(vctx.market.trade_ts[order.instrument_id])
        self.orders[order.order_id] = (order, resting, expires, last_trade)
        vctx.emit("resting", order_id=order.order_id, instrument_id=order.instrument_id,
                  qty=resting.order.side * resting.remaining, price=resting.price,
                  queue_ahead=resting.queue_ahead, expires_ts=expires)
        vctx.set_wake(self.name, self._next(vctx.now))

    # -- consumer protocol ----------------------------------------------------------------
    def on_start(self, ctx: Any) -> WakeCondition | None:
        return self._next(ctx.now)

    def on_wake(self, ctx: Any) -> WakeCondition | None:
        vctx = ctx.venue_context()
        m = vctx.market
        for oid in sorted(self.orders):
            order, r, expires, seen = self.orders[oid]
            iid = order.instrument_id
            book = self.venue.book(iid, m)
            fills: list[Fill] = []
            tts = int(m.trade_ts[iid])
            if tts != seen and tts == ctx.now:  # a print of this instrument woke us
                seen = tts
                trade = TradePrint(tts, float(m.last_price[iid]), float(m.last_size[iid]),
                                   int(m.last_side[iid]))
                left, fill = self.queue.on_trade(r, trade, ctx.rng)
                fills += [fill] if fill is not None else []
                r = left
            if r is not None:
                r = self.queue.on_quote(r, book)
                if crossed_through(r, book):
                    fills.append(Fill(oid, iid, ctx.now, r.order.side, r.price, r.remaining,
                                      "maker"))
                    r = None
            if fills:
                self.venue.book_fills(order, fills, book.mid, vctx)
            if r is not None and ctx.now >= expires:
                vctx.emit("rejection", order_id=oid, instrument_id=iid,
                          qty=r.order.side * r.remaining, reason="expired",
                          detail=f"limit {r.price} rested {self.ttl_ns / 1e9:g} s unfilled")
                r = None
            if r is None:
                del self.orders[oid]
            else:
                self.orders[oid] = (order, r, expires, seen)
        return self._next(ctx.now)

    def _next(self, now: int) -> WakeCondition | None:
        if not self.orders:
            return None
        ids = tuple(sorted({o.instrument_id for o, *_ in self.orders.values()}))
        expiry = min(e for _, _, e, _ in self.orders.values())
        return WakeCondition(deadline=expiry if expiry > now else now + 1, quote_count=1,
                             trade_count=1, instruments=ids)

    # -- snapshots --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"orders": [(asdict(o), asdict(replace(r, order=None)), asdict(r.order), e, s)
                           for o, r, e, s in (self.orders[k] for k in sorted(self.orders))]}

    def load_state_dict(self, d: dict) -> None:
        self.orders = {}
        for o, r, vo, e, s in d["orders"]:
            order = EngineOrder(**o)
            resting = RestingOrder(**{**r, "order": VenueOrder(**vo)})
            self.orders[order.order_id] = (order, resting, int(e), int(s))


__all__ = ["PassiveOrders", "crossed_through"]
