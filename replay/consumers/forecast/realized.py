"""Realised measures of the underlying from previously-tick-sampled mids.

The input is the underlying's mid sampled on a regular grid of ``step`` seconds by previous-tick
sampling (:meth:`replay.store.database.MarketStore.sampled_mid`: at grid time ``g`` the last
quote received by ``g``), so every measure at ``t`` uses only ticks with ``ts_recv <= t``.

* **Realised variance** at a sparse interval ``Delta`` (default 5 min): ``RV = sum r_i^2`` of
  the log returns over ``Delta``.  Sampling sparsely keeps microstructure noise (bid-ask bounce,
  stale quotes), whose contribution grows with the number of returns, small against the
  integrated variance (Andersen, Bollerslev, Diebold and Labys, "The distribution of realized
  exchange rate volatility", *JASA* 96, 2001; the 5-minute rule of thumb).
* **Bipower variation** ``BV = (pi / 2) (n / (n - 1)) sum_{i >= 2} |r_i| |r_{i-1}|`` over ``n``
  returns, consistent for the integrated variance without the jumps, so ``RV - BV`` estimates
  the jump part (Barndorff-Nielsen and Shephard, "Power and bipower variation with stochastic
  volatility and jumps", *J. Financial Econometrics* 2(1), 2004); ``n / (n - 1)`` makes up for
  the ``n - 1`` products (Huang and Tauchen, "The relative contribution of jumps to total price
  variance", *J. Financial Econometrics* 3(4), 2005).
* **The jump ratio test** of Huang and Tauchen (2005): with ``RJ = (RV - BV) / RV`` and the
  tripower quarticity ``TP = n mu_{4/3}^-3 (n / (n - 2)) sum_{i >= 3} prod_{j < 3}
  |r_{i-j}|^{4/3}`` (``mu_p = E|Z|^p``, ``Z`` standard normal),
  ``z = RJ / sqrt((pi^2 / 4 + pi - 5) max(1, TP / BV^2) / n)`` is asymptotically standard
  normal without jumps: a jump share is noise unless ``z`` is large (1.64 at 5 %).
* **Two-scales realised variance** for second-level sampling, robust to i.i.d. noise:
  ``TSRV = RV_avg^(K) - (n_bar / n) RV_all``, with ``RV_all`` the RV of all ``n`` returns,
  ``RV_avg^(K)`` the average of the ``K`` RVs on the sub-grids of every ``K``-th observation and
  ``n_bar = (n - K + 1) / K`` (Zhang, Mykland and Aït-Sahalia, "A tale of two time scales",
  *JASA* 100, 2005).

All are vectorised numpy; :func:`window_sum` gives causal sums over trailing windows for many
evaluation times at once.
"""

from __future__ import annotations

import math

import numpy as np

YEAR_S = 365.0 * 86400


def log_returns(mid: np.ndarray) -> np.ndarray:
    """``ln(mid_i / mid_{i-1})``; one shorter than ``mid`` (NaN where either side is missing).

    >>> log_returns(np.array([100.0, 110.0, 99.0])).round(6).tolist()
    [0.09531, -0.105361]
    """
    lm = np.log(np.asarray(mid, dtype=float))
    return np.diff(lm)


def realized_variance(r: np.ndarray) -> float:
    """``sum r_i^2`` (NaN returns skipped)."""
    return float(np.nansum(np.square(r)))


def bipower_variation(r: np.ndarray) -> float:
    """``(pi / 2) (n / (n - 1)) sum_{i >= 2} |r_i| |r_{i-1}|`` of ``n`` returns
    (Barndorff-Nielsen and Shephard 2004; the factor: Huang and Tauchen 2005); NaN with
    fewer than 2.  A product with a NaN return is skipped.

    >>> round(bipower_variation(np.array([0.01, -0.01, 0.01])), 8)
    0.00047124
    """
    a = np.abs(np.asarray(r, dtype=float))
    n = a.size
    if n < 2:
        return math.nan
    return float(np.pi / 2 * n / (n - 1) * np.nansum(a[1:] * a[:-1]))


def _mu(p: float) -> float:
    """``E|Z|^p`` of a standard normal ``Z``: ``2^(p/2) Gamma((p + 1) / 2) / sqrt(pi)``."""
    return 2 ** (p / 2) * math.gamma((p + 1) / 2) / math.sqrt(math.pi)


def tripower_quarticity(r: np.ndarray) -> float:
    """``n mu_{4/3}^-3 (n / (n - 2)) sum_{i >= 3} (|r_i| |r_{i-1}| |r_{i-2}|)^{4/3}`` of ``n``
    returns, consistent for the integrated quarticity with jumps (Huang and Tauchen 2005);
    NaN with fewer than 3."""
    a = np.abs(np.asarray(r, dtype=float)) ** (4 / 3)
    n = a.size
    if n < 3:
        return math.nan
    return float(n * _mu(4 / 3) ** -3 * n / (n - 2) * np.nansum(a[2:] * a[1:-1] * a[:-2]))


def jump_ratio_z(r: np.ndarray) -> float:
    """The Huang and Tauchen (2005) ratio statistic of ``n`` returns (module docstring):
    ``(RV - BV) / RV / sqrt((pi^2 / 4 + pi - 5) max(1, TP / BV^2) / n)``, standard normal
    without jumps; NaN with fewer than 3 returns or no variation."""
    n = int(np.isfinite(np.asarray(r, dtype=float)).sum())
    rv, bv, tp = realized_variance(r), bipower_variation(r), tripower_quarticity(r)
    if n < 3 or not (rv > 0 and bv > 0):
        return math.nan
    theta = math.pi ** 2 / 4 + math.pi - 5
    return (rv - bv) / rv / math.sqrt(theta * max(1.0, tp / bv ** 2) / n)


def two_scale_rv(logp: np.ndarray, k: int) -> float:
    """Two-scales realised variance of log prices ``logp`` with ``K = k`` sub-grids (Zhang,
    Mykland and Aït-Sahalia 2005; module docstring).  A NaN price (a hole in the tape)
    leaves out the returns that touch it, on every scale; ``n`` counts the returns left."""
    x = np.asarray(logp, dtype=float)
    r = np.diff(x)
    n = int(np.isfinite(r).sum())
    if n < 2 * k or k < 1:
        return float("nan")
    rv_all = float(np.nansum(r ** 2))
    rv_avg = float(np.mean([np.nansum(np.diff(x[j::k]) ** 2) for j in range(k)]))
    nbar = (n - k + 1) / k
    return rv_avg - nbar / n * rv_all


def window_sum(ts: np.ndarray, x: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """``sum of x_i over ts_i in (t - width, t]`` for each ``t`` of ``at`` (``ts`` increasing;
    NaN values count as 0): trailing, so causal at ``t``."""
    c = np.concatenate([[0.0], np.cumsum(np.nan_to_num(np.asarray(x, dtype=float)))])
    hi = np.searchsorted(ts, at, side="right")
    lo = np.searchsorted(ts, np.asarray(at) - width, side="right")
    return c[hi] - c[lo]


def window_count(ts: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """How many ``ts_i`` fall in ``(t - width, t]`` for each ``t`` of ``at``."""
    return (np.searchsorted(ts, at, side="right")
            - np.searchsorted(ts, np.asarray(at) - width, side="right"))
