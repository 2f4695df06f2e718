"""The corridor search of a hedger's book, compiled: one call per hedging decision.

:func:`strategies.hedging.corridor.delta_corridor` takes any delta and band functions; a
hedger's are always the same few shapes, and at a decision the search's dozen vectorised calls,
not its arithmetic, were the cost (a third of a Zakamouline decision).  :func:`book_corridor`
runs the same search (the same log grid, sub-grid rounds and regula-falsi step) on

* the net delta ``N(S) = D(S) + n cs / (r S)`` (inverse hedge; ``n cs`` for a linear one),
  ``D`` the Black-76 delta sum over the centre legs (:func:`strategies.greeks_kernel.book_sum`),
  ``n`` hedge contracts of size ``cs`` priced at ``r S``;
* a band half-width ``H(S)`` of one of the :class:`BandWidth` shapes, widened by the smallest
  trade ``m`` (``H + m`` when rebalancing to the edge, ``max(H, m)`` to the centre) and a pad
  of ``1e-12 max(1, |N(S0)|)`` so that an edge counts as inside.

The Python search with the same functions, :func:`book_corridor_python` (all of a hedger's
corridors with ``Hedger.compiled_corridor = False``), is its reference twin:
``tests/strategies/test_corridor_kernel.py`` checks the two agree to the bit on random books.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numba import njit

from strategies.greeks import BookLegs
from strategies.greeks_kernel import book_sum
from strategies.hedging.corridor import delta_corridor, grid_fractions, log_grid

#: :class:`BandWidth` shapes
CONSTANT, ZAKAMOULINE, WHALLEY_WILMOTT = 0, 1, 2
_EMPTY = np.empty(0)


@njit(cache=True, error_model="numpy")
def band_half_width(s: np.ndarray, kind: int, p1: float, p2: float, w: np.ndarray,
                    basis: np.ndarray, strike: np.ndarray, t: np.ndarray, vol: np.ndarray,
                    is_call: np.ndarray) -> np.ndarray:
    """``H(S)`` at each ``s`` (:class:`BandWidth`); ``Gamma(S) = sum w_j gamma_j(b_j S)``."""
    out = np.empty(s.size)
    if kind == CONSTANT:
        out[:] = p1
        return out
    gam = book_sum(s, w, basis, strike, t, vol, is_call, True, _EMPTY)
    for i in range(s.size):
        if kind == ZAKAMOULINE:
            out[i] = p1 / s[i] + p2 * math.sqrt(abs(gam[i]))
        else:
            out[i] = np.cbrt(p1 * s[i] * gam[i] * gam[i] / p2)
    return out


@dataclass(frozen=True, eq=False)
class BandWidth:
    """A band half-width as a function of the underlying ``S``, in one of three shapes:

    * ``constant``: ``H = p1``;
    * ``zakamouline``: ``H = p1 / S + p2 sqrt|Gamma(S)|`` (Zakamouline's ``H0 + H1`` with their
      factors taken once per decision: :mod:`strategies.hedging.band_hedgers`);
    * ``whalley_wilmott``: ``H = cbrt(p1 S Gamma(S)^2 / p2)``, ``p1 = 3/2 exp(-r tau) lam``,
      ``p2`` the risk aversion (:func:`strategies.hedging.bands.whalley_wilmott_half_width`).

    ``Gamma`` is the Black-76 gamma sum of ``legs``.  Calling it evaluates ``H`` at an array of
    prices, with the compiled code the corridor search uses.
    """

    kind: int
    p1: float
    p2: float = 0.0
    legs: BookLegs | None = None

    def gamma_args(self) -> tuple[np.ndarray, ...]:
        if self.legs is None:
            return (_EMPTY,) * 5 + (np.empty(0, np.bool_),)
        return self.legs.sum_args(2)[:6]

    def __call__(self, s: np.ndarray) -> np.ndarray:
        s_arr = np.asarray(s, dtype=np.float64)
        out = band_half_width(s_arr.reshape(-1), self.kind, self.p1, self.p2,
                              *self.gamma_args())
        return out.reshape(s_arr.shape)


@njit(cache=True, error_model="numpy")
def _g(s, dargs, dvol, nc, ratio, inverse, kind, p1, p2, gargs, m, pad, edge):
    """``|N(s)| - H_eff(s)`` at each ``s`` (the module docstring)."""
    w, b, k, t, v, c = dargs
    net = book_sum(s, w, b, k, t, v, c, False, dvol)
    gw, gb, gk, gt, gv, gc = gargs
    h = band_half_width(s, kind, p1, p2, gw, gb, gk, gt, gv, gc)
    out = np.empty(s.size)
    for i in range(s.size):
        x = net[i] + (nc / (ratio * s[i]) if inverse else nc)
        if edge:
            e = h[i] + m + pad
        elif kind == CONSTANT:  # Python's max of two floats
            e = (m if m > h[i] else h[i]) + pad
        else:  # np.maximum: NaN wins
            e = (h[i] if (h[i] >= m or h[i] != h[i]) else m) + pad
        out[i] = abs(x) - e
    return out


@njit(cache=True, error_model="numpy")
def _first_outside(v: np.ndarray) -> int:
    for i in range(v.size):
        if not v[i] < 0.0:  # NaN counts as outside
            return i
    return -1


@njit(cache=True, error_model="numpy")
def _search(spot, up, down, frac, rounds, dargs, dvol, nc, ratio, inverse, kind, p1, p2,
            gargs, m, edge):
    """``(lo, hi)``: :func:`strategies.hedging.corridor.delta_corridor`, step for step, on
    :func:`_g` (a breached band gives ``(spot, spot)``)."""
    w, b, k, t, v, c = dargs
    net0 = book_sum(np.array([spot]), w, b, k, t, v, c, False, dvol)[0] \
        + (nc / (ratio * spot) if inverse else nc)
    pad = 1e-12 * max(1.0, abs(net0))
    n = up.size
    grid = np.empty(1 + 2 * n)
    grid[0] = spot
    grid[1:n + 1] = spot * up
    grid[n + 1:] = spot * down
    g_all = _g(grid, dargs, dvol, nc, ratio, inverse, kind, p1, p2, gargs, m, pad, edge)
    if not g_all[0] < 0.0:
        return spot, spot
    # per side (0 up, 1 down): bracket (a, b, g(a), g(b)), or none with the edge known
    br = np.empty((2, 4))
    has = np.zeros(2, np.bool_)
    edges = np.empty(2)
    for side in range(2):
        pts, vals = grid[1 + side * n:1 + (side + 1) * n], g_all[1 + side * n:1 + (side + 1) * n]
        i = _first_outside(vals)
        if i < 0:
            edges[side] = pts[-1]
        else:
            has[side] = True
            br[side, 0], br[side, 2] = (spot, g_all[0]) if i == 0 else (pts[i - 1], vals[i - 1])
            br[side, 1], br[side, 3] = pts[i], vals[i]
    nf = frac.size
    for _ in range(rounds):
        live = [side for side in range(2) if has[side] and br[side, 3] != 0.0]
        if not live:
            break
        pts = np.empty(len(live) * nf)
        for r, side in enumerate(live):
            a, b = br[side, 0], br[side, 1]
            pts[r * nf:(r + 1) * nf] = a + frac * (b - a)
        vals = _g(pts, dargs, dvol, nc, ratio, inverse, kind, p1, p2, gargs, m, pad, edge)
        for r, side in enumerate(live):
            p, v = pts[r * nf:(r + 1) * nf], vals[r * nf:(r + 1) * nf]
            i = _first_outside(v)
            if i < 0:
                br[side, 0], br[side, 2] = p[-1], v[-1]
            else:
                if i > 0:
                    br[side, 0], br[side, 2] = p[i - 1], v[i - 1]
                br[side, 1], br[side, 3] = p[i], v[i]
    for side in range(2):
        if has[side]:
            a, b, ga, gb = br[side, 0], br[side, 1], br[side, 2], br[side, 3]
            if not math.isfinite(gb):
                edges[side] = a
            else:
                edges[side] = b if gb == 0.0 else a + (b - a) * (-ga) / (gb - ga)
    return edges[1], edges[0]


def book_corridor(center: BookLegs, spot: float, contracts_cs: float, price_ratio: float,
                  inverse: bool, width: float | BandWidth, m: float, edge: bool, *,
                  first_step: float = 1e-3, growth: float = 1.3, max_log_move: float = 0.5,
                  subdivisions: int = 32, rounds: int = 3) -> tuple[float, float]:
    """``(lo, hi)`` of the corridor of the module docstring: ``center`` the legs whose delta
    the hedge offsets, ``contracts_cs`` the hedge held times its contract size, ``width`` the
    band half-width (a number or a :class:`BandWidth`); the search settings are
    :func:`strategies.hedging.corridor.delta_corridor`'s.  Premium-adjusted deltas and other
    widths take :func:`book_corridor_python`."""
    if center.premium_adjusted or (callable(width) and not isinstance(width, BandWidth)):
        return book_corridor_python(center, spot, contracts_cs, price_ratio, inverse, width, m,
                                    edge, first_step=first_step, growth=growth,
                                    max_log_move=max_log_move, subdivisions=subdivisions,
                                    rounds=rounds)
    if not isinstance(width, BandWidth):
        width = BandWidth(CONSTANT, float(width))
    up, down = log_grid(float(first_step), float(growth), float(max_log_move))
    *dargs, dvol = center.sum_args(1)
    return _search(float(spot), up, down, grid_fractions(int(subdivisions)), int(rounds),
                   tuple(dargs), dvol,
                   float(contracts_cs), float(price_ratio), bool(inverse), width.kind,
                   float(width.p1), float(width.p2), width.gamma_args(), float(m), bool(edge))


def book_corridor_python(center: BookLegs, spot: float, contracts_cs: float, price_ratio: float,
                         inverse: bool, width: float | Callable[[np.ndarray], np.ndarray],
                         m: float, edge: bool, **search: float) -> tuple[float, float]:
    """:func:`book_corridor` by :func:`strategies.hedging.corridor.delta_corridor` with
    Python functions (any delta and width): its reference twin."""
    book_fn = center.delta_fn()

    def net(s: np.ndarray) -> np.ndarray:
        s_arr = np.asarray(s, dtype=np.float64)
        return book_fn(s_arr) + (contracts_cs / (price_ratio * s_arr) if inverse
                                 else contracts_cs)

    pad = 1e-12 * max(1.0, abs(float(net(np.array([spot]))[0])))  # an edge is inside
    if edge:
        eff = (lambda s: width(s) + m + pad) if callable(width) else width + m + pad
    else:
        eff = ((lambda s: np.maximum(width(s), m) + pad) if callable(width)
               else max(width, m) + pad)
    c = delta_corridor(net, spot, 0.0, eff, **search)
    return c.lo, c.hi
