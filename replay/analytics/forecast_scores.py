"""Scoring the vol forecasts of a run against what was realised.

After the replay, each ``vol_forecasts`` row made at ``t`` for horizon ``h`` gets
``realized_vol``: the annualised realised vol of the bars ending in ``(t, t + h]`` (the same
``sample_s`` bars the forecasters use; NaN when the data end before ``t + h``), and on a
synthetic store ``true_vol``, the root of the mean true variance over ``(t, t + h]``
(``truth_path``).  Both were NaN while the run was replayed.

Scores per forecaster, on the variance ``f = forecast_vol^2`` against the proxy
``RV = realized_vol^2``:

* ``qlike = mean(RV / f - ln(RV / f) - 1)`` and ``mse = mean((f - RV)^2)``: both rank
  forecasters consistently with a noisy but unbiased variance proxy, QLIKE being the more
  robust to its noise and to outliers (Patton, "Volatility forecast comparison using
  imperfect volatility proxies", *J. Econometrics* 160, 2011);
* the Mincer-Zarnowitz regression ``RV = a + b f + e`` and its ``R^2`` (Mincer and Zarnowitz,
  1969): an unbiased forecast has ``a = 0, b = 1``;
* the Diebold-Mariano statistic of the QLIKE loss differential against the ``flat`` baseline,
  ``DM = mean(d) / sqrt(S / n)`` with ``S = gamma_0 + 2 sum_{k=1}^{h'-1} gamma_k`` the long-run
  variance of ``d`` over the ``h' - 1`` lags at which ``h' = h / every_s``-step forecasts
  overlap (an MA(h' - 1) under the null), times the small-sample correction
  ``sqrt((n + 1 - 2 h' + h' (h' - 1) / n) / n)`` and with a two-sided Student ``t(n - 1)``
  p-value (Diebold and Mariano, *J. Business & Economic Statistics* 13, 1995; Harvey,
  Leybourne and Newbold, *Int. J. Forecasting* 13, 1997).  Where the truncated sum is not
  positive, Bartlett's weights replace it (Newey and West, *Econometrica* 55, 1987): they
  damp the overlap's covariances and made the test reject a true null 13 % of the time at
  5 % (a day of 5-minute forecasts of 1 hour), against 6.5 % with the uniform weights and
  the correction.  Negative favours the forecaster;
* the variance risk premium in vol terms, ``implied - realised``, averaged (``vrp_mean``);
* on a synthetic store, QLIKE against the true integrated variance (``qlike_truth``) and the
  forecasters ranked by it (``ranking_truth``, e.g. ``"har < garch < flat"``, best first).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy.stats import t as student_t

from replay.consumers.forecast.forecasters import Bars
from replay.consumers.forecast.realized import (
    YEAR_S,
    bipower_variation,
    jump_ratio_z,
    realized_variance,
    two_scale_rv,
    window_count,
    window_sum,
)


def realized_over(bars: Bars, t: np.ndarray, h_ns: np.ndarray) -> np.ndarray:
    """Annualised realised vol over ``(t, t + h]``: the squared returns of the ``n`` bars
    ending in it, annualised over the ``n`` bars' span (``h`` itself when it is a whole
    number of bars; the forecasters' ``round(h / step)`` bars at their per-bar rate
    otherwise); NaN when the bars end before, or when no whole bar fits in ``h``."""
    end = t + h_ns
    s = window_sum(bars.ts, bars.r ** 2, end, h_ns)
    n = window_count(bars.ts, end, h_ns)
    full = (n >= np.maximum(np.round(h_ns / bars.step_ns), 1)) & (
        end <= bars.ts[-1] if bars.ts.size else False)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(full, np.sqrt(s * (YEAR_S * 1e9) / (n * bars.step_ns)), np.nan)


def true_over(ts: np.ndarray, var: np.ndarray, t: np.ndarray, h_ns: np.ndarray) -> np.ndarray:
    """Root mean true variance over ``(t, t + h]`` from a truth path (NaN past its end)."""
    end = t + h_ns
    s = window_sum(ts, var, end, h_ns)
    n = window_count(ts, end, h_ns)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n > 0) & (end <= ts[-1]), np.sqrt(s / np.maximum(n, 1)), np.nan)


def fill_realized(journal: Path, bars: Bars, truth: tuple[np.ndarray, np.ndarray] | None
                  ) -> None:
    """Write ``realized_vol`` (and ``true_vol``) into the run's ``vol_forecasts`` table."""
    import duckdb

    with duckdb.connect(str(journal)) as con:
        df = con.execute("SELECT seq, ts, horizon_s FROM vol_forecasts").df()
        if df.empty:
            return
        t = df["ts"].to_numpy(np.int64)
        h = (df["horizon_s"].to_numpy() * 1e9).astype(np.int64)
        df["realized_vol"] = realized_over(bars, t, h)
        df["true_vol"] = true_over(*truth, t, h) if truth is not None else np.nan
        con.register("filled", df[["seq", "realized_vol", "true_vol"]])
        con.execute("UPDATE vol_forecasts SET realized_vol = filled.realized_vol, "
                    "true_vol = filled.true_vol FROM filled "
                    "WHERE vol_forecasts.seq = filled.seq").fetchall()


