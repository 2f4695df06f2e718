"""Raw SVI's parameters and formula: total variance and its first two derivatives in ``k``.

Model (Gatheral 2004, "A parsimonious arbitrage-free implied volatility parametrization with
application to the valuation of volatility derivatives", Global Derivatives)::

    w(k) = a + b * (rho * (k - m) + sqrt((k - m)^2 + sigma^2))

with ``w`` the total implied variance ``iv^2 * t`` and ``k = ln(K / F)``.  The calibration is
:mod:`calibration.models.svi`, which re-exports these names.  Also here, compiled: a surface of
stacked SVI slices read at many points (:func:`svi_rows_total_variance`, :func:`svi_rows_iv`),
by the interpolation in maturity of :mod:`calibration.surface`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit


@dataclass(frozen=True)
class SVIParams:
    """Raw SVI parameters of one slice (total-variance convention)."""

    a: float
    b: float
    rho: float
    m: float
    sigma: float

    def to_array(self) -> np.ndarray:
        return np.array([self.a, self.b, self.rho, self.m, self.sigma])

    @staticmethod
    def from_array(x: np.ndarray) -> SVIParams:
        return SVIParams(*np.asarray(x[:5], dtype=float).tolist())


def svi_total_variance(k: np.ndarray, p: SVIParams) -> np.ndarray:
    """``w(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2))`` (Gatheral 2004)."""
    x = np.asarray(k, dtype=float) - p.m
    return p.a + p.b * (p.rho * x + np.sqrt(x * x + p.sigma ** 2))


def svi_derivatives(k: np.ndarray, p: SVIParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(w, w', w'')`` of raw SVI in ``k``: ``w' = b (rho + x/r)``, ``w'' = b sigma^2 / r^3``
    with ``x = k - m`` and ``r = sqrt(x^2 + sigma^2)``; arrays of ``k``'s shape.

    One compiled pass for one slice: the arbitrage checks and quality scores call this on a
    few hundred points many times per refit, where numpy's per-operation overhead dominated.
    Parameters given as arrays (many fits at once) broadcast against ``k`` in numpy.

    >>> w, w1, w2 = svi_derivatives(np.array([0.0]), SVIParams(0.04, 0.1, -0.5, 0.0, 0.1))
    >>> [round(float(v[0]), 6) for v in (w, w1, w2)]
    [0.05, -0.05, 1.0]
    """
    k = np.asarray(k, dtype=float)
    if not all(isinstance(v, float) for v in (p.a, p.b, p.rho, p.m, p.sigma)):
        # parameter arrays (many fits at once): numpy broadcasting, the same formulas
        x = k - p.m
        r = np.sqrt(x * x + p.sigma * p.sigma)
        return p.a + p.b * (p.rho * x + r), p.b * (p.rho + x / r), \
            p.b * (p.sigma * p.sigma) / (r * r * r)
    w, w1, w2 = _svi_derivatives(np.ascontiguousarray(k).ravel(), p.a, p.b, p.rho, p.m,
                                 p.sigma)
    return w.reshape(k.shape), w1.reshape(k.shape), w2.reshape(k.shape)


@njit(cache=True)
def svi_point(k, a, b, rho, m, sigma):
    """``(w, w', w'')`` of raw SVI at one ``k`` (the formulas of :func:`svi_derivatives`),
    for compiled callers."""
    x = k - m
    s2 = sigma * sigma
    r = np.sqrt(x * x + s2)
    return a + b * (rho * x + r), b * (rho + x / r), b * s2 / (r * r * r)


@njit(cache=True)
def _svi_derivatives(k, a, b, rho, m, sigma):
    n = k.size
    w, w1, w2 = np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        w[i], w1[i], w2[i] = svi_point(k[i], a, b, rho, m, sigma)
    return w, w1, w2


# -- stacked slices: a surface of raw SVI slices (the interpolation of calibration.surface) ----
@njit(cache=True)
def _stacked_w(par, ts, j, k, t):
    """``w(k, t)`` of the SVI slices ``par`` (rows ``a, b, rho, m, sigma``) at maturities
    ``ts`` (increasing), ``j = searchsorted(ts, t, "right")``: linear in total variance
    between the two bracketing slices, ``w_1 t / t_1`` before the first and ``w_n t / t_n``
    after the last (:mod:`calibration.surface`)."""
    n = ts.size
    lo = min(max(j - 1, 0), n - 1)
    x0 = k - par[lo, 3]
    w0 = par[lo, 0] + par[lo, 1] * (par[lo, 2] * x0 + np.sqrt(x0 * x0 + par[lo, 4] ** 2))
    if j == 0:
        return w0 * (t / ts[0])
    if j >= n:
        return w0 * (t / ts[n - 1])
    x1 = k - par[j, 3]
    w1 = par[j, 0] + par[j, 1] * (par[j, 2] * x1 + np.sqrt(x1 * x1 + par[j, 4] ** 2))
    return w0 + (w1 - w0) * ((t - ts[lo]) / (ts[j] - ts[lo]))


