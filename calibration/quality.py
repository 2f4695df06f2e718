"""Fit-quality metrics per fit, their aggregation, and the ``calibration_quotes`` rows.

Per fit (all vol figures in vol points, 1 point = 0.01 of implied vol), over the quotes the
fit used (two-sided, positive loss weight):

* ``rmse_vol_pts``: ``sqrt(mean((fit_iv - mid_iv)^2))``;
* ``inside_spread_pct``: share of those quotes with ``bid_iv <= fit_iv <= ask_iv``, in percent;
* ``mark_abs_sum`` / ``mark_n``: ``sum |fit_iv - venue_mark_iv|`` and its count, over the
  same quotes where the venue gives a mark (the aggregate is their ratio, so every quote of
  the replay counts once: ``vs_venue_mark_iv_mae_vol_pts``);
* ``param_jitter``: RMS change of the fitted smile between this fit and the previous one, in
  vol points, over the quotes of this fit whose expiry both fits have (model-independent,
  unlike raw parameter differences), each fit read at the expiry's maturity as it fitted it;
* ``arb_violations`` of the surface as fitted, and ``fit_ms``.

Out-of-sample (``oos_errors``): the current surface against the fresh two-sided mids of a
later snapshot, before the next refit, at the fresh forward (sticky moneyness).

An earlier surface is read at each expiry's maturity as it was fitted
(:meth:`calibration.surface.Surface.t_of`), as every consumer reads a published surface
(:meth:`~calibration.surface.Surface.iv_expiry`): read at the time left now, it would blend
the expiry's slice with a shorter one's, and an unchanged smile refitted twelve hours later
read as 0.8 vol points of jitter and out-of-sample error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from calibration.quotes import QuoteSlice, QuoteSnapshot
from calibration.sums import pairwise_sum
from calibration.surface import Surface


@dataclass(frozen=True)
class FitQuality:
    n_quotes: int
    rmse_vol_pts: float
    inside_spread_pct: float
    mark_abs_sum: float
    mark_n: int
    param_jitter: float | None
    arb_violations: int
    fit_ms: float

    @property
    def vs_venue_mark_iv_mae_vol_pts(self) -> float | None:
        return self.mark_abs_sum / self.mark_n if self.mark_n else None


@dataclass(frozen=True)
class OOSError:
    sq_sum: float  # sum of squared errors, vol points^2
    n: int

    @property
    def rmse_vol_pts(self) -> float | None:
        return float(np.sqrt(self.sq_sum / self.n)) if self.n else None


def _surface_iv(surface: Surface, k: np.ndarray, t: float | np.ndarray) -> np.ndarray:
    """The surface's IV at points ``(k, t)``."""
    return np.sqrt(np.maximum(surface.total_variance(k, t), 0.0) / t)


def _points_iv(surface: Surface, k: np.ndarray, t: np.ndarray) -> np.ndarray:
    """:func:`_surface_iv` at points ``(k[i], t[i])``, by the call ``total_variance`` makes
    for per-point maturities (:meth:`calibration.surface.Surface.total_variance_rows`: one
    compiled pass for an all-SVI surface), without its broadcasting."""
    w = surface.total_variance_rows(k.reshape(-1, 1), t).reshape(-1)
    return np.sqrt(np.maximum(w, 0.0) / t)


def surface_iv_at(surface: Surface, sl: QuoteSlice, idx: np.ndarray | None = None
                  ) -> np.ndarray:
    """The surface's IV at the slice's quotes: at their ``k``, at the slice's expiry's
    maturity as the surface fitted it (the slice's own ``t`` for a surface of its
    snapshot)."""
    return _surface_iv(surface, sl.k if idx is None else sl.k[idx],
                       float(surface.t_of(sl.expiry_ns)))


