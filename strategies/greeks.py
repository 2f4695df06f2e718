"""Greeks of the book held: the legs' forwards and vols (surface, flat or premium-adjusted),
Black-76 greeks summed over the legs, and option values in coin (conventions in
:mod:`strategies.base`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import ndtr

from calibration.pricing.black import black_price
from calibration.pricing.black import greeks as black_greeks
from calibration.pricing.forwards import SECONDS_PER_YEAR
from replay.model.config import check_choice
from strategies.board import SurfaceBoard
from strategies.greeks_kernel import book_sum
from strategies.hedge import spot_of

NS_PER_YEAR = SECONDS_PER_YEAR * 1e9


SQRT_2PI = math.sqrt(2.0 * math.pi)


DELTA_SOURCES = ("surface", "flat", "premium_adjusted")


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


def bs_greeks(forward: Any, strike: Any, t: Any, vol: Any, is_call: Any) -> dict[str, np.ndarray]:
    """:func:`calibration.pricing.black.greeks` with every input broadcast to one full shape first
    (``calibration.pricing.black`` warns about read-only broadcast views otherwise)."""
    args = [np.asarray(a) for a in (forward, strike, t, vol, is_call)]
    shape = np.broadcast_shapes(*(a.shape for a in args))
    return black_greeks(*(a if a.shape == shape else np.broadcast_to(a, shape).copy()
                          for a in args))


def nan_to_num(x: np.ndarray) -> np.ndarray:
    """``np.nan_to_num(x)``, without its cost when every value is finite (the usual case of a
    few legs' greeks, evaluated at every hedging decision and corridor probe)."""
    x = np.asarray(x)
    return x if np.isfinite(x).all() else np.nan_to_num(x)


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
    #: each leg's vol move per unit log-forward move under the hedger's smile dynamics
    #: (:mod:`calibration.pricing.smile_delta`); None: sticky strike
    dvol_dlnf: np.ndarray | None = None
    #: bool per leg: a coin-margined option, worth ``V(F) / F`` coin, that is ``V(F) / b`` USD
    #: at the coin's price ``S`` (the ledger's mark); a linear one is worth ``V(F)`` USD
    inverse: np.ndarray = field(kw_only=True)

    def __len__(self) -> int:
        return int(self.instrument_id.size)

    @property
    def forward(self) -> np.ndarray:
        return self.basis * self.spot

    def with_vol(self, vol: np.ndarray) -> BookLegs:
        return BookLegs(self.instrument_id, self.qty, self.strike, self.t,
                        np.broadcast_to(np.asarray(vol, np.float64), self.qty.shape).copy(),
                        self.is_call, self.basis, self.spot, self.premium_adjusted,
                        self.dvol_dlnf, inverse=self.inverse)

    def with_vol_moves(self, dvol_dlnf: np.ndarray) -> BookLegs:
        """The legs with deltas under a smile dynamics: ``delta_BS + vega dvol_dlnf / F``."""
        return BookLegs(self.instrument_id, self.qty, self.strike, self.t, self.vol,
                        self.is_call, self.basis, self.spot, self.premium_adjusted,
                        np.asarray(dvol_dlnf, dtype=np.float64), inverse=self.inverse)

    def weights(self, power: int) -> np.ndarray:
        """``q_i b_i^power / u_i``, ``u_i = b_i`` for an inverse leg and 1 for a linear one:
        the factor of the ``power``-th ``F`` derivative of the per-unit Black value ``V`` in
        the leg's USD value ``q V(b S) / u`` differentiated in ``S`` (module docstring)."""
        b = self.basis
        return self.qty * b ** power / np.where(self.inverse, b, 1.0)

    def per_unit(self, spot: float | None = None) -> dict[str, np.ndarray]:
        """Per-unit Black greeks of each leg at ``spot`` (default: the current one), with
        ``delta`` replaced by the premium-adjusted one when so configured."""
        f = self.basis * (self.spot if spot is None else spot)
        g = bs_greeks(f, self.strike, self.t, self.vol, self.is_call)
        if self.premium_adjusted:
            g["delta"] = g["delta"] - g["price"] / f
        if self.dvol_dlnf is not None:
            g["delta"] = g["delta"] + g["vega"] * self.dvol_dlnf / f
        return g

    def greeks(self) -> Greeks:
        if not len(self):
            return Greeks()
        g = {k: nan_to_num(v) for k, v in self.per_unit().items()}
        w0, w1, w2 = self.weights(0), self.weights(1), self.weights(2)
        return Greeks(delta=float(np.sum(w1 * g["delta"])),
                      gamma=float(np.sum(w2 * g["gamma"])),
                      vega=float(np.sum(w0 * g["vega"])), theta=float(np.sum(w0 * g["theta"])),
                      vanna=float(np.sum(w1 * g["vanna"])), volga=float(np.sum(w0 * g["volga"])),
                      value_usd=float(np.sum(w0 * g["price"])))

    def delta(self, spot: float) -> float:
        """The book's delta at ``spot`` (:meth:`delta_fn`; 0 without legs)."""
        return float(self.delta_fn()(spot)) if len(self) else 0.0

    def delta_fn(self):
        """``D(S)``, vectorised over ``S`` (legs' forwards ``b_i S``; see the module docstring)."""
        return self._sum_fn("delta", 1)

    def gamma_fn(self):
        """``Gamma(S) = sum q_i b_i^2 / u_i d2V/dF2`` vectorised over ``S``."""
        return self._sum_fn("gamma", 2)

    def _sum_fn(self, which: str, power: int):
        """The compiled sum; premium-adjusted deltas (which need prices) take the numpy path,
        :meth:`_numpy_sum_fn`, which is also the kernel's reference twin.  Made once per legs:
        a hedging decision asks for the same sums several times."""
        made = self.__dict__.get(f"_{which}_fn")  # frozen: cached past __setattr__
        if made is None:
            made = self.__dict__[f"_{which}_fn"] = (
                self._numpy_sum_fn(which, power) if self.premium_adjusted
                else self._compiled_sum_fn(which, power))
        return made

    def sum_args(self, power: int) -> tuple[np.ndarray, ...]:
        """The legs as :func:`strategies.greeks_kernel.book_sum` takes them: ``(weights(power),
        b, strike, t, vol, is_call, dvol)``, contiguous (``power`` 1 for deltas, 2 for gammas;
        ``dvol`` empty under sticky strike).  Made once per legs."""
        made = self.__dict__.get(f"_args{power}")  # frozen: cached past __setattr__
        if made is None:
            b, dv = self.basis, self.dvol_dlnf
            made = self.__dict__[f"_args{power}"] = (
                *(np.ascontiguousarray(x, dtype=np.float64)
                  for x in (self.weights(power), b, self.strike, self.t, self.vol)),
                np.ascontiguousarray(self.is_call, dtype=np.bool_),
                np.empty(0) if dv is None else np.ascontiguousarray(dv, dtype=np.float64))
        return made

    def _compiled_sum_fn(self, which: str, power: int):
        *args, calls, dvol = self.sum_args(power)

        def compiled(s):
            s_arr = np.asarray(s, dtype=np.float64)
            out = book_sum(s_arr.reshape(-1), *args, calls, which == "gamma", dvol)
            return float(out[0]) if s_arr.ndim == 0 else out.reshape(s_arr.shape)

        return compiled

    def _numpy_sum_fn(self, which: str, power: int):
        k, t, v, c, b = self.strike, self.t, self.vol, self.is_call, self.basis
        pa, dv = self.premium_adjusted, self.dvol_dlnf
        w = self.weights(power)

        def fn(s):
            s_arr = np.asarray(s, dtype=np.float64)
            f = b * s_arr[..., None]
            val = delta_gamma(f, k, t, v, c, which)
            if which == "delta" and pa:
                val = val - black_price(f, k, t, v, c) / f
            if which == "delta" and dv is not None:  # + vega dvol / F
                val = val + delta_gamma(f, k, t, v, c, "vega_per_forward") * dv
            out = np.sum(w * nan_to_num(val), axis=-1)
            return float(out) if out.ndim == 0 else out

        return fn


def delta_gamma(forward: np.ndarray, strike: np.ndarray, t: np.ndarray, vol: np.ndarray,
                is_call: np.ndarray, which: str) -> np.ndarray:
    """Black-76 forward delta ``N(d1)`` (call) / ``N(d1) - 1`` (put), gamma
    ``n(d1) / (F vol sqrt(t))``, or ``vega / F = n(d1) sqrt(t)`` (``"vega_per_forward"``), with ``d1 = ln(F/K) / (vol sqrt t) + vol sqrt(t) / 2``
    (F. Black, "The pricing of commodity contracts", J. Financial Economics 3, 1976).

    A lean path for the corridor search, which evaluates a book's delta at many prices; it
    expects ``t > 0`` and ``vol > 0`` (live legs) and matches :mod:`calibration.pricing.black`.
    """
    sd = vol * np.sqrt(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        d1 = np.log(forward / strike) / sd + 0.5 * sd
        if which == "delta":
            return ndtr(d1) - np.where(is_call, 0.0, 1.0)
        if which == "vega_per_forward":
            return np.exp(-0.5 * d1 * d1) / SQRT_2PI * np.sqrt(t)
        return np.exp(-0.5 * d1 * d1) / (SQRT_2PI * forward * sd)


def expiry_forward(ctx: Any, expiry_ns: int, spot: float, board: SurfaceBoard | None,
                   iid: int | None = None, fitted: tuple[float, float] | None = None) -> float:
    """The forward of one expiry by the precedence of :mod:`strategies.base`; ``fitted``:
    the expiry's maturity and forward on the board's surface, when already read
    (:meth:`calibration.surface.Surface.at_expiries`)."""
    surf = board.surface if board is not None else None
    if surf is not None and fitted is None:
        t = float(surf.t_of(expiry_ns))
        fitted = (t, float(surf.forward(t)))
    # beyond its first and last slices a surface holds their forward flat: that is not this
    # expiry's (an expiring option's, or a long one's 120 bp off on real Deribit data)
    if surf is not None and surf.ts[0] <= fitted[0] <= surf.ts[-1]:
        f = float(fitted[1])  # as fitted (forward_expiry); moved with the spot below
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


def leg_vols(board: SurfaceBoard | None, strike: np.ndarray, expiry_ns: np.ndarray,
             source: str, flat_vol: float, fitted: Sequence[float] | None = None
             ) -> np.ndarray:
    """Vol of each leg: the published surface's (``surface``/``premium_adjusted``) or flat;
    ``fitted``: the legs' vols on the board's surface, when already read
    (:meth:`calibration.surface.Surface.at_expiries`).

    A listed option takes its own expiry's vol as fitted (sticky expiry, as the PnL marker
    does): the surface read at the maturity its slice had at the fit, not at the time left
    now, which between refits would read a blend with the shorter expiry's slice."""
    surf = board.surface if board is not None else None
    if source == "flat" or surf is None or not len(strike):
        return np.full(np.shape(strike), float(flat_vol))
    if fitted is None:
        with np.errstate(all="ignore"):
            fitted = surf.iv_expiry(strike, expiry_ns)
    return flat_or(fitted, flat_vol)


def book_legs(ctx: Any, positions: Mapping[int, float] | None, source: str,
              board: SurfaceBoard | None, flat_vol: float = 0.6) -> BookLegs:
    """The option legs held: ``positions`` (contracts per option instrument id), by default
    every option with a non-zero ``ctx.position``.  Expired legs are left out."""
    check_choice("delta_source", source, DELTA_SOURCES)
    inst = ctx.instruments
    if positions is None:
        opts = set(inst.ids_of_kind("option").tolist())
        positions = {i: q for i, q in sorted(ctx.positions().items()) if i in opts}
    ids = np.array([i for i, q in positions.items()
                    if q != 0 and inst.expiry_ns[i] > ctx.now], dtype=np.int64)
    spot = spot_of(ctx)
    if not ids.size or not math.isfinite(spot):
        e = np.zeros(0)
        return BookLegs(ids[:0], e, e, e, e, e.astype(bool), e, spot, source == "premium_adjusted",
                        inverse=e.astype(bool))
    expiry, id_list = inst.expiry_ns[ids], ids.tolist()
    qty = np.array([positions[i] for i in id_list]) * inst.contract_size[ids]
    strike = inst.strike[ids].astype(np.float64)
    t = (expiry - ctx.now).astype(np.float64) / NS_PER_YEAR
    # the surface read once for every leg: each one's expiry as fitted, and its vol
    surf = board.surface if board is not None else None
    fitted = surf.at_expiries(strike, expiry)[:, :3].tolist() if surf is not None else None
    fwd: dict[int, float] = {}
    basis = np.empty(ids.size)
    for j, (i, e) in enumerate(zip(id_list, expiry.tolist())):
        f = fwd.get(e)
        if f is None:
            f = fwd[e] = expiry_forward(ctx, e, spot, board, i,
                                        None if fitted is None else fitted[j][:2])
        basis[j] = f / spot
    vol = leg_vols(board, strike, expiry, source, flat_vol,
                   None if fitted is None else [v for _, _, v in fitted])
    return BookLegs(ids, qty, strike, t, vol, inst.is_call[ids] == 1, basis, spot,
                    source == "premium_adjusted", inverse=inst.settlement[ids] == "inverse")


def book_greeks(ctx: Any, positions: Mapping[int, float] | None, source: str,
                board: SurfaceBoard | None, flat_vol: float = 0.6) -> Greeks:
    """Aggregate greeks of the option positions held (see :func:`book_legs` and the module
    docstring for units and conventions)."""
    return book_legs(ctx, positions, source, board, flat_vol).greeks()

