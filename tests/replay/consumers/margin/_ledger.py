"""A venue ledger (:class:`replay.venue.accounting.Portfolio`) with inverse and linear options,
perps and futures at a 5 % basis, a stub market to build margin legs from it, and the ledger's
value at a moved coin price: what the margin models must reproduce."""

from __future__ import annotations

import numpy as np

from calibration.pricing.black import black_price
from calibration.pricing.forwards import time_to_expiry
from replay.consumers.margin.book import book_legs
from replay.model.orders import Fill, InstrumentSpec
from replay.venue.accounting import Portfolio

NS = 10**9
NOW = 1_700_000_000 * NS
NOW = NOW - NOW % (86_400 * NS) + 8 * 3_600 * NS
EXP = NOW + 90 * 86_400 * NS
S, BASIS, VOL = 60_000.0, 1.05, 0.6
F = BASIS * S
T = float(time_to_expiry(NOW, EXP))
INV_CALL, INV_PUT, INV_PERP, INV_FUT, LIN_CALL, LIN_FUT, LIN_PERP = range(1, 8)
SPECS = {
    INV_CALL: InstrumentSpec(INV_CALL, "option", "inverse", 1.0, 0.0005, 65_000.0, EXP, True),
    INV_PUT: InstrumentSpec(INV_PUT, "option", "inverse", 1.0, 0.0005, 55_000.0, EXP, False),
    INV_PERP: InstrumentSpec(INV_PERP, "perp", "inverse", 10.0, 0.5),
    INV_FUT: InstrumentSpec(INV_FUT, "future", "inverse", 10.0, 0.5, None, EXP, None),
    LIN_CALL: InstrumentSpec(LIN_CALL, "option", "linear", 1.0, 1.0, 65_000.0, EXP, True),
    LIN_FUT: InstrumentSpec(LIN_FUT, "future", "linear", 1.0, 1.0, None, EXP, None),
    LIN_PERP: InstrumentSpec(LIN_PERP, "perp", "linear", 1.0, 1.0),
}


def prices(s: float) -> dict[int, float]:
    """The ledger's prices when the coin is at ``s``: options at Black-76 at ``F = b s`` (in
    coin, ``/ F``, if inverse), perps at ``s`` (they are the underlying), futures at ``b s``."""
    f = BASIS * s
    out = {}
    for i, spec in SPECS.items():
        if spec.is_option:
            v = float(black_price(f, spec.strike, T, VOL, bool(spec.is_call)))
            out[i] = v / f if spec.is_inverse else v
        else:
            out[i] = s if spec.kind == "perp" else f
    return out


def ledger(trades) -> Portfolio:
    """A ledger after ``trades``: ``(instrument, signed contracts, coin price at the fill)``,
    each filled at the instrument's price at that coin price."""
    pf = Portfolio(SPECS)
    for n, (iid, q, s) in enumerate(trades):
        pf.apply_fill(Fill(n, iid, NOW, 1 if q > 0 else -1, prices(s)[iid], abs(q), "maker"), s)
    return pf


def ledger_value(pf: Portfolio, move: float, coin: bool) -> float:
    """The account's PnL with the coin at ``S (1 + move)``: USD, or coin valued at today's S
    (as the margin consumer values coin equity)."""
    s = S * (1.0 + move)
    mk = pf.mark(prices(s), s)
    return mk.total_coin * S if coin else mk.total_usd


def ledger_change(pf: Portfolio, moves: np.ndarray, coin: bool) -> np.ndarray:
    base = ledger_value(pf, 0.0, coin)
    return np.array([ledger_value(pf, float(m), coin) - base for m in moves])


def ledger_delta(pf: Portfolio, coin: bool, h: float = 1e-5) -> float:
    """``d PnL / d move`` at 0 (the ledger's delta in S, times S), central difference."""
    return (ledger_value(pf, h, coin) - ledger_value(pf, -h, coin)) / (2.0 * h)


class _Market:
    underlying_id = INV_PERP

    def __init__(self) -> None:
        self.mark_iv = {i: VOL for i, spec in SPECS.items() if spec.is_option}

    def underlying_mid(self) -> float:
        return S

    def mid(self, i: int) -> float:
        return prices(S)[i]

    reference_price = mid

    def expiry_forward(self, expiry_ns: int) -> float:
        return F

    def spot(self) -> float:
        return S


class _Ctx:
    market = _Market()
    now = NOW


def legs_of(pf: Portfolio):
    """The margin legs of the ledger's open positions, as the consumer builds them."""
    pos = pf.net_qty()
    entry = {i: pf.positions[i].avg_price for i in pos}
    legs, _ = book_legs(_Ctx(), SPECS, pos, None, S, VOL, dict.fromkeys(pos, 0), entry)
    return legs