def fit_quality(surface: Surface, snapshot: QuoteSnapshot, used: Sequence[np.ndarray],
                fit_ms: float, previous: Surface | None = None) -> FitQuality:
    """Quality of ``surface`` fitted to ``snapshot``; ``used[i]`` are the quote positions of
    slice ``i`` that entered the fit.  The quotes of every slice are scored in one pass (each
    at its own slice's ``k`` and ``t``)."""
    sizes = np.array([idx.size for idx in used], dtype=np.int64)
    n = int(sizes.sum())
    if not n:
        return FitQuality(0, float("nan"), float("nan"), 0.0, 0, None,
                          len(surface.violations), float(fit_ms))
    r = snapshot.rows
    at = np.concatenate(used) + np.repeat(r.start, sizes)
    k, mid, bid, ask, mk = r.k[at], r.mid_iv[at], r.bid_iv[at], r.ask_iv[at], r.mark_iv[at]
    t = np.repeat([sl.t for sl in snapshot.slices], sizes)
    fit = _points_iv(surface, k, t)
    both = np.zeros(n, dtype=bool)
    prev_fit = _NONE
    if previous is not None:
        prev_exp = {s.expiry_ns for s in previous.slices}
        both = np.repeat([sl.expiry_ns in prev_exp for sl in snapshot.slices], sizes)
        if both.any():
            t_then = np.repeat(previous.t_of(np.array([sl.expiry_ns for sl in snapshot.slices])),
                               sizes)
            prev_fit = _points_iv(previous, k[both], t_then[both])
    sq, inside, mark_sum, mark_n, jit_sq = _sums(fit, mid, bid, ask, mk, both, prev_fit)
    return FitQuality(
        n_quotes=n, rmse_vol_pts=float(np.sqrt(sq / n)), inside_spread_pct=100.0 * inside / n,
        mark_abs_sum=mark_sum, mark_n=mark_n,
        param_jitter=float(np.sqrt(jit_sq / prev_fit.size)) if prev_fit.size else None,
        arb_violations=len(surface.violations), fit_ms=float(fit_ms))


_NONE = np.zeros(0)


@njit(cache=True)
def _sums(fit, mid, bid, ask, mark, both, prev_fit):
    """:func:`fit_quality`'s sums in one pass, each summed as ``numpy.sum`` sums it
    (:mod:`calibration.sums`): the squared errors ``(100 (fit - mid))^2``, the count inside
    ``[bid, ask]``, ``|100 (fit - mark)|`` over the finite marks and their count, and the
    squared changes ``(100 (fit - prev_fit))^2`` over the quotes ``both`` (``prev_fit`` holds
    one value for each, in order)."""
    n = fit.shape[0]
    sq, ab, ch = np.empty(n), np.empty(n), np.empty(prev_fit.shape[0])
    inside = m = c = 0
    for i in range(n):
        e = 100.0 * (fit[i] - mid[i])
        sq[i] = e * e
        inside += fit[i] >= bid[i] and fit[i] <= ask[i]
        if np.isfinite(mark[i]):
            ab[m] = abs(100.0 * (fit[i] - mark[i]))
            m += 1
        if both[i]:
            d = 100.0 * (fit[i] - prev_fit[c])
            ch[c] = d * d
            c += 1
    return pairwise_sum(sq, 0, n), inside, pairwise_sum(ab, 0, m), m, pairwise_sum(ch, 0, c)


def oos_errors(surface: Surface, snapshot: QuoteSnapshot) -> OOSError:
    """Squared errors of ``surface`` against every fresh two-sided mid of ``snapshot``."""
    sq = 0.0
    n = 0
    for sl in snapshot.slices:
        idx = np.flatnonzero(sl.two_sided)
        if idx.size == 0 or sl.t <= 0:
            continue
        e = 100 * (surface_iv_at(surface, sl, idx) - sl.mid_iv[idx])
        e = e[np.isfinite(e)]
        sq += float(np.sum(e * e))
        n += e.size
    return OOSError(sq, n)


def fresh_oos_errors(surface: Surface, snapshot: QuoteSnapshot, fitted_ns: int
                     ) -> OOSError | None:
    """:func:`oos_errors` of ``surface`` (fitted at ``fitted_ns``) on the quotes of
    ``snapshot`` updated since, the ones its fit did not see (all of them when the snapshot
    does not know its quotes' times); None when there are none."""
    fresh = snapshot if snapshot.rows.quote_ts is None else snapshot.fresh(fitted_ns)
    return oos_errors(surface, fresh) if fresh.slices else None


