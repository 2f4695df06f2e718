"""Margin breach backtesting: does the margin held cover the losses that happened?

**Breaches.**  The replay is cut into non-overlapping windows of ``h`` market seconds
(``margin.breach_horizon_s``) from its first margin evaluation.  A window starting at ``t``
whose account held a margin ``IM(t) > 0`` is an observation; it is a breach when the equity
lost over the window exceeds that margin::

    breach_t = equity(t) - equity(t + h) > IM(t)

with ``equity`` and ``IM`` the last ``margin`` rows at or before each instant (as-of).  The
loss is the account's: hedging, fees, funding and liquidations in the window included.  Both
are in the account's currency: USD, or coin for coin collateral (``venue.equity_currency=coin``,
each row converted at its ``usd_per_coin``), whose revaluation at the coin's price is no loss.
Windows do not overlap, so the hits are not correlated by construction (Christoffersen's
test below checks the clustering that remains).

**Kupiec's proportion-of-failures test** (Kupiec, "Techniques for verifying the accuracy of
risk measurement models", *J. Derivatives* 3(2), 1995): with ``x`` breaches in ``n``
observations and ``p`` the breach rate the margin is meant to allow (``margin.breach_p``)::

    LR_pof = -2 ln[(1 - p)^(n - x) p^x] + 2 ln[(1 - x/n)^(n - x) (x/n)^x]   ~ chi2(1)

**Christoffersen's independence test** (Christoffersen, "Evaluating interval forecasts",
*Int. Economic Review* 39(4), 1998): with ``n_ij`` the number of observations in state ``j``
directly after one in state ``i`` (1: breach; "directly": the window ``h`` later, so a window
without margin between two observations breaks the chain rather than joining them), ``pi_0 = n_01 / (n_00 + n_01)``,
``pi_1 = n_11 / (n_10 + n_11)`` and ``pi = (n_01 + n_11) / (n_00 + n_01 + n_10 + n_11)``::

    LR_ind = -2 ln[(1 - pi)^(n_00 + n_10) pi^(n_01 + n_11)]
             + 2 ln[(1 - pi_0)^n_00 pi_0^n_01 (1 - pi_1)^n_10 pi_1^n_11]   ~ chi2(1)

Both report the chi-square(1) p-value; ``0 ln 0 = 0``.  With no observation both are null.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import chi2

from replay.units import NS


def _xlogy(x: float, y: float) -> float:
    return 0.0 if x == 0 else x * math.log(y)


def kupiec_pof(n: int, x: int, p: float) -> tuple[float, float]:
    """Kupiec's LR statistic and its chi2(1) p-value (module docstring).

    >>> round(kupiec_pof(1000, 10, 0.01)[1], 6)   # exactly the expected rate
    1.0
    >>> kupiec_pof(100, 30, 0.01)[1] < 1e-6       # far too many breaches
    True
    """
    if n <= 0:
        return math.nan, math.nan
    phat = x / n
    lr = -2.0 * (_xlogy(n - x, 1 - p) + _xlogy(x, p)) \
        + 2.0 * (_xlogy(n - x, 1 - phat) + _xlogy(x, phat))
    lr = max(lr, 0.0)
    return lr, float(chi2.sf(lr, 1))


def christoffersen_independence(hits: np.ndarray, follows: np.ndarray | None = None
                                 ) -> tuple[float, float]:
    """Christoffersen's LR statistic of independence and its chi2(1) p-value.

    ``follows[i]`` says observation ``i + 1`` directly follows observation ``i`` (default:
    all do); only such pairs are transitions.  With no transition both are NaN.

    >>> round(christoffersen_independence(np.array([0, 1, 0, 0, 1, 0, 0, 0, 1, 0]))[1], 3)
    0.076
    """
    h = np.asarray(hits, dtype=bool)
    pair = np.ones(max(h.size - 1, 0), dtype=bool) if follows is None \
        else np.asarray(follows, dtype=bool)
    if not pair.any():
        return math.nan, math.nan
    a, b = h[:-1][pair], h[1:][pair]
    n00, n01 = int(np.sum(~a & ~b)), int(np.sum(~a & b))
    n10, n11 = int(np.sum(a & ~b)), int(np.sum(a & b))
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    pi0 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi1 = n11 / (n10 + n11) if n10 + n11 else 0.0
    lr = -2.0 * (_xlogy(n00 + n10, 1 - pi) + _xlogy(n01 + n11, pi)) + 2.0 * (
        _xlogy(n00, 1 - pi0) + _xlogy(n01, pi0) + _xlogy(n10, 1 - pi1) + _xlogy(n11, pi1))
    lr = max(lr, 0.0)
    return lr, float(chi2.sf(lr, 1))


def breach_windows(ts: np.ndarray, equity: np.ndarray, margin: np.ndarray, horizon_ns: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Window starts, losses and margins held of the observations (module docstring), from a
    time-ordered series of evaluations (``ts``, ``equity``, ``margin``)."""
    ts = np.asarray(ts, dtype=np.int64)
    if ts.size == 0:
        e = np.zeros(0)
        return ts[:0], e, e
    starts = np.arange(ts[0], ts[-1] - horizon_ns + 1, horizon_ns, dtype=np.int64)
    i0 = np.searchsorted(ts, starts, side="right") - 1
    i1 = np.searchsorted(ts, starts + horizon_ns, side="right") - 1
    loss = equity[i0] - equity[i1]
    held = margin[i0]
    obs = np.isfinite(loss) & (held > 0)
    return starts[obs], loss[obs], held[obs]


