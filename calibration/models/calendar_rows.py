"""Calendar rows: the bounds an SVI slice refit must meet between its neighbouring expiries.

Total variance must not fall from one expiry to the next wherever either of the two is quoted
(the calendar check of :func:`calibration.arbitrage.check_slices`), a wing extrapolated
beyond its own quotes included.  A refit keeps a slice above the expiry before it where that
one is quoted (:func:`calendar_floor`) and below the expiry after it wherever either is
quoted (:func:`calendar_ceiling`: the usual case is a short expiry's wing, extrapolated
beyond its quotes, rising over a longer expiry's quotes).  The floor also holds where only
an expiry before the previous one is quoted, so that the expiries between have room
(:func:`floor_rows`).  The bounds are exact linear rows of the slice's inner QP
(:func:`calibration.models.svi.fit_svi`, ``floor_k``/``ceil_k``).  The scheme applies the
floors shortest expiry first as it fits (:meth:`calibration.scheme.CalibrationScheme._fit_all`)
and then the ceilings longest first (:func:`ceiling_pass`).

Rows are taken at the check's own points in their range (``k_check``: the points of
:func:`calibration.arbitrage.calendar_points`, its grid and every slice's domain ends), so
that a refit that meets them passes the check exactly, and with a small margin, so that
round-off in the refitted parameters cannot land on the wrong side of the check; a slice is
tested for a crossing at the same points.  No more rows than those: each row is a bound of
every evaluation of the refit's outer search, and the rows can be most of its cost (the
bench's real 11-quote slice refitted under its neighbour: with 148 rows, the check's points
and 51 even steps of each range, 97 us; with the check's 50 alone, 51 us, to the same fit).
They are built in compiled passes over the stacked parameters (:func:`svi_floor_rows`,
:func:`svi_ceiling_rows`); their numpy definitions, which the passes give bit for bit, are
in the module's tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
from numba import njit

from calibration.arbitrage import CALENDAR_TOL
from calibration.models.svi_arbitrage import (
    lifted,
    svi_calendar_drop,
    svi_calendar_drops,
    svi_calendar_rises,
    svi_envelope_dip,
    svi_envelope_dips,
    svi_w,
    svi_w_row,
)
from calibration.surface import SmileSlice, param_values

Rows = tuple[np.ndarray, np.ndarray]

__all__ = ["calendar_ceiling", "calendar_floor",
           "ceiling_pass", "ceiling_rows", "floor_rows", "floors_needed", "row_points",
           "svi_ceiling_rows", "svi_floor_rows"]

#: relative lift (floor) or cut (ceiling) of a calendar row: 0.005 % in vol
CALENDAR_MARGIN = 1e-4


@njit(cache=True)
def row_points(lo: float, hi: float, k_check: np.ndarray) -> np.ndarray:
    """The points of the calendar check ``k_check`` (sorted) inside ``[lo, hi]``."""
    return k_check[np.searchsorted(k_check, lo):np.searchsorted(k_check, hi, side="right")]


@njit(cache=True)
def svi_floor_rows(par: np.ndarray, k_lo: np.ndarray, k_hi: np.ndarray, k_check: np.ndarray,
                   margin: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`floor_rows` of the SVI slices ``par`` (rows ``a, b, rho, m, sigma`` by
    maturity, domains ``[k_lo, k_hi]``), compiled.  Beyond the last one's domain, at the
    points of :func:`row_points` over the hull of the domains, the highest of the earlier
    expiries' lifted total variances where one is quoted (none where their domains are within
    the last one's, as for most expiries: shorter ones tend to be quoted on narrower ranges;
    2 of the 12 of the bench's real snapshot have such a floor)."""
    last = par.shape[0] - 1
    lo, hi = k_lo[last], k_hi[last]
    k = row_points(lo, hi, k_check)
    kk, ww = np.empty(k.size), np.empty(k.size)
    for j in range(k.size):
        kk[j], ww[j] = k[j], lifted(svi_w_row(par, last, k[j]), 1, margin)
    a, b = k_lo.min(), k_hi.max()
    if a >= lo and b <= hi:
        return kk, ww
    far = row_points(a, b, k_check)
    ko, wo = np.empty(far.size), np.empty(far.size)
    m = 0
    for x in far:
        if lo <= x <= hi:
            continue
        top = -np.inf
        for i in range(last - 1, -1, -1):  # as numpy.maximum folds them: NaN stays
            if k_lo[i] <= x <= k_hi[i]:
                v = lifted(svi_w_row(par, i, x), last + 1 - i, margin)
                top = v if (v > top or v != v) and top == top else top
        if np.isfinite(top):
            ko[m], wo[m] = x, top
            m += 1
    return np.concatenate((kk, ko[:m])), np.concatenate((ww, wo[:m]))