def outside_band_pct(surface: Surface, snapshot: QuoteSnapshot) -> float:
    """Percent of the two-sided quotes of ``snapshot`` whose surface IV lies outside
    ``[bid_iv, ask_iv]``; the quality refit trigger passes the quotes updated since the fit
    (:meth:`calibration.quotes.QuoteSnapshot.fresh`)."""
    out = 0
    n = 0
    for sl in snapshot.slices:
        idx = np.flatnonzero(sl.two_sided)
        if idx.size == 0:
            continue
        f = surface_iv_at(surface, sl, idx)
        out += int(np.sum((f < sl.bid_iv[idx]) | (f > sl.ask_iv[idx])))
        n += idx.size
    return 100.0 * out / n if n else 0.0


def fresh_outside_band_pct(surface: Surface, snapshot: QuoteSnapshot, fitted_ns: int
                           ) -> float:
    """:func:`outside_band_pct` of ``surface`` (fitted at ``fitted_ns``) over the quotes of
    ``snapshot`` updated since, however few in a slice (all of them when the snapshot does
    not know its quotes' times): the quality refit trigger.  Over every quote, a move of a
    few quotes was diluted by the many the fit had already seen."""
    fresh = snapshot if snapshot.rows.quote_ts is None else snapshot.fresh(fitted_ns, 1)
    return outside_band_pct(surface, fresh)


def aggregate(fits: Sequence[FitQuality], oos: Sequence[OOSError] = ()) -> dict:
    """The ``calibration`` block of ``metrics.json`` (docs/outputs.md); ``None`` where a figure
    does not apply.  RMSE, inside-spread and the mark MAE pool every quote of every fit;
    ``param_jitter`` and ``fit_ms_median`` are medians over fits."""
    n_q = sum(f.n_quotes for f in fits)
    sq = sum(f.rmse_vol_pts ** 2 * f.n_quotes for f in fits if f.n_quotes)
    ins = sum(f.inside_spread_pct * f.n_quotes / 100.0 for f in fits if f.n_quotes)
    mk_n = sum(f.mark_n for f in fits)
    mk = sum(f.mark_abs_sum for f in fits)
    jit = [f.param_jitter for f in fits if f.param_jitter is not None]
    o_n = sum(o.n for o in oos)
    o_sq = sum(o.sq_sum for o in oos)
    return {
        "n_fits": len(fits),
        "rmse_vol_pts": float(np.sqrt(sq / n_q)) if n_q else None,
        "inside_spread_pct": 100.0 * ins / n_q if n_q else None,
        "oos_rmse_vol_pts": float(np.sqrt(o_sq / o_n)) if o_n else None,
        "param_jitter": float(np.median(jit)) if jit else None,
        "arb_violations": int(sum(f.arb_violations for f in fits)),
        "fit_ms_median": float(np.median([f.fit_ms for f in fits])) if fits else None,
        "vs_venue_mark_iv_mae_vol_pts": mk / mk_n if mk_n else None,
    }


def calibration_quote_rows(surface: Surface, snapshot: QuoteSnapshot,
                           used: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """Columns of the journal's ``calibration_quotes`` table (docs/outputs.md) for one fit:
    ``ts, instrument, expiry, strike, forward, bid_iv, ask_iv, mid_iv, fit_iv, venue_mark_iv``
    (one row per quote used; IVs as fractions)."""
    cols: dict[str, list] = {c: [] for c in ("ts", "instrument", "expiry", "strike", "forward",
                                             "bid_iv", "ask_iv", "mid_iv", "fit_iv",
                                             "venue_mark_iv")}
    for sl, idx in zip(snapshot.slices, used):
        if idx.size == 0:
            continue
        m = idx.size
        cols["ts"].append(np.full(m, snapshot.ts_ns, dtype=np.int64))
        cols["instrument"].append(np.asarray(sl.instrument, dtype=object)[idx]
                                  if len(sl.instrument) else np.full(m, "", dtype=object))
        cols["expiry"].append(np.full(m, sl.expiry_ns, dtype=np.int64))
        cols["strike"].append(sl.strike[idx])
        cols["forward"].append(np.full(m, sl.forward))
        cols["bid_iv"].append(sl.bid_iv[idx])
        cols["ask_iv"].append(sl.ask_iv[idx])
        cols["mid_iv"].append(sl.mid_iv[idx])
        cols["fit_iv"].append(surface_iv_at(surface, sl, idx))
        cols["venue_mark_iv"].append(sl.mark_iv[idx])
    return {c: (np.concatenate(v) if v else np.array([])) for c, v in cols.items()}
