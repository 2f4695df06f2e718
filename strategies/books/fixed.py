"""``book=fixed``: option positions opened once, as soon as the market is quoted, at the market or
with limit orders at mid; :func:`strike_by_delta` picks strikes by delta."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from replay.engine.state import NEVER
from replay.engine.wake import WakeCondition
from replay.errors import ConfigError
from replay.model.config import check_choice
from replay.units import NS
from strategies.base import require_positive
from strategies.board import SurfaceBoard
from strategies.greeks import DELTA_SOURCES, NS_PER_YEAR, bs_greeks, expiry_forward, leg_vols
from strategies.hedge import spot_of
from strategies.listed import choose_expiry, expiry_days, next_listing, options_at

#: how long (market time) a book waits for the listings its legs need before its config is
#: refused: a recording may start before the venue's whole chain is listed
CHOOSE_GRACE_NS = 3600 * NS

STRUCTURES = ("straddle", "strangle", "risk_reversal", "call", "put")
#: how far from its target delta a leg's strike may be: further, the chain listed so far is
#: taken to be partial (a recording's first snapshot may list a few strikes), and the book
#: waits for more listings as it does for a missing type
DELTA_TOLERANCE = 0.1


def strike_by_delta(ctx: Any, ids: np.ndarray, expiry_ns: int, forward: float,
                    target: float, source: str, board: SurfaceBoard | None,
                    flat_vol: float, tolerance: float = DELTA_TOLERANCE) -> int:
    """The option among ``ids`` (one expiry and type) whose Black-76 delta is nearest
    ``target`` (calls > 0, puts < 0), at the surface or flat vol; a :class:`ConfigError`
    naming ``book.delta`` when that one is more than ``tolerance`` away."""
    inst = ctx.instruments
    k = inst.strike[ids].astype(np.float64)
    t = np.full(k.shape, (expiry_ns - ctx.now) / NS_PER_YEAR)
    vol = leg_vols(board, k, np.full(k.shape, expiry_ns), "flat" if source == "flat" else "surface",
                   flat_vol)
    d = bs_greeks(forward, k, t, vol, inst.is_call[ids] == 1)["delta"]
    j = int(np.nanargmin(np.abs(d - target)))
    if not abs(d[j] - target) <= tolerance:
        raise ConfigError(f"book.delta: no listed strike within {tolerance:g} of delta "
                          f"{target:g} ({ids.size} listed; the nearest, {k[j]:g}, has "
                          f"{d[j]:.3g})")
    return int(ids[j])


class FixedBook:
    """Option positions opened at the start and held to expiry.

    ``structure``: ``straddle`` (call and put at the strike nearest the forward),
    ``strangle`` (call at ``+delta``, put at ``-delta``), ``risk_reversal`` (long call at
    ``+delta``, short put at ``-delta`` for ``side: long``), ``call`` / ``put`` (at the
    money, or at ``delta`` when given).  ``expiry``: ``nearest``, ``nearest_monthly`` or a
    number of days (expiries within ``min_expiry_ns`` of the start are skipped).  ``size``
    contracts per leg, ``side`` ``short`` or ``long``.  ``execution``: ``market`` (market
    orders) or ``mid`` (limit orders at each option's mid).  Strikes by delta use the
    published surface's vol when there is one, else ``flat_vol``.  The legs are chosen among
    the options listed by then, at the first wake where the underlying price is known and
    they can be, a strike by delta within :data:`DELTA_TOLERANCE` of its target (for up to
    :data:`CHOOSE_GRACE_NS` of market time: a recording may begin before the venue's whole
    chain is listed, with a few strikes far from the money); the book opens once every leg
    is quoted two-sided (an unquoted leg could not fill); the venue settles it at expiry.
    """

    def __init__(self, name: str = "book", structure: str = "straddle",
                 expiry: Any = "nearest_monthly", size: float = 1.0, side: str = "short",
                 delta: float | None = None, execution: str = "market",
                 latency_ns: int | None = None,
                 flat_vol: float = 0.6, delta_source: str = "surface", underlying: str = "BTC",
                 min_expiry_ns: int = 3600 * NS, board: SurfaceBoard | None = None):
        self.name = name
        self.structure = check_choice("book.structure", structure, STRUCTURES)
        self.expiry = expiry
        expiry_days("book.expiry", expiry)
        self.size = require_positive("book.size", size)
        self.sign = -1.0 if check_choice("book.side", side, ("short", "long")) == "short" else 1.0
        if delta is not None and not 0.0 < float(delta) < 1.0:
            raise ConfigError(f"book.delta: {delta!r} must be in (0, 1)")
        self.delta = None if delta is None else float(delta)
        self.execution = check_choice("book.execution", execution, ("market", "mid"))
        self.latency_ns = None if latency_ns is None else int(latency_ns)
        self.flat_vol = require_positive("book.flat_vol", flat_vol)
        self.delta_source = check_choice("book.delta_source", delta_source, DELTA_SOURCES)
        self.underlying = underlying
        self.min_expiry_ns = int(min_expiry_ns)
        self.board = board
        self.legs: list[tuple[int, float]] = []  # (instrument_id, signed contracts)
        self.expiry_ns = NEVER
        self.opened = False
        self.first_try: int | None = None  # the first wake that could not choose the legs

    def on_start(self, ctx: Any) -> WakeCondition | None:
        return WakeCondition(quote_count=1)

    def on_wake(self, ctx: Any) -> WakeCondition | None:
        if self.opened:
            return None
        spot = spot_of(ctx)
        if not (math.isfinite(spot) and spot > 0):
            return WakeCondition(quote_count=1)
        if not self.legs:
            try:
                self.legs = self.choose_legs(ctx, spot)
            except ConfigError:
                # a venue lists its chain over the first minutes of a recording: until the
                # legs can be chosen among the options listed so far, try again at each quote,
                # unless the data lists no more (a selection without the options it needs)
                self.first_try = ctx.now if self.first_try is None else self.first_try
                if ctx.now - self.first_try >= CHOOSE_GRACE_NS or \
                        next_listing(ctx.instruments, ctx.now, self.underlying) is None:
                    raise
                return WakeCondition(quote_count=1)
        ids = [i for i, _ in self.legs]
        mids = [float(ctx.market.mid(i)) for i in ids]
        if not all(math.isfinite(m) and m > 0 for m in mids):  # an unquoted leg cannot fill
            return WakeCondition(quote_count=1, instruments=tuple(ids))
        for (iid, qty), mid in zip(self.legs, mids):
            limit = mid if self.execution == "mid" else math.nan
            ctx.emit("book_order", book=self.name, reason="open", instrument_id=iid, qty=qty,
                     price=limit, ref_price=mid, ref_size=math.nan, ref_side=0, ref_ts=ctx.now)
            ctx.submit(iid, qty, limit_price=limit, latency_ns=self.latency_ns)
        self.opened = True
        return None

    def choose_legs(self, ctx: Any, spot: float) -> list[tuple[int, float]]:
        inst = ctx.instruments
        e = choose_expiry(inst, ctx.now, self.expiry, self.underlying, self.min_expiry_ns)
        self.expiry_ns = e
        fwd = expiry_forward(ctx, e, spot, self.board)
        calls = options_at(inst, e, True, ctx.now, self.underlying)
        puts = options_at(inst, e, False, ctx.now, self.underlying)
        q = self.sign * self.size

        def by_delta(ids: np.ndarray, target: float) -> int:
            if not ids.size:
                raise ConfigError("book: the chosen expiry lists no option of that type")
            return strike_by_delta(ctx, ids, e, fwd, target, self.delta_source, self.board,
                                   self.flat_vol)

        def atm(ids: np.ndarray) -> int:
            if not ids.size:
                raise ConfigError("book: the chosen expiry lists no option of that type")
            return int(ids[np.argmin(np.abs(inst.strike[ids] - fwd))])

        d = 0.25 if self.delta is None else self.delta
        if self.structure == "straddle":
            common = np.intersect1d(inst.strike[calls], inst.strike[puts])
            if not common.size:
                raise ConfigError("book: no strike of the chosen expiry has both a call and a put")
            k = common[np.argmin(np.abs(common - fwd))]
            return [(int(calls[inst.strike[calls] == k][0]), q),
                    (int(puts[inst.strike[puts] == k][0]), q)]
        if self.structure == "strangle":
            return [(by_delta(calls, d), q), (by_delta(puts, -d), q)]
        if self.structure == "risk_reversal":
            return [(by_delta(calls, d), q), (by_delta(puts, -d), -q)]
        ids = calls if self.structure == "call" else puts
        if self.delta is None:
            return [(atm(ids), q)]
        return [(by_delta(ids, d if self.structure == "call" else -d), q)]

    def state_dict(self) -> dict:
        return {"legs": list(self.legs), "expiry_ns": self.expiry_ns, "opened": self.opened,
                "first_try": self.first_try}

    def load_state_dict(self, d: dict) -> None:
        self.legs = [tuple(x) for x in d["legs"]]
        self.expiry_ns, self.opened = d["expiry_ns"], d["opened"]
        self.first_try = d.get("first_try")
