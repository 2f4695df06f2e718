"""Static-arbitrage checks on fitted smiles, all in total variance ``w(k)``, ``k = ln(K/F)``.

* Butterfly (Durrleman 2005, thesis; Gatheral and Jacquier 2014, "Arbitrage-free SVI
  volatility surfaces", Lemma 2.2): the density implied by a slice is non-negative iff::

      g(k) = (1 - k w'/(2 w))^2 - (w'^2 / 4) (1/w + 1/4) + w''/2  >=  0

  checked on a grid of ``k``; a violation is ``g < -BUTTERFLY_TOL``.
* Calendar (Gatheral and Jacquier 2014, Lemma 2.1): ``w(k, T)`` non-decreasing in ``T`` at
  fixed forward log-moneyness ``k`` (each expiry with its own forward); a violation is
  ``w(k, T1) - w(k, T2) > CALENDAR_TOL`` for consecutive expiries ``T1 < T2`` at a point
  where either is quoted (between the lowest and highest ``k`` of their two domains), the
  other's wing extrapolated beyond its quotes if need be, or for any earlier expiry ``T1``
  at a point where it is quoted: consecutive pairs alone are not transitive (a long expiry
  quoted only near the money can fall below a short one's quoted wing through a middle one
  checked only where it or the long one is quoted).
* Lee's moment formula (Lee 2004, "The moment formula for implied volatility at extreme
  strikes"): the wing slopes ``lim w(k)/|k|`` are at most 2; a violation is a slope above
  ``2 + LEE_TOL``.  Models that state their asymptotic slopes (SVI, eSSVI) are checked
  exactly; otherwise the slope ``|w'|`` at the ends of the check grid is used.

Repair lives with the models: an SVI slice that crosses its neighbouring expiries is refitted
with their total variance as exact linear rows of its inner QP, a floor under it or a
ceiling over it (at the check's own points, :func:`calendar_points`; see
:mod:`calibration.models.calendar_rows`); eSSVI imposes its calendar conditions through its
parametrisation.  Neither depends on a general optimiser
converging: the checks here are the arbiter of what is published.

The tolerances are absolute and chosen well above round-off but far below anything a price
could show: ``BUTTERFLY_TOL = 1e-6`` (``g`` is dimensionless, of order 1 at the money),
``CALENDAR_TOL = 1e-7`` in total variance (about 0.004 vol points on a one-day 50% slice),
``LEE_TOL = 1e-9``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

BUTTERFLY_TOL = 1e-6
CALENDAR_TOL = 1e-7
LEE_TOL = 1e-9
LEE_MAX_SLOPE = 2.0


@dataclass(frozen=True)
class Violation:
    """One arbitrage violation: ``kind`` in {butterfly, calendar, lee}; ``value`` is ``g``
    (butterfly), the variance drop ``w(T1) - w(T2)`` (calendar) or the slope (lee)."""

    kind: str
    expiry_t: float
    k: float
    value: float


def durrleman_g(k: np.ndarray, w: np.ndarray, w1: np.ndarray, w2: np.ndarray) -> np.ndarray:
    """Durrleman's ``g(k)`` from ``w, w', w''`` (see the module docstring)."""
    k = np.asarray(k, dtype=float)
    w = np.maximum(np.asarray(w, dtype=float), 1e-300)
    return (1.0 - k * w1 / (2.0 * w)) ** 2 - 0.25 * w1 * w1 * (1.0 / w + 0.25) + 0.5 * w2


def butterfly_violations(t: float, k: np.ndarray, w: np.ndarray, w1: np.ndarray,
                         w2: np.ndarray, tol: float = BUTTERFLY_TOL) -> list[Violation]:
    """Grid points where ``g < -tol`` or ``w <= 0`` (a non-positive variance is never valid)."""
    g = durrleman_g(k, w, w1, w2)
    g = np.where(np.asarray(w) > 0, g, -np.inf)
    bad = np.flatnonzero(~(g >= -tol))
    return [Violation("butterfly", float(t), float(k[i]), float(g[i])) for i in bad]


def calendar_violations(ts: Sequence[float], k: np.ndarray, W: np.ndarray,
                        tol: float = CALENDAR_TOL, pairs: np.ndarray | None = None,
                        quoted: np.ndarray | None = None) -> list[Violation]:
    """``W[i, j] = w(k_j, ts[i])`` with ``ts`` increasing; flags ``W[i] - W[i+1] > tol``.

    ``pairs[i, j]`` (optional) restricts the check of expiries ``i, i + 1`` to the points
    ``k_j`` it is true at; with ``quoted[i, j]`` (expiry ``i`` is quoted at ``k_j``) each
    expiry is also checked against every earlier one where that one is quoted.  The value
    of a violation is the drop below the highest of them."""
    out: list[Violation] = []
    W = np.asarray(W, dtype=float)
    envelope = np.full(W.shape[1], -np.inf)  # the earlier expiries' w where quoted
    for i in range(len(ts) - 1):
        ref = W[i] if pairs is None else np.where(pairs[i], W[i], -np.inf)
        if quoted is not None:
            envelope = np.maximum(envelope, np.where(quoted[i], W[i], -np.inf))
            ref = np.maximum(ref, envelope)
        drop = ref - W[i + 1]
        for j in np.flatnonzero(drop > tol):
            out.append(Violation("calendar", float(ts[i + 1]), float(k[j]), float(drop[j])))
    return out


def lee_violations(t: float, slopes: tuple[float, float], tol: float = LEE_TOL
                   ) -> list[Violation]:
    """Wing slopes ``(left, right)`` of ``w`` against Lee's bound 2."""
    out = []
    for side, s in ((-1.0, slopes[0]), (1.0, slopes[1])):
        if not s <= LEE_MAX_SLOPE + tol:
            out.append(Violation("lee", float(t), side * np.inf, float(s)))
    return out


