"""From a delta band to an underlying price corridor the engine's kernel can watch.

A band strategy holds a hedge that offsets ``hedge_delta`` of the position's delta and leaves
it alone while ``|D(S) - hedge_delta| <= H(S)``, ``D`` the position's aggregate delta as a
function of the underlying and ``H`` the band half-width (constant, or a function of ``S`` for
Whalley-Wilmott and Zakamouline, whose widths depend on ``S`` and ``Gamma(S)``).  Holding time
and vols fixed, the strategy must wake at the nearest prices on either side of the current
``S0`` where

    ``D(S) = hedge_delta + H(S)``   or   ``D(S) = hedge_delta - H(S)``,

i.e. the roots of ``g(S) = |D(S) - hedge_delta| - H(S)``.  They are bracketed by stepping
outwards from ``S0`` on a log grid whose steps grow geometrically (``first_step``, x ``growth``
per step), then each bracket is refined by repeated sub-gridding (``subdivisions`` points per
round, ``rounds`` rounds: a vectorised bisection that shrinks the bracket by
``subdivisions ** rounds``), finished by one regula-falsi step (linear interpolation, error
``O(width^2)``; see W. H. Press et al., *Numerical Recipes*, 3rd ed., 2007, sec. 9.2).  All
evaluations of ``D`` go through a handful of vectorised calls (both sides at once), because at
a wake-up the cost of this solve is paid every time.  A crossing that leaves and re-enters the
band within one grid step would be missed; the first step is small (0.1 % by default) so that
for smooth portfolio deltas this only happens for bands far thinner than any cost-based band.
When no crossing exists within ``max_log_move`` the corridor ends there, so the strategy wakes
and recomputes rather than sleeping forever.  Time decay moves ``D`` too: strategies pair the
corridor with a deadline.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike

#: A delta (or band half-width) as a function of the underlying; vectorised ones take and
#: return arrays, which :func:`delta_corridor` exploits.
DeltaFn = Callable[[ArrayLike], ArrayLike]


@dataclass(frozen=True)
class Corridor:
    """Wake when the underlying leaves the open interval ``(lo, hi)``."""

    lo: float
    hi: float

    def contains(self, price: float) -> bool:
        return self.lo < price < self.hi


def _as_vectorised(fn: DeltaFn, vectorised: bool) -> Callable[[np.ndarray], np.ndarray]:
    if vectorised:
        def call(s: np.ndarray) -> np.ndarray:
            out = fn(s)
            if isinstance(out, np.ndarray) and out.dtype == np.float64 and out.shape == s.shape:
                return out
            return np.broadcast_to(np.asarray(out, dtype=np.float64), s.shape)
        return call
    return lambda s: np.array([float(fn(float(x))) for x in np.ravel(s)]).reshape(np.shape(s))


def _first_crossing(gs: np.ndarray) -> int:
    """Index of the first entry that is not inside the band (NaN counts as outside), or -1."""
    out = ~(gs < 0.0)
    i = int(out.argmax())
    return i if out[i] else -1


@lru_cache(maxsize=16)
def log_grid(first_step: float, growth: float, max_log_move: float
             ) -> tuple[np.ndarray, np.ndarray]:
    """``exp(x)`` and ``exp(-x)`` at the log-moves ``0 < x_1 < x_2 < ... <= max_log_move``,
    growing geometrically (read-only: shared by every search with these parameters)."""
    steps = first_step * growth ** np.arange(256)
    xs = np.cumsum(steps)
    xs = np.append(xs[xs < max_log_move], max_log_move)
    up, down = np.exp(xs), np.exp(-xs)
    up.flags.writeable = down.flags.writeable = False
    return up, down


@lru_cache(maxsize=16)
def grid_fractions(subdivisions: int) -> np.ndarray:
    """The interior points ``j / subdivisions`` of a bracket, read-only."""
    frac = np.linspace(0.0, 1.0, subdivisions + 1)[1:-1]
    frac.flags.writeable = False
    return frac


def delta_corridor(delta_fn: DeltaFn, spot: float, hedge_delta: float,
                   half_width: float | DeltaFn, *, first_step: float = 1e-3,
                   growth: float = 1.3, max_log_move: float = 0.5, subdivisions: int = 32,
                   rounds: int = 3, vectorised: bool = True) -> Corridor:
    """Underlying prices ``(lo, hi)`` around ``spot`` where ``|D(S) - hedge| = H(S)``.

    ``delta_fn`` is the aggregate delta of what is hedged (underlying units), ``hedge_delta``
    the part of it the current hedge offsets, ``half_width`` a constant or a function of ``S``.
    Pass ``vectorised=False`` when the functions only accept scalars.  If the band is already
    breached at ``spot`` the corridor is empty, ``(spot, spot)``: wake now.
    """
    if not (spot > 0 and math.isfinite(spot)):
        raise ValueError(f"spot must be positive, got {spot!r}")
    d = _as_vectorised(delta_fn, vectorised)
    w = (_as_vectorised(half_width, vectorised) if callable(half_width)
         else (lambda s: np.full(np.shape(s), float(half_width))))

    def g(s: np.ndarray) -> np.ndarray:
        return np.abs(d(s) - hedge_delta) - w(s)

    up, down = log_grid(float(first_step), float(growth), float(max_log_move))
    grid = np.concatenate(([spot], spot * up, spot * down))
    g_all = g(grid)
    if not g_all[0] < 0.0:  # breached, or a delta that cannot be evaluated: wake now
        return Corridor(spot, spot)
    n = up.size
    edges = []
    brackets = []  # (a, b, g(a), g(b)) with g(a) < 0 <= g(b), a nearer to spot
    for sl in (slice(1, n + 1), slice(n + 1, None)):  # upwards, then downwards
        pts, side = grid[sl], g_all[sl]
        i = _first_crossing(side)
        if i < 0:
            edges.append(float(pts[-1]))
            brackets.append(None)
        else:
            a, ga = (spot, float(g_all[0])) if i == 0 else (float(pts[i - 1]), float(side[i - 1]))
            brackets.append((a, float(pts[i]), ga, float(side[i])))
            edges.append(math.nan)
    frac = grid_fractions(int(subdivisions))
    for _ in range(rounds):
        live = [k for k, b in enumerate(brackets) if b is not None and b[3] != 0.0]
        if not live:
            break
        pts = np.concatenate([brackets[k][0] + frac * (brackets[k][1] - brackets[k][0])
                              for k in live])
        vals = g(pts).reshape(len(live), frac.size)
        for row, k in enumerate(live):
            a, b, ga, gb = brackets[k]
            p, v = pts[row * frac.size:(row + 1) * frac.size], vals[row]
            i = _first_crossing(v)
            if i < 0:
                brackets[k] = (float(p[-1]), b, float(v[-1]), gb)
            else:
                lo_a, lo_g = (a, ga) if i == 0 else (float(p[i - 1]), float(v[i - 1]))
                brackets[k] = (lo_a, float(p[i]), lo_g, float(v[i]))
    for k, br in enumerate(brackets):
        if br is not None:
            a, b, ga, gb = br
            if not math.isfinite(gb):  # the band cannot be evaluated beyond a: stop there
                edges[k] = a
            else:
                edges[k] = b if gb == 0.0 else a + (b - a) * (-ga) / (gb - ga)
    return Corridor(lo=edges[1], hi=edges[0])
