"""Passive limit orders: the part of the simulated venue that lives between order arrivals.

A limit order that does not cross the book on arrival rests (:func:`replay.venue.fills.rest`
estimates the queue ahead of it).  :class:`PassiveOrders` keeps those orders and is an engine
consumer owned by the venue (the engine registers ``venue.consumers`` after the user's), so
that it wakes at exactly the market events that can fill them:

* after each **trade print** of an instrument with a resting order (every print, also several
  at one timestamp): the configured queue model (:class:`~replay.venue.fills.ConservativeQueue`: fills only on a print strictly
  through the limit; :class:`~replay.venue.fills.ProbabilisticQueue`: also at the level, with
  probability ``min(1, v / (Q + q))``, drawn from the run's seeded generator) decides the fill;
* after each **quote update** of such an instrument: the queue estimate shrinks with the
  displayed size ahead of us (probabilistic model), and a book whose opposite touch moved
  strictly through the limit (an ask below our bid, a bid above our ask) fills at the limit
  up to the displayed size there: a market that trades at a better price than ours would have
  met our order;
* at the order's **expiry**, ``venue.passive_ttl_s`` after its arrival or at its
  instrument's expiry if that comes first (an expired option or future trades no more: from
  that instant nothing fills it): the unfilled rest is journaled as a rejection with reason
  ``expired`` (implementation shortfall then counts its opportunity cost).

Fills are maker fills at the limit price; fees, accounting and the ``execution`` journal go
through the same path as fills on arrival (:meth:`SimulatedVenue.book_fills`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from replay.engine.wake import NO_DEADLINE, WakeCondition
from replay.model.events import EventKind, register_kind
from replay.model.orders import REJECT_DATA_END, Fill, Order
from replay.venue.fills import BookView, QueueModel, RestingOrder, TradePrint

#: a limit order starts resting: ``queue_ahead`` contracts estimated in front of it
RESTING = register_kind(EventKind("resting", "resting", (
    ("order_id", "int"), ("instrument_id", "int"), ("qty", "float"), ("price", "float"),
    ("queue_ahead", "float"), ("expires_ts", "int"))))


def crossed_through(r: RestingOrder, book: BookView) -> bool:
    """Whether the opposite touch is strictly better than our limit (we would have traded)."""
    side, price = r.order.side, r.price
    other = book.ask_price if side > 0 else book.bid_price
    return math.isfinite(other) and side * (price - other) > 1e-12 * max(1.0, abs(price))


def _priority(r: RestingOrder) -> tuple[float, int]:
    """Price-time priority among our own orders on one side: better price, then earlier."""
    return (-r.order.side * r.price, r.order.id)


class PassiveOrders:
    """Engine consumer holding the venue's resting limit orders (see the module docstring).

    Our orders on one instrument share what the market offers: a print's size and a crossing
    touch's displayed size are handed out in price-time priority, and liquidity an order took
    on arrival (which the recorded book never removes) is not offered again at that price.
    """

    name = "venue.passive"

    def __init__(self, venue: Any, queue: QueueModel, ttl_ns: int):
        self.venue, self.queue, self.ttl_ns = venue, queue, int(ttl_ns)
        #: order id -> (order, resting state, expiry ts)
        self.orders: dict[int, tuple[Order, RestingOrder, int]] = {}
        #: instrument -> {price: contracts we took there} while orders rest on it
        self.taken: dict[int, dict[float, float]] = {}

    # -- called by the venue at an order's arrival --------------------------------------
    def add(self, order: Order, resting: RestingOrder, arrival_fills: Sequence[Fill],
            vctx: Any) -> None:
        iid = order.instrument_id
        expires = min(vctx.now + self.ttl_ns, self._ends(iid))
        self.orders[order.order_id] = (order, resting, expires)
        took = self.taken.setdefault(iid, {})
        for f in arrival_fills:
            took[f.price] = took.get(f.price, 0.0) + f.qty
        vctx.emit("resting", order_id=order.order_id, instrument_id=iid,
                  qty=resting.order.side * resting.remaining, price=resting.price,
                  queue_ahead=resting.queue_ahead, expires_ts=expires)
        vctx.set_wake(self.name, self._next(vctx.now))

    # -- consumer protocol ----------------------------------------------------------------
    def on_start(self, ctx: Any) -> WakeCondition | None:
        return self._next(ctx.now)

    def on_wake(self, ctx: Any) -> WakeCondition | None:
        vctx = ctx.venue_context()
        m = vctx.market
        by_iid: dict[int, list[int]] = {}
        for oid, (_, r, _) in self.orders.items():
            by_iid.setdefault(r.order.instrument_id, []).append(oid)
        for iid, oids in sorted(by_iid.items()):
            book = self.venue.book(iid, m)
            oids.sort(key=lambda o: _priority(self.orders[o][1]))
            print_left = float(m.last_size[iid]) if ctx.printed == iid else 0.0
            took = self.taken.setdefault(iid, {})
            live = ctx.now < self._ends(iid)  # an expired instrument fills nothing
            # (side, price) of our orders the print did not reach: it cannot reach the ones
            # behind them at that price either (a queue model may draw each order alone)
            unreached: set[tuple[int, float]] = set()
            for oid in oids:
                order, r, expires = self.orders[oid]
                fills: list[Fill] = []
                level = (r.order.side, r.price)
                if live and print_left > 0 and level not in unreached:
                    trade = TradePrint(ctx.now, float(m.last_price[iid]), print_left,
                                       int(m.last_side[iid]))
                    r, fill = self.queue.on_trade(r, trade, ctx.rng)
                    if fill is not None:
                        fills.append(fill)
                        print_left -= fill.qty
                    else:
                        unreached.add(level)
                if r is not None and live:
                    r = self.queue.on_quote(r, book)
                    if crossed_through(r, book):
                        touch, size = ((book.ask_price, book.ask_size) if r.order.side > 0
                                       else (book.bid_price, book.bid_size))
                        qty = min(r.remaining, max(size - took.get(touch, 0.0), 0.0))
                        if qty > 0:
                            took[touch] = took.get(touch, 0.0) + qty
                            fills.append(Fill(oid, iid, ctx.now, r.order.side, r.price, qty,
                                              "maker"))
                            r = None if qty >= r.remaining else replace(
                                r, remaining=r.remaining - qty)
                if fills:
                    self.venue.book_fills(order, fills, book.mid, vctx)
                if r is not None and ctx.now >= expires:
                    why = f"rested {self.ttl_ns / 1e9:g} s unfilled" if live else \
                        "its instrument expired"
                    vctx.emit("rejection", order_id=oid, instrument_id=iid,
                              qty=r.order.side * r.remaining, reason="expired",
                              detail=f"limit {r.price} {why}")
                    r = None
                if r is None:
                    del self.orders[oid]
                else:
                    self.orders[oid] = (order, r, expires)
            if not any(o.instrument_id == iid for o, _, _ in self.orders.values()):
                del self.taken[iid]
        return self._next(ctx.now)

    def on_finish(self, ctx: Any) -> None:
        """The data ended with orders still resting: each one's rest is journaled as a
        ``data_end`` rejection, so that the execution analytics count it unfilled (its
        opportunity cost at the mid then) rather than miss it."""
        vctx = ctx.venue_context()
        for oid in sorted(self.orders):
            _, r, _ = self.orders[oid]
            vctx.emit("rejection", order_id=oid, instrument_id=r.order.instrument_id,
                      qty=r.order.side * r.remaining, reason=REJECT_DATA_END,
                      detail=f"limit {r.price} still resting when the data ended")
        self.orders.clear()
        self.taken.clear()

    def _ends(self, iid: int) -> int:
        """When instrument ``iid`` stops trading: its expiry (never for a perpetual)."""
        e = self.venue.specs[iid].expiry_ns
        return NO_DEADLINE if e is None else int(e)

    def _next(self, now: int) -> WakeCondition | None:
        if not self.orders:
            return None
        ids = tuple(sorted({o.instrument_id for o, _, _ in self.orders.values()}))
        expiry = min(e for _, _, e in self.orders.values())
        return WakeCondition(deadline=expiry if expiry > now else now + 1, quote_count=1,
                             trade_count=1, instruments=ids)

    # -- snapshots --------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"orders": [(asdict(o), asdict(replace(r, order=None)), asdict(r.order), e)
                           for o, r, e in (self.orders[k] for k in sorted(self.orders))],
                "taken": {i: sorted(t.items()) for i, t in sorted(self.taken.items())}}

    def load_state_dict(self, d: dict) -> None:
        self.orders = {}
        for o, r, vo, e in d["orders"]:
            order = Order(**o)
            resting = RestingOrder(**{**r, "order": Order(**vo)})
            self.orders[order.order_id] = (order, resting, int(e))
        self.taken = {int(i): dict(t) for i, t in d["taken"].items()}


__all__ = ["PassiveOrders", "crossed_through"]
