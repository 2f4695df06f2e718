"""Fill simulation: marketable orders against the book at arrival, passive orders in a queue.

Marketable orders
-----------------
An order that reaches the venue at ``t + latency`` trades against the book *as it stood at
arrival* (the engine hands over that :class:`BookView`).  It fills at the touch for up to the
displayed size.  Beyond it the order walks deeper levels:

* the real depth when the data has it (``BookView.bids`` / ``asks``), else
* a configured :class:`DepthLadder`: level ``i >= 1`` sits ``i`` steps behind the touch, a step
  being ``max(spacing_ticks * tick_size, spacing_bps * touch / 1e4)``, and shows
  ``size_multipliers[i-1] * touch size`` contracts.

Price bands work like Deribit's: an order may not trade further than ``PriceBand.width(ref)``
from the reference price (mark, else mid).  A market order therefore behaves as a limit order
at the band edge; a limit order priced beyond the band on its aggressive side (a buy above
it, a sell below it) is rejected outright, while one beyond it on the passive side rests, as
Deribit only refuses buys above its maximum price and sells below its minimum.  What a market
order cannot fill (depth exhausted or band reached) is cancelled and reported as a
:class:`~replay.model.orders.Rejection` for the remainder; a limit order's remainder rests.

Passive orders
--------------
A resting limit order only fills from later trade prints (``trade.ts > arrival_ts``), always at
its own limit price, as maker.  Two queue models:

* :class:`ConservativeQueue` fills only when a trade prints *through* the limit (strictly below a
  resting buy, strictly above a resting sell), for at most the printed size.  A print *at* the
  level never fills it, because the queue in front may have absorbed it.
* :class:`ProbabilisticQueue` fills on a trade-through as above, and on a print of size ``v``
  *at* the level (aggressor on the other side, or unknown) with probability
  ``p = min(1, v / (Q + q))``, ``Q`` the estimated contracts ahead of us and ``q`` our
  remaining size; a print that does not reach us is assumed to have eaten queue ahead,
  ``Q <- max(0, Q - v)``.  This treats our place in the FIFO queue as uncertain rather than
  exactly known (exact FIFO would need every cancel at the level, which quote data lacks).
  ``Q`` starts at the displayed size at our price on arrival (0 when we improve the touch) and
  shrinks with the displayed size (:meth:`ProbabilisticQueue.on_quote`), since cancels ahead
  of us shorten the queue.  The draw uses a caller-owned seeded ``numpy.random.Generator``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np

from replay.model.orders import (
    REJECT_INVALID,
    REJECT_NO_LIQUIDITY,
    REJECT_PRICE_BAND,
    Fill,
    Order,
    Rejection,
)

Levels = tuple[tuple[float, float], ...]  # (price, size), best first

_EPS = 1e-12


def _ok(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


@dataclass(frozen=True)
class BookView:
    """Top of book (and optional depth) of one instrument at one instant. NaN means absent."""

    ts: int
    bid_price: float = math.nan
    ask_price: float = math.nan
    bid_size: float = math.nan
    ask_size: float = math.nan
    tick_size: float = 0.0
    mark_price: float = math.nan
    bids: Levels | None = None
    asks: Levels | None = None

    @property
    def mid(self) -> float:
        if _ok(self.bid_price) and _ok(self.ask_price):
            return 0.5 * (self.bid_price + self.ask_price)
        return math.nan

    def reference(self) -> float:
        """Price-band reference: the mark, else the mid, else NaN (no band can apply)."""
        return self.mark_price if _ok(self.mark_price) else self.mid


@dataclass(frozen=True)
class DepthLadder:
    """Synthetic depth behind the touch where the data has none."""

    spacing_ticks: float = 1.0
    spacing_bps: float = 0.0
    size_multipliers: tuple[float, ...] = (1.0, 1.0, 2.0, 2.0, 4.0)
    default_touch_size: float = 1.0  # contracts assumed at the touch when its size is unknown

    def step(self, touch: float, tick_size: float) -> float:
        return max(self.spacing_ticks * tick_size, self.spacing_bps * abs(touch) * 1e-4)


@dataclass(frozen=True)
class PriceBand:
    """Allowed distance from the reference: ``max(fraction * ref, absolute)``; inf disables."""

    fraction: float = math.inf
    absolute: float = 0.0

    def width(self, ref: float) -> float:
        if not _ok(ref):
            return math.inf
        return max(self.fraction * abs(ref), self.absolute)


@dataclass(frozen=True)
class FillConfig:
    ladder: DepthLadder = DepthLadder()
    band: PriceBand = PriceBand()
    use_real_depth: bool = True


@dataclass(frozen=True)
class MatchResult:
    """Outcome of an order's arrival: its fills, what is left, and whether that rests."""

    fills: tuple[Fill, ...]
    remaining_qty: float
    rejection: Rejection | None = None
    rests: bool = False

    @property
    def filled_qty(self) -> float:
        return sum(f.qty for f in self.fills)

    @property
    def avg_price(self) -> float:
        q = self.filled_qty
        return sum(f.price * f.qty for f in self.fills) / q if q > 0 else math.nan


