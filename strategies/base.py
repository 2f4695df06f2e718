"""What every book and hedging strategy shares: the conventions below, the journal kinds of
their decisions, and config checks.  The code lives beside it: the published surface in
:mod:`strategies.board`, greeks of the book held in :mod:`strategies.greeks`, the hedge
instrument and the conversion of deltas into its contracts in :mod:`strategies.hedge`, orders
in flight in :mod:`strategies.pending`.

Conventions
-----------
* **Underlying price ``S``**: the coin's USD price the venue converts at,
  ``ctx.market.spot()`` (:func:`strategies.hedge.spot_of`): the mid of the engine's
  designated underlying (the perpetual when there is one), else its reference price, while it
  is live; else the venue forward of the nearest live expiry.  Every delta
  is a sensitivity to ``S``; wake corridors watch that same mid (without an underlying tape
  the engine cannot watch a corridor, and strategies wake on their deadlines only).
* **Forward of an expiry ``F_i``**, first available of: the published surface's forward for
  that expiry, where it lies between the surface's first and last slices (scaled by
  ``S / S_fit`` when the board knows the spot at fit time, so a surface a few seconds old does
  not lag the market; beyond them the surface only holds its end forward flat); the venue
  forward of the option's own quote (``ctx.market.venue_forward``), else of its expiry
  (``ctx.market.expiry_forward``, the median over that expiry's quotes); the mid of a future
  of the same expiry; ``S`` itself.
  The basis ``b_i = F_i / S`` is held fixed when ``S`` moves, so ``dF_i/dS = b_i``.
* **Quantities**: option positions are contracts; a leg holds ``q_i = contracts x
  contract_size`` units of the underlying (coin), signed, long > 0.
* **Greeks** (:class:`strategies.greeks.Greeks`) are the derivatives in ``S`` of the legs'
  USD values as the venue's ledger marks them, each leg at its own vol (sticky strike), with
  ``V`` the undiscounted Black-76 value per unit at ``F_i``: a linear option is worth
  ``q_i V`` USD; an inverse (coin-margined) one ``q_i V / F_i`` coin, that is
  ``q_i V / b_i`` USD at the coin's price ``S``.  With ``u_i = b_i`` (inverse) or 1
  (linear): ``delta = sum q_i b_i / u_i dV/dF`` (BTC), ``gamma = sum q_i b_i^2 / u_i
  d2V/dF2`` (BTC per USD), ``vega = sum q_i / u_i dV/dvol`` (USD per 1.00 of vol),
  ``theta = sum q_i / u_i (-dV/dt)`` (USD per year), ``vanna = sum q_i b_i / u_i d2V/dF
  dvol``, ``volga = sum q_i / u_i d2V/dvol2``.  An inverse leg's delta is thus ``q_i dV/dF``,
  not ``q_i b_i dV/dF``: its coin premium is converted at the spot, not the forward.
* **Delta source** (:data:`strategies.greeks.DELTA_SOURCES`): ``surface`` uses the latest
  published surface's
  vol at each strike (the flat vol until a surface is published or where it has no value);
  ``flat`` Black-76 at one configured vol; ``premium_adjusted`` the coin-margined delta
  ``dV/dF - V/F`` (:func:`calibration.pricing.inverse.premium_adjusted_delta`) at the surface vol
  (or flat): the hedge of an option whose premium is itself held in coin.
* **Hedge instruments**: ``perp``, ``future`` (the nearest unexpired one) or ``spot`` of the
  underlying, matched by kind and by the underlying prefix of the name (``BTC`` in
  ``BTC-PERPETUAL``, ``BTC-USD``).  An inverse perp or future contract is ``contract_size``
  USD (a trade of ``n`` at price ``P`` adds ``n cs / P`` coin of delta), a linear one or spot
  ``contract_size`` coin, so offsetting a book delta ``D`` (BTC) takes ``-D P / cs`` inverse
  contracts or ``-D / cs`` linear ones (:func:`strategies.hedge.hedge_contracts`).  Held, an
  inverse position's USD delta is ``n cs / avg``, ``avg`` its average entry price
  (``ctx.entry_price``): the ledger books its unrealised PnL ``n cs (1/avg - 1/P)`` in coin,
  worth ``S`` each, so its USD value ``n cs (S/avg - S/P)`` is linear in ``S`` (``P / S``
  held).  A trade that reduces it leaves ``avg`` as it was and so takes ``cs / avg`` a
  contract, up to flat (:func:`strategies.hedge.delta_after`, :func:`strategies.hedge.trade_for`).
  Under ``premium_adjusted``, which hedges the coin PnL, every contract counts ``cs / P``.  ``P`` is the hedge
  instrument's mid
  (else its reference price, :func:`strategies.hedge.instrument_price`).
"""

from __future__ import annotations

import math

from replay.errors import ConfigError
from replay.model.events import EventKind, register_kind

#: One hedging decision (every wake of a hedging strategy).  Deltas in underlying units (BTC):
#: ``book_delta`` of the options held, ``target_delta`` the hedge that would offset it fully
#: (``-book_delta``, at the strategy's own vol for Leland/Zakamouline), ``current_hedge`` the
#: delta of the hedge held plus orders in flight, ``band_lo/hi`` the hedge deltas the strategy
#: tolerates, ``trade_delta``/``contracts`` what it sent (0 when nothing), ``corridor_lo/hi``
#: the underlying prices of its next wake (NaN when it waits on a deadline only).
HEDGE_DECISION = register_kind(EventKind("hedge_decision", "hedge_decisions", (
    ("strategy", "str"), ("reason", "str"), ("spot", "float"), ("book_delta", "float"),
    ("target_delta", "float"), ("current_hedge", "float"), ("band_lo", "float"),
    ("band_hi", "float"), ("trade_delta", "float"), ("instrument_id", "int"),
    ("contracts", "float"), ("corridor_lo", "float"), ("corridor_hi", "float"),
    ("next_deadline", "int"))))

#: An option order of a book, with why it was sent (``open``, ``take``) and the market fact it
#: refers to (for ``take``: the historical trade's price, size, aggressor side and time).
BOOK_ORDER = register_kind(EventKind("book_order", "book_orders", (
    ("book", "str"), ("reason", "str"), ("instrument_id", "int"), ("qty", "float"),
    ("price", "float"), ("ref_price", "float"), ("ref_size", "float"), ("ref_side", "int"),
    ("ref_ts", "int"))))


def require_positive(key: str, value: float) -> float:
    if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
        raise ConfigError(f"{key}: {value!r} must be a positive number")
    return float(value)
