"""The arbitrage checks of :mod:`calibration.arbitrage` on raw SVI slices, in compiled passes.

A surface is checked at every refit, and almost every surface is clean.
:func:`svi_surface_clean` runs the checks of :func:`calibration.arbitrage.check_slices` on the
stacked parameters in one pass, on the same grids with the same formulas and tolerances, and
says only whether anything is flagged; a surface it flags goes to ``check_slices``, which lists
the violations.  :func:`svi_calendar_drop` is the crossing test of
:mod:`calibration.models.calendar_rows` for two SVI slices, :func:`svi_envelope_dip` the test
of the rest of its floor (:func:`svi_envelope_dips` for every slice of a surface at once).
Both grids are built as ``numpy.linspace`` builds them (``start + i * step``, the last point
exactly ``stop``), so each point, and each decision, is the one the numpy path makes.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from calibration.arbitrage import (
    BUTTERFLY_TOL,
    CALENDAR_TOL,
    LEE_MAX_SLOPE,
    LEE_TOL,
    calendar_points_of,
    grid_point,
)
from calibration.models.svi_formula import svi_point

__all__ = ["lifted", "svi_calendar_drop", "svi_calendar_drops",
           "svi_calendar_rises", "svi_envelope_dip", "svi_envelope_dips", "svi_surface_clean",
           "svi_w", "svi_w_row"]


@njit(cache=True)
def lifted(w: float, steps: int, margin: float) -> float:
    """``w`` lifted for a calendar floor ``steps`` expiries later: by ``margin`` and half the
    check's tolerance for the next one, and twice that for every one after it (one lift for
    the floor of the expiry in between, one for the cut of its ceiling;
    :mod:`calibration.models.calendar_rows`)."""
    return w * (1.0 + (2 * steps - 1) * margin) + (2 * steps - 1) * 0.5 * CALENDAR_TOL


@njit(cache=True)
def svi_w(p: np.ndarray, k: float) -> float:
    """Total variance at ``k`` of the raw SVI parameter row ``p`` (``a, b, rho, m, sigma``)."""
    return svi_point(k, p[0], p[1], p[2], p[3], p[4])[0]


@njit(cache=True)
def svi_w_row(par: np.ndarray, i: int, k: float) -> float:
    """:func:`svi_w` of row ``i`` of the stacked parameters ``par``, read in place: a row
    taken as a view is a reference, counted atomically as it is made and dropped, which
    made half the time of a surface's check (32 us on the bench's 12 slices, 266 points)."""
    return svi_point(k, par[i, 0], par[i, 1], par[i, 2], par[i, 3], par[i, 4])[0]


@njit(cache=True)
def svi_surface_clean(par: np.ndarray, k_lo: np.ndarray, k_hi: np.ndarray,
                      n_grid: int = 121) -> bool:
    """No butterfly, Lee or calendar violation on the raw SVI slices ``par`` (rows ``a, b,
    rho, m, sigma``, by increasing maturity, with domains ``[k_lo, k_hi]``), as
    :func:`calibration.arbitrage.check_slices` would find with ``n_grid``: Durrleman's ``g``
    on ``n_grid`` points of each domain, the wing slopes ``b (1 -+ rho)`` against Lee's 2,
    and ``w_i - w_{i+1}`` at the calendar check's points
    (:func:`calibration.arbitrage.calendar_points`: ``2 n_grid`` points of the union of the
    domains and every domain's ends) where either of the two is quoted (the hull of their
    domains; the other extrapolated beyond its own), and ``w_j - w_i`` for every earlier
    ``j`` where ``j`` is quoted.  Each slice's ``w`` is computed once a point."""
    n = par.shape[0]
    for i in range(n):
        b, rho = par[i, 1], par[i, 2]
        if not (b * (1.0 - rho) <= LEE_MAX_SLOPE + LEE_TOL
                and b * (1.0 + rho) <= LEE_MAX_SLOPE + LEE_TOL):
            return False
        for j in range(n_grid):
            k = grid_point(k_lo[i], k_hi[i], n_grid, j)
            w, w1, w2 = svi_point(k, par[i, 0], b, rho, par[i, 3], par[i, 4])
            if not w > 0.0:
                return False
            w = max(w, 1e-300)  # durrleman_g's floor, kept for the same digits
            u = 1.0 - k * w1 / (2.0 * w)
            g = u * u - 0.25 * w1 * w1 * (1.0 / w + 0.25) + 0.5 * w2
            if not g >= -BUTTERFLY_TOL:
                return False
    if n > 1:
        for k in calendar_points_of(k_lo, k_hi, n_grid):  # the check's own points
            before, envelope = 0.0, -np.inf
            in_pair = False  # k is in the hull of slices i - 1 and i
            for i in range(n):
                in_next = i + 1 < n and min(k_lo[i], k_lo[i + 1]) <= k <= max(k_hi[i],
                                                                              k_hi[i + 1])
                # w_i is read by no check (not in either pair's hull, no earlier quoted here)
                if not (in_pair or in_next or envelope > -np.inf):
                    in_pair = in_next
                    continue
                w = svi_w_row(par, i, k)
                if max(before if in_pair else -np.inf, envelope) - w > CALENDAR_TOL:
                    return False
                if k_lo[i] <= k <= k_hi[i]:
                    envelope = max(envelope, w)
                before, in_pair = w, in_next
    return True


