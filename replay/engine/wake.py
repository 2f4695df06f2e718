"""Wake conditions and the kernel that folds a batch up to the first event that meets one.

Semantics (shared by the fast engine and the reference engine):

* **deadline T** (a timer): the wake happens *before* the first event with ``ts_recv > T``, so
  the consumer sees every event with ``ts_recv <= T`` and ``ctx.now == T``.  A deadline must be
  later than the wake that set it.  Order arrivals (``arrival_ts``) and time-based snapshots are
  timers of the same kind.  At one instant timers fire in the order (order arrivals by order id,
  consumer deadlines by consumer index, snapshot).
* **corridor [lo, hi]**: evaluated after each update of the designated underlying's quote; the
  wake happens right *after* the first update whose mid ``(bid + ask) / 2`` is ``< lo`` or
  ``> hi`` (a NaN mid, i.e. a one-sided book, never triggers).  ``ctx.now`` is that event's
  ``ts_recv``.
* **quote count n** (optionally restricted to instruments): wake right after the n-th quote
  update (option or underlying quotes) folded after the condition was set.
* **trade count n** (likewise): wake right after the n-th trade print (option or underlying
  trades), so a consumer can react to every trade of the instruments it watches without
  waking on the far more frequent quote updates.  A condition may count both; the first
  count to run out wakes it.

A condition can combine all three; the first one met wins and the consumer then states a fresh
condition.  Several consumers met by the same event wake in consumer order.

:class:`WakeCosts` counts each consumer's wakes and the time spent in them (a run's
``metrics.json``, ``consumers``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from replay.engine.feed import (
    S_OPTION_QUOTES,
    S_OPTION_TRADES,
    S_UNDERLYING_QUOTES,
    S_UNDERLYING_TRADES,
)
from replay.engine.state import F_ASK, F_BID, apply_event

NO_DEADLINE = np.iinfo(np.int64).max
UNSET = -1
#: kernel return codes
STOP_END, STOP_TIMER, STOP_CONDITION = 0, 1, 2


@dataclass(frozen=True)
class WakeCondition:
    """When a consumer wants to be called next (any of the set parts)."""

    deadline: int | None = None
    corridor: tuple[float, float] | None = None
    quote_count: int | None = None
    trade_count: int | None = None
    instruments: tuple[int, ...] | None = None  # restricts the quote or trade count

    def __post_init__(self) -> None:
        if self.deadline is None and self.corridor is None and self.count is None:
            raise ValueError("a WakeCondition needs a deadline, a corridor, a quote_count or a "
                             "trade_count (return None to stop waking)")
        if self.corridor is not None and not self.corridor[0] <= self.corridor[1]:
            raise ValueError(f"corridor {self.corridor} needs lo <= hi")
        if any(n is not None and n < 1 for n in (self.quote_count, self.trade_count)):
            raise ValueError("quote_count and trade_count must be >= 1")
        if self.instruments is not None and self.count is None:
            raise ValueError("instruments only restricts quote_count or trade_count")

    @property
    def count(self) -> int | None:
        """Whether any count is set (the quote count if both are)."""
        return self.quote_count if self.quote_count is not None else self.trade_count


class WakeTable:
    """Active conditions of all consumers as arrays the kernel scans."""

    def __init__(self, n_consumers: int, n_instruments: int):
        c, n = n_consumers, max(n_instruments, 1)
        self.deadline = np.full(c, NO_DEADLINE, np.int64)
        self.lo = np.full(c, -np.inf)
        self.hi = np.full(c, np.inf)
        # events left to count; UNSET (-1) when the condition has no such count, 0 once met
        self.count_left = np.full(c, UNSET, np.int64)  # quotes
        self.trade_left = np.full(c, UNSET, np.int64)  # trade prints
        self.count_all = np.zeros(c, np.bool_)
        self.count_mask = np.zeros((c, n), np.bool_)
        self.met = np.zeros(c, np.bool_)

    def set(self, c: int, cond: WakeCondition | None, now: int) -> None:
        self.clear(c)
        if cond is None:
            return
        if cond.deadline is not None:
            if cond.deadline <= now:
                raise ValueError(f"deadline {cond.deadline} is not after now={now}")
            self.deadline[c] = int(cond.deadline)
        if cond.corridor is not None:
            self.lo[c], self.hi[c] = float(cond.corridor[0]), float(cond.corridor[1])
        if cond.quote_count is not None:
            self.count_left[c] = int(cond.quote_count)
        if cond.trade_count is not None:
            self.trade_left[c] = int(cond.trade_count)
        if cond.count is not None:
            if cond.instruments is None:
                self.count_all[c] = True
            else:
                self.count_mask[c, list(cond.instruments)] = True

    def clear(self, c: int) -> None:
        self.deadline[c] = NO_DEADLINE
        self.lo[c], self.hi[c] = -np.inf, np.inf
        self.count_left[c] = self.trade_left[c] = UNSET
        self.count_all[c] = False
        self.count_mask[c, :] = False

    def counted(self, c: int) -> str | None:
        """Which count of consumer ``c`` ran out (``quote_count``/``trade_count``), if any."""
        if self.count_left[c] == 0:
            return "quote_count"
        return "trade_count" if self.trade_left[c] == 0 else None

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k).copy() for k in
                ("deadline", "lo", "hi", "count_left", "trade_left", "count_all",
                 "count_mask")}

    def load(self, d: dict[str, np.ndarray]) -> None:
        for k, a in d.items():
            getattr(self, k)[...] = a


@njit(cache=True, nogil=True)
def fold_until_wake(ts, tx, st, sq, ii, v, i0, i1, t_stop, fstate, istate, clock, und,
                    lo, hi, count_left, trade_left, count_all, count_mask, met):  # pragma: no cover
    """Fold events from ``i0`` until one of: ``i1`` reached (STOP_END); the next event has
    ``ts_recv > t_stop`` (STOP_TIMER, that event is not folded); a folded event met a corridor
    or quote/trade count (STOP_CONDITION, ``met`` flags who).  Returns (next index, code).

    ``und`` is the designated underlying, or -1 when no corridor is active; quote counts are
    scanned only when one is active (both are hoisted out of the event loop by the caller's
    arguments, which keeps the common no-condition path as fast as a bare fold)."""
    n_c = count_left.shape[0]
    counting = False
    for c in range(n_c):
        if count_left[c] > 0 or trade_left[c] > 0:
            counting = True
    for i in range(i0, i1):
        t = ts[i]
        if t > t_stop:
            return i, STOP_TIMER
        s = st[i]
        iid = ii[i]
        apply_event(t, tx[i], s, sq[i], iid, v[i, 0], v[i, 1], v[i, 2], v[i, 3], v[i, 4],
                    v[i, 5], fstate, istate, clock)
        hit = False
        if iid == und and s == S_UNDERLYING_QUOTES:
            mid = 0.5 * (fstate[iid, F_BID] + fstate[iid, F_ASK])
            for c in range(lo.shape[0]):
                if mid < lo[c] or mid > hi[c]:
                    met[c] = True
                    hit = True
        is_quote = s == S_UNDERLYING_QUOTES or s == S_OPTION_QUOTES
        if counting and (is_quote or s == S_UNDERLYING_TRADES or s == S_OPTION_TRADES):
            left = count_left if is_quote else trade_left
            for c in range(n_c):
                if left[c] > 0 and (count_all[c] or count_mask[c, iid]):
                    left[c] -= 1
                    if left[c] == 0:
                        met[c] = True
                        hit = True
        if hit:
            return i + 1, STOP_CONDITION
    return i1, STOP_END


class WakeCosts:
    """What each consumer's wakes cost in this process: how many there were and the wall
    time spent in them (a recorded consumer's: in its catch-ups, which journal its recorded
    wakes).  Timings differ from run to run, so they stay out of the journal and of
    snapshots; a resumed run counts from its resume."""

    def __init__(self, names: list[str]):
        self.names = names
        self.wakes, self.ns = [0] * len(names), [0] * len(names)

    def add(self, c: int, wakes: int, ns: int) -> None:
        self.wakes[c] += wakes
        self.ns[c] += ns

    def summary(self) -> dict[str, dict[str, float | int | None]]:
        """Per consumer name: ``wakes``, ``seconds`` and ``us_per_wake`` (None without a
        wake)."""
        return {name: {"wakes": w, "seconds": ns / 1e9, "us_per_wake": ns / 1e3 / w if w else None}
                for name, w, ns in zip(self.names, self.wakes, self.ns)}
