"""Position accounting for inverse (coin-margined) and linear instruments, in coin and in USD.

Every amount is kept in both currencies.  ``S`` below is the USD price of one coin (the index)
at the moment a cash flow happens or a mark is taken; the caller passes it.

**Premium instruments (options).**  One contract is worth ``v = cs * p`` in the price currency
(coin for inverse options, where ``p`` is the coin premium, USD for linear ones).  The position
keeps its average entry value per contract in coin and in USD, each converted at the ``S`` of
its fill, and realizes ``closed * (exit_value - avg_entry_value)`` in each currency.  For a coin
option bought at ``p0`` (index ``S0``) and sold at ``p1`` (``S1``)::

    PnL_coin = cs (p1 - p0)            PnL_usd = cs (p1 S1 - p0 S0)

So the USD figure is the change in the option's USD value ``p S`` (= the Black-76 USD price when
``p = V_usd / F`` and ``S = F``), which is what a USD delta hedge offsets.  It leaves out the
revaluation of the coin collateral, a treasury matter rather than a hedging one.

**Inverse futures and perpetuals** (``cs`` USD per contract).  The entry price is the harmonic
mean of the fill prices, ``|q| / avg = sum(|q_i| / p_i)``, since the coin value of a USD contract
is ``cs / p``; closing ``c`` contracts of a long realizes (Deribit's inverse formula)::

    PnL_coin = c cs (1/avg - 1/exit)           PnL_usd = PnL_coin * S_at_close

and an open position's unrealized PnL at mark ``M`` is ``q cs (1/avg - 1/M)`` coin, times the
current ``S`` in USD.  At ``S = M`` this is ``(q cs / avg)(M - avg)``: the linear PnL of the
coin amount bought.

**Linear futures, perps and spot.**  ``PnL_usd = c cs (exit - avg)`` with an arithmetic average
entry; its coin figure is converted at the ``S`` of the close (unrealized: of the mark).

Fees (the fill's ``fee``, settlement currency, positive paid) and funding (received, positive)
are kept apart from the trading PnL; ``total = realized + unrealized - fees + funding``.
References: Deribit's inverse futures and options contract specifications; J. Hull, *Options,
Futures and Other Derivatives*, ch. 2 and 5, for average-price and mark-to-market accounting.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from replay.model.orders import Fill, InstrumentSpec

_EPS = 1e-12


@dataclass
class Position:
    """Mutable per-instrument state held by :class:`Portfolio` (serialised by ``state_dict``)."""

    qty: float = 0.0
    avg_price: float = 0.0  # harmonic for inverse futures/perps, arithmetic otherwise
    avg_entry_coin: float = 0.0  # options: entry value per contract, coin
    avg_entry_usd: float = 0.0  # options: entry value per contract, USD
    realized_coin: float = 0.0
    realized_usd: float = 0.0


@dataclass(frozen=True)
class InstrumentPnL:
    qty: float
    mark: float
    realized_coin: float
    realized_usd: float
    unrealized_coin: float
    unrealized_usd: float


@dataclass(frozen=True)
class PortfolioMark:
    """A valuation of the whole portfolio at one instant."""

    usd_per_coin: float
    by_instrument: dict[int, InstrumentPnL]
    realized_coin: float
    realized_usd: float
    unrealized_coin: float
    unrealized_usd: float
    fees_coin: float
    fees_usd: float
    funding_coin: float
    funding_usd: float
    options_coin: float  # trading PnL (realized + unrealized) of options, before fees
    options_usd: float
    hedge_coin: float  # the same for everything else (perps, futures, spot)
    hedge_usd: float

    @property
    def total_coin(self) -> float:
        return self.realized_coin + self.unrealized_coin - self.fees_coin + self.funding_coin

    @property
    def total_usd(self) -> float:
        return self.realized_usd + self.unrealized_usd - self.fees_usd + self.funding_usd


def option_settlement_price(spec: InstrumentSpec, underlying: float) -> float:
    """Expiry value of one option in its price currency: intrinsic, divided by ``S`` if inverse.

    ``max(S - K, 0)`` for a call, ``max(K - S, 0)`` for a put (per unit of underlying); an
    inverse (coin) option pays that amount divided by the settlement price ``S``.
    """
    if not spec.is_option or spec.strike is None or spec.is_call is None:
        raise ValueError("settlement price is defined for options with strike and type")
    intrinsic = max(underlying - spec.strike, 0.0) if spec.is_call else max(spec.strike - underlying, 0.0)
    return intrinsic / underlying if spec.is_inverse else intrinsic


class Portfolio:
    """Positions, realized PnL, fees and funding; a fold over fills and funding payments."""

    def __init__(self, instruments: Mapping[int, InstrumentSpec] | None = None) -> None:
        self.instruments: dict[int, InstrumentSpec] = dict(instruments or {})
        self.positions: dict[int, Position] = {}
        self.fees_coin = 0.0
        self.fees_usd = 0.0
        self.funding_coin = 0.0
        self.funding_usd = 0.0

    # ------------------------------------------------------------------ conversions
    def _to_both(self, spec: InstrumentSpec, amount: float, usd_per_coin: float
                 ) -> tuple[float, float]:
        """An amount in the settlement currency as ``(coin, usd)``."""
        if spec.is_inverse:
            return amount, amount * usd_per_coin
        return amount / usd_per_coin, amount

    def _contract_value(self, spec: InstrumentSpec, price: float, usd_per_coin: float
                        ) -> tuple[float, float]:
        """Value of one option contract at ``price`` as ``(coin, usd)``."""
        return self._to_both(spec, spec.contract_size * price, usd_per_coin)

    # ------------------------------------------------------------------ events
    def add_instrument(self, spec: InstrumentSpec) -> None:
        self.instruments[spec.instrument_id] = spec

    def position(self, instrument_id: int) -> Position:
        return self.positions.setdefault(instrument_id, Position())

    def apply_fill(self, fill: Fill, usd_per_coin: float) -> None:
        """Fold one fill in; ``usd_per_coin`` is the index at the fill (converts coin <-> USD)."""
        if not (usd_per_coin > 0 and math.isfinite(usd_per_coin)):
            raise ValueError(f"usd_per_coin must be positive, got {usd_per_coin!r}")
        spec = self.instruments[fill.instrument_id]
        pos = self.position(fill.instrument_id)
        self._trade(spec, pos, fill.side * fill.qty, fill.price, usd_per_coin)
        fc, fu = self._to_both(spec, fill.fee, usd_per_coin)
        self.fees_coin += fc
        self.fees_usd += fu

    def apply_funding(self, instrument_id: int, amount: float, usd_per_coin: float) -> None:
        """Record a funding amount received (settlement currency, negative when paid)."""
        spec = self.instruments[instrument_id]
        c, u = self._to_both(spec, amount, usd_per_coin)
        self.funding_coin += c
        self.funding_usd += u

    def settle(self, instrument_id: int, underlying: float) -> float:
        """Close an expiring option at its intrinsic value, or a dated future at the
        settlement index (no fee); returns the settlement price.

        ``underlying`` is the settlement index (Deribit: a 30-minute TWAP before 08:00 UTC,
        which the caller may approximate by the index at 08:00), also used to convert.
        """
        spec = self.instruments[instrument_id]
        price = option_settlement_price(spec, underlying) if spec.is_option else underlying
        pos = self.position(instrument_id)
        if pos.qty != 0:
            self._trade(spec, pos, -pos.qty, price, underlying)
        return price

    def _trade(self, spec: InstrumentSpec, pos: Position, dq: float, price: float,
               s: float) -> None:
        if dq == 0:
            return
        if pos.qty != 0 and math.copysign(1.0, dq) != math.copysign(1.0, pos.qty):
            closed = min(abs(dq), abs(pos.qty))
            self._realize(spec, pos, closed, price, s)
            sign = math.copysign(1.0, pos.qty)
            pos.qty -= sign * closed
            dq += sign * closed
            if abs(pos.qty) <= _EPS * max(1.0, closed):
                pos.qty = 0.0
                pos.avg_price = pos.avg_entry_coin = pos.avg_entry_usd = 0.0
            if abs(dq) <= _EPS * max(1.0, closed):
                return
        self._open(spec, pos, dq, price, s)

    def _open(self, spec: InstrumentSpec, pos: Position, dq: float, price: float, s: float) -> None:
        old, add = abs(pos.qty), abs(dq)
        new = old + add
        if spec.is_inverse_delta_one:
            pos.avg_price = new / (old / pos.avg_price + add / price) if old else price
        else:
            pos.avg_price = (old * pos.avg_price + add * price) / new
        if spec.is_option:
            vc, vu = self._contract_value(spec, price, s)
            pos.avg_entry_coin = (old * pos.avg_entry_coin + add * vc) / new
            pos.avg_entry_usd = (old * pos.avg_entry_usd + add * vu) / new
        pos.qty += dq

    def _pnl(self, spec: InstrumentSpec, pos: Position, qty: float, price: float, s: float
             ) -> tuple[float, float]:
        """PnL ``(coin, usd)`` of ``qty`` contracts (signed like the position) valued at price."""
        if spec.is_option:
            vc, vu = self._contract_value(spec, price, s)
            return qty * (vc - pos.avg_entry_coin), qty * (vu - pos.avg_entry_usd)
        if spec.is_inverse_delta_one:
            coin = qty * spec.contract_size * (1.0 / pos.avg_price - 1.0 / price)
            return coin, coin * s
        usd = qty * spec.contract_size * (price - pos.avg_price)
        return usd / s, usd

    def _realize(self, spec: InstrumentSpec, pos: Position, closed: float, price: float,
                 s: float) -> None:
        c, u = self._pnl(spec, pos, math.copysign(closed, pos.qty), price, s)
        pos.realized_coin += c
        pos.realized_usd += u

    # ------------------------------------------------------------------ valuation
    def mark(self, prices: Mapping[int, float], usd_per_coin: float) -> PortfolioMark:
        """Value every position at ``prices`` (instrument price currency) and the index."""
        by: dict[int, InstrumentPnL] = {}
        acc = dict.fromkeys(("rc", "ru", "uc", "uu", "oc", "ou", "hc", "hu"), 0.0)
        for iid, pos in sorted(self.positions.items()):
            spec = self.instruments[iid]
            if pos.qty != 0:
                if iid not in prices or not math.isfinite(prices[iid]):
                    raise KeyError(f"no mark price for open position in instrument {iid}")
                m = float(prices[iid])
                uc, uu = self._pnl(spec, pos, pos.qty, m, usd_per_coin)
            else:
                m, uc, uu = float(prices.get(iid, math.nan)), 0.0, 0.0
            by[iid] = InstrumentPnL(pos.qty, m, pos.realized_coin, pos.realized_usd, uc, uu)
            acc["rc"] += pos.realized_coin
            acc["ru"] += pos.realized_usd
            acc["uc"] += uc
            acc["uu"] += uu
            key = "o" if spec.is_option else "h"
            acc[key + "c"] += pos.realized_coin + uc
            acc[key + "u"] += pos.realized_usd + uu
        return PortfolioMark(usd_per_coin, by, acc["rc"], acc["ru"], acc["uc"], acc["uu"],
                             self.fees_coin, self.fees_usd, self.funding_coin, self.funding_usd,
                             acc["oc"], acc["ou"], acc["hc"], acc["hu"])

    def net_qty(self) -> dict[int, float]:
        return {iid: p.qty for iid, p in self.positions.items() if p.qty != 0}

    # ------------------------------------------------------------------ snapshots
    def state_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable state (instrument specs are config, not state)."""
        return {
            "positions": {str(iid): asdict(p) for iid, p in sorted(self.positions.items())},
            "fees_coin": self.fees_coin,
            "fees_usd": self.fees_usd,
            "funding_coin": self.funding_coin,
            "funding_usd": self.funding_usd,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        unknown = [k for k in state["positions"] if int(k) not in self.instruments]
        if unknown:
            raise KeyError(f"state holds positions in unknown instruments {unknown}")
        self.positions = {int(k): Position(**v) for k, v in state["positions"].items()}
        self.fees_coin = float(state["fees_coin"])
        self.fees_usd = float(state["fees_usd"])
        self.funding_coin = float(state["funding_coin"])
        self.funding_usd = float(state["funding_usd"])
