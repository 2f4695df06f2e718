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

Rows are taken at even steps of their range and at every point of the check's grid inside it,
so that a refit that meets them passes the check exactly, and with a small margin, so that
round-off in the refitted parameters cannot land on the wrong side of the check.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from calibration.arbitrage import CALENDAR_TOL
from calibration.models.svi_arbitrage import (
    svi_calendar_drop,
    svi_calendar_drops,
    svi_calendar_rises,
    svi_envelope_dip,
    svi_envelope_dips,
)
from calibration.surface import SmileSlice, param_values

Rows = tuple[np.ndarray, np.ndarray]

__all__ = ["BACKWARD_POINTS", "FLOOR_POINTS", "calendar_ceiling", "calendar_floor",
           "ceiling_pass", "ceiling_rows", "floor_rows", "floors_needed"]

#: even steps of the range at which :func:`calendar_floor` tests and bounds a slice
FLOOR_POINTS = 201
#: even steps of the backward pass's rows (:func:`calendar_ceiling` and the floor refitted
#: with it): the rows are most of such a refit's cost (a real 30-quote slice: 300 us with
#: 300 rows, 150 us with 150), and the check's own points are among them whatever the steps
BACKWARD_POINTS = 51
#: relative lift (floor) or cut (ceiling) of a calendar row: 0.005 % in vol
CALENDAR_MARGIN = 1e-4


def _row_points(lo: float, hi: float, k_check: np.ndarray, n: int) -> np.ndarray:
    """``n`` even steps over ``[lo, hi]`` and every point of the surface's calendar check grid
    ``k_check`` inside it, so that a refit that meets its rows passes the check exactly."""
    return np.union1d(np.linspace(lo, hi, n), k_check[(k_check >= lo) & (k_check <= hi)])


def _crosses(before: SmileSlice, after: SmileSlice, lo: float, hi: float, k_check: np.ndarray,
             n: int) -> bool:
    """Whether the SVI slice ``before`` rises above ``after`` (by more than the check's
    tolerance) at the points of :func:`_row_points` over ``[lo, hi]``, in one compiled pass."""
    return hi > lo and svi_calendar_drop(before.params.to_array(), after.params.to_array(), lo,
                                         hi, n, k_check) > CALENDAR_TOL


def floor_rows(earlier: Sequence[SmileSlice], k_check: np.ndarray, n: int = FLOOR_POINTS,
               margin: float = CALENDAR_MARGIN) -> Rows:
    """``(k, w)``: the floor the expiry after ``earlier`` (the expiries before it, by
    maturity) must stay above.  On the quoted range of the one just before it (where the later
    expiry may be extrapolated): that one's total variance lifted by ``margin`` (relative) and
    half the check's tolerance, so that round-off in the refitted parameters cannot land on
    the wrong side of the check.  Beyond that range, where an earlier expiry is quoted
    (:func:`_envelope`): the highest of theirs, lifted once more for each expiry in between.

    The check asks only neighbours to be in order, but an expiry between two others must fit
    above the one and under the other; where the earlier of the two is quoted and the middle
    one is not, only such a floor on the later one leaves room for it."""
    before = earlier[-1]
    k = _row_points(before.k_lo, before.k_hi, k_check, n)
    ko, wo = _envelope(earlier, k_check, n, margin)
    return (np.concatenate([k, ko]),
            np.concatenate([_lifted(before.total_variance(k), 1, margin), wo]))


def _lifted(w: np.ndarray, steps: int, margin: float) -> np.ndarray:
    """``w`` lifted for a floor ``steps`` expiries later: by ``margin`` and half the check's
    tolerance for the next one, and twice that for every one after it (one lift for the floor
    of the expiry in between, one for the cut of its ceiling)."""
    return w * (1.0 + (2 * steps - 1) * margin) + (2 * steps - 1) * 0.5 * CALENDAR_TOL


def _envelope(earlier: Sequence[SmileSlice], k_check: np.ndarray, n: int,
              margin: float) -> Rows:
    """The part of :func:`floor_rows` beyond the quoted range of ``earlier[-1]``: at the
    points of :func:`_row_points` over the earlier expiries' quoted ranges, the highest of
    their :func:`_lifted` total variances, where one is quoted (empty when their ranges are
    within that of ``earlier[-1]``, as for most expiries: shorter ones tend to be quoted on
    narrower ranges; 2 of the 12 of the bench's real snapshot have such a floor)."""
    before = earlier[-1]
    lo, hi = min(s.k_lo for s in earlier), max(s.k_hi for s in earlier)
    if lo >= before.k_lo and hi <= before.k_hi:
        return np.zeros(0), np.zeros(0)
    k = _row_points(lo, hi, k_check, n)
    k = k[(k < before.k_lo) | (k > before.k_hi)]
    w = np.full(len(k), -np.inf)
    for steps, s in enumerate(reversed(earlier[:-1]), start=2):
        quoted = (k >= s.k_lo) & (k <= s.k_hi)
        if quoted.any():
            w[quoted] = np.maximum(w[quoted],
                                   _lifted(s.total_variance(k[quoted]), steps, margin))
    some = np.isfinite(w)
    return k[some], w[some]


