"""The fitted volatility surface: slices of any model, interpolation in time, prices, greeks.

Interpolation in maturity is linear in total variance at fixed forward log-moneyness
``k = ln(K / F(t))`` (Gatheral 2006, *The Volatility Surface*, ch. 3; Gatheral and Jacquier
2014, Section 5)::

    w(k, t) = w_i(k) + (w_{i+1}(k) - w_i(k)) (t - t_i) / (t_{i+1} - t_i),   t_i <= t <= t_{i+1}

which keeps ``w`` non-decreasing in ``t`` wherever the slices are calendar-free: the check
covers each pair of neighbouring expiries wherever either is quoted, not where both are
extrapolated far beyond their quotes (:mod:`calibration.arbitrage`).  Before the
first slice ``w(k, t) = w_1(k) t / t_1`` and after the last ``w(k, t) = w_n(k) t / t_n``
(constant implied vol at fixed ``k``).  The forward is interpolated log-linearly in ``t``
between slice forwards (a constant carry rate between expiries) and held flat outside.

Prices are undiscounted Black-76 (``calibration.pricing.black``), in USD and, for inverse options,
in coin (``USD / F``); greeks are taken at the surface vol of the strike (sticky strike).

A surface always carries the arbitrage violations found on its slices
(:func:`calibration.arbitrage.check_slices`); :attr:`Surface.arbitrage_free` says whether
there are none.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import cached_property

import numpy as np

from calibration.arbitrage import SliceView, Violation, check_slices
from calibration.models.essvi import ESSVIParams, essvi_derivatives, essvi_wing_slopes
from calibration.models.sabr import SABRParams, sabr_derivatives
from calibration.models.svi import SVIParams, svi_derivatives
from calibration.models.svi_arbitrage import svi_surface_clean
from calibration.models.svi_formula import (
    svi_expiry_reads,
    svi_rows_iv,
    svi_rows_total_variance,
)
from calibration.pricing.black import black_price, greeks
from calibration.pricing.forwards import SECONDS_PER_YEAR, time_to_expiry

MODELS = ("svi", "essvi", "sabr")
PARAMS = {"svi": SVIParams, "essvi": ESSVIParams, "sabr": SABRParams}


def param_values(p: SVIParams | ESSVIParams | SABRParams) -> tuple:
    """A model's parameters in field order (``asdict`` deep-copies: this is the hot path)."""
    return tuple(vars(p).values())