@njit(cache=True)
def svi_calendar_drops(par: np.ndarray, k_lo: np.ndarray, k_hi: np.ndarray,
                       points: np.ndarray) -> np.ndarray:
    """:func:`svi_calendar_drop` of each slice ``i >= 1`` of ``par`` under the one before it,
    on the ``k`` range the one before is quoted on (its domain, the range of
    :func:`calibration.models.calendar_rows.calendar_floor`); entry 0 is ``-inf``."""
    out = np.full(par.shape[0], -np.inf)
    for i in range(1, par.shape[0]):
        if k_hi[i - 1] > k_lo[i - 1]:
            out[i] = svi_calendar_drop(par[i - 1], par[i], k_lo[i - 1], k_hi[i - 1], points)
    return out


@njit(cache=True)
def svi_calendar_rises(par: np.ndarray, k_lo: np.ndarray, k_hi: np.ndarray,
                       points: np.ndarray) -> np.ndarray:
    """:func:`svi_calendar_drop` of each slice ``i`` of ``par`` over the one after it, on the
    hull of their two domains (the range of
    :func:`calibration.models.calendar_rows.calendar_ceiling`); the last entry is ``-inf``."""
    out = np.full(par.shape[0], -np.inf)
    for i in range(par.shape[0] - 1):
        out[i] = svi_calendar_drop(par[i], par[i + 1], min(k_lo[i], k_lo[i + 1]),
                                   max(k_hi[i], k_hi[i + 1]), points)
    return out


@njit(cache=True)
def svi_calendar_drop(before: np.ndarray, after: np.ndarray, lo: float, hi: float,
                      points: np.ndarray) -> float:
    """``max(w_before(k) - w_after(k))`` over the ``points`` inside ``[lo, hi]`` (SVI
    parameter rows ``a, b, rho, m, sigma``); ``-inf`` with no such point, NaN if any
    difference is NaN, as ``numpy.max`` gives."""
    out = -np.inf
    for k in points:
        if not lo <= k <= hi:
            continue
        d = svi_w(before, k) - svi_w(after, k)
        if d != d:
            return d
        out = max(out, d)
    return out


@njit(cache=True)
def svi_envelope_dip(earlier: np.ndarray, k_lo: np.ndarray, k_hi: np.ndarray,
                     after: np.ndarray, points: np.ndarray, margin: float) -> float:
    """How far the SVI slice ``after`` dips under the floor that the expiries ``earlier``
    (rows ``a, b, rho, m, sigma`` by maturity, domains ``[k_lo, k_hi]``) set beyond the
    domain of the last of them (:func:`calibration.models.calendar_rows.floor_rows`): the
    ``max`` over the ``points`` outside the last one's domain of the highest lifted ``w_i``
    quoted there less ``w_after``; ``-inf`` with no such point, NaN if any difference is
    NaN."""
    last = earlier.shape[0] - 1
    out = -np.inf
    for k in points:
        if k_lo[last] <= k <= k_hi[last]:
            continue
        top = -np.inf
        for i in range(last):
            if k_lo[i] <= k <= k_hi[i]:
                top = max(top, lifted(svi_w_row(earlier, i, k), last + 1 - i, margin))
        if top == -np.inf:
            continue
        d = top - svi_w(after, k)
        if d != d:
            return d
        out = max(out, d)
    return out


@njit(cache=True)
def svi_envelope_dips(par: np.ndarray, k_lo: np.ndarray, k_hi: np.ndarray,
                      points: np.ndarray, margin: float) -> np.ndarray:
    """:func:`svi_envelope_dip` of each slice ``i >= 1`` of ``par`` under the expiries before
    it; ``-inf`` where their domains are within that of slice ``i - 1`` (no such floor) and at
    entry 0."""
    out = np.full(par.shape[0], -np.inf)
    lo, hi = np.inf, -np.inf
    for i in range(1, par.shape[0]):
        lo, hi = min(lo, k_lo[i - 1]), max(hi, k_hi[i - 1])
        if lo < k_lo[i - 1] or hi > k_hi[i - 1]:
            out[i] = svi_envelope_dip(par[:i], k_lo[:i], k_hi[:i], par[i], points, margin)
    return out
