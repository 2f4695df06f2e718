"""Volatility forecasters, all causal: a forecast made at ``t`` uses returns of bars that ended
by ``t``, and any re-estimation at ``R`` uses data up to ``R`` only.

Bars are the log returns ``r_j`` of the underlying's mid over ``sample_s`` (5 min by default;
:mod:`~replay.consumers.forecast.realized`), ``r_j`` known at the bar's end ``b_j``.  A
forecast for horizon ``h`` (``n = h / sample_s`` bars) is an annualised vol: the forecast
variance over ``(t, t + h]`` times ``year / h``.  A hole in the underlying's tape (no quote
for longer than a bar) leaves its bars out (:func:`bars_from_mid`): ``ewma``, ``garch`` and
``har`` run on the bars either side of it as if they were adjacent, ``last`` waits for a
whole window after it, and no forecast is scored against a window that crosses it
(:func:`replay.analytics.forecast_scores.realized_over` wants every bar).  Forecasters:

* ``flat``: a constant ``flat_vol`` (a baseline);
* ``last``: the realised vol of the last ``h`` (``sum of r^2`` over bars in ``(t - h, t]``,
  once all of them are known);
* ``ewma``: RiskMetrics, ``s2_j = lam s2_{j-1} + (1 - lam) r_j^2`` per bar (J.P. Morgan,
  *RiskMetrics Technical Document*, 4th ed., 1996, eq. 5.3; ``lam`` is per bar here: 0.94 per
  5-minute bar is a half-life of about an hour), forecast flat over the horizon;
* ``garch`` and ``gjr_garch``: GARCH(1,1) (Bollerslev, *J. Econometrics* 31, 1986) and
  GJR-GARCH(1,1,1) (Glosten, Jagannathan and Runkle, *J. Finance* 48, 1993), zero mean,
  normal, estimated with the ``arch`` package on the returns of the last ``lookback_s`` at
  each re-estimation time (every ``refit_s``), and filtered with those parameters until the
  next one; the forecast is the sum of arch's analytic ``h``-bar variance forecasts;
* ``har``: HAR-RV (Corsi, "A simple approximate long-memory model of realized volatility",
  *J. Financial Econometrics* 7(2), 2009) on intraday components: the mean squared bar return
  over the last ``h``, ``6 h`` and ``24 h`` (Corsi's day, week and month become the horizon
  and 6 and 24 times it, since a replay spans hours to days), regressed by OLS on the mean
  squared return over the next ``h``, re-estimated every ``refit_s`` on the pairs whose
  target was complete by then;
* ``implied``: the calibrated surface's ATM vol for the horizon (total variance interpolated
  between slices), taken by the forecast consumer at the forecast time;
* ``truth`` (opt-in, synthetic stores): ``sqrt(v_t)``, the true instantaneous variance at the
  last truth step at or before ``t``: what a hedger who knew the model's state would use.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from replay.consumers.forecast.realized import YEAR_S, log_returns, window_count, window_sum

FORECASTERS = ("flat", "last", "ewma", "garch", "gjr_garch", "har", "implied")
#: also accepted: ``truth``, the synthetic market's instantaneous true vol at ``t`` (an oracle
#: baseline for hedging studies; only on stores with a ``truth_path``)
ORACLES = ("truth",)
#: returns are scaled by this before arch sees them (5-minute BTC returns are ~1e-3; arch's
#: optimiser wants values of order 1)
ARCH_SCALE = 1000.0
HAR_WINDOWS = (1, 6, 24)  # component windows, multiples of the horizon


@dataclass(frozen=True)
class ForecastConfig:
    """What the forecast consumer computes (keys of ``conf/forecast/all.yaml``)."""

    forecasters: tuple[str, ...] = FORECASTERS
    horizons_s: tuple[float, ...] = (3600.0,)
    every_s: float = 300.0
    sample_s: float = 300.0
    refit_s: float = 3600.0
    lookback_s: float = 86400.0
    ewma_lambda: float = 0.94
    flat_vol: float = 0.5
    min_returns: int = 24


@dataclass(frozen=True)
class Bars:
    """Bar returns: ``ts[j]`` is the end of bar ``j`` (ns), ``r[j]`` its log return."""

    ts: np.ndarray
    r: np.ndarray
    step_ns: int

    def known(self, t: np.ndarray) -> np.ndarray:
        """How many bars had ended by each ``t``."""
        return np.searchsorted(self.ts, t, side="right")


def bars_from_mid(grid_ts: np.ndarray, mid: np.ndarray, sample_s: float) -> Bars:
    """Bars of ``sample_s`` from a mid sampled on a finer regular grid (``sample_s`` a
    multiple of its step): the samples at whole multiples of ``sample_s`` since the epoch,
    then log returns.  Bars end where forecasts are made (multiples of ``every_s``, itself a
    multiple of ``sample_s``), whatever the replay's start: a forecast then reads the bar
    that ends at its time, and the realised vol it is scored against sums bars that begin
    after it (bars anchored at the start read one ending up to a bar earlier, and scored a
    target that began before the forecast).  A bar is kept only when both of its ends are
    sampled (a NaN sample: before the first quote, or in a hole of the tape, see
    :meth:`~replay.store.database.MarketStore.sampled_mid`'s ``max_age_ns``): a hole leaves
    bars out rather than one bar carrying the whole move across it, and ``Bars.ts`` then
    skips the hole."""
    step = int(grid_ts[1] - grid_ts[0]) if grid_ts.size > 1 else int(sample_s * 1e9)
    k = max(int(round(sample_s * 1e9 / step)), 1)
    first = (-int(grid_ts[0]) % (k * step)) // step if grid_ts.size else 0
    ts, m = grid_ts[first::k], mid[first::k]
    r = log_returns(np.where(m > 0, m, np.nan))  # NaN > 0 is False
    ok = np.isfinite(r)
    return Bars(ts[1:][ok], r[ok], k * step)


def _annualise(var_per_bar: np.ndarray, bars: Bars) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.sqrt(np.maximum(var_per_bar, 0.0) * (YEAR_S * 1e9 / bars.step_ns))


def last_realized(bars: Bars, at: np.ndarray, h_ns: int) -> np.ndarray:
    """The realised vol of the bars in ``(t - h, t]`` at each ``t``; NaN unless all
    ``h / step`` of them are known (at the start of the data, or after a hole), since a
    window of one or two bars is not the realised vol of ``h``."""
    n = window_count(bars.ts, at, h_ns)
    s = window_sum(bars.ts, bars.r ** 2, at, h_ns)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= max(int(round(h_ns / bars.step_ns)), 1),
                        _annualise(s / np.maximum(n, 1), bars), np.nan)


def ewma(bars: Bars, at: np.ndarray, lam: float, min_returns: int) -> np.ndarray:
    """RiskMetrics EWMA vol at each ``t`` (module docstring); NaN before ``min_returns``."""
    r2 = bars.r ** 2
    s2 = np.empty(r2.size)
    if r2.size:
        s2[0] = np.mean(r2[:min_returns]) if r2.size >= min_returns else r2[0]
        # the seed uses the first min_returns bars, so no forecast before they are known
        for j in range(1, r2.size):
            s2[j] = lam * s2[j - 1] + (1 - lam) * r2[j]
    k = bars.known(at)
    out = np.full(at.size, np.nan)
    ok = k >= max(min_returns, 1)
    out[ok] = _annualise(s2[k[ok] - 1], bars)
    return out


def garch(bars: Bars, at: np.ndarray, h_ns: int, cfg: ForecastConfig, gjr: bool) -> np.ndarray:
    """GARCH(1,1) / GJR-GARCH vol forecasts at each ``t`` (module docstring)."""
    from arch import arch_model

    n_h = max(int(round(h_ns / bars.step_ns)), 1)
    out = np.full(at.size, np.nan)
    if not at.size:
        return out
    refit_ns, look_ns = int(cfg.refit_s * 1e9), int(cfg.lookback_s * 1e9)
    first = int(at[0])
    refits = np.arange(first - first % refit_ns, int(at[-1]) + 1, refit_ns)
    y = bars.r * ARCH_SCALE
    for i, rt in enumerate(refits):
        nxt = refits[i + 1] if i + 1 < refits.size else np.iinfo(np.int64).max
        sel = (at >= rt) & (at < nxt)
        j0 = int(np.searchsorted(bars.ts, rt - look_ns, side="right"))
        j1 = int(bars.known(np.array([rt]))[0])  # bars known at the re-estimation
        if not sel.any() or j1 - j0 < cfg.min_returns:
            continue
        k = bars.known(at[sel])
        # estimated on the bars known at the re-estimation (last_obs), then filtered with those
        # parameters through the bars known by the last forecast.  One model for both: the
        # recursion's starting variance (arch's backcast, from the first 75 returns) is then
        # the estimation sample's; a model fixed on the longer sample took it from bars that
        # the earlier forecasts had not seen yet (look-ahead within the first 75 bars)
        model = arch_model(y[j0:int(k.max())], mean="Zero", vol="GARCH", p=1, o=int(gjr), q=1,
                           dist="normal", rescale=False)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # convergence chatter
            try:
                res = model.fit(disp="off", show_warning=False, last_obs=j1 - j0)
                var = res.forecast(horizon=n_h, start=j1 - 1 - j0, reindex=False).variance
            except (ValueError, ArithmeticError, np.linalg.LinAlgError):
                continue  # degenerate data (e.g. a stale, flat stretch): no forecast here
        total = var.to_numpy().sum(axis=1) / ARCH_SCALE ** 2  # over the h bars
        rows = k - 1 - (j1 - 1)  # forecast made after bar k-1 (>= the fit's last bar)
        good = (rows >= 0) & (rows < total.size)
        idx = np.flatnonzero(sel)[good]
        tot = total[rows[good]]
        out[idx] = np.where(np.isfinite(tot) & (tot > 0), _annualise(tot / n_h, bars), np.nan)
    return out


def har(bars: Bars, at: np.ndarray, h_ns: int, cfg: ForecastConfig) -> np.ndarray:
    """HAR-RV vol forecasts at each ``t`` (module docstring)."""
    n_h = max(int(round(h_ns / bars.step_ns)), 1)
    r2 = bars.r ** 2
    c = np.concatenate([[0.0], np.cumsum(r2)])
    j = np.arange(1, r2.size + 1)  # "after bar j-1": j bars known

    def mean_back(j: np.ndarray, w: int) -> np.ndarray:
        lo = np.maximum(j - w, 0)
        return (c[j] - c[lo]) / np.maximum(j - lo, 1)

    x = np.column_stack([np.ones(j.size)] + [mean_back(j, w * n_h) for w in HAR_WINDOWS])
    target = np.full(j.size, np.nan)
    ahead = j + n_h <= r2.size
    target[ahead] = (c[j[ahead] + n_h] - c[j[ahead]]) / n_h  # the next h, once known
    out = np.full(at.size, np.nan)
    refit_ns = int(cfg.refit_s * 1e9)
    k_at = bars.known(at)
    coef = None
    last_refit = None
    for i, t in enumerate(at):
        rt = int(t) - int(t) % refit_ns
        if rt != last_refit:
            last_refit = rt
            known = int(bars.known(np.array([rt]))[0])
            # pairs whose target (bars j .. j+n_h-1) had ended by the re-estimation
            train = np.flatnonzero((j + n_h <= known) & (j >= cfg.min_returns))
            coef = None
            if train.size >= max(cfg.min_returns, 8):
                coef = np.linalg.lstsq(x[train], target[train], rcond=None)[0]
        k = int(k_at[i])
        if coef is None or k < 1:
            continue
        f = float(x[k - 1] @ coef)
        if not f > 0:
            f = float(x[k - 1, 1])  # a negative fitted variance: fall back to the last h
        out[i] = _annualise(np.array(f), bars)
    return out


def batch_forecasts(bars: Bars, at: np.ndarray, cfg: ForecastConfig,
                    truth: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Every configured forecaster except ``implied`` (which needs the surface at ``t``), at
    each time of ``at`` and each horizon: ``{(name, horizon_s): vols}``; ``truth`` is the
    synthetic ``(ts, variance)`` path for ``truth``."""
    out = {}
    for h in cfg.horizons_s:
        h_ns = int(h * 1e9)
        for name in cfg.forecasters:
            if name == "flat":
                v = np.full(at.size, cfg.flat_vol)
            elif name == "last":
                v = last_realized(bars, at, h_ns)
            elif name == "ewma":
                v = ewma(bars, at, cfg.ewma_lambda, cfg.min_returns)
            elif name in ("garch", "gjr_garch"):
                v = garch(bars, at, h_ns, cfg, gjr=name == "gjr_garch")
            elif name == "har":
                v = har(bars, at, h_ns, cfg)
            elif name == "truth" and truth is not None:
                i = np.searchsorted(truth[0], at, side="right") - 1
                v = np.where(i >= 0, np.sqrt(truth[1][np.maximum(i, 0)]), np.nan)
            else:
                continue
            out[(name, float(h))] = v
    return out