def opposite_levels(book: BookView, side: int, cfg: FillConfig) -> Levels:
    """Liquidity an order of ``side`` can take, best first: real depth or touch plus ladder."""
    real = book.asks if side > 0 else book.bids
    if cfg.use_real_depth and real:
        return tuple((float(p), float(s)) for p, s in real if _ok(p) and p > 0 and s > 0)
    touch = book.ask_price if side > 0 else book.bid_price
    size = book.ask_size if side > 0 else book.bid_size
    if not (_ok(touch) and touch > 0):
        return ()
    if not (_ok(size) and size > 0):
        size = cfg.ladder.default_touch_size
    step = cfg.ladder.step(touch, book.tick_size)
    levels = [(touch, size)]
    for i, mult in enumerate(cfg.ladder.size_multipliers, start=1):
        price = touch + side * i * step
        if price <= 0:  # a sell ladder cannot go below zero
            break
        levels.append((price, mult * size))
    return tuple(levels)


def _reject(order: Order, ts: int, reason: str, detail: str, remaining: float,
            fills: tuple[Fill, ...] = ()) -> MatchResult:
    return MatchResult(fills, remaining, Rejection(order.id, ts, reason, detail), False)


def match_on_arrival(order: Order, book: BookView, cfg: FillConfig = FillConfig(),
                     ts: int | None = None) -> MatchResult:
    """Execute ``order`` against ``book`` at its arrival time ``ts`` (default ``book.ts``)."""
    ts = book.ts if ts is None else ts
    if not (_ok(order.qty) and order.qty > 0):
        return _reject(order, ts, REJECT_INVALID, f"qty={order.qty!r}", 0.0)
    side = order.side
    ref = book.reference()
    width = cfg.band.width(ref)
    band_edge = ref + side * width if math.isfinite(width) else side * math.inf
    if order.kind == "limit":
        if math.isfinite(width) and side * (order.limit_price - ref) > width:
            return _reject(order, ts, REJECT_PRICE_BAND,
                           f"limit {order.limit_price} beyond {ref} {'+' if side > 0 else '-'} "
                           f"{width}", order.qty)
        cap = order.limit_price
    else:
        cap = band_edge

    levels = opposite_levels(book, side, cfg)
    if not levels:
        if order.kind == "limit":
            return MatchResult((), order.qty, None, True)
        return _reject(order, ts, REJECT_NO_LIQUIDITY, "empty book side", order.qty)

    fills: list[Fill] = []
    remaining = order.qty
    stopped_by_cap = False
    for level, (price, size) in enumerate(levels):
        if side * (price - cap) > _EPS * max(1.0, abs(cap)):
            stopped_by_cap = True
            break
        take = min(remaining, size)
        fills.append(Fill(order.id, order.instrument_id, ts, side, price, take, "taker", 0.0, level))
        remaining -= take
        if remaining <= _EPS * order.qty:
            remaining = 0.0
            break
    out = tuple(fills)
    if remaining == 0.0:
        return MatchResult(out, 0.0)
    if order.kind == "limit":
        return MatchResult(out, remaining, None, True)
    if stopped_by_cap:
        return _reject(order, ts, REJECT_PRICE_BAND,
                       f"next level beyond band edge {band_edge}", remaining, out)
    return _reject(order, ts, REJECT_NO_LIQUIDITY,
                   f"depth exhausted after {len(levels)} levels", remaining, out)


# ----------------------------------------------------------------------------- passive orders


@dataclass(frozen=True)
class TradePrint:
    """A trade on the tape, as the queue models see it (``side`` is the aggressor's)."""

    ts: int
    price: float
    size: float
    side: int = 0


@dataclass(frozen=True)
class RestingOrder:
    order: Order
    price: float
    remaining: float
    arrival_ts: int
    queue_ahead: float


def _displayed_at(book: BookView, side: int, price: float, ladder: DepthLadder) -> float:
    """Contracts shown at ``price`` on our own side of the book (0 if we improve the touch)."""
    real = book.bids if side > 0 else book.asks
    if real:
        for p, s in real:
            if abs(p - price) <= _EPS * max(1.0, abs(price)):
                return float(s)
    touch = book.bid_price if side > 0 else book.ask_price
    size = book.bid_size if side > 0 else book.ask_size
    if not _ok(touch) or side * (price - touch) > _EPS * max(1.0, abs(price)):
        return 0.0  # empty side or we improve it: nobody is ahead of us
    # at or behind the touch: the touch size is the estimate (unknown levels assumed similar)
    return float(size) if _ok(size) and size > 0 else ladder.default_touch_size


