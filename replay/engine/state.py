"""Market state as arrays indexed by instrument_id and the numba fold.

Fold semantics (one event; the reference engine re-implements exactly this in Python):

* every event: ``now = ts_recv``, ``update_ts[iid] = ts_recv``, event counter + 1, and the
  per-stream last ``seq`` (the feed cursor) advance;
* quotes (underlying or option): bid, ask, bid_size, ask_size are replaced as a whole, NaN where
  the venue showed no side (a one-sided book is a fact, not a missing value); ``quote_ts`` set;
* trades: last price, size, side and ``trade_ts``;
* funding: rate, interval, mark price and ``funding_ts`` of that perpetual, and its funding
  index: the rate in force until this update accrued over the time since the previous one
  (:func:`accrued_rate`), so that funding between any two instants is exact however many
  rate updates fall between them (:meth:`MarketView.funding_index`);
* instrument definitions: ``defined_ts``.

Stale-quote age of an instrument is ``now - quote_ts`` (see :meth:`MarketView.quote_age`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa
from numba import njit

from replay.engine.feed import (
    S_FUNDING,
    S_INSTRUMENTS,
    S_OPTION_QUOTES,
    S_OPTION_TRADES,
    S_UNDERLYING_QUOTES,
    S_UNDERLYING_TRADES,
    STREAMS,
)

# float state columns
F_BID, F_ASK, F_BID_SIZE, F_ASK_SIZE = 0, 1, 2, 3
F_LAST_PX, F_LAST_SIZE, F_LAST_SIDE = 4, 5, 6
F_FUNDING_RATE, F_FUNDING_INTERVAL, F_MARK = 7, 8, 9
F_VENUE_FWD, F_MARK_IV = 10, 11
F_FUNDING_INDEX = 12  # funding index at funding_ts (0 until the perpetual's first rate)
NF = 13
# int state columns
I_QUOTE_TS, I_TRADE_TS, I_UPDATE_TS, I_FUNDING_TS, I_DEFINED_TS = 0, 1, 2, 3, 4
NI = 5
#: "never" for int timestamps
NEVER = np.iinfo(np.int64).min
#: ``Instruments.listed_ns`` of an instrument the run's data selection leaves out
UNLISTED = np.iinfo(np.int64).max
# clock slots: now, event count, last event's stream, seq and instrument, then last seq per stream
C_NOW, C_EVENTS, C_LAST_STREAM, C_LAST_SEQ, C_LAST_IID = 0, 1, 2, 3, 4
C_STREAM_SEQ = 5
NC = C_STREAM_SEQ + len(STREAMS)


@njit(cache=True, nogil=True)
def accrued_rate(rate: float, interval_s: float, dt_ns: int) -> float:
    """A perpetual's funding index increment over ``dt_ns`` at a constant ``rate`` quoted
    per funding interval of ``interval_s`` seconds: ``rate * dt / interval`` (``dt`` in
    seconds; 0 when the rate is NaN or the interval not positive: nothing accrues at an
    unknown rate).  A position of signed settlement-currency notional ``N`` receives
    ``-N`` times the index's increase (:func:`replay.venue.funding.index_payment`)::

        I(t) = sum over the rate updates j before t of r_j * (min(t_{j+1}, t) - t_j) / P_j

    where update ``j`` at ``t_j`` set the rate ``r_j`` per interval ``P_j``.  The reference
    engine writes the same expression out in Python (:mod:`replay.engine.reference`)."""
    if not (rate == rate and interval_s > 0.0):
        return 0.0
    return rate * (dt_ns / 1e9) / interval_s


@njit(cache=True, nogil=True, inline="always")
def apply_event(t, tx, s, q, iid, v0, v1, v2, v3, v4, v5, fstate, istate,
                clock):  # pragma: no cover
    """Fold one event into the state arrays (see the module docstring)."""
    clock[C_NOW] = t
    clock[C_EVENTS] += 1
    clock[C_LAST_STREAM] = s
    clock[C_LAST_SEQ] = q
    clock[C_LAST_IID] = iid
    clock[C_STREAM_SEQ + s] = q
    istate[iid, I_UPDATE_TS] = t
    if s == S_OPTION_QUOTES or s == S_UNDERLYING_QUOTES:
        fstate[iid, F_BID] = v0
        fstate[iid, F_ASK] = v1
        fstate[iid, F_BID_SIZE] = v2
        fstate[iid, F_ASK_SIZE] = v3
        istate[iid, I_QUOTE_TS] = t
        if s == S_OPTION_QUOTES:
            fstate[iid, F_VENUE_FWD] = v4
            fstate[iid, F_MARK_IV] = v5
    elif s == S_OPTION_TRADES or s == S_UNDERLYING_TRADES:
        fstate[iid, F_LAST_PX] = v0
        fstate[iid, F_LAST_SIZE] = v1
        fstate[iid, F_LAST_SIDE] = v2
        istate[iid, I_TRADE_TS] = t
    elif s == S_FUNDING:
        if istate[iid, I_FUNDING_TS] != NEVER:  # the old rate has accrued until now
            fstate[iid, F_FUNDING_INDEX] += accrued_rate(
                fstate[iid, F_FUNDING_RATE], fstate[iid, F_FUNDING_INTERVAL],
                t - istate[iid, I_FUNDING_TS])
        fstate[iid, F_FUNDING_RATE] = v0
        fstate[iid, F_FUNDING_INTERVAL] = v1
        fstate[iid, F_MARK] = v2
        istate[iid, I_FUNDING_TS] = t
    elif s == S_INSTRUMENTS:
        istate[iid, I_DEFINED_TS] = t


@njit(cache=True, nogil=True)
def fold_batch(ts, tx, st, sq, ii, v, i0, i1, fstate, istate, clock):  # pragma: no cover
    """Fold events ``i0..i1-1`` with no wake checks (a pure market replay)."""
    for i in range(i0, i1):
        apply_event(ts[i], tx[i], st[i], sq[i], ii[i], v[i, 0], v[i, 1], v[i, 2], v[i, 3],
                    v[i, 4], v[i, 5], fstate, istate, clock)


@dataclass(frozen=True)
class Instruments:
    """Static instrument definitions as numpy columns indexed by instrument_id."""

    name: np.ndarray  # object
    kind: np.ndarray  # object
    expiry_ns: np.ndarray  # int64, NEVER when none
    strike: np.ndarray  # float64, NaN unless option
    is_call: np.ndarray  # int8: 1 call, 0 put, -1 not an option
    settlement: np.ndarray  # object
    contract_size: np.ndarray  # float64
    #: int64: when each definition was received (``instruments.ts_recv``), the instant it is
    #: listed for a strategy that chooses instruments; None: every one listed from the start
    listed_ns: np.ndarray | None = None

    @staticmethod
    def from_arrow(t: pa.Table) -> Instruments:
        n = (max(t.column("instrument_id").to_pylist()) + 1) if t.num_rows else 0
        ids = np.asarray(t.column("instrument_id").to_numpy(), np.int64)

        def put(col: str, dtype, fill):
            out = np.full(n, fill, dtype=dtype)
            vals = t.column(col).to_pylist()
            for i, x in zip(ids, vals):
                out[i] = fill if x is None else x
            return out

        return Instruments(put("name", object, ""), put("kind", object, ""),
                           put("expiry_ns", np.int64, NEVER), put("strike", np.float64, np.nan),
                           put("is_call", np.int8, -1), put("settlement", object, ""),
                           put("contract_size", np.float64, np.nan),
                           put("ts_recv", np.int64, NEVER) if "ts_recv" in t.column_names
                           else None)

    def __len__(self) -> int:
        return len(self.name)

    def ids_of_kind(self, kind: str) -> np.ndarray:
        return np.flatnonzero(self.kind == kind)

    def opened_at(self, start: int | None) -> Instruments:
        """These instruments for a replay from ``start``: those defined by then are its
        opening universe, listed from before its first event (``on_start`` sees them)."""
        if self.listed_ns is None or start is None:
            return self
        return replace(self, listed_ns=np.where(self.listed_ns <= start, NEVER, self.listed_ns))

    def within(self, instrument_ids: Sequence[int] | None, expiries: Sequence[int] | None
               ) -> Instruments:
        """These instruments for a replay of a data selection (``data.instruments``,
        ``data.expiries``): an option it leaves out is never listed (:data:`UNLISTED`), so a
        strategy that chooses among the listed options never picks one whose quotes the run
        does not replay."""
        if instrument_ids is None and expiries is None:
            return self
        out = np.zeros(len(self), dtype=bool)
        if instrument_ids is not None:
            out |= ~np.isin(np.arange(len(self)), np.asarray(instrument_ids, dtype=np.int64))
        if expiries is not None:
            out |= ~np.isin(self.expiry_ns, np.asarray(expiries, dtype=np.int64))
        out &= self.kind == "option"
        listed = np.full(len(self), NEVER, np.int64) if self.listed_ns is None else self.listed_ns
        return replace(self, listed_ns=np.where(out, UNLISTED, listed))

    def listed_by(self, ids: np.ndarray, now: int) -> np.ndarray:
        """Of ``ids``, those whose definition was received by ``now`` (:attr:`listed_ns`)."""
        return ids if self.listed_ns is None else ids[self.listed_ns[ids] <= now]

    def default_underlying(self, after: int | None = None) -> int:
        """The hedge/underlying instrument by default: the perpetual if there is one, else the
        index, else spot, else the nearest future (of those expiring after ``after``, when
        any does: a replay's start); -1 if none.  Of the instruments defined by ``after``
        when any of these kinds is (a perpetual listed later must not decide, from the first
        event on, how the coin is priced); else of all, each kind's listed first."""
        listed = self.listed_ns if self.listed_ns is not None and after is not None else None
        known = listed is not None and bool(np.isin(
            self.kind[listed <= after], ("perp", "index", "spot", "future")).any())
        for kind in ("perp", "index", "spot", "future"):
            ids = self.ids_of_kind(kind)
            if listed is not None:
                ids = ids[listed[ids] <= after] if known else \
                    ids[np.argsort(listed[ids], kind="stable")]
            if len(ids):
                if kind == "future":
                    live = ids[self.expiry_ns[ids] > after] if after is not None else ids
                    ids = live if len(live) else ids
                    return int(ids[np.argmin(self.expiry_ns[ids])])
                return int(ids[0])
        return -1


@dataclass
class MarketState:
    """Mutable state arrays; the engine owns them, consumers see read-only views."""

    fstate: np.ndarray
    istate: np.ndarray
    clock: np.ndarray
    underlying_id: int

    @staticmethod
    def empty(n_instruments: int, underlying_id: int) -> MarketState:
        f = np.full((max(n_instruments, 1), NF), np.nan)
        f[:, F_FUNDING_INDEX] = 0.0
        i = np.full((max(n_instruments, 1), NI), NEVER, np.int64)
        c = np.zeros(NC, np.int64)
        c[C_NOW] = NEVER
        c[C_LAST_STREAM] = -1
        c[C_LAST_SEQ] = -1
        c[C_LAST_IID] = -1
        c[C_STREAM_SEQ:] = -1
        return MarketState(f, i, c, int(underlying_id))

    @property
    def now(self) -> int:
        return int(self.clock[C_NOW])

    @property
    def n_events(self) -> int:
        return int(self.clock[C_EVENTS])

    def cause(self) -> tuple[int, int]:
        """(stream, seq) of the last folded event, (-1, -1) before any."""
        return int(self.clock[C_LAST_STREAM]), int(self.clock[C_LAST_SEQ])

    @property
    def last_instrument(self) -> int:
        """Instrument id of the last folded event (-1 before any): at a ``trade_count`` wake,
        the instrument that just printed."""
        return int(self.clock[C_LAST_IID])

    def stream_seqs(self) -> tuple[tuple[str, int], ...]:
        return tuple((s, int(self.clock[C_STREAM_SEQ + k])) for k, s in enumerate(STREAMS))

    def views(self) -> dict[str, np.ndarray]:
        """Read-only live views of the columns a :class:`MarketView` shows, made once per
        state arrays (a view per column per wake cost more than most wakes do)."""
        held = self.__dict__.get("_views")
        if held is None or held[0] is not self.fstate or held[1] is not self.istate:
            f, i = self.fstate, self.istate
            views = {
                "bid": _ro(f[:, F_BID]), "ask": _ro(f[:, F_ASK]),
                "bid_size": _ro(f[:, F_BID_SIZE]), "ask_size": _ro(f[:, F_ASK_SIZE]),
                "last_price": _ro(f[:, F_LAST_PX]), "last_size": _ro(f[:, F_LAST_SIZE]),
                "last_side": _ro(f[:, F_LAST_SIDE]), "funding_rate": _ro(f[:, F_FUNDING_RATE]),
                "funding_interval_s": _ro(f[:, F_FUNDING_INTERVAL]),
                "mark_price": _ro(f[:, F_MARK]),
                "funding_index_at_ts": _ro(f[:, F_FUNDING_INDEX]),
                # options: the venue's forward of the expiry and its mark IV (a fraction)
                "venue_forward": _ro(f[:, F_VENUE_FWD]), "mark_iv": _ro(f[:, F_MARK_IV]),
                "quote_ts": _ro(i[:, I_QUOTE_TS]), "trade_ts": _ro(i[:, I_TRADE_TS]),
                "update_ts": _ro(i[:, I_UPDATE_TS]), "funding_ts": _ro(i[:, I_FUNDING_TS])}
            held = self.__dict__["_views"] = (f, i, views)
        return held[2]

    def copy(self) -> MarketState:
        return MarketState(self.fstate.copy(), self.istate.copy(), self.clock.copy(),
                           self.underlying_id)


def _ro(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


class MarketView:
    """Read-only view of the market state as of the current wake (``now``).  The arrays are
    live views: read them during the callback, copy what must outlive it.

    Per instrument id: ``bid``, ``ask``, ``bid_size``, ``ask_size``, ``last_price``,
    ``last_size``, ``last_side``, ``funding_rate``, ``funding_interval_s``, ``mark_price``,
    ``funding_index_at_ts`` (:meth:`funding_index` at ``funding_ts``), ``venue_forward`` and
    ``mark_iv`` (options: the venue's forward of the expiry and its mark IV, a fraction), and
    the timestamps ``quote_ts``, ``trade_ts``, ``update_ts`` and ``funding_ts``
    (:meth:`MarketState.views`)."""

    def __init__(self, state: MarketState, instruments: Instruments, now: int):
        self.now = int(now)
        self.instruments = instruments
        self.underlying_id = state.underlying_id
        self.__dict__.update(state.views())
        self.n_events = state.n_events

    def mid(self, iid: int | np.ndarray) -> float | np.ndarray:
        return 0.5 * (self.bid[iid] + self.ask[iid])

    def underlying_mid(self) -> float:
        u = self.underlying_id
        return float("nan") if u < 0 else float(self.mid(u))

    def expiry_forward(self, expiry_ns: int) -> float:
        """The venue's forward of an expiry: the median over its options' latest quotes that
        carry a positive one."""
        inst = self.instruments
        ids = np.flatnonzero((inst.expiry_ns == expiry_ns) & (inst.kind == "option"))
        f = self.venue_forward[ids]
        f = f[f > 0]  # NaN: False
        return float(np.median(f)) if f.size else float("nan")

    def reference_price(self, iid: int) -> float:
        """A price for ``iid`` when its own book may be empty: the mid, else the funding mark
        (perpetuals), else for a future the venue forward of its expiry (sources such as the
        Deribit summaries carry forwards but no futures tape)."""
        mid = float(self.mid(iid))
        if np.isfinite(mid):
            return mid
        mark = float(self.mark_price[iid])
        if np.isfinite(mark):
            return mark
        if self.instruments.kind[iid] == "future":
            return self.expiry_forward(int(self.instruments.expiry_ns[iid]))
        return float("nan")

    def spot(self) -> float:
        """The coin's USD price ``S`` now, one number for every conversion of coin into USD
        and every delta: the designated underlying's mid, else its reference price, while it
        is live (a future taken as the underlying has none once expired); else the venue
        forward of the nearest live expiry that has one (:meth:`expiry_forward`; a store of
        option summaries quotes no underlying, and a data selection may leave out the nearest
        expiries: their options are never quoted).  NaN when none is known yet."""
        u, inst = self.underlying_id, self.instruments
        if u >= 0 and (inst.expiry_ns[u] == NEVER or inst.expiry_ns[u] > self.now):
            s = self.reference_price(u)
            if s > 0:  # False for NaN
                return s
        has = (inst.kind == "option") & (inst.expiry_ns > self.now) & (self.venue_forward > 0)
        return self.expiry_forward(int(inst.expiry_ns[has].min())) if has.any() \
            else float("nan")

    def funding_index(self, iid: int) -> float:
        """Perpetual ``iid``'s funding index now (:func:`accrued_rate`): the index at its
        last rate update plus the current rate accrued since.  The funding a position of
        constant notional ``N`` receives between two instants is ``-N`` times the index's
        change, whatever rate updates came between them; 0 before the first rate."""
        since = int(self.funding_ts[iid])
        if since == NEVER:
            return 0.0
        return float(self.funding_index_at_ts[iid]) + accrued_rate(
            float(self.funding_rate[iid]), float(self.funding_interval_s[iid]),
            self.now - since)

    def quote_age(self, iid: int | np.ndarray) -> int | np.ndarray:
        """Stale-quote age in ns (now - last quote update); huge when never quoted."""
        qt = np.asarray(self.quote_ts[iid])
        age = self.now - np.where(qt == NEVER, self.now, qt)
        out = np.where(qt == NEVER, np.iinfo(np.int64).max, age)
        return int(out) if out.ndim == 0 else out