@njit(cache=True)
def svi_rows_total_variance(par: np.ndarray, ts: np.ndarray, k: np.ndarray, t: np.ndarray
                            ) -> np.ndarray:
    """``w(k, t)`` on a surface of raw SVI slices (``par`` rows ``a, b, rho, m, sigma`` at
    maturities ``ts``, increasing) for a matrix ``k`` whose row ``i`` is at maturity ``t[i]``
    (:func:`_stacked_w`)."""
    out = np.empty(k.shape)
    for i in range(k.shape[0]):
        j = np.searchsorted(ts, t[i], side="right")
        for c in range(k.shape[1]):
            out[i, c] = _stacked_w(par, ts, j, k[i, c], t[i])
    return out


@njit(cache=True)
def _interp_one(x, xp, fp):
    """``numpy.interp(x, xp, fp)`` for one ``x``, by numpy's own rule: ``fp``'s ends outside
    ``xp``, an exact knot's own value, else ``slope (x - xp_j) + fp_j`` (the same digits);
    NaN for a NaN ``x``."""
    n = xp.size
    if x != x:
        return np.nan
    if x > xp[n - 1]:
        return fp[n - 1]
    if x < xp[0]:
        return fp[0]
    j = np.searchsorted(xp, x, side="right") - 1
    if j >= n - 1:
        return fp[n - 1]
    if xp[j] == x:
        return fp[j]
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    y = slope * (x - xp[j]) + fp[j]
    if y != y:  # numpy's fallbacks for an infinite slope
        y = slope * (x - xp[j + 1]) + fp[j + 1]
        if y != y and fp[j] == fp[j + 1]:
            y = fp[j]
    return y


@njit(cache=True)
def _stacked_iv(par, ts, strike, forward, t):
    """``sqrt(max(w(ln(K / F), t), 0) / max(t, 1e-300))`` (:func:`_stacked_w`), NaNs kept as
    numpy.maximum keeps them."""
    w = _stacked_w(par, ts, np.searchsorted(ts, t, side="right"), np.log(strike / forward), t)
    return np.sqrt((0.0 if w < 0.0 else w) / (1e-300 if t < 1e-300 else t))


@njit(cache=True)
def svi_rows_iv(par: np.ndarray, ts: np.ndarray, log_forward: np.ndarray, strike: np.ndarray,
                t: np.ndarray) -> np.ndarray:
    """Implied vol ``sqrt(max(w(k_i, t_i), 0) / t_i)`` at ``strike[i]`` and maturity
    ``t[i]`` on a surface of raw SVI slices (:func:`svi_rows_total_variance`), with
    ``k_i = ln(K_i / F(t_i))`` and ``F`` log-linear in ``t`` between the slices' forwards
    (``exp(log_forward)``), flat outside: :meth:`calibration.surface.Surface.iv` in one
    compiled pass, its numpy composition's values to within an ulp or two of ``exp`` and
    ``log`` (numpy may take vectorised ones)."""
    out = np.empty(strike.size)
    for i in range(strike.size):
        out[i] = _stacked_iv(par, ts, strike[i], np.exp(_interp_one(t[i], ts, log_forward)), t[i])
    return out


@njit(cache=True)
def svi_expiry_reads(par: np.ndarray, ts: np.ndarray, log_forward: np.ndarray, ts_ns: int,
                     expiry_ns: np.ndarray, strike: np.ndarray, year_ns: float, eps: float
                     ) -> np.ndarray:
    """Per instrument ``i`` (``strike[i]``, ``expiry_ns[i]``), the row ``t, F, sigma,
    sigma_ATM, S`` of :meth:`calibration.surface.Surface.at_expiries`: its expiry's maturity
    at the surface time ``ts_ns``, ``t = (expiry - ts) / year_ns``; the forward ``F(t)`` and
    the vol at the strike (:func:`svi_rows_iv`); the vol at ``K = F`` and the slope
    ``(sigma(F e^eps) - sigma(F e^-eps)) / (2 eps)`` in log-strike."""
    out = np.empty((strike.size, 5))
    up, down = np.exp(eps), np.exp(-eps)
    for i in range(strike.size):
        t = float(expiry_ns[i] - ts_ns) / year_ns
        f = np.exp(_interp_one(t, ts, log_forward))
        out[i, 0], out[i, 1] = t, f
        out[i, 2] = _stacked_iv(par, ts, strike[i], f, t)
        out[i, 3] = _stacked_iv(par, ts, f * 1.0, f, t)
        out[i, 4] = (_stacked_iv(par, ts, f * up, f, t)
                     - _stacked_iv(par, ts, f * down, f, t)) / (2 * eps)
    return out