def rest(order: Order, result: MatchResult, book: BookView, arrival_ts: int,
         ladder: DepthLadder = DepthLadder()) -> RestingOrder:
    """The resting remainder of a limit order after :func:`match_on_arrival` said it rests."""
    if order.kind != "limit" or not result.rests:
        raise ValueError("only a limit order whose match result rests can be queued")
    return RestingOrder(order, float(order.limit_price), result.remaining_qty, arrival_ts,
                        _displayed_at(book, order.side, float(order.limit_price), ladder))


def _through(r: RestingOrder, trade: TradePrint) -> bool:
    return r.order.side * (r.price - trade.price) > _EPS * max(1.0, abs(r.price))


def _at_level(r: RestingOrder, trade: TradePrint) -> bool:
    return (abs(trade.price - r.price) <= _EPS * max(1.0, abs(r.price))
            and trade.side != r.order.side)


def _fill(r: RestingOrder, trade: TradePrint, qty: float) -> tuple[RestingOrder | None, Fill]:
    fill = Fill(r.order.id, r.order.instrument_id, trade.ts, r.order.side, r.price, qty, "maker")
    left = r.remaining - qty
    if left <= _EPS * r.order.qty:
        return None, fill
    return replace(r, remaining=left, queue_ahead=0.0), fill


class QueueModel(Protocol):
    name: str

    def on_trade(self, resting: RestingOrder, trade: TradePrint, rng: np.random.Generator | None
                 ) -> tuple[RestingOrder | None, Fill | None]:
        """New resting state (None once fully filled) and the fill this print caused, if any."""
        ...

    def on_quote(self, resting: RestingOrder, book: BookView) -> RestingOrder:
        """Update the queue estimate from a new top of book."""
        ...


@dataclass(frozen=True)
class ConservativeQueue:
    """Fills only on a later trade printing strictly through the limit price."""

    name: str = "conservative"

    def on_trade(self, resting: RestingOrder, trade: TradePrint, rng: np.random.Generator | None
                 ) -> tuple[RestingOrder | None, Fill | None]:
        if trade.ts <= resting.arrival_ts or not _through(resting, trade):
            return resting, None
        return _fill(resting, trade, min(resting.remaining, trade.size))

    def on_quote(self, resting: RestingOrder, book: BookView) -> RestingOrder:
        return resting


@dataclass(frozen=True)
class ProbabilisticQueue:
    """Trade-through fills plus level fills with probability ``min(1, v / (Q + q))`` for a
    print of ``v`` at our level with ``Q`` estimated ahead of our ``q``; with nothing ahead
    (``Q = 0``: we improved the touch, or a fill put us at the front) every such print
    reaches us, and fills ``min(q, v)`` for certain."""

    name: str = "probabilistic"
    ladder: DepthLadder = DepthLadder()

    def on_trade(self, resting: RestingOrder, trade: TradePrint, rng: np.random.Generator | None
                 ) -> tuple[RestingOrder | None, Fill | None]:
        if trade.ts <= resting.arrival_ts:
            return resting, None
        if _through(resting, trade):
            return _fill(resting, trade, min(resting.remaining, trade.size))
        if not _at_level(resting, trade) or trade.size <= 0:
            return resting, None
        p = min(1.0, trade.size / (resting.queue_ahead + resting.remaining))
        if p < 1.0 and resting.queue_ahead > 0:
            if rng is None:
                raise ValueError("the probabilistic queue needs a seeded numpy Generator")
            if rng.random() >= p:
                return replace(resting, queue_ahead=max(0.0, resting.queue_ahead - trade.size)), None
        return _fill(resting, trade, min(resting.remaining, trade.size))

    def on_quote(self, resting: RestingOrder, book: BookView) -> RestingOrder:
        side, price = resting.order.side, resting.price
        touch = book.bid_price if side > 0 else book.ask_price
        behind = _ok(touch) and side * (touch - price) > _EPS * max(1.0, abs(price))
        has_level = any(abs(p - price) <= _EPS * max(1.0, abs(price))
                        for p, _ in ((book.bids if side > 0 else book.asks) or ()))
        if behind and not has_level:
            return resting  # no information about our level when it is hidden behind the touch
        # the recorded book never contains our own order, so what it shows is all ahead of us;
        # only a shrinking level is informative (cancels ahead), new arrivals queue behind us
        ahead = min(resting.queue_ahead, _displayed_at(book, side, price, self.ladder))
        return resting if ahead == resting.queue_ahead else replace(resting, queue_ahead=ahead)


def make_queue_model(name: str, ladder: DepthLadder = DepthLadder()
                     ) -> ConservativeQueue | ProbabilisticQueue:
    """Queue model by config name: ``conservative`` or ``probabilistic`` (which estimates the
    queue ahead with ``ladder``'s default touch size where the data has no sizes: pass the
    venue's, the same that :func:`rest` used)."""
    models = {"conservative": ConservativeQueue, "probabilistic": ProbabilisticQueue}
    if name not in models:
        raise ValueError(f"unknown queue model {name!r}; choose from {sorted(models)}")
    return ProbabilisticQueue(ladder=ladder) if name == "probabilistic" else ConservativeQueue()
