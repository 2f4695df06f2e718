"""Orders in flight: what a consumer sent that the venue has not processed yet."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PendingOrders:
    """Orders a consumer sent that the venue has not processed yet.

    The engine fires an order's arrival before the first event with ``ts_recv`` above its
    ``arrival_ts`` and, at one instant, before consumer deadlines; a corridor or quote-count
    wake at ``now`` happens while arrivals at ``now`` are still due.  So at a ``deadline`` wake
    every order with ``arrival_ts <= now`` has been processed, at other wakes those with
    ``arrival_ts < now``.  Processed orders have moved ``ctx.position`` if they filled.
    """

    orders: list[tuple[int, int, float]] = field(default_factory=list)  # (arrival, iid, qty)

    def add(self, arrival_ts: int, iid: int, qty: float) -> None:
        self.orders.append((int(arrival_ts), int(iid), float(qty)))

    def prune(self, now: int, reason: str) -> None:
        done = (lambda a: a <= now) if reason == "deadline" else (lambda a: a < now)
        self.orders = [o for o in self.orders if not done(o[0])]

    def qty(self, iid: int) -> float:
        return sum(q for _, i, q in self.orders if i == iid)

    def by_instrument(self) -> dict[int, float]:
        out: dict[int, float] = {}
        for _, i, q in self.orders:
            out[i] = out.get(i, 0.0) + q
        return out
