"""Compiled sums of Black-76 deltas and gammas over a book's legs, at many underlying prices.

The corridor search (:mod:`strategies.hedging.corridor`) evaluates a book's delta and gamma at
a few dozen prices several times per hedging decision; on a handful of legs numpy's per-call
overhead, not arithmetic, was the cost.  :meth:`strategies.greeks.BookLegs.delta_fn` and
``gamma_fn`` call :func:`book_sum`; their numpy path (:func:`strategies.greeks.delta_gamma`)
is the reference twin, and ``tests/strategies/test_greeks_kernel.py`` checks the two agree.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_SQRT_2 = math.sqrt(2.0)
_BIG = np.finfo(np.float64).max


@njit(cache=True, nogil=True, error_model="numpy")
def book_sum(s: np.ndarray, w: np.ndarray, basis: np.ndarray, strike: np.ndarray,
             t: np.ndarray, vol: np.ndarray, is_call: np.ndarray, gamma: bool,
             dvol: np.ndarray) -> np.ndarray:
    """``out[i] = sum_j w_j x_j(b_j s_i)`` with, at the leg's forward ``F = b_j s_i``,
    ``d1 = ln(F/K) / (vol sqrt t) + vol sqrt(t) / 2`` (Black 1976):

    * ``gamma=False``: ``x = N(d1) - [put] + n(d1) sqrt(t) dvol_j`` (the forward delta, plus the
      smile-dynamics term ``vega/F * dvol/dlnF`` when ``dvol`` is not empty);
    * ``gamma=True``: ``x = n(d1) / (F vol sqrt t)``.

    ``N(x) = erfc(-x / sqrt 2) / 2``; a non-finite ``x`` counts as ``np.nan_to_num`` makes it
    (NaN 0, infinities the largest finite float), as in the numpy path.

    >>> one = np.ones(1)
    >>> round(float(book_sum(np.array([100.0]), one, one, np.array([100.0]), one,
    ...                      np.array([0.2]), np.array([True]), False, np.empty(0))[0]), 6)
    0.539828
    """
    out = np.empty(s.size)
    for i in range(s.size):
        acc = 0.0
        for j in range(strike.size):
            f = basis[j] * s[i]
            rt = math.sqrt(t[j])
            sd = vol[j] * rt
            d1 = math.log(f / strike[j]) / sd + 0.5 * sd
            if gamma:
                x = math.exp(-0.5 * d1 * d1) / (_SQRT_2PI * f * sd)
            else:
                x = 0.5 * math.erfc(-d1 / _SQRT_2) - (0.0 if is_call[j] else 1.0)
                if dvol.size:
                    x += math.exp(-0.5 * d1 * d1) / _SQRT_2PI * rt * dvol[j]
            if x != x:
                x = 0.0
            elif x > _BIG:
                x = _BIG
            elif x < -_BIG:
                x = -_BIG
            acc += w[j] * x
        out[i] = acc
    return out
