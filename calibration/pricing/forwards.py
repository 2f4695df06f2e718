"""Time to expiry and forwards per expiry: put-call parity, or the venue's future where it exists.

Put-call parity for undiscounted prices (forward measure, European exercise)::

    linear (USD) premiums:   C - P = F - K
    inverse (coin) premiums: C_c - P_c = (C - P) / F = 1 - K / F

so each strike quoted on both sides of both the call and the put gives one noisy observation of
F.  The estimate is a Huber M-estimate (P. J. Huber, "Robust estimation of a location
parameter", Ann. Math. Statist. 35, 1964) by iteratively reweighted least squares, with prior
weights ``1 / sigma_i^2`` where ``sigma_i`` is the combined half-spread of the call and the put
mid prices, so that wide or stale-looking books count little and a single off-market pair
cannot drag the forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit
from numpy.typing import ArrayLike

__all__ = [
    "SECONDS_PER_YEAR",
    "ForwardEstimate",
    "choose_forward",
    "parity_forward",
    "time_to_expiry",
]

#: ACT/365 year in seconds
SECONDS_PER_YEAR = 365.0 * 86400.0
_HUBER_K = 1.345  # 95% efficiency at the normal (Huber 1964)
_BISQUARE_C = 4.685  # 95% efficiency at the normal (Beaton and Tukey 1974)


def _huber(a: np.ndarray) -> np.ndarray:
    """Huber weights ``min(1, k/|u|)`` of standardised residuals ``a = |u|``."""
    return np.where(a <= _HUBER_K, 1.0, _HUBER_K / np.maximum(a, 1e-300))


def _bisquare(a: np.ndarray) -> np.ndarray:
    """Tukey bisquare weights ``(1 - (u/c)^2)^2`` for ``|u| < c``, else 0."""
    return np.where(a < _BISQUARE_C, (1.0 - (a / _BISQUARE_C) ** 2) ** 2, 0.0)


@dataclass(frozen=True)
class ForwardEstimate:
    """Forward implied by put-call parity for one expiry.

    ``forward`` in USD (NaN when not estimable); ``n_pairs`` strikes with both sides of both
    the call and the put; ``residual_std`` the weighted RMS parity residual in USD (coin
    residuals are multiplied by the forward); ``method`` ``"huber-bisquare"`` or
    ``"insufficient"``.
    """

    forward: float
    n_pairs: int
    residual_std: float
    method: str


def time_to_expiry(ts_ns: ArrayLike, expiry_ns: ArrayLike) -> np.ndarray:
    """Year fraction ACT/365 from ``ts_ns`` to ``expiry_ns`` (both int64 ns UTC), in seconds.

    ``expiry_ns`` is the settlement instant (08:00 UTC on Deribit, as stored in the
    instruments table).  The difference is taken in integers first so nanosecond timestamps
    keep their precision; past expiries give values <= 0 (``implied_vol`` returns NaN there).
    """
    dt = np.asarray(expiry_ns, dtype=np.int64) - np.asarray(ts_ns, dtype=np.int64)
    return dt.astype(np.float64) / (1e9 * SECONDS_PER_YEAR)


def _usable(strikes: np.ndarray, cb: np.ndarray, ca: np.ndarray, pb: np.ndarray,
            pa: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return ((strikes > 0) & (cb > 0) & (ca >= cb) & (pb > 0) & (pa >= pb)
                & np.isfinite(strikes) & np.isfinite(ca) & np.isfinite(pa))


def parity_forward(strikes: ArrayLike, call_bid: ArrayLike, call_ask: ArrayLike,
                   put_bid: ArrayLike, put_ask: ArrayLike, inverse: bool = True,
                   max_iter: int = 50) -> ForwardEstimate:
    """Forward of one expiry from put-call parity over strikes (robust, spread-weighted).

    Observations ``y_i = mid(C_i) - mid(P_i)``; only strikes with a positive bid and an ask on
    both the call and the put are used.  Linear premiums: ``y_i = F - K_i``, so F is a
    weighted Huber location of ``y_i + K_i``.  Inverse (coin) premiums: ``y_i = 1 - g K_i`` with
    ``g = 1/F``, a regression through the origin of ``1 - y_i`` on ``K_i``, ``F = 1/g``.
    Prior weights ``1/sigma_i^2``, ``sigma_i`` the sum of the two half-spreads (floored at a
    tiny fraction of the median so a zero spread cannot take all the weight).  Residuals are
    standardised by ``sigma_i`` and by a robust scale (1.4826 MAD, at least 1, so quotes that
    agree within their spreads are never rejected); Huber threshold 1.345, bisquare 4.685.
    Fewer than 2 usable pairs give a NaN forward with method ``"insufficient"``.
    """
    k = np.asarray(strikes, dtype=np.float64).ravel()
    cb, ca, pb, pa = (np.asarray(a, dtype=np.float64).ravel()
                      for a in (call_bid, call_ask, put_bid, put_ask))
    ok = _usable(k, cb, ca, pb, pa)
    n = int(ok.sum())
    if n < 2:
        return ForwardEstimate(math.nan, n, math.nan, "insufficient")
    k, cb, ca, pb, pa = k[ok], cb[ok], ca[ok], pb[ok], pa[ok]
    y = 0.5 * (cb + ca) - 0.5 * (pb + pa)
    sigma = 0.5 * (ca - cb) + 0.5 * (pa - pb)
    positive = sigma[sigma > 0]
    floor = 1e-3 * float(np.median(positive)) if positive.size else 1e-12
    sigma = np.maximum(sigma, max(floor, 1e-300))
    prior = 1.0 / sigma**2
    # linear: r = y + K - F (estimate F); inverse: r = (1 - y) - g K (estimate g)
    target = (1.0 - y) if inverse else (y + k)
    design = k if inverse else np.ones(n)
    robust = np.ones(n)
    param = math.nan
    # Huber first (convex, so it converges from anywhere), then Tukey's bisquare from the
    # Huber solution, which gives pairs far outside their own spreads exactly zero weight
    for weight_fn in (_huber, _bisquare):
        previous = math.nan
        for _ in range(max_iter):
            w = prior * robust
            param = float(np.sum(w * design * target) / np.sum(w * design * design))
            u = (target - param * design) / sigma
            scale = max(1.4826 * float(np.median(np.abs(u - np.median(u)))), 1.0)
            new_robust = weight_fn(np.abs(u) / scale)
            if not np.any(new_robust > 0):  # every pair rejected: keep the last weights
                break
            robust = new_robust
            if abs(param - previous) <= 1e-14 * abs(param):
                break
            previous = param
    w = prior * robust
    resid = target - param * design
    forward = 1.0 / param if inverse else param
    if not (forward > 0 and math.isfinite(forward)):
        return ForwardEstimate(math.nan, n, math.nan, "insufficient")
    rms = math.sqrt(float(np.sum(w * resid**2) / np.sum(w)))
    return ForwardEstimate(forward, n, rms * forward if inverse else rms, "huber-bisquare")


def rows_parity_forward(strike: np.ndarray, is_call: np.ndarray, bid: np.ndarray,
                        ask: np.ndarray) -> ForwardEstimate:
    """:func:`parity_forward` of one expiry from its options as rows (strike, call flag, and
    the bid and ask coin premiums, NaN for a missing side)."""
    ks = np.unique(strike)
    cols = {}
    for name, side, call in (("cb", bid, True), ("ca", ask, True), ("pb", bid, False),
                             ("pa", ask, False)):
        v = np.full(ks.size, np.nan)
        sel = is_call == call
        v[np.searchsorted(ks, strike[sel])] = side[sel]
        cols[name] = v
    return parity_forward(ks, cols["cb"], cols["ca"], cols["pb"], cols["pa"], inverse=True)


def choose_forward(parity: ForwardEstimate, venue_forward: float | None
                   ) -> tuple[float, str, float]:
    """Pick the forward for an expiry: ``(forward, source, disagreement_bps)``.

    The venue's future/underlying price wins where it exists (positive and finite), because
    it is traded; otherwise the parity estimate.  ``disagreement_bps = 1e4 (F_parity/F_venue
    - 1)``, NaN when either is missing.  ``source`` is ``"venue"``, ``"parity"`` or ``"none"``.
    """
    venue = math.nan if venue_forward is None else float(venue_forward)
    has_venue = venue > 0 and math.isfinite(venue)
    has_parity = parity.forward > 0 and math.isfinite(parity.forward)
    bps = 1e4 * (parity.forward / venue - 1.0) if has_venue and has_parity else math.nan
    if has_venue:
        return venue, "venue", bps
    if has_parity:
        return parity.forward, "parity", bps
    return math.nan, "none", bps


def venue_forwards(fwd: np.ndarray, qts: np.ndarray | None, first: np.ndarray) -> np.ndarray:
    """Per group of rows (``first``: where each starts) the median of the positive finite
    forwards ``fwd`` (each row's venue forward of its expiry), over the group's most recently
    quoted such rows when their quote times ``qts`` are given
    (:func:`calibration.quotes.build_snapshot`); NaN for a group with none.  Each is
    ``numpy.median``'s, bit for bit (the mean of the two middle values for an even count),
    in one compiled pass: it runs once per wake."""
    return _group_medians(np.ascontiguousarray(fwd, dtype=float),
                          _NO_TIMES if qts is None else qts, qts is not None, first)


_NO_TIMES = np.zeros(0, np.int64)


@njit(cache=True)
def _group_medians(fwd, qts, latest_only, first):
    n, n_groups = fwd.shape[0], first.shape[0]
    out = np.full(n_groups, np.nan)
    vals = np.empty(n)
    for g in range(n_groups):
        a, b = first[g], (first[g + 1] if g + 1 < n_groups else n)
        latest = np.iinfo(np.int64).min
        if latest_only:
            for i in range(a, b):
                if np.isfinite(fwd[i]) and fwd[i] > 0.0 and qts[i] > latest:
                    latest = qts[i]
        m = 0
        for i in range(a, b):
            if np.isfinite(fwd[i]) and fwd[i] > 0.0 and (not latest_only or qts[i] == latest):
                vals[m] = fwd[i]
                m += 1
        if m:
            v = np.sort(vals[:m])
            h = m // 2
            out[g] = v[h] if m % 2 == 1 else (v[h - 1] + v[h]) / 2
    return out