@dataclass(frozen=True)
class SmileSlice:
    """One fitted expiry: the model, its parameters, and the ``k`` domain its quotes covered."""

    model: str
    params: SVIParams | ESSVIParams | SABRParams
    expiry_ns: int
    t: float
    forward: float
    k_lo: float
    k_hi: float

    def derivatives(self, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.model == "svi":
            return svi_derivatives(k, self.params)
        if self.model == "essvi":
            return essvi_derivatives(k, self.params)
        if self.model == "sabr":
            return sabr_derivatives(k, self.forward, self.t, self.params)
        raise ValueError(f"unknown model {self.model!r}")

    def total_variance(self, k: np.ndarray) -> np.ndarray:
        return self.derivatives(np.asarray(k, dtype=float))[0]

    def iv(self, k: np.ndarray) -> np.ndarray:
        return np.sqrt(np.maximum(self.total_variance(k), 0.0) / self.t)

    def vol_and_skew(self, k: np.ndarray | float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Implied vol ``sigma(k) = sqrt(w(k) / t)`` and its slope in log-moneyness,
        ``d sigma / dk = w'(k) / (2 sqrt(w(k) t))`` (at ``k = 0``: the ATM vol and skew).

        >>> from calibration.models.svi import SVIParams
        >>> s = SmileSlice("svi", SVIParams(0.04, 0.1, -0.5, 0.0, 0.1), 0, 0.25, 1.0, -1, 1)
        >>> [round(float(x), 6) for x in s.vol_and_skew()]
        [0.447214, -0.223607]
        """
        w, w1, _ = self.derivatives(np.asarray(k, dtype=float))
        w = np.maximum(w, 1e-300)
        return np.sqrt(w / self.t), w1 / (2.0 * np.sqrt(w * self.t))

    def wing_slopes(self) -> tuple[float, float] | None:
        if self.model == "svi":
            p = self.params
            return p.b * (1.0 - p.rho), p.b * (1.0 + p.rho)
        if self.model == "essvi":
            return essvi_wing_slopes(self.params)
        return None  # SABR's expansion has no finite asymptote: checked on the grid

    def view(self) -> SliceView:
        return SliceView(self.t, self.k_lo, self.k_hi, self.derivatives, self.wing_slopes())


class Surface:
    """An immutable set of fitted slices at time ``ts_ns`` with their arbitrage violations."""

    def __init__(self, slices: Sequence[SmileSlice], ts_ns: int = 0,
                 violations: Sequence[Violation] | None = None) -> None:
        if not slices:
            raise ValueError("a surface needs at least one slice")
        self.slices = tuple(sorted(slices, key=lambda s: s.t))
        self._stack(ts_ns, [s.t for s in self.slices], [s.forward for s in self.slices],
                    [s.model for s in self.slices], None)
        if violations is None:
            # an all-SVI surface is screened in one compiled pass; what it flags, and every
            # other surface, is listed by the general check
            violations = () if self._svi_clean() else check_slices([s.view() for s in self.slices])
        self.violations: tuple[Violation, ...] = tuple(violations)

    @classmethod
    def from_columns(cls, model: Sequence[str], params: np.ndarray, expiry_ns: np.ndarray,
                     t: np.ndarray, forward: np.ndarray, k_lo: np.ndarray, k_hi: np.ndarray,
                     ts_ns: int, violations: Sequence[Violation]) -> Surface:
        """The surface ``Surface([SmileSlice(model[i], PARAMS[model[i]](*params[i]),
        expiry_ns[i], t[i], forward[i], k_lo[i], k_hi[i]) ...], ts_ns, violations)`` of slices
        given as columns (``params``: one row of parameters per slice, every model's of one
        length), equal to it in every value.  The slice objects are made when first asked
        for: a surface replayed from a stream is read through its stacked arrays
        (:meth:`forward`, :meth:`total_variance`) far more often than slice by slice."""
        if not len(t):
            raise ValueError("a surface needs at least one slice")
        t = np.asarray(t)
        cols = (params, expiry_ns, t, forward, k_lo, k_hi)
        self = cls.__new__(cls)
        if (t[1:] >= t[:-1]).all():  # in order already (a stream's fits are): as they are
            self._columns = (list(model), *(np.asarray(c) for c in cols))
        else:
            order = np.argsort(t, kind="stable")  # as __init__'s stable sort
            self._columns = ([model[i] for i in order.tolist()],
                             *(np.asarray(c)[order] for c in cols))
        models, par, _, t, forward, _, _ = self._columns
        self._stack(ts_ns, t, forward, models, par)
        self.violations = tuple(violations)
        return self

    def _stack(self, ts_ns: int, t: Sequence[float], forward: Sequence[float],
               models: Sequence[str], svi_par: np.ndarray | None) -> None:
        """The per-slice arrays both constructors set, from the slices' ``t``, forwards and
        models in increasing ``t``; ``svi_par`` (the stacked parameters) is kept when every
        slice is SVI, else they are stacked on first use (:meth:`svi_params`)."""
        self.ts_ns = int(ts_ns)
        self.ts = np.asarray(t, dtype=np.float64)
        self.forwards = np.asarray(forward, dtype=np.float64)
        self._log_forwards = np.log(self.forwards)
        self._all_svi = all(m == "svi" for m in models)
        self._svi_par = np.ascontiguousarray(svi_par, dtype=np.float64) \
            if self._all_svi and svi_par is not None else None

    @cached_property
    def slices(self) -> tuple[SmileSlice, ...]:
        """The slices in increasing ``t`` (set by ``__init__``; made on first use by
        :meth:`from_columns`)."""
        model, par, expiry, t, forward, k_lo, k_hi = self._columns
        return tuple(SmileSlice(m, PARAMS[m](*p), *rest) for m, p, *rest in zip(
            model, par.tolist(), expiry.tolist(), t.tolist(), forward.tolist(), k_lo.tolist(),
            k_hi.tolist()))

    def _svi_clean(self) -> bool:
        if not self._all_svi:
            return False
        return svi_surface_clean(self.svi_params(), np.array([s.k_lo for s in self.slices]),
                                 np.array([s.k_hi for s in self.slices]))

    def svi_params(self) -> np.ndarray:
        """The slices' SVI parameters stacked as rows ``a, b, rho, m, sigma`` (all-SVI)."""
        if self._svi_par is None:
            self._svi_par = np.array([param_values(s.params) for s in self.slices])
        return self._svi_par

    @property
    def arbitrage_free(self) -> bool:
        return not self.violations

    def to_state(self) -> dict:
        """Plain JSON-able state; :meth:`from_state` rebuilds an identical surface (floats
        round-trip exactly) without re-running the arbitrage check."""
        return {"ts_ns": self.ts_ns,
                "slices": [{"model": x.model, "params": list(param_values(x.params)),
                            "expiry_ns": x.expiry_ns, "t": x.t, "forward": x.forward,
                            "k_lo": x.k_lo, "k_hi": x.k_hi} for x in self.slices],
                "violations": [asdict(v) for v in self.violations]}

    @staticmethod
    def from_state(st: dict) -> Surface:
        slices = [SmileSlice(x["model"], PARAMS[x["model"]](*x["params"]), int(x["expiry_ns"]),
                             float(x["t"]), float(x["forward"]), float(x["k_lo"]),
                             float(x["k_hi"])) for x in st["slices"]]
        viol = st.get("violations")
        return Surface(slices, int(st["ts_ns"]),
                       None if viol is None else [Violation(**v) for v in viol])

    def t_of(self, expiry_ns: int | np.ndarray) -> np.ndarray:
        """Years from the surface time to the given expiries (08:00 UTC settlements)."""
        return np.asarray(time_to_expiry(self.ts_ns, expiry_ns), dtype=float)

    def years_since_fit(self, now_ns: int) -> float:
        """Years from the surface time to ``now_ns``: what a leg's time to expiry now adds to
        give its maturity as fitted (where :meth:`iv_expiry` reads it)."""
        return float(time_to_expiry(self.ts_ns, now_ns))

    def forward(self, t: float | np.ndarray) -> np.ndarray:
        """``F(t)``: log-linear in ``t`` between slice forwards, flat outside."""
        return np.exp(np.interp(t, self.ts, self._log_forwards))

    def total_variance(self, k: np.ndarray, t: float | np.ndarray) -> np.ndarray:
        """``w(k, t)`` by the interpolation of the module docstring (``k``, ``t`` broadcast)."""
        if np.ndim(t) == 0:
            k = np.asarray(k, dtype=float)
            if self._all_svi:  # the same values as the slices give, in one compiled pass
                return svi_rows_total_variance(
                    self.svi_params(), self.ts, np.ascontiguousarray(k).reshape(1, -1),
                    np.array([float(t)])).reshape(k.shape)
            return self._total_variance_at(k, float(t))
        k, t = _broadcast(k, t)
        # each point on its own maturity: one row of one point per (k, t) pair
        return self.total_variance_rows(k.reshape(-1, 1), t.ravel()).reshape(k.shape)

    def _total_variance_at(self, k: np.ndarray, t: float) -> np.ndarray:
        """Same as :meth:`total_variance` for one ``t``: only the bracketing slices are
        evaluated (the fast path for a quote slice or a single expiry)."""
        n = len(self.slices)
        i = int(np.searchsorted(self.ts, t, side="right"))
        if i == 0:
            return self.slices[0].total_variance(k) * (t / self.ts[0])
        if i >= n:
            return self.slices[-1].total_variance(k) * (t / self.ts[-1])
        t0, t1 = self.ts[i - 1], self.ts[i]
        w0 = self.slices[i - 1].total_variance(k)
        if t == t0:
            return w0
        return w0 + (self.slices[i].total_variance(k) - w0) * ((t - t0) / (t1 - t0))

    def total_variance_rows(self, k: np.ndarray, t: np.ndarray) -> np.ndarray:
        """``w(k, t)`` for a matrix ``k`` whose row ``i`` is at maturity ``t[i]`` (many
        moneyness points of a few legs): the interpolation of :meth:`total_variance`,
        evaluating each point on its two bracketing slices only.  All-SVI surfaces take one
        compiled pass over the stacked parameters; others go expiry by expiry."""
        k = np.asarray(k, dtype=float)
        t = np.asarray(t, dtype=float)
        if not self._all_svi:
            out = np.empty(k.shape)
            ts, inv = np.unique(t, return_inverse=True)
            for e, te in enumerate(ts):
                out[inv == e] = self._total_variance_at(k[inv == e], float(te))
            return out
        return svi_rows_total_variance(self.svi_params(), self.ts, np.ascontiguousarray(k), t)

    def iv(self, strike: np.ndarray, t: float | np.ndarray) -> np.ndarray:
        """Implied vol (fraction) at ``strike`` and year fraction ``t`` (broadcast),
        ``sqrt(w(ln(K / F(t)), t) / t)``.  An all-SVI surface reads it in one compiled pass
        (:func:`~calibration.models.svi_formula.svi_rows_iv`); :meth:`iv_numpy`, the
        composition of :meth:`forward` and :meth:`total_variance`, is its reference twin and
        every other surface's path."""
        strike, t = _broadcast(strike, t)
        if not self._all_svi:
            return self.iv_numpy(strike, t)
        out = svi_rows_iv(self.svi_params(), self.ts, self._log_forwards,
                          np.ascontiguousarray(strike).reshape(-1),
                          np.ascontiguousarray(t).reshape(-1))
        return out.reshape(strike.shape) if strike.ndim else out[0]

    def iv_numpy(self, strike: np.ndarray, t: float | np.ndarray) -> np.ndarray:
        """:meth:`iv` by numpy: ``ln(K / F(t))`` (:meth:`forward`), :meth:`total_variance`."""
        strike, t = _broadcast(strike, t)
        k = np.log(strike / self.forward(t))
        return np.sqrt(np.maximum(self.total_variance(k, t), 0.0) / np.maximum(t, 1e-300))

    def atm_vol(self, t: float) -> float:
        """The at-the-money vol (``K = F(t)``) for year fraction ``t``."""
        with np.errstate(all="ignore"):
            return float(np.asarray(self.iv(np.asarray(self.forward(t)), t)).ravel()[0])

    def vol_and_skew(self, strike: np.ndarray, t: float | np.ndarray, eps: float = 1e-3
                     ) -> tuple[np.ndarray, np.ndarray]:
        """The vol at ``strike`` and its slope in log-moneyness ``d sigma / dk`` (at fixed
        ``F``, ``dk = d ln K``), by a central difference of ``eps`` in ``ln K``; ``strike``
        and ``t`` broadcast as in :meth:`iv`."""
        return _vol_and_skew(self.iv, strike, t, eps)

    def price(self, strike: np.ndarray, t: float | np.ndarray, is_call: np.ndarray
              ) -> np.ndarray:
        """Undiscounted Black-76 price in USD at the surface vol."""
        return black_price(self.forward(t), strike, t, self.iv(strike, t), is_call)

    def price_coin(self, strike: np.ndarray, t: float | np.ndarray, is_call: np.ndarray
                   ) -> np.ndarray:
        """Inverse-option premium in coin: USD price / F(t)."""
        return self.price(strike, t, is_call) / self.forward(t)

    def greeks(self, strike: np.ndarray, t: float | np.ndarray, is_call: np.ndarray
               ) -> dict[str, np.ndarray]:
        """Black-76 greeks (``calibration.pricing.black.greeks``) at the surface vol, sticky strike."""
        return greeks(self.forward(t), strike, t, self.iv(strike, t), is_call)

    def iv_expiry(self, strike: np.ndarray, expiry_ns: int | np.ndarray) -> np.ndarray:
        """Implied vol of an instrument given by strike and expiry timestamp, as fitted: at
        the maturity the expiry had at the surface time (sticky expiry).  Read later at the
        time left then, the surface would blend the expiry's slice with a shorter one's."""
        return self.iv(strike, self.t_of(expiry_ns))

    def at_expiries(self, strike: np.ndarray, expiry_ns: np.ndarray, eps: float = 1e-3
                    ) -> np.ndarray:
        """Per instrument (``strike``, ``expiry_ns``, one-dimensional), as fitted (sticky
        expiry, as :meth:`iv_expiry`), a row ``t, F, sigma, sigma_ATM, S``: its expiry's
        maturity at the surface time (:meth:`t_of`), the forward there (:meth:`forward`),
        the vol at the strike, and the ATM vol and skew of :meth:`vol_and_skew` at ``K = F``:
        what a book's greeks and a mark's explain read.  One compiled pass on an all-SVI surface
        (:func:`~calibration.models.svi_formula.svi_expiry_reads`), else its twin below."""
        strike = np.ascontiguousarray(strike, dtype=np.float64)
        expiry_ns = np.ascontiguousarray(expiry_ns, dtype=np.int64)
        if not self._all_svi:
            return self.at_expiries_numpy(strike, expiry_ns, eps)
        return svi_expiry_reads(self.svi_params(), self.ts, self._log_forwards, self.ts_ns,
                                expiry_ns, strike, 1e9 * SECONDS_PER_YEAR, eps)

    def at_expiries_numpy(self, strike: np.ndarray, expiry_ns: np.ndarray, eps: float = 1e-3
                          ) -> np.ndarray:
        """:meth:`at_expiries` by numpy (:meth:`iv_numpy` at the strike, and the central
        difference of :meth:`vol_and_skew` at ``F`` read by it)."""
        t = self.t_of(expiry_ns)
        f = self.forward(t)
        atm, skew = _vol_and_skew(self.iv_numpy, f, t, eps)
        with np.errstate(all="ignore"):
            return np.column_stack([t, f, self.iv_numpy(strike, t), atm, skew])

    def forward_expiry(self, expiry_ns: int | np.ndarray) -> np.ndarray:
        """The forward of the given expiries as fitted (at their maturity at the surface time,
        as :meth:`iv_expiry`)."""
        return self.forward(self.t_of(expiry_ns))

    def slice_for(self, expiry_ns: int) -> SmileSlice | None:
        for s in self.slices:
            if s.expiry_ns == expiry_ns:
                return s
        return None


def redated(s: SmileSlice, t: float) -> SmileSlice:
    """A carried-over slice at time to expiry ``t``: the same implied vol at every ``k``, so
    its total variance ``w = sigma^2 t`` times ``t / s.t`` (raw SVI ``a`` and ``b``, eSSVI
    ``theta`` and ``psi``: each scales ``w`` by that factor).  Its quotes, inverted at the
    time of their own update, have not moved; its time to expiry has, and a slice left at
    its old ``t`` put its expiry's smile at another maturity between its neighbours (0.66
    vol points off the quotes after 12 hours of a 4-day expiry).

    >>> s = SmileSlice("svi", SVIParams(0.01, 0.1, -0.3, 0.0, 0.2), 0, 0.02, 1.0, -0.5, 0.5)
    >>> r = redated(s, 0.01)
    >>> bool(np.allclose(r.iv(np.array([-0.3, 0.0, 0.4])), s.iv(np.array([-0.3, 0.0, 0.4]))))
    True
    """
    if t == s.t:
        return s
    if s.model not in VARIANCE_SCALED:
        raise ValueError(f"a {s.model} slice cannot be re-dated")
    return replace(s, params=PARAMS[s.model](*rescaled(s.model, param_values(s.params),
                                                       t / s.t)), t=t)


#: per model, the positions of the parameters that total variance is proportional to
VARIANCE_SCALED = {"svi": (0, 1), "essvi": (0, 2)}


def rescaled(model: str, values: Sequence[float], c: float) -> tuple[float, ...]:
    """The parameters ``values`` (field order) of a ``model`` slice whose total variance is
    ``c`` times theirs at every ``k``: raw SVI's ``a`` and ``b``, eSSVI's ``theta`` and
    ``psi`` times ``c`` (:func:`redated`, with ``c = t_new / t_old``).  SABR's, which set a
    smile in vol, not one of total variance alone, come back as they are."""
    scaled = VARIANCE_SCALED.get(model, ())
    return tuple(v * c if i in scaled else v for i, v in enumerate(values))


def _vol_and_skew(iv, strike: np.ndarray, t: float | np.ndarray, eps: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`Surface.vol_and_skew` with the vols read by ``iv`` (the surface's own, or its
    numpy twin's): at ``K``, ``K e^eps`` and ``K e^-eps``."""
    strike = np.asarray(strike, dtype=float)
    with np.errstate(all="ignore"):
        v = np.asarray(iv(strike[None] * np.array([1.0, math.exp(eps), math.exp(-eps)]).reshape(
            (3,) + (1,) * strike.ndim), t), dtype=float)
    return v[0], (v[1] - v[2]) / (2 * eps)


def _broadcast(a: np.ndarray | float, b: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """``np.broadcast_arrays`` of ``a`` and ``b`` as floats, without its cost (a few
    microseconds a call) when their shapes already agree."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return (a, b) if a.shape == b.shape else np.broadcast_arrays(a, b)
