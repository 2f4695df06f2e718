"""The hedge instrument: which one (perp, nearest future or spot of the underlying), its price,
and the conversion between a delta in coin and contracts of it (conventions in
:mod:`strategies.base`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from replay.engine.state import Instruments
from replay.errors import ConfigError
from replay.model.config import check_choice
from replay.model.instruments import underlying_of

HEDGE_KINDS = ("perp", "future", "spot")


def is_inverse_delta_one(instruments: Instruments, iid: int) -> bool:
    return (instruments.settlement[iid] == "inverse"
            and instruments.kind[iid] in ("perp", "future"))


def resolve_hedge(instruments: Instruments, hedge: str, now: int, underlying: str = "BTC"
                  ) -> int:
    """Instrument id of the hedge: the perp, the nearest future listed by and expiring after
    ``now``, or spot, of ``underlying``.  Raises :class:`ConfigError` naming what the store has."""
    check_choice("strategy.hedge", hedge, HEDGE_KINDS)
    ids = [int(i) for i in instruments.ids_of_kind(hedge)
           if underlying_of(instruments.name[i]) == underlying]
    if hedge == "future":  # one listed by now (a later one is not known yet)
        ids = [i for i in instruments.listed_by(np.array(ids, np.int64), now).tolist()
               if instruments.expiry_ns[i] > now]
        ids.sort(key=lambda i: int(instruments.expiry_ns[i]))
    if not ids:
        have = sorted({str(k) for k in instruments.kind if k})
        raise ConfigError(f"strategy.hedge: no {hedge} of {underlying} in the store "
                          f"(instrument kinds present: {', '.join(have)})")
    return ids[0]


def current_hedge(ctx: Any, hedge_id: int, hedge: str, underlying: str = "BTC"
                  ) -> tuple[int, int | None]:
    """The hedge instrument to trade now and the instant to wake at for its roll (None: no
    roll ahead).  A dated future hedges until it expires; once the venue has settled it (the
    position is flat) the hedge rolls to the nearest future still live, and until then an
    order would reach an expired instrument (the venue refuses it).  The first call
    (``hedge_id < 0``) resolves the hedge (:func:`resolve_hedge`)."""
    inst = ctx.instruments
    if hedge_id < 0 or (hedge == "future" and inst.expiry_ns[hedge_id] <= ctx.now
                        and ctx.position(hedge_id) == 0.0):
        hedge_id = resolve_hedge(inst, hedge, ctx.now, underlying)
    # just after the expiry instant: the venue settles at it, after the consumers' wakes
    return hedge_id, (int(inst.expiry_ns[hedge_id]) + 1 if hedge == "future" else None)


def hedge_contracts(delta_btc: float, price: float, contract_size: float, inverse: bool
                    ) -> float:
    """Hedge contracts offsetting a delta of ``delta_btc``: ``-D P / cs`` (inverse: ``cs`` USD
    per contract) or ``-D / cs`` (linear/spot: ``cs`` coin per contract)."""
    return -delta_btc * price / contract_size if inverse else -delta_btc / contract_size


def contracts_delta(contracts: float, price: float, contract_size: float, inverse: bool
                    ) -> float:
    """Delta (BTC) of holding ``contracts`` of the hedge: ``n cs / P`` inverse, ``n cs`` linear."""
    return contracts * contract_size / price if inverse else contracts * contract_size


def delta_after(held: float, avg: float, trade: float, price: float, contract_size: float,
                inverse: bool) -> float:
    """The ledger's delta (BTC) of ``held`` contracts entered at ``avg`` once ``trade`` more
    are dealt at ``price``.  An inverse position's USD delta is ``n cs / avg``
    (:mod:`strategies.base`, "Hedge instruments"): contracts that reduce it leave ``avg``
    as it was, so they take ``cs / avg`` each; those that add to it, or open the other side
    past flat, ``cs / price``.  A linear position's is ``n cs`` whatever its prices.

    >>> delta_after(9_000.0, 90_000.0, -4_500.0, 100_000.0, 10.0, True)  # half closed
    0.5
    """
    if not inverse:
        return (held + trade) * contract_size
    closed = math.copysign(min(abs(trade), abs(held)), trade) if held * trade < 0 else 0.0
    return ((held + closed) / avg + (trade - closed) / price) * contract_size


def trade_for(change: float, held: float, avg: float, price: float, contract_size: float,
              inverse: bool) -> float:
    """The contracts whose trade at ``price`` moves :func:`delta_after` by ``change`` (BTC).

    >>> trade_for(-0.5, 9_000.0, 90_000.0, 100_000.0, 10.0, True)
    -4500.0
    """
    if not inverse:
        return change / contract_size
    if held * change < 0:  # reducing: cs / avg a contract, up to flat
        closable = abs(held) * contract_size / avg
        if abs(change) <= closable:
            return change * avg / contract_size
        return -held + (change + held * contract_size / avg) * price / contract_size
    return change * price / contract_size


def spot_of(ctx: Any) -> float:
    """The underlying price ``S`` (``MarketView.spot``): the designated underlying's mid,
    else its reference price, while it is live; else the venue forward of the nearest live
    expiry.  NaN when none is known yet."""
    return float(ctx.market.spot())


def instrument_price(ctx: Any, iid: int, fallback: float) -> float:
    """The mid of ``iid``, else its reference price (funding mark, a future's venue
    forward), else ``fallback``."""
    p = float(ctx.market.mid(iid))
    if not (math.isfinite(p) and p > 0):
        ref = getattr(ctx.market, "reference_price", None)
        p = float(ref(iid)) if ref is not None else math.nan
    return p if math.isfinite(p) and p > 0 else fallback
