"""Carry: perpetual funding and option expiry settlement, booked by the venue itself.

:class:`Carry` is an engine consumer the venue owns (``venue.consumers``, woken after the
user's consumers).  It keeps the venue's :class:`~replay.venue.accounting.Portfolio` current:

1. **Funding** accrues continuously on every perpetual held, at the rates in force, from the
   last accrual to now (Deribit's convention, applied to every venue's perpetuals: see
   :mod:`replay.venue.funding` for what that means for Binance's per-interval payments).  It wakes on a grid of ``every_s`` market seconds, and whoever needs
   the portfolio current at another instant (the PnL marker, before it marks) calls
   :meth:`Carry.catch_up`.  The rate in force at an instant is the last stored one received
   by then, and the market state keeps each perpetual's funding index, every rate accrued
   over the time it was in force (:meth:`replay.engine.state.MarketView.funding_index`), so
   an accrual is exact however many rate updates fall within it (a venue's ticker may
   publish one a second): the position receives ``-notional`` times the index's change since
   the last accrual (:func:`replay.venue.funding.index_payment`, the notional at the mark
   of the accrual's end).  Each accrual is journaled as ``funding``, with the time-average
   rate it paid per funding interval and the coin's USD price it was converted at, so a fold
   of the journal rebuilds the portfolio exactly (:func:`replay.venue.fold.fold_portfolio`).
2. **Settlement**: it also wakes at each held option's and dated future's expiry instant
   (Deribit: 08:00 UTC) and closes the position against the settlement index (the mid of
   the coin's ``index`` instrument when the store has one, else ``MarketView.spot``;
   :func:`settlement_index`): an option at its intrinsic value, a future at the index.
   Deribit settles against the 30-minute TWAP of its index before 08:00; the end point
   differs from that average by the order of ``sigma S sqrt(30 min / 3)``, a documented
   approximation.  This is the run's one settlement record (``settlement`` events).

Both are journaled with source ``venue`` whoever triggered them.
"""

from __future__ import annotations

import math
from typing import Any

from replay.engine.wake import WakeCondition
from replay.model.events import EventKind, register_kind
from replay.units import NS
from replay.venue.funding import index_payment

#: ``qty`` contracts closed at ``price`` (the option's price currency: coin if inverse,
#: intrinsic / S; a future's: the index), against the settlement index ``underlying`` (USD);
#: for an option ``intrinsic_usd`` per unit of underlying and ``value_usd`` = qty x contract
#: size x intrinsic (NaN for a future: its settlement is a closing trade at the index).
SETTLEMENT = register_kind(EventKind("settlement", "settlements", (
    ("instrument_id", "int"), ("qty", "float"), ("price", "float"), ("underlying", "float"),
    ("intrinsic_usd", "float"), ("value_usd", "float"))))