@njit(cache=True)
def svi_ceiling_rows(after: np.ndarray, lo: float, hi: float, k_check: np.ndarray,
                     margin: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ceiling_rows` of the SVI slice ``after`` (``a, b, rho, m, sigma``), compiled."""
    k = row_points(lo, hi, k_check)
    w = np.empty(k.size)
    for j in range(k.size):
        w[j] = svi_w(after, k[j]) * (1.0 - margin) - 0.5 * CALENDAR_TOL
    return k, w


def _crosses(before: np.ndarray, after: np.ndarray, lo: float, hi: float, k_check: np.ndarray
             ) -> bool:
    """Whether the SVI slice ``before`` (parameter row) rises above ``after`` (by more than
    the check's tolerance) at the points of :func:`row_points` over ``[lo, hi]``, in one
    compiled pass."""
    return hi > lo and svi_calendar_drop(before, after, lo, hi, k_check) > CALENDAR_TOL


def floor_rows(earlier: Sequence[SmileSlice], k_check: np.ndarray,
               margin: float = CALENDAR_MARGIN) -> Rows:
    """``(k, w)``: the floor the expiry after ``earlier`` (the expiries before it, by
    maturity) must stay above.  On the quoted range of the one just before it (where the later
    expiry may be extrapolated): that one's total variance lifted by ``margin`` (relative) and
    half the check's tolerance, so that round-off in the refitted parameters cannot land on
    the wrong side of the check.  Beyond that range, where an earlier expiry is quoted: the
    highest of theirs, lifted once more for each expiry in between (:func:`svi_floor_rows`).

    The check asks only neighbours to be in order, but an expiry between two others must fit
    above the one and under the other; where the earlier of the two is quoted and the middle
    one is not, only such a floor on the later one leaves room for it."""
    return svi_floor_rows(*_stacked(earlier), k_check, margin)


def ceiling_rows(after: SmileSlice, lo: float, hi: float, k_check: np.ndarray,
                 margin: float = CALENDAR_MARGIN) -> Rows:
    """``(k, w)``: the ceiling the expiry before ``after`` must stay under on ``[lo, hi]``:
    ``after``'s total variance cut by ``margin`` (relative) and half the check's tolerance."""
    return svi_ceiling_rows(after.params.to_array(), lo, hi, k_check, margin)


def calendar_floor(earlier: Sequence[SmileSlice], after: SmileSlice, k_check: np.ndarray,
                   measured: bool = False) -> Rows | None:
    """:func:`floor_rows` for ``after`` when it dips below the expiry just before it on that
    one's quoted range, or below the rest of the floor beyond it (each in one compiled pass);
    ``None`` when it does not, or when ``measured`` (both are known not to happen: compiled
    passes over the whole surface measured them)."""
    if measured:
        return None
    par, lo, hi = _stacked(earlier)
    p = after.params.to_array()
    if not _crosses(par[-1], p, lo[-1], hi[-1], k_check) and \
            not svi_envelope_dip(par, lo, hi, p, k_check, CALENDAR_MARGIN) > 0.0:
        return None
    return svi_floor_rows(par, lo, hi, k_check, CALENDAR_MARGIN)


def floors_needed(slices: Sequence[SmileSlice], k_check: np.ndarray) -> np.ndarray:
    """Whether each of the SVI slices ``slices`` (by maturity) needs its floor under the ones
    before it (:func:`calendar_floor`'s test), for all at once in two compiled passes; entry
    0 is ``False``."""
    par, lo, hi = _stacked(slices)
    return ((svi_calendar_drops(par, lo, hi, k_check) > CALENDAR_TOL)
            | (svi_envelope_dips(par, lo, hi, k_check, CALENDAR_MARGIN) > 0.0))


def _stacked(slices: Sequence[SmileSlice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The parameter rows, ``k_lo`` and ``k_hi`` of SVI slices, as the compiled passes take
    them."""
    par, lo, hi = zip(*[(param_values(s.params), s.k_lo, s.k_hi) for s in slices])
    return np.array(par), np.array(lo), np.array(hi)


def calendar_ceiling(before: SmileSlice, after: SmileSlice, k_check: np.ndarray
                     ) -> Rows | None:
    """:func:`ceiling_rows` for ``before`` on the hull of the two domains (where either is
    quoted) when it rises above ``after`` there (typically a wing of ``before`` extrapolated
    beyond its quotes); ``None`` when it does not."""
    par, lo, hi = _stacked((before, after))
    return _ceiling(par, lo, hi, 0, k_check)


def _ceiling(par: np.ndarray, k_lo: np.ndarray, k_hi: np.ndarray, i: int, k_check: np.ndarray
             ) -> Rows | None:
    """:func:`calendar_ceiling` of the stacked slices ``i`` and ``i + 1``."""
    lo, hi = min(k_lo[i], k_lo[i + 1]), max(k_hi[i], k_hi[i + 1])
    if not _crosses(par[i], par[i + 1], lo, hi, k_check):
        return None
    return svi_ceiling_rows(par[i + 1], lo, hi, k_check, CALENDAR_MARGIN)


def ceiling_pass(out: list[SmileSlice], k_check: np.ndarray,
                 refit: Callable[[int, Rows | None, Rows], object | None]) -> list[int]:
    """The backward pass over the SVI slices ``out`` (by maturity), in place: longest first, a
    slice above the next one (:func:`calendar_ceiling`) is refitted under it and over the one
    before (:func:`floor_rows`) by ``refit(position, floor,
    ceiling)``, which returns its parameters or ``None`` when no slice meets the rows (the
    crossing is then left for the check to report).  Every pair is measured in one compiled
    pass, and a pair again once its later slice has been refitted.  Returns the positions
    refitted."""
    par, lo, hi = _stacked(out)
    rises = svi_calendar_rises(par, lo, hi, k_check)
    moved, done = False, []
    for pos in range(len(out) - 2, -1, -1):
        test, moved = moved or rises[pos] > CALENDAR_TOL, False
        ceiling = _ceiling(par, lo, hi, pos, k_check) if test else None
        if ceiling is None:
            continue
        floor = svi_floor_rows(par[:pos], lo[:pos], hi[:pos], k_check,
                               CALENDAR_MARGIN) if pos else None
        params = refit(pos, floor, ceiling)
        if params is not None:
            out[pos], moved = replace(out[pos], params=params), True
            par[pos] = param_values(params)
            done.append(pos)
    return done