@dataclass(frozen=True)
class SliceView:
    """What the checks need from one fitted slice."""

    t: float
    k_lo: float  # the check domain in k
    k_hi: float
    derivs: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]
    wing_slopes: tuple[float, float] | None  # None: model has no closed-form asymptote


def calendar_grid(k_lo: Sequence[float], k_hi: Sequence[float], n_grid: int = 121
                  ) -> np.ndarray:
    """The ``k`` points of the calendar check: ``2 n_grid`` even steps over the union of the
    slices' domains ``[k_lo_i, k_hi_i]``."""
    if len(k_lo) == 0:
        return np.zeros(0)
    return np.linspace(min(k_lo), max(k_hi), 2 * n_grid)


def calendar_points(k_lo: Sequence[float], k_hi: Sequence[float], n_grid: int = 121
                    ) -> np.ndarray:
    """Every ``k`` at which the calendar check compares slices, sorted, each once: the
    points of :func:`calendar_grid` and every slice's domain ends, that is
    ``np.union1d(calendar_grid(k_lo, k_hi, n_grid), np.concatenate((k_lo, k_hi)))``, in one
    compiled pass (asked for at every refit; the same points, tested)."""
    if len(k_lo) == 0:
        return np.zeros(0)
    return calendar_points_of(np.asarray(k_lo, dtype=np.float64),
                              np.asarray(k_hi, dtype=np.float64), n_grid)


@njit(cache=True)
def grid_point(lo: float, hi: float, n: int, i: int) -> float:
    """Point ``i`` of ``numpy.linspace(lo, hi, n)``, as numpy computes it."""
    return hi if i == n - 1 else lo + i * ((hi - lo) / (n - 1))


@njit(cache=True)
def calendar_points_of(k_lo: np.ndarray, k_hi: np.ndarray, n_grid: int) -> np.ndarray:
    """:func:`calendar_points` of float arrays (non-empty), for compiled callers."""
    m, lo, hi, n = 2 * n_grid, k_lo.min(), k_hi.max(), k_lo.size
    pts = np.empty(m + 2 * n)
    for j in range(m):
        pts[j] = grid_point(lo, hi, m, j)
    pts[m:m + n] = k_lo
    pts[m + n:] = k_hi
    pts.sort()
    kept = 0
    for x in pts:  # each value once, as numpy.unique keeps it
        if kept == 0 or x != pts[kept - 1]:
            pts[kept] = x
            kept += 1
    return pts[:kept].copy()


def check_slices(slices: Sequence[SliceView], n_grid: int = 121) -> list[Violation]:
    """Butterfly and Lee per slice, calendar between consecutive slices (by ``t``) and
    against every earlier slice where that one is quoted.

    Each slice is checked on ``n_grid`` points of its own domain; the calendar check uses a
    common grid over the union of the domains and every slice's domain ends (its outermost
    quotes, where short expiries' smiles tend to cross and which the grid's even steps
    miss), each pair of consecutive expiries checked at those of the points where either is
    quoted (between the lowest and the highest ``k`` of the two domains: a wing extrapolated
    beyond its slice's quotes is published, so it is checked against the neighbour's quotes).
    """
    sl = sorted(slices, key=lambda s: s.t)
    out: list[Violation] = []
    if not sl:
        return out
    K = np.linspace([s.k_lo for s in sl], [s.k_hi for s in sl], n_grid, axis=1)
    D = [s.derivs(k) for s, k in zip(sl, K)]
    # Durrleman's g of every slice in one pass; violations are listed slice by slice
    W, W1, W2 = (np.vstack([d[j] for d in D]) for j in range(3))
    G = np.where(W > 0, durrleman_g(K, W, W1, W2), -np.inf)
    flagged = (~(G >= -BUTTERFLY_TOL)).any(axis=1)
    for i, s in enumerate(sl):
        w1 = W1[i]
        if flagged[i]:
            out += butterfly_violations(s.t, K[i], W[i], w1, W2[i])
        if s.wing_slopes is not None:
            out += lee_violations(s.t, s.wing_slopes)
        else:
            out += lee_violations(s.t, (float(abs(min(w1[0], 0.0))), float(max(w1[-1], 0.0))))
    if len(sl) > 1:
        lo, hi = [s.k_lo for s in sl], [s.k_hi for s in sl]
        k = calendar_points(lo, hi, n_grid)
        W = np.vstack([s.derivs(k)[0] for s in sl])
        pairs = np.vstack([(k >= min(a.k_lo, b.k_lo)) & (k <= max(a.k_hi, b.k_hi))
                           for a, b in zip(sl, sl[1:])])
        quoted = np.vstack([(k >= s.k_lo) & (k <= s.k_hi) for s in sl])
        out += calendar_violations([s.t for s in sl], k, W, pairs=pairs, quoted=quoted)
    return out