def qlike(f: np.ndarray, rv: np.ndarray) -> np.ndarray:
    """QLIKE loss per forecast (module docstring).

    >>> float(qlike(np.array([0.04]), np.array([0.04]))[0])
    0.0
    """
    x = rv / f
    return x - np.log(x) - 1.0


def long_run_var(d: np.ndarray, lags: int, bartlett: bool = False) -> float:
    """``gamma_0 + 2 sum_{k=1}^{lags} w_k gamma_k`` of ``d`` (autocovariances over ``n``):
    uniform weights ``w_k = 1``, or Bartlett's ``1 - k / (lags + 1)`` (Newey-West)."""
    e = d - d.mean()
    n = e.size
    s = float(e @ e) / n
    for k in range(1, min(lags, n - 1) + 1):
        w = 1.0 - k / (lags + 1) if bartlett else 1.0
        s += 2.0 * w * float(e[k:] @ e[:-k]) / n
    return s


def diebold_mariano(loss_a: np.ndarray, loss_b: np.ndarray, lags: int) -> tuple[float, float]:
    """DM statistic of ``loss_a - loss_b`` for forecasts ``lags + 1`` steps ahead, with the
    Harvey-Leybourne-Newbold correction, and its two-sided ``t(n - 1)`` p-value (module
    docstring); NaN when the sample is too short for the correction or the variance.

    The sample must hold more than ``2 h`` forecasts: below that the HLN factor
    ``(n + 1 - 2h + h(h-1)/n) / n`` is not the small-sample correction it was derived as (it
    turns positive again once ``h > n``), and with ``lags >= n - 1`` the uniformly weighted
    long-run variance is zero up to rounding; a variance under ``1e-9 gamma_0`` counts as
    zero (then Bartlett's weights, then NaN)."""
    d = loss_a - loss_b
    n, h = d.size, lags + 1
    if n <= max(2 * h, 2):
        return math.nan, math.nan
    scale = (n + 1 - 2 * h + h * (h - 1) / n) / n
    gamma0 = long_run_var(d, 0)
    v = long_run_var(d, lags)
    if not v > 1e-9 * gamma0:
        v = long_run_var(d, lags, bartlett=True)
    if not (gamma0 > 0 and v > 1e-9 * gamma0):
        return math.nan, math.nan
    stat = float(d.mean() / math.sqrt(v / n) * math.sqrt(scale))
    return stat, float(2 * student_t.sf(abs(stat), n - 1))


def mincer_zarnowitz(f: np.ndarray, rv: np.ndarray) -> tuple[float, float, float]:
    """``(a, b, R^2)`` of ``rv = a + b f + e`` by OLS."""
    if f.size < 3 or np.ptp(f) == 0:
        return math.nan, math.nan, math.nan
    x = np.column_stack([np.ones(f.size), f])
    coef, *_ = np.linalg.lstsq(x, rv, rcond=None)
    resid = rv - x @ coef
    tss = float(np.sum((rv - rv.mean()) ** 2))
    return float(coef[0]), float(coef[1]), (1.0 - float(resid @ resid) / tss) if tss > 0 else math.nan


