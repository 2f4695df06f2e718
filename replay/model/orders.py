"""Venue-level value types: instrument specs, orders, fills and rejections.

Everything here is a frozen dataclass so that orders and their outcomes can be journaled as
events and compared byte for byte between the fast and the reference engine.

Conventions (as in :mod:`replay.model.schema`):

* timestamps are int64 nanoseconds UTC;
* ``side`` is +1 buy, -1 sell;
* quantities are in contracts and always positive (the direction lives in ``side``);
* prices are in the instrument's own price currency: coin for inverse options, USD for the
  underlying instruments (futures, perps, spot) and for linear options;
* fees are in the instrument's settlement currency (coin when ``settlement == "inverse"``,
  USD when linear), positive when paid, negative for a rebate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ORDER_KINDS = ("market", "limit")
LIQUIDITY = ("maker", "taker")

# Rejection reasons: a closed vocabulary so that analytics can group by it.
REJECT_NO_LIQUIDITY = "no_liquidity"
REJECT_PRICE_BAND = "price_band"
REJECT_INVALID = "invalid_order"
REJECT_EXPIRED = "expired"  # the instrument expired before the order arrived, or its rest
REJECT_DATA_END = "data_end"  # still resting when the replayed data ended
REJECT_REASONS = (REJECT_NO_LIQUIDITY, REJECT_PRICE_BAND, REJECT_INVALID, REJECT_EXPIRED,
                  REJECT_DATA_END)


@dataclass(frozen=True)
class InstrumentSpec:
    """What the venue and the accounting need to know about one instrument.

    ``contract_size`` is units of the underlying per contract, except for inverse futures and
    perps where it is USD notional per contract (10 USD on the Deribit BTC perpetual).
    """

    instrument_id: int
    kind: str  # option | future | perp | spot
    settlement: str = "linear"  # inverse | linear
    contract_size: float = 1.0
    tick_size: float = 0.0
    strike: float | None = None
    expiry_ns: int | None = None
    is_call: bool | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("option", "future", "perp", "spot", "index"):
            raise ValueError(f"unknown instrument kind {self.kind!r}")
        if self.settlement not in ("inverse", "linear"):
            raise ValueError(f"unknown settlement {self.settlement!r}")
        if not self.contract_size > 0:
            raise ValueError("contract_size must be positive")

    @property
    def is_option(self) -> bool:
        return self.kind == "option"

    @property
    def is_inverse(self) -> bool:
        return self.settlement == "inverse"

    @property
    def is_inverse_delta_one(self) -> bool:
        """Inverse future or perp: USD-notional contracts whose PnL is ``cs (1/entry - 1/exit)``."""
        return self.is_inverse and self.kind in ("future", "perp")

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> InstrumentSpec:
        """Build from a row of the store's ``instruments`` table (NULLs as None or NaN)."""

        def opt(v: Any) -> Any:
            return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

        expiry = opt(row.get("expiry_ns"))
        strike = opt(row.get("strike"))
        is_call = opt(row.get("is_call"))
        return cls(
            instrument_id=int(row["instrument_id"]),
            kind=str(row["kind"]),
            settlement=str(row["settlement"]),
            contract_size=float(row["contract_size"]),
            tick_size=float(opt(row.get("tick_size")) or 0.0),
            strike=None if strike is None else float(strike),
            expiry_ns=None if expiry is None else int(expiry),
            is_call=None if is_call is None else bool(is_call),
        )


@dataclass(frozen=True)
class Order:
    """The one order type: as a consumer decided it at ``decision_ts``, reaching the venue at
    ``arrival_ts`` (the engine sets it from the venue's latency).

    A ``market`` order takes whatever liquidity is there on arrival; a ``limit`` order takes
    liquidity up to ``limit_price`` and may rest at that price for the remainder.  ``tag`` is
    the consumer that sent it.
    """

    id: int
    instrument_id: int
    side: int
    qty: float
    kind: str = "market"
    limit_price: float | None = None
    decision_ts: int = 0
    tag: str = ""
    arrival_ts: int = 0

    @staticmethod
    def from_signed(order_id: int, instrument_id: int, qty: float, limit_price: float,
                    decision_ts: int, arrival_ts: int, tag: str) -> Order:
        """From a signed quantity (> 0 buy) and a limit that is NaN for a market order, as
        ``ctx.submit`` takes them."""
        limit = float(limit_price)
        return Order(int(order_id), int(instrument_id), 1 if qty >= 0 else -1, abs(float(qty)),
                     "limit" if math.isfinite(limit) else "market",
                     limit if math.isfinite(limit) else None, int(decision_ts), tag,
                     int(arrival_ts))

    @property
    def order_id(self) -> int:
        return self.id

    def __post_init__(self) -> None:
        if self.side not in (1, -1):
            raise ValueError(f"side must be +1 or -1, got {self.side!r}")
        if self.kind not in ORDER_KINDS:
            raise ValueError(f"order kind must be one of {ORDER_KINDS}, got {self.kind!r}")
        if self.kind == "limit" and (self.limit_price is None or not math.isfinite(self.limit_price)):
            raise ValueError("a limit order needs a finite limit_price")

    @property
    def signed_qty(self) -> float:
        return self.side * self.qty


@dataclass(frozen=True)
class Fill:
    """One execution.  A marketable order walking the book yields one fill per level."""

    order_id: int
    instrument_id: int
    ts: int
    side: int
    price: float
    qty: float
    liquidity: str  # maker | taker
    fee: float = 0.0
    level: int = 0  # 0 at the touch / at the limit, k for the k-th level beyond it

    def __post_init__(self) -> None:
        if self.liquidity not in LIQUIDITY:
            raise ValueError(f"liquidity must be one of {LIQUIDITY}, got {self.liquidity!r}")

    @property
    def signed_qty(self) -> float:
        return self.side * self.qty


@dataclass(frozen=True)
class Rejection:
    """An order (or its remainder) the venue refused, with a reason from :data:`REJECT_REASONS`."""

    order_id: int
    ts: int
    reason: str
    detail: str = ""

    def __post_init__(self) -> None:
        if self.reason not in REJECT_REASONS:
            raise ValueError(f"unknown rejection reason {self.reason!r}")