def ceiling_rows(after: SmileSlice, lo: float, hi: float, k_check: np.ndarray,
                 n: int = FLOOR_POINTS, margin: float = CALENDAR_MARGIN
                 ) -> Rows:
    """``(k, w)``: the ceiling the expiry before ``after`` must stay under on ``[lo, hi]``:
    ``after``'s total variance cut by ``margin`` (relative) and half the check's tolerance."""
    k = _row_points(lo, hi, k_check, n)
    return k, after.total_variance(k) * (1.0 - margin) - 0.5 * CALENDAR_TOL


def calendar_floor(earlier: Sequence[SmileSlice], after: SmileSlice, k_check: np.ndarray,
                   n: int = FLOOR_POINTS, measured: bool = False) -> Rows | None:
    """:func:`floor_rows` for ``after`` when it dips below the expiry just before it on that
    one's quoted range, or below the rest of the floor beyond it (each in one compiled pass);
    ``None`` when it does not, or when ``measured`` (both are known not to happen: compiled
    passes over the whole surface measured them)."""
    if measured:
        return None
    before = earlier[-1]
    if not _crosses(before, after, before.k_lo, before.k_hi, k_check, n) and \
            not _dips(earlier, after, k_check, n):
        return None
    return floor_rows(earlier, k_check, n)


def _dips(earlier: Sequence[SmileSlice], after: SmileSlice, k_check: np.ndarray,
          n: int) -> bool:
    """Whether ``after`` dips under the part of its floor from :func:`_envelope` (never when
    that part is empty: the compiled dip is then ``-inf``)."""
    return svi_envelope_dip(*_stacked(earlier), after.params.to_array(), n, k_check,
                            CALENDAR_MARGIN) > 0.0


def floors_needed(slices: Sequence[SmileSlice], k_check: np.ndarray) -> np.ndarray:
    """Whether each of the SVI slices ``slices`` (by maturity) needs its floor under the ones
    before it (:func:`calendar_floor`'s test), for all at once in two compiled passes; entry
    0 is ``False``."""
    par, lo, hi = _stacked(slices)
    return ((svi_calendar_drops(par, lo, hi, FLOOR_POINTS, k_check) > CALENDAR_TOL)
            | (svi_envelope_dips(par, lo, hi, FLOOR_POINTS, k_check, CALENDAR_MARGIN) > 0.0))


def _stacked(slices: Sequence[SmileSlice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The parameter rows, ``k_lo`` and ``k_hi`` of SVI slices, as the compiled passes take
    them."""
    par, lo, hi = zip(*[(param_values(s.params), s.k_lo, s.k_hi) for s in slices])
    return np.array(par), np.array(lo), np.array(hi)


def calendar_ceiling(before: SmileSlice, after: SmileSlice, k_check: np.ndarray,
                     n: int = BACKWARD_POINTS) -> Rows | None:
    """:func:`ceiling_rows` for ``before`` on the hull of the two domains (where either is
    quoted) when it rises above ``after`` there (typically a wing of ``before`` extrapolated
    beyond its quotes); ``None`` when it does not."""
    lo, hi = min(before.k_lo, after.k_lo), max(before.k_hi, after.k_hi)
    return ceiling_rows(after, lo, hi, k_check, n) if _crosses(before, after, lo, hi,
                                                               k_check, n) else None


def ceiling_pass(out: list[SmileSlice], k_check: np.ndarray,
                 refit: Callable[[int, Rows | None, Rows], object | None]) -> list[int]:
    """The backward pass over the SVI slices ``out`` (by maturity), in place: longest first, a
    slice above the next one (:func:`calendar_ceiling`) is refitted under it and over the one
    before (:func:`floor_rows` at :data:`BACKWARD_POINTS`) by ``refit(position, floor,
    ceiling)``, which returns its parameters or ``None`` when no slice meets the rows (the
    crossing is then left for the check to report).  Every pair is measured in one compiled
    pass, and a pair again once its later slice has been refitted.  Returns the positions
    refitted."""
    rises = svi_calendar_rises(*_stacked(out), BACKWARD_POINTS, k_check)
    moved, done = False, []
    for pos in range(len(out) - 2, -1, -1):
        test, moved = moved or rises[pos] > CALENDAR_TOL, False
        ceiling = calendar_ceiling(out[pos], out[pos + 1], k_check) if test else None
        if ceiling is None:
            continue
        params = refit(pos, floor_rows(out[:pos], k_check, BACKWARD_POINTS) if pos else None,
                       ceiling)
        if params is not None:
            out[pos], moved = replace(out[pos], params=params), True
            done.append(pos)
    return done