class Carry:
    """The venue's funding and settlement consumer (see the module docstring)."""

    name = "venue.carry"

    def __init__(self, venue: Any, every_s: float = 60.0) -> None:
        self.venue = venue
        self.every_ns = int(every_s * NS)
        self.last_ts: int | None = None  # funding is accrued up to here
        # per perpetual, its funding index at the last accrual
        self.index: dict[int, float] = {}
        self._perps = sorted(i for i, s in venue.specs.items() if s.kind == "perp")

    def on_start(self, ctx) -> WakeCondition:  # noqa: ANN001 - an engine Context
        self.last_ts = ctx.now
        self._remember(ctx.market)
        return self._next(ctx)

    def on_wake(self, ctx) -> WakeCondition:  # noqa: ANN001
        self.catch_up(ctx)
        return self._next(ctx)

    def on_finish(self, ctx) -> None:  # noqa: ANN001
        self.catch_up(ctx)

    def held_expiries(self, now: int) -> list[int]:
        """Expiry instants after ``now`` of the options and dated futures held (each is
        settled on the dot)."""
        specs = self.venue.specs
        return [specs[i].expiry_ns for i in self.venue.portfolio.net_qty()
                if _settles(specs[i]) and specs[i].expiry_ns > now]

    def _next(self, ctx) -> WakeCondition:  # noqa: ANN001
        return self.next_wake(ctx.now)

    def next_wake(self, now: int) -> WakeCondition:
        """The next grid time, or an earlier expiry of a held option or future (the venue
        asks again after a fill opens one: the position settles on its expiry's dot)."""
        grid = (now // self.every_ns + 1) * self.every_ns
        return WakeCondition(deadline=min([grid, *self.held_expiries(now)]))

    def catch_up(self, ctx) -> None:  # noqa: ANN001
        """Accrue funding up to ``ctx.now`` and settle every held option and future that has
        expired."""
        vctx = ctx.venue_context()
        self.accrue_funding(vctx)
        self._settle_expired(ctx, vctx)

    def accrue_funding(self, vctx) -> None:  # noqa: ANN001 - an engine VenueContext
        """Accrue funding on the perpetuals held from the last accrual up to ``vctx.now``.
        The venue calls this before it books a perpetual's fill, so that each position pays
        for the time it was held, not the position held at the next accrual."""
        pf, m, specs = self.venue.portfolio, vctx.market, self.venue.specs
        t0, t1 = (self.last_ts if self.last_ts is not None else vctx.now), vctx.now
        self.last_ts = t1
        for iid, qty in pf.net_qty().items() if t1 > t0 else ():
            spec = specs[iid]
            if spec.kind != "perp":
                continue
            mark, usd = float(m.reference_price(iid)), float(m.spot())
            interval_s = float(m.funding_interval_s[iid])
            accrued = m.funding_index(iid) - self.index.get(iid, 0.0)
            if accrued == 0.0 or not interval_s > 0:  # no rate yet, or a zero one throughout
                continue
            # the time-average rate per funding interval: paid over (t1 - t0) it is `accrued`
            rate = accrued * interval_s / ((t1 - t0) / NS)
            amount = index_payment(spec, qty, mark, accrued)
            pf.apply_funding(iid, amount, usd)
            vctx.emit("funding", instrument_id=iid, position=qty, rate=rate, amount=amount,
                      usd_per_coin=usd)
        self._remember(m)

    def _remember(self, m) -> None:  # noqa: ANN001 - a MarketView
        self.index = {i: m.funding_index(i) for i in self._perps}

    def _settle_expired(self, ctx, vctx) -> None:  # noqa: ANN001
        pf, specs = self.venue.portfolio, self.venue.specs
        for iid, qty in sorted(pf.net_qty().items()):
            spec = specs[iid]
            if _settles(spec) and spec.expiry_ns <= ctx.now:
                und = settlement_index(ctx, iid)
                if not und > 0:  # no price known to settle at: a later catch-up settles it
                    continue
                price = pf.settle(iid, und)
                if spec.is_option:
                    intrinsic = max(und - spec.strike, 0.0) if spec.is_call else \
                        max(spec.strike - und, 0.0)
                    value = qty * spec.contract_size * intrinsic
                else:
                    intrinsic = value = math.nan
                vctx.emit("settlement", instrument_id=iid, qty=qty, price=price, underlying=und,
                          intrinsic_usd=intrinsic, value_usd=value)

    def state_dict(self) -> dict:
        return {"last_ts": self.last_ts, "index": dict(self.index)}

    def load_state_dict(self, d: dict) -> None:
        self.last_ts, self.index = d["last_ts"], dict(d["index"])


def _settles(spec) -> bool:  # noqa: ANN001 - an InstrumentSpec
    """Whether positions in ``spec`` are closed at its expiry: options and dated futures."""
    return spec.expiry_ns is not None and (spec.is_option or spec.kind == "future")


def settlement_index(ctx, iid: int) -> float:  # noqa: ANN001
    """The price option or future ``iid`` settles against: the mid of the ``index`` instrument
    of its coin (the name's prefix, ``BTC`` in ``BTC-27DEC25-100000-C``) when one is quoted,
    else the venue forward of its own expiry as last quoted (at the expiry, the index the
    venue quotes its options against), else the coin's USD price the portfolio converts at
    (``MarketView.spot``)."""
    inst, m = ctx.instruments, ctx.market
    coin = str(inst.name[iid]).split("-")[0]
    for i in inst.ids_of_kind("index"):
        if str(inst.name[i]).split("-")[0] == coin:
            s = float(m.mid(int(i)))
            if math.isfinite(s) and s > 0:
                return s
    f = float(m.expiry_forward(int(inst.expiry_ns[iid])))
    return f if f > 0 else float(m.spot())
