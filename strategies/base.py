"""What every book and hedging strategy shares: the published surface, option greeks of the
book held, the hedge instrument and the conversion of deltas into hedge contracts.

Conventions
-----------
* **Underlying price ``S``**: the mid of the engine's designated underlying
  (``ctx.market.underlying_mid()``, the perpetual when there is one; :func:`spot_of` falls
  back to its reference price, then to the venue forward of the nearest expiry).  Every delta
  is a sensitivity to ``S``; wake corridors watch that same mid (without an underlying tape
  the engine cannot watch a corridor, and strategies wake on their deadlines only).
* **Forward of an expiry ``F_i``**, first available of: the published surface's forward for
  that expiry (scaled by ``S / S_fit`` when the board knows the spot at fit time, so a surface
  a few seconds old does not lag the market); the venue forward of the option's own quote
  (``ctx.market.venue_forward``), else of its expiry (``ctx.market.expiry_forward``, the
  median over that expiry's quotes); the mid of a future of the same expiry; ``S`` itself.
  The basis ``b_i = F_i / S`` is held fixed when ``S`` moves, so ``dF_i/dS = b_i``.
* **Quantities**: option positions are contracts; a leg holds ``q_i = contracts x
  contract_size`` units of the underlying (coin), signed, long > 0.
* **Greeks** (:class:`Greeks`) are Black-76 (undiscounted) sums over the legs, in USD per unit
  of the underlying, each leg at its own vol (sticky strike):
  ``delta = sum q_i b_i dV/dF`` (BTC), ``gamma = sum q_i b_i^2 d2V/dF2`` (BTC per USD),
  ``vega = sum q_i dV/dvol`` (USD per 1.00 of vol), ``theta = sum q_i (-dV/dt)`` (USD per
  year), ``vanna = sum q_i b_i d2V/dF dvol``, ``volga = sum q_i d2V/dvol2``.
* **Delta source** (:data:`DELTA_SOURCES`): ``surface`` uses the latest published surface's
  vol at each strike (the flat vol until a surface is published or where it has no value);
  ``flat`` Black-76 at one configured vol; ``premium_adjusted`` the coin-margined delta
  ``dV/dF - V/F`` (:func:`calibration.pricing.inverse.premium_adjusted_delta`) at the surface vol
  (or flat): the hedge of an option whose premium is itself held in coin.
* **Hedge instruments**: ``perp``, ``future`` (the nearest unexpired one) or ``spot`` of the
  underlying, matched by kind and by the underlying prefix of the name (``BTC`` in
  ``BTC-PERPETUAL``, ``BTC-USD``).  An inverse perp or future contract is ``contract_size``
  USD (its delta is ``n cs / P`` coin at price ``P``), a linear one or spot ``contract_size``
  coin, so offsetting a book delta ``D`` (BTC) takes ``-D P / cs`` inverse contracts or
  ``-D / cs`` linear ones (:func:`hedge_contracts`).  ``P`` is the hedge instrument's mid
  (else its reference price, :func:`instrument_price`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtr

from calibration.pricing.black import black_price
from calibration.pricing.black import greeks as black_greeks
from calibration.pricing.forwards import SECONDS_PER_YEAR
from replay.engine.journal import EventKind, register_kind
from replay.engine.state import Instruments
from replay.errors import ConfigError
from replay.model.config import check_choice
from replay.model.instruments import underlying_of
from strategies.board import SurfaceBoard

NS_PER_YEAR = SECONDS_PER_YEAR * 1e9
SQRT_2PI = math.sqrt(2.0 * math.pi)
DELTA_SOURCES = ("surface", "flat", "premium_adjusted")
HEDGE_KINDS = ("perp", "future", "spot")

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

@dataclass(frozen=True)
class Greeks:
    """Aggregate greeks of a set of option legs (units in the module docstring)."""

    delta: float = 0.0
    gamma: float = 0.0
    vega: float = 0.0
    theta: float = 0.0
    vanna: float = 0.0
    volga: float = 0.0
    value_usd: float = 0.0


def is_inverse_delta_one(instruments: Instruments, iid: int) -> bool:
    return (instruments.settlement[iid] == "inverse"
            and instruments.kind[iid] in ("perp", "future"))


def resolve_hedge(instruments: Instruments, hedge: str, now: int, underlying: str = "BTC"
                  ) -> int:
    """Instrument id of the hedge: the perp, the nearest future expiring after ``now``, or
    spot, of ``underlying``.  Raises :class:`ConfigError` naming what the store has."""
    check_choice("strategy.hedge", hedge, HEDGE_KINDS)
    ids = [int(i) for i in instruments.ids_of_kind(hedge)
           if underlying_of(instruments.name[i]) == underlying]
    if hedge == "future":
        ids = [i for i in ids if instruments.expiry_ns[i] > now]
        ids.sort(key=lambda i: int(instruments.expiry_ns[i]))
    if not ids:
        have = sorted({str(k) for k in instruments.kind if k})
        raise ConfigError(f"strategy.hedge: no {hedge} of {underlying} in the store "
                          f"(instrument kinds present: {', '.join(have)})")
    return ids[0]


def hedge_contracts(delta_btc: float, price: float, contract_size: float, inverse: bool
                    ) -> float:
    """Hedge contracts offsetting a delta of ``delta_btc``: ``-D P / cs`` (inverse: ``cs`` USD
    per contract) or ``-D / cs`` (linear/spot: ``cs`` coin per contract)."""
    return -delta_btc * price / contract_size if inverse else -delta_btc / contract_size


def contracts_delta(contracts: float, price: float, contract_size: float, inverse: bool
                    ) -> float:
    """Delta (BTC) of holding ``contracts`` of the hedge: ``n cs / P`` inverse, ``n cs`` linear."""
    return contracts * contract_size / price if inverse else contracts * contract_size


def bs_greeks(forward: Any, strike: Any, t: Any, vol: Any, is_call: Any) -> dict[str, np.ndarray]:
    """:func:`calibration.pricing.black.greeks` with every input broadcast to one full shape first
    (``calibration.pricing.black`` warns about read-only broadcast views otherwise)."""
    args = [np.asarray(a) for a in (forward, strike, t, vol, is_call)]
    shape = np.broadcast_shapes(*(a.shape for a in args))
    return black_greeks(*(a if a.shape == shape else np.broadcast_to(a, shape).copy()
                          for a in args))


def flat_or(vol: np.ndarray, flat_vol: float) -> np.ndarray:
    v = np.asarray(vol, dtype=np.float64)
    return np.where(np.isfinite(v) & (v > 0), v, flat_vol)


@dataclass(frozen=True)
class BookLegs:
    """The option legs of a book at one instant, ready for vectorised Black-76 formulas."""

    instrument_id: np.ndarray  # int64
    qty: np.ndarray  # underlying units, signed
    strike: np.ndarray
    t: np.ndarray  # years to expiry
    vol: np.ndarray
    is_call: np.ndarray  # bool
    basis: np.ndarray  # F_i / S
    spot: float
    premium_adjusted: bool = False

    def __len__(self) -> int:
        return int(self.instrument_id.size)

    @property
    def forward(self) -> np.ndarray:
        return self.basis * self.spot

    def with_vol(self, vol: np.ndarray) -> BookLegs:
        return BookLegs(self.instrument_id, self.qty, self.strike, self.t,
                        np.broadcast_to(np.asarray(vol, np.float64), self.qty.shape).copy(),
                        self.is_call, self.basis, self.spot, self.premium_adjusted)

    def per_unit(self, spot: float | None = None) -> dict[str, np.ndarray]:
        """Per-unit Black greeks of each leg at ``spot`` (default: the current one), with
        ``delta`` replaced by the premium-adjusted one when so configured."""
        f = self.basis * (self.spot if spot is None else spot)
        g = bs_greeks(f, self.strike, self.t, self.vol, self.is_call)
        if self.premium_adjusted:
            g["delta"] = g["delta"] - g["price"] / f
        return g

    def greeks(self) -> Greeks:
        if not len(self):
            return Greeks()
        g = {k: np.nan_to_num(v) for k, v in self.per_unit().items()}
        q, b = self.qty, self.basis
        return Greeks(delta=float(np.sum(q * b * g["delta"])),
                      gamma=float(np.sum(q * b * b * g["gamma"])),
                      vega=float(np.sum(q * g["vega"])), theta=float(np.sum(q * g["theta"])),
                      vanna=float(np.sum(q * b * g["vanna"])), volga=float(np.sum(q * g["volga"])),
                      value_usd=float(np.sum(q * g["price"])))

    def delta_fn(self):
        """``D(S)``, vectorised over ``S`` (legs' forwards ``b_i S``; see the module docstring)."""
        return self._sum_fn("delta", 1)

    def gamma_fn(self):
        """``Gamma(S) = sum q_i b_i^2 d2V/dF2`` vectorised over ``S``."""
        return self._sum_fn("gamma", 2)

    def _sum_fn(self, which: str, power: int):
        q, k, t, v, c, b = self.qty, self.strike, self.t, self.vol, self.is_call, self.basis
        pa = self.premium_adjusted
        w = q * b ** power

        def fn(s):
            s_arr = np.asarray(s, dtype=np.float64)
            f = b * s_arr[..., None]
            val = delta_gamma(f, k, t, v, c, which)
            if which == "delta" and pa:
                val = val - black_price(f, k, t, v, c) / f
            out = np.sum(w * np.nan_to_num(val), axis=-1)
            return float(out) if out.ndim == 0 else out

        return fn


def delta_gamma(forward: np.ndarray, strike: np.ndarray, t: np.ndarray, vol: np.ndarray,
                is_call: np.ndarray, which: str) -> np.ndarray:
    """Black-76 forward delta ``N(d1)`` (call) / ``N(d1) - 1`` (put), or gamma
    ``n(d1) / (F vol sqrt(t))``, with ``d1 = ln(F/K) / (vol sqrt t) + vol sqrt(t) / 2``
    (F. Black, "The pricing of commodity contracts", J. Financial Economics 3, 1976).

    A lean path for the corridor search, which evaluates a book's delta at many prices; it
    expects ``t > 0`` and ``vol > 0`` (live legs) and matches :mod:`calibration.pricing.black`.
    """
    sd = vol * np.sqrt(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = np.log(forward / strike) / sd + 0.5 * sd
        if which == "delta":
            return ndtr(d1) - np.where(is_call, 0.0, 1.0)
        return np.exp(-0.5 * d1 * d1) / (SQRT_2PI * forward * sd)


def spot_of(ctx: Any) -> float:
    """The underlying price ``S``: the designated underlying's mid; without one (a store of
    option summaries has no underlying tape) its reference price, else the venue forward of
    the nearest live expiry.  NaN when none is known yet."""
    m = ctx.market
    s = float(m.underlying_mid())
    if math.isfinite(s) and s > 0:
        return s
    ref = getattr(m, "reference_price", None)
    if ref is not None and m.underlying_id >= 0:
        s = float(ref(m.underlying_id))
        if math.isfinite(s) and s > 0:
            return s
    fwd = getattr(m, "expiry_forward", None)
    if fwd is not None:
        inst = ctx.instruments
        exps = inst.expiry_ns[(inst.kind == "option") & (inst.expiry_ns > ctx.now)]
        for e in np.unique(exps)[:3]:  # the nearest expiry may not be quoted yet
            s = float(fwd(int(e)))
            if math.isfinite(s) and s > 0:
                return s
    return math.nan


def instrument_price(ctx: Any, iid: int, fallback: float) -> float:
    """The mid of ``iid``, else its reference price (funding mark, a future's venue
    forward), else ``fallback``."""
    p = float(ctx.market.mid(iid))
    if not (math.isfinite(p) and p > 0):
        ref = getattr(ctx.market, "reference_price", None)
        p = float(ref(iid)) if ref is not None else math.nan
    return p if math.isfinite(p) and p > 0 else fallback


def expiry_forward(ctx: Any, expiry_ns: int, spot: float, board: SurfaceBoard | None,
                   iid: int | None = None) -> float:
    """The forward of one expiry by the precedence of the module docstring."""
    surf = board.surface if board is not None else None
    if surf is not None:
        f = float(surf.forward(max(float(expiry_ns - ctx.now) / NS_PER_YEAR, 0.0)))
        if math.isfinite(board.spot) and board.spot > 0 and math.isfinite(spot):
            f *= spot / board.spot
        if math.isfinite(f) and f > 0:
            return f
    vf = getattr(ctx.market, "venue_forward", None)
    if vf is not None and iid is not None:
        f = float(vf[iid])
        if math.isfinite(f) and f > 0:
            return f
    ef = getattr(ctx.market, "expiry_forward", None)
    if ef is not None:
        f = float(ef(int(expiry_ns)))
        if math.isfinite(f) and f > 0:
            return f
    inst = ctx.instruments
    for fid in inst.ids_of_kind("future"):
        if inst.expiry_ns[fid] == expiry_ns:
            f = float(ctx.market.mid(int(fid)))
            if math.isfinite(f) and f > 0:
                return f
    return spot


def leg_vols(board: SurfaceBoard | None, strike: np.ndarray, t: np.ndarray, source: str,
             flat_vol: float) -> np.ndarray:
    """Vol of each leg: the published surface's (``surface``/``premium_adjusted``) or flat."""
    surf = board.surface if board is not None else None
    if source == "flat" or surf is None or not len(strike):
        return np.full(np.shape(strike), float(flat_vol))
    with np.errstate(all="ignore"):
        return flat_or(surf.iv(strike, t), flat_vol)


def book_legs(ctx: Any, positions: Mapping[int, float] | None, source: str,
              board: SurfaceBoard | None, flat_vol: float = 0.6) -> BookLegs:
    """The option legs held: ``positions`` (contracts per option instrument id), by default
    every option with a non-zero ``ctx.position``.  Expired legs are left out."""
    check_choice("delta_source", source, DELTA_SOURCES)
    inst = ctx.instruments
    if positions is None:
        opts = inst.ids_of_kind("option")
        positions = {int(i): ctx.position(int(i)) for i in opts}
    ids = np.array([i for i, q in positions.items()
                    if q != 0 and inst.expiry_ns[i] > ctx.now], dtype=np.int64)
    spot = spot_of(ctx)
    if not ids.size or not math.isfinite(spot):
        e = np.zeros(0)
        return BookLegs(ids[:0], e, e, e, e, e.astype(bool), e, spot, source == "premium_adjusted")
    qty = np.array([positions[int(i)] for i in ids]) * inst.contract_size[ids]
    strike = inst.strike[ids].astype(np.float64)
    t = (inst.expiry_ns[ids] - ctx.now).astype(np.float64) / NS_PER_YEAR
    fwd: dict[int, float] = {}
    basis = np.empty(ids.size)
    for j, (i, e) in enumerate(zip(ids, inst.expiry_ns[ids])):
        if int(e) not in fwd:
            fwd[int(e)] = expiry_forward(ctx, int(e), spot, board, int(i))
        basis[j] = fwd[int(e)] / spot
    vol = leg_vols(board, strike, t, source, flat_vol)
    return BookLegs(ids, qty, strike, t, vol, inst.is_call[ids] == 1, basis, spot,
                    source == "premium_adjusted")


def book_greeks(ctx: Any, positions: Mapping[int, float] | None, source: str,
                board: SurfaceBoard | None, flat_vol: float = 0.6) -> Greeks:
    """Aggregate greeks of the option positions held (see :func:`book_legs` and the module
    docstring for units and conventions)."""
    return book_legs(ctx, positions, source, board, flat_vol).greeks()


def option_value_coin(forward: float, strike: float, t: float, vol: float, is_call: bool
                      ) -> float:
    """Inverse-option premium in coin, ``black_price / F`` (``docs/architecture.md``, "Units")."""
    return float(black_price(forward, strike, t, vol, is_call)) / forward


def require_positive(key: str, value: float) -> float:
    if not (isinstance(value, int | float) and value > 0 and math.isfinite(value)):
        raise ConfigError(f"{key}: {value!r} must be a positive number")
    return float(value)