def breach_metrics(ts: np.ndarray, equity: np.ndarray, margin: np.ndarray, horizon_s: float,
                   p: float) -> dict[str, float | int | None]:
    """The breach keys of the ``margin`` metrics block (docs/outputs.md)."""
    starts, loss, held = breach_windows(ts, equity, margin, int(horizon_s * NS))
    hits = loss > held
    n, x = int(hits.size), int(hits.sum())
    _, p_pof = kupiec_pof(n, x, p)
    _, p_ind = christoffersen_independence(hits, np.diff(starts) == int(horizon_s * NS))
    return {"breach_horizon_s": float(horizon_s), "observations": n, "breaches": x,
            "breach_rate": x / n if n else None,
            "kupiec_p": None if math.isnan(p_pof) else p_pof,
            "christoffersen_p": None if math.isnan(p_ind) else p_ind}


def margin_block(journal_path, consumer) -> dict:
    """The ``margin`` block of metrics.json (docs/outputs.md) from the run's ``margin``
    table and the consumer's call and liquidation counts."""
    import pandas as pd

    from replay.analytics.tables import read_tables

    t = read_tables(journal_path, ["margin"])["margin"]
    if t.empty:
        t = pd.DataFrame({c: np.zeros(0) for c in ("ts", "initial_usd", "maintenance_usd",
                                                   "initial_isolated_usd", "equity_usd",
                                                   "maintenance_isolated_usd", "equity_over_mm",
                                                   "usd_per_coin")})
    if consumer.mode == "isolated":
        im, mm = t["initial_isolated_usd"], t["maintenance_isolated_usd"]
    else:
        im, mm = t["initial_usd"], t["maintenance_usd"]
    ratio = t["equity_over_mm"].to_numpy(dtype=float)
    ratio = ratio[np.isfinite(ratio)]

    def stat(x, f) -> float | None:
        x = np.asarray(x, dtype=float)
        return float(f(x)) if x.size else None

    out = {"model": consumer.model, "mode": consumer.mode,
           "initial_usd_mean": stat(im, np.mean), "initial_usd_max": stat(im, np.max),
           "maintenance_usd_mean": stat(mm, np.mean),
           "min_equity_over_mm": float(ratio.min()) if ratio.size else None,
           **consumer.counts}
    equity, held = t["equity_usd"].to_numpy(dtype=float), im.to_numpy(dtype=float)
    if consumer.venue.cfg.equity_currency == "coin":
        # in the collateral's own currency: its revaluation at the coin's price is no loss
        usd = t["usd_per_coin"].to_numpy(dtype=float)
        equity, held = equity / usd, held / usd
    out.update(breach_metrics(t["ts"].to_numpy(), equity, held, consumer.breach_horizon_s,
                              consumer.breach_p))
    return out