def _none(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


SCORES = ("qlike", "mse", "n", "mz_r2", "mz_a", "mz_b", "dm_vs_flat", "dm_p_vs_flat",
          "qlike_truth")


def forecast_block(journal: Path, every_s: float, names: tuple[str, ...],
                   against: str = "realized_vol") -> dict:
    """The ``forecast`` block of metrics.json (docs/outputs.md): per forecaster of ``names`` on
    the shortest horizon, :data:`SCORES` (null without scored forecasts), ``best_by_qlike``,
    ``vrp_mean``, ``horizon_s``; ``against`` chooses the proxy column (``true_vol`` scores
    against the synthetic truth)."""
    from replay.analytics.tables import read_tables

    df = read_tables(journal, ["vol_forecasts"])["vol_forecasts"]
    out: dict = {n: dict.fromkeys(SCORES) for n in names}
    out.update(best_by_qlike=None, horizon_s=None, vrp_mean=None, ranking_truth=None)
    if df.empty:
        return out
    h = float(df["horizon_s"].min())
    df = df[(df["horizon_s"] == h) & (df["forecast_vol"] > 0)]
    truth_df = df
    df = df[np.isfinite(df[against]) & (df[against] > 0)]
    lags = max(int(round(h / every_s)) - 1, 0)
    out["horizon_s"] = h
    losses = {}
    for name, g in df.groupby("forecaster", sort=True):
        f, rv = g["forecast_vol"].to_numpy() ** 2, g[against].to_numpy() ** 2
        losses[name] = (g["ts"].to_numpy(), qlike(f, rv))
        a, b, r2 = mincer_zarnowitz(f, rv)
        out.setdefault(name, dict.fromkeys(SCORES)).update(
            qlike=_none(float(np.mean(losses[name][1]))),
            mse=_none(float(np.mean((f - rv) ** 2))), n=int(f.size), mz_r2=_none(r2),
            mz_a=_none(a), mz_b=_none(b))
    if "flat" in losses:
        ts_flat, l_flat = losses["flat"]
        for name, (ts, loss) in losses.items():
            if name != "flat":
                _, ia, ib = np.intersect1d(ts, ts_flat, return_indices=True)
                stat, p = diebold_mariano(loss[ia], l_flat[ib], lags)
                out[name].update(dm_vs_flat=_none(stat), dm_p_vs_flat=_none(p))
    # forecasters start at different times (a GARCH after its warm-up): each one's own scores
    # are over its own rows, but they are ranked on the times every one of them forecast
    common = _common_qlike(df[df["forecaster"].isin(names)], against)
    out["best_by_qlike"] = min(common, key=common.get) if common else None
    # against the synthetic truth (the root mean true variance over the horizon), if known
    truth = truth_df[np.isfinite(truth_df["true_vol"]) & (truth_df["true_vol"] > 0)]
    for name, g in truth.groupby("forecaster", sort=True):
        out[name]["qlike_truth"] = _none(float(np.mean(qlike(g["forecast_vol"].to_numpy() ** 2,
                                                             g["true_vol"].to_numpy() ** 2))))
    ranked = _common_qlike(truth[truth["forecaster"].isin(names)], "true_vol")
    out["ranking_truth"] = " < ".join(sorted(ranked, key=ranked.get)) or None
    imp = df[df["forecaster"] == "implied"]
    out["vrp_mean"] = _none(float(np.mean(imp["forecast_vol"] - imp[against]))) \
        if len(imp) else None
    return out


def _common_qlike(df, against: str) -> dict[str, float]:
    """Each forecaster's mean QLIKE against ``against`` over the times at which every
    forecaster in ``df`` has a score (none when they share no time)."""
    names = df["forecaster"].unique()
    per_ts = df.groupby("ts")["forecaster"].nunique()
    common = df[df["ts"].isin(per_ts.index[per_ts == len(names)])]
    return {n: float(np.mean(qlike(g["forecast_vol"].to_numpy() ** 2,
                                   g[against].to_numpy() ** 2)))
            for n, g in common.groupby("forecaster", sort=True)}


#: fewest ``sample_s`` returns the jump measures (``bv_vol``, ``jump_share``, ``jump_z``)
#: are given for: with fewer, bipower variation is a handful of products and the jump share
#: mostly noise
MIN_JUMP_RETURNS = 20
#: the keys of :func:`realized_block` (the metrics' ``forecast.realized`` block)
REALIZED_KEYS = ("rv_vol", "bv_vol", "tsrv_vol", "jump_share", "jump_z")


def realized_block(grid: np.ndarray, mid: np.ndarray, sample_s: float) -> dict:
    """The run's realised measures, annualised vols over the sampled span: ``rv_vol`` and
    ``bv_vol`` from ``sample_s`` returns, ``tsrv_vol`` from the 1-second samples (5-minute slow
    scale), ``jump_share = max(RV - BV, 0) / RV`` and ``jump_z``, the Huang-Tauchen statistic
    that says whether that share is more than noise (:mod:`~replay.consumers.forecast.realized`).
    Null where a measure does not apply: the jump measures with fewer than
    :data:`MIN_JUMP_RETURNS` returns, every one with fewer than 2.  A NaN sample (before the
    first quote, or in a hole of the tape) leaves out the returns that touch it, and the
    span each measure is annualised over is the time its returns cover."""
    ok = np.isfinite(mid) & (mid > 0)
    if ok.sum() < 3:
        return dict.fromkeys(REALIZED_KEYS)
    first = int(np.argmax(ok))
    g, x = grid[first:], np.log(np.where(ok, mid, np.nan))[first:]
    step = max(int(g[1] - g[0]), 1)
    k = max(int(round(sample_s * 1e9 / step)), 1)
    r = np.diff(x[::k])
    n = int(np.isfinite(r).sum())
    if n < 2:
        return dict.fromkeys(REALIZED_KEYS)
    # each measure over the time its returns cover (the sampled returns end up to k - 1
    # samples before the grid's end: 4 % of a 1-hour run; a hole covers none)
    sampled = n * k * step / 1e9 / YEAR_S
    full = int(np.isfinite(np.diff(x)).sum()) * step / 1e9 / YEAR_S
    r = r[np.isfinite(r)]  # the jump measures multiply neighbours: both sides of a hole
    # are kept as if adjacent, as the forecasters' bars are
    rv, ts = realized_variance(r), two_scale_rv(x, k)
    jumps = r.size >= MIN_JUMP_RETURNS
    bv = bipower_variation(r) if jumps else math.nan

    def vol(v: float, years: float) -> float | None:
        return _none(math.sqrt(v / years)) if v >= 0 else None

    return {"rv_vol": vol(rv, sampled), "bv_vol": vol(bv, sampled), "tsrv_vol": vol(ts, full),
            "jump_share": _none(max(rv - bv, 0.0) / rv) if jumps and rv > 0 else None,
            "jump_z": _none(jump_ratio_z(r)) if jumps else None}
