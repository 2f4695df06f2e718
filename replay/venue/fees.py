"""Trading fees: maker/taker in basis points of notional or per contract, with an option cap.

For one fill of ``q`` contracts at price ``p`` (contract size ``cs``)::

    fee = bps / 1e4 * notional + per_contract * q * u
    fee = min(fee, cap_fraction * q * cs * p)        options only, when a cap is configured

with ``u = cs`` for an inverse option (its per-contract rate is quoted in coin for a contract of
one unit of the underlying, as venues charge a share of the underlying: a contract of 0.1
coin pays a tenth), ``u = cs * S`` for a linear one (the same share of the underlying, in
USD: ``S`` is the underlying's price) and ``u = 1`` otherwise (an inverse future's ``cs`` is
USD, not underlying),

in the instrument's settlement currency (coin for inverse, USD for linear), positive when paid.
The notional the basis points apply to is

    ============================  ===============================  ==========
    instrument                    notional                         currency
    ============================  ===============================  ==========
    inverse option                ``q * cs`` (underlying amount)   coin
    linear option                 ``q * cs * S`` (S: underlying)   USD
    inverse future / perp         ``q * cs / p`` (cs in USD)       coin
    linear future / perp / spot   ``q * cs * p``                   USD
    ============================  ===============================  ==========

so an option's basis-point fee is charged on the underlying, as venues do, not on the premium.

Deribit schedule assumed by :data:`DERIBIT_FEES` (its published fee page, as of 2024-2025;
check it before relying on the figures):

* BTC/ETH options (inverse): 0.0003 coin per contract (= 0.03 % of the underlying), maker and
  taker alike, capped at 12.5 % of the option price: ``min(0.0003 * q, 0.125 * p * q)``.
  So the cap binds for options cheaper than 0.0024 coin.
* perpetuals and futures: maker 0 %, taker 0.05 % of notional.
* spot: maker 0 %, taker 0.05 % (an assumption; spot is only a fallback hedge here).

Delivery/settlement fees and fee tiers by volume are not modelled.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from replay.model.orders import Fill, InstrumentSpec


@dataclass(frozen=True)
class FeeSchedule:
    """Fees for one instrument kind, in the instrument's settlement currency."""

    maker_bps: float = 0.0
    taker_bps: float = 0.0
    maker_per_contract: float = 0.0
    taker_per_contract: float = 0.0
    premium_cap_fraction: float | None = None  # options: fee <= fraction * premium paid

    def rates(self, liquidity: str) -> tuple[float, float]:
        if liquidity == "maker":
            return self.maker_bps, self.maker_per_contract
        if liquidity == "taker":
            return self.taker_bps, self.taker_per_contract
        raise ValueError(f"liquidity must be maker or taker, got {liquidity!r}")


@dataclass(frozen=True)
class VenueFees:
    """One :class:`FeeSchedule` per instrument kind."""

    option: FeeSchedule = FeeSchedule()
    future: FeeSchedule = FeeSchedule()
    perp: FeeSchedule = FeeSchedule()
    spot: FeeSchedule = FeeSchedule()

    def for_instrument(self, spec: InstrumentSpec) -> FeeSchedule:
        if spec.kind not in ("option", "future", "perp", "spot"):
            raise ValueError(f"no fee schedule for instrument kind {spec.kind!r}")
        return getattr(self, spec.kind)


DERIBIT_FEES = VenueFees(
    option=FeeSchedule(maker_per_contract=0.0003, taker_per_contract=0.0003,
                       premium_cap_fraction=0.125),
    future=FeeSchedule(maker_bps=0.0, taker_bps=5.0),
    perp=FeeSchedule(maker_bps=0.0, taker_bps=5.0),
    spot=FeeSchedule(maker_bps=0.0, taker_bps=5.0),
)

NO_FEES = VenueFees()


def notional(spec: InstrumentSpec, qty: float, price: float,
             underlying_price: float = math.nan) -> float:
    """Notional of ``qty`` contracts in settlement currency (table in the module docstring)."""
    q = abs(qty)
    if spec.is_option:
        if spec.is_inverse:
            return q * spec.contract_size
        if not math.isfinite(underlying_price):
            raise ValueError("a linear option's notional needs the underlying price")
        return q * spec.contract_size * underlying_price
    if spec.is_inverse:
        return q * spec.contract_size / price
    return q * spec.contract_size * price


def fee(schedule: FeeSchedule, spec: InstrumentSpec, liquidity: str, qty: float, price: float,
        underlying_price: float = math.nan) -> float:
    """Fee of one fill, ``min(bps/1e4 * notional + per_contract * q * u, cap * q * cs * p)``
    (``u``: the module docstring's)."""
    bps, per_contract = schedule.rates(liquidity)
    q = abs(qty)
    # an option's per-contract rate is a share of the underlying: its notional per contract
    amount = per_contract * (notional(spec, q, price, underlying_price) if spec.is_option
                             and per_contract else q)
    if bps:
        amount += bps * 1e-4 * notional(spec, q, price, underlying_price)
    cap = schedule.premium_cap_fraction
    if spec.is_option and cap is not None and amount > 0:
        amount = min(amount, cap * q * spec.contract_size * abs(price))
    return amount


def fill_fee(fees: VenueFees, spec: InstrumentSpec, fill: Fill,
             underlying_price: float = math.nan) -> float:
    return fee(fees.for_instrument(spec), spec, fill.liquidity, fill.qty, fill.price,
               underlying_price)


def apply_fees(fills: Iterable[Fill], fees: VenueFees, spec: InstrumentSpec,
               underlying_price: float = math.nan) -> tuple[Fill, ...]:
    """The fills with their ``fee`` field set (each fill is charged on its own, cap included)."""
    return tuple(replace(f, fee=fill_fee(fees, spec, f, underlying_price)) for f in fills)
