"""Raw SVI's parameters and formula: total variance and its first two derivatives in ``k``.

Model (Gatheral 2004, "A parsimonious arbitrage-free implied volatility parametrization with
application to the valuation of volatility derivatives", Global Derivatives)::

    w(k) = a + b * (rho * (k - m) + sqrt((k - m)^2 + sigma^2))

with ``w`` the total implied variance ``iv^2 * t`` and ``k = ln(K / F)``.  The calibration is
:mod:`calibration.models.svi`, which re-exports these names.
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
