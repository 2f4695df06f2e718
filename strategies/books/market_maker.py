"""``book=market_maker``: takes the other side of printed option trades (see
:mod:`strategies.books`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from calibration.pricing.black import delta as black_delta
from replay.engine.state import NEVER
from replay.engine.wake import WakeCondition
from replay.errors import ConfigError
from replay.model.config import check_choice
from replay.units import NS
from strategies.base import require_positive
from strategies.board import SurfaceBoard
from strategies.greeks import DELTA_SOURCES, NS_PER_YEAR, expiry_forward, leg_vols
from strategies.hedge import spot_of
from strategies.listed import listed_options, next_listing


class MarketMakerBook:
    """Takes the other side of the historical option trades at the traded price.

    For each option trade seen (aggressor ``side`` +1: we sold, -1: we bought; trades of
    unknown side are skipped, there is no other side to take) the book sends a limit order
    for ``-side * min(size, size_cap)`` contracts at the traded price, ``latency_ns`` later,
    when the option passes the filter: ``rights`` (``both``/``call``/``put``), days to expiry
    in ``[min_days, max_days]``, ``|delta|`` in ``[min_abs_delta, max_abs_delta]`` (Black-76
    at the surface or flat vol) and moneyness ``K / F`` in ``[min_moneyness, max_moneyness]``
    (``None``: unbounded).

    How it sees trades without looking ahead: it wakes right after every trade print of an
    option that passes the static part of the filter (a ``trade_count`` wake condition on
    those instruments) and takes the trades whose ``trade_ts`` it has not handled yet, so
    every print is seen, at its own instant.  ``wake_on: poll`` instead checks every
    ``poll_ns`` of market time: fewer Python calls on a very busy tape, at the price of up to
    ``poll_ns`` of delay and of seeing only the last of several prints of one instrument
    within a poll.
    """

    def __init__(self, name: str = "book", size_cap: float = 1.0, rights: str = "both",
                 min_days: float = 0.0, max_days: float | None = None,
                 min_abs_delta: float = 0.0, max_abs_delta: float = 1.0,
                 min_moneyness: float | None = None, max_moneyness: float | None = None,
                 delta_source: str = "surface", flat_vol: float = 0.6, latency_ns: int | None = None,
                 max_wake_ns: int = 60 * NS, wake_on: str = "trade", poll_ns: int = NS,
                 underlying: str = "BTC", board: SurfaceBoard | None = None):
        self.name = name
        self.wake_on = check_choice("book.wake_on", wake_on, ("trade", "poll"))
        self.poll_ns = int(require_positive("book.poll_ns", poll_ns))
        self._watch_ids: tuple[int, ...] = ()
        self._watch_until = NEVER
        self.size_cap = require_positive("book.size_cap", size_cap)
        self.rights = check_choice("book.rights", rights, ("both", "call", "put"))
        self.min_days, self.max_days = float(min_days), max_days
        self.min_abs_delta, self.max_abs_delta = float(min_abs_delta), float(max_abs_delta)
        self.min_moneyness, self.max_moneyness = min_moneyness, max_moneyness
        for key, lo, hi in (("days", min_days, max_days),
                            ("abs_delta", min_abs_delta, max_abs_delta),
                            ("moneyness", min_moneyness, max_moneyness)):
            if lo is not None and hi is not None and lo > hi:
                raise ConfigError(f"book.min_{key}: {lo!r} is above book.max_{key} ({hi!r}): "
                                  "no option would be taken")
        self.delta_source = check_choice("book.delta_source", delta_source, DELTA_SOURCES)
        self.flat_vol = require_positive("book.flat_vol", flat_vol)
        self.latency_ns = None if latency_ns is None else int(latency_ns)
        self.max_wake_ns = int(require_positive("book.max_wake_ns", max_wake_ns))
        self.underlying = underlying
        self.board = board
        self.options = np.zeros(0, np.int64)
        self.seen = np.zeros(0, np.int64)  # trade_ts handled, per entry of self.options
        self.n_taken = 0
        self.n_skipped = 0

    # -- filter ---------------------------------------------------------------------------
    def _static_ok(self, ctx: Any, ids: np.ndarray) -> np.ndarray:
        inst = ctx.instruments
        ok = inst.expiry_ns[ids] > ctx.now
        if self.rights != "both":
            ok &= (inst.is_call[ids] == 1) == (self.rights == "call")
        days = (inst.expiry_ns[ids] - ctx.now) / (86400 * NS)
        if self.max_days is not None:
            ok &= days <= float(self.max_days)
        return ok

    def accepts(self, ctx: Any, iid: int, spot: float) -> bool:
        """Whether option ``iid`` passes the whole filter now."""
        inst = ctx.instruments
        if not self._static_ok(ctx, np.array([iid]))[0]:
            return False
        e = int(inst.expiry_ns[iid])
        if (e - ctx.now) / (86400 * NS) < self.min_days:
            return False
        if not (math.isfinite(spot) and spot > 0):
            return self.min_moneyness is None and self.max_moneyness is None and \
                self.min_abs_delta <= 0.0 and self.max_abs_delta >= 1.0
        fwd = expiry_forward(ctx, e, spot, self.board, iid)
        k = float(inst.strike[iid])
        if self.min_moneyness is not None and k / fwd < float(self.min_moneyness):
            return False
        if self.max_moneyness is not None and k / fwd > float(self.max_moneyness):
            return False
        t = (e - ctx.now) / NS_PER_YEAR
        vol = leg_vols(self.board, np.array([k]), np.array([e]),
                       "flat" if self.delta_source == "flat" else "surface", self.flat_vol)
        d = abs(float(black_delta(fwd, k, t, vol[0], inst.is_call[iid] == 1)))
        return self.min_abs_delta <= d <= self.max_abs_delta

    # -- consumer protocol ----------------------------------------------------------------
    def on_start(self, ctx: Any) -> WakeCondition | None:
        self.options, self.seen = np.zeros(0, np.int64), np.zeros(0, np.int64)
        self._add_listed(ctx, ctx.now, opening=True)  # (Instruments.opened_at)
        return self._next(ctx)

    def _add_listed(self, ctx: Any, now: int, opening: bool = False) -> None:
        """Options listed by ``now`` join the universe (an option listed later is not known
        yet).  The prints of the ``opening`` universe before the start are not taken; an
        option listed since the last refresh has its last print from its listing on taken
        (the refresh runs at its listing instant, after the events of that instant)."""
        inst = ctx.instruments
        ids = listed_options(inst, now, self.underlying)
        new = ids[~np.isin(ids, self.options)]
        if new.size:
            seen = np.asarray(ctx.market.trade_ts[new], np.int64)
            if not opening and inst.listed_ns is not None:
                seen = np.minimum(seen, inst.listed_ns[new] - 1)  # NEVER when it never printed
            self.options = np.concatenate((self.options, new))
            self.seen = np.concatenate((self.seen, seen))

    def on_wake(self, ctx: Any) -> WakeCondition | None:
        self._watch(ctx)  # an option listed by now joins before the prints are read (also polling)
        m = ctx.market
        spot = math.nan
        printed = ctx.printed  # the print that woke us: taken even if one at the same
        if printed is not None:  # instant came before it (trade_ts alone cannot tell them apart)
            j = np.flatnonzero(self.options == printed)
            if j.size:
                spot = spot_of(ctx)
                self._take(ctx, printed, ctx.now, spot)
                self.seen[j] = ctx.now
        tts = np.asarray(m.trade_ts[self.options], np.int64)
        new = np.flatnonzero(tts != self.seen)
        if new.size:
            spot = spot if math.isfinite(spot) else spot_of(ctx)
            order = new[np.lexsort((self.options[new], tts[new]))]
            for j in order:
                self._take(ctx, int(self.options[j]), int(tts[j]), spot)
            self.seen[new] = tts[new]
        return self._next(ctx)

    def _take(self, ctx: Any, iid: int, trade_ts: int, spot: float) -> None:
        m = ctx.market
        side, size = float(m.last_side[iid]), float(m.last_size[iid])
        price = float(m.last_price[iid])
        # max_days at the print too: a print made before its expiry entered the window, read
        # at the window's deadline wake, was taken at its stale price
        early = self.max_days is not None and \
            ctx.instruments.expiry_ns[iid] - trade_ts > float(self.max_days) * 86400 * NS
        if side == 0.0 or not (size > 0 and price > 0) or early or \
                not self.accepts(ctx, iid, spot):
            self.n_skipped += 1
            return
        qty = -math.copysign(min(size, self.size_cap), side)
        ctx.emit("book_order", book=self.name, reason="take", instrument_id=iid, qty=qty,
                 price=price, ref_price=price, ref_size=size, ref_side=int(side),
                 ref_ts=trade_ts)
        ctx.submit(iid, qty, limit_price=price, latency_ns=self.latency_ns)
        self.n_taken += 1

    def _watch(self, ctx: Any) -> tuple[int, ...]:
        """Options passing the static filter, with the options listed since; recomputed when
        one is listed (its first print is then watched), when one expires, when ``max_days``
        admits the next expiry (its prints from that instant on) and at least hourly.  The
        tuple is what the engine's trade-count mask is built from, so it is cached."""
        if ctx.now >= self._watch_until:
            self._add_listed(ctx, ctx.now)
            ids = self.options[self._static_ok(ctx, self.options)] if self.options.size else \
                self.options
            self._watch_ids = tuple(int(i) for i in ids)
            inst = ctx.instruments
            until = [ctx.now + 3600 * NS]
            if len(ids):
                until.append(int(inst.expiry_ns[ids].min()))
            listing = next_listing(inst, ctx.now, self.underlying)
            if listing is not None:
                until.append(listing)
            if self.max_days is not None and self.options.size:
                # the first expiry still beyond max_days enters the window at e - max_days
                later = inst.expiry_ns[self.options] - int(float(self.max_days) * 86400 * NS)
                later = later[later > ctx.now]
                if later.size:
                    until.append(int(later.min()))
            self._watch_until = min(until)
        return self._watch_ids

    def _next(self, ctx: Any) -> WakeCondition:
        if self.wake_on == "poll":
            return WakeCondition(deadline=ctx.now + self.poll_ns)
        watch = self._watch(ctx)
        # woken at the watch's end too: an option listed then trades from that instant on
        deadline = min(ctx.now + self.max_wake_ns, self._watch_until)
        if not watch:
            return WakeCondition(deadline=deadline)
        return WakeCondition(deadline=deadline, trade_count=1, instruments=watch)

    def state_dict(self) -> dict:
        return {"options": self.options.tolist(), "seen": self.seen.tolist(),
                "n_taken": self.n_taken,
                "n_skipped": self.n_skipped, "watch": (self._watch_ids, self._watch_until)}

    def load_state_dict(self, d: dict) -> None:
        self.options = np.array(d["options"], np.int64)
        self.seen = np.array(d["seen"], np.int64)
        self.n_taken, self.n_skipped = d["n_taken"], d["n_skipped"]
        self._watch_ids, self._watch_until = tuple(d["watch"][0]), int(d["watch"][1])
