"""Raw SVI smile per expiry, calibrated by the quasi-explicit method.

Model (Gatheral 2004, "A parsimonious arbitrage-free implied volatility parametrization with
application to the valuation of volatility derivatives", Global Derivatives)::

    w(k) = a + b * (rho * (k - m) + sqrt((k - m)^2 + sigma^2))

with ``w`` the total implied variance ``iv^2 * t`` and ``k = ln(K / F)`` (the parameters and the
formula: :mod:`calibration.models.svi_formula`).

Calibration (Zeliade Systems 2009, "Quasi-explicit calibration of Gatheral's SVI model"):
with ``y = (k - m) / sigma`` the model is linear in ``(a, d, c) = (a, rho*b*sigma, b*sigma)``::

    w = a + d * y + c * sqrt(y^2 + 1)

so for fixed ``(m, sigma)`` the best ``(a, d, c)`` is a weighted linear least-squares problem
over a polytope, solved exactly by a dual active-set QP (:mod:`calibration.models.svi_qp`).  The outer
problem over ``(m, log sigma)`` is a 2-D Nelder-Mead with a fixed iteration budget,
warm-started from the previous parameters; cold starts from a coarse grid are added when asked
for, or when the warm start finds no feasible point.  The QP itself is solved in the wing
basis ``(a, p, q)``, ``d = p - q``, ``c = p + q``, whose columns stay independent when
``sigma`` is tiny (:func:`calibration.models.svi_inner.inner_fit`).

Constraints on ``(a, d, c)`` (Zeliade's domain, with two changes: the wing slope bound is
Lee's, and ``a`` may be negative as long as the variance stays positive):

* ``a <= max(w_target)``;
* ``|d| <= c`` (that is ``|rho| <= 1``, ``b >= 0``);
* ``c + |d| <= slope_max * sigma`` (``b (1 + |rho|) <= slope_max``; Lee 2004 requires the wing
  slopes of ``w`` to be at most 2, the default);
* ``a + c - |d| >= 0``, a linear sufficient condition for ``min_k w = a + sqrt(c^2 - d^2) >= 0``
  (Zeliade's ``a >= 0`` is too strict for crypto smiles, whose fits want ``a < 0``).

Loss: residuals are measured in implied-vol points (``dw = 2 iv t d(iv)``), weighted by the
caller's weights.  In band mode a quote's residual is the fit's distance from its
``[bid, ask]`` total-variance band, plus a pull ``mid_weight`` towards the mid (the loss of
:mod:`calibration.loss`); for fixed ``(m, sigma)`` its exact minimiser is found by the quotes'
sides of their bands (:func:`calibration.models.svi_inner.inner_fit`).  Without a pull the band
can leave ``(a, d, c)`` undetermined, and the fit is then that of a fixed number of
alternating projections onto the bands, from the mid fit.  Tikhonov regularisation adds
``lam * |theta - theta_prev|^2`` in normalised units: ``(a, d, c)`` divided by the ATM total
variance, ``(m, sigma)`` divided by its square root.

Calendar rows.  SVI slices are independent, so nothing above prevents two expiries from
crossing.  A slice that does is refitted with ``floor_k, floor_w`` (it must stay above the
expiry before it) or ``ceil_k, ceil_w`` (below the expiry after it): for fixed
``(m, sigma)`` a floor ``w(k_j) >= w_floor_j`` is one more linear row per point,
``a + d y_j + c sqrt(y_j^2 + 1) >= w_floor_j``, and a ceiling the same row negated, so the
inner problem stays an exact QP and the rows hold at every point for any ``(m, sigma)`` the
outer search visits.  Where no ``(a, d, c)`` meets the rows the inner objective is ``+inf``; a
fit with no feasible point at all says so (``SVIFit.feasible``) instead of returning a
crossing slice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from calibration.models.svi_formula import SVIParams, svi_derivatives, svi_total_variance
from calibration.models.svi_inner import fit_rows, inner_fit, inner_scratch
from calibration.sums import pairwise_sum

__all__ = ["LEE_SLOPE", "SVIFit", "SVIParams", "fit_svi", "svi_derivatives",
           "svi_total_variance", "vol_weights"]

LEE_SLOPE = 2.0
_NONE = np.zeros(0)  # no floor points (read-only use)


@dataclass(frozen=True)
class SVIFit:
    params: SVIParams
    loss: float  # weighted mean squared error in vol points^2 (plus penalty)
    n_eval: int
    feasible: bool = True  # False only for a floor no (m, sigma) searched could meet


# inlined into the search (and inner_fit into this): passing D, about a hundred machine
# words, to a call made an evaluation at 30 quotes 0.79 instead of 0.69 us
@njit(cache=True, inline="always")
def _outer_obj(x, D):
    """Outer objective at ``x = (m, log sigma)``; ``D`` is the problem tuple
    ``(k, v, wt, lo, hi, band, mid_w, slope, lam, wref, prev, mbounds, sbounds, C, h, fk,
    scratch)``.
    Returns ``(objective, a, d, c)``."""
    k, v, wt, lo, hi, band, mid_w, slope, lam, wref, prev, mb, sb, C, h, fk, scratch = D
    m = min(max(x[0], mb[0]), mb[1])
    ls = min(max(x[1], sb[0]), sb[1])
    s = np.exp(ls)
    lam_adc = prev_adc = (0.0, 0.0, 0.0)
    pen = 0.0
    if lam > 0.0:
        # previous (a, d, c) = (a, rho b sigma, b sigma) at the trial sigma
        prev_adc = (prev[0], prev[2] * prev[1] * s, prev[1] * s)
        la = lam / (wref * wref)
        lam_adc = (la, la, la)
        pen = lam * ((m - prev[3]) ** 2 + (s - prev[4]) ** 2) / wref
    obj, a, d, c = inner_fit(m, s, k, v, wt, lo, hi, band, mid_w, slope, lam_adc, prev_adc, C,
                             h, fk, scratch)
    # a penalty for leaving the box keeps Nelder-Mead inside it
    out = (x[0] - m) ** 2 + (x[1] - ls) ** 2
    return obj + pen + 1e3 * out, a, d, c


@njit(cache=True)
def _lt(a: float, b: float) -> bool:
    """``a < b`` with NaN above everything, as numpy sorts."""
    return a < b or (b != b and a == a)


@njit(cache=True)
def _sort3(P, V) -> None:
    """Sort the simplex ``P`` and its values ``V`` by the objective ``V[:, 0]`` in place,
    stably (ties keep their order, so the compiled and the interpreted search take the same
    path)."""
    for i in (1, 2):
        j = i
        while j > 0 and _lt(V[j, 0], V[j - 1, 0]):
            for c in range(4):
                V[j, c], V[j - 1, c] = V[j - 1, c], V[j, c]
            for c in range(2):
                P[j, c], P[j - 1, c] = P[j - 1, c], P[j, c]
            j -= 1


@njit(cache=True, inline="always")
def _put(P, V, i, x, val) -> None:
    """Vertex ``i`` of the simplex becomes ``x``, with ``val = (objective, a, d, c)``."""
    P[i, 0], P[i, 1] = x[0], x[1]
    V[i, 0], V[i, 1], V[i, 2], V[i, 3] = val


# Compiled without numba's reference counting (``_nrt=False``, numba's switch for code that
# allocates nothing): every evaluation takes the problem's arrays out of ``D`` and makes views
# of its scratch, each an atomic increment and decrement with counting, which perf found to
# be two thirds of a warm fit (the bench's 12 real slices: 543 evaluations in 322 us with
# counting, 163 us without, to the bit).  Nothing here allocates (the caller holds every
# array, the simplex's blocks included), and numba refuses to compile an allocation without
# its runtime, so no array can be freed early or leak.
@njit(cache=True, _nrt=False)
def _nelder_mead(x0, step, max_iter, ftol, xtol, D, P, V, T):
    """2-D Nelder-Mead (standard coefficients 1, 2, 0.5, 0.5) with a fixed budget; the
    simplex ``P`` (3 x 2), its values ``V`` (3 x 4) and the trial points ``T`` (4 x 2) are
    the caller's blocks (an iteration allocates nothing).  Returns the best vertex, its
    ``(objective, a, d, c)`` (kept with each vertex, so the best one need not be evaluated
    again) and the number of evaluations."""
    c, xr, xe, xc = T[0], T[1], T[2], T[3]
    for i in range(3):
        xr[0], xr[1] = x0[0], x0[1]
        if i > 0:
            xr[i - 1] += step[i - 1]
        _put(P, V, i, xr, _outer_obj(xr, D))
    nev = 3
    for _it in range(max_iter):
        _sort3(P, V)
        if V[0, 0] == np.inf:  # no vertex meets the floor: nowhere to go
            break
        # loss is in vol points^2: differences below 1e-7 are invisible in any figure
        if V[2, 0] - V[0, 0] <= ftol * abs(V[0, 0]) + 1e-7 * xtol[2]:
            break
        # the simplex is smaller than anything that moves the smile visibly
        if (max(abs(P[1, 0] - P[0, 0]), abs(P[2, 0] - P[0, 0])) < xtol[0]
                and max(abs(P[1, 1] - P[0, 1]), abs(P[2, 1] - P[0, 1])) < xtol[1]):
            break
        for j in range(2):
            c[j] = 0.5 * (P[0, j] + P[1, j])
            xr[j] = c[j] + (c[j] - P[2, j])
        vr = _outer_obj(xr, D)
        nev += 1
        if vr[0] < V[0, 0]:
            for j in range(2):
                xe[j] = c[j] + 2.0 * (c[j] - P[2, j])
            ve = _outer_obj(xe, D)
            nev += 1
            if ve[0] < vr[0]:
                _put(P, V, 2, xe, ve)
            else:
                _put(P, V, 2, xr, vr)
        elif vr[0] < V[1, 0]:
            _put(P, V, 2, xr, vr)
        else:
            for j in range(2):
                xc[j] = (c[j] + 0.5 * (xr[j] - c[j]) if vr[0] < V[2, 0]
                         else c[j] + 0.5 * (P[2, j] - c[j]))
            vc = _outer_obj(xc, D)
            nev += 1
            if vc[0] < min(vr[0], V[2, 0]):
                _put(P, V, 2, xc, vc)
            else:
                for i in (1, 2):
                    for j in range(2):
                        P[i, j] = P[0, j] + 0.5 * (P[i, j] - P[0, j])
                    _put(P, V, i, P[i], _outer_obj(P[i], D))
                    nev += 1
    ib = np.argmin(V[:, 0])
    return (P[ib, 0], P[ib, 1]), (V[ib, 0], V[ib, 1], V[ib, 2], V[ib, 3]), nev


@njit(cache=True, _nrt=False)  # as _nelder_mead
def _grid(gx, gf, kmin, span, D) -> None:
    """The cold starts' coarse 7 x 6 grid over ``(m, log sigma)`` into ``gx`` and its outer
    objective values into ``gf``."""
    for i in range(7):
        for j in range(6):
            gx[6 * i + j, 0] = kmin + span * (i + 0.5) / 7
            gx[6 * i + j, 1] = np.log(0.02 * span) + np.log(100.0) * j / 5
            gf[6 * i + j] = _outer_obj(gx[6 * i + j], D)[0]


@njit(cache=True)
def _fit_kernel(k, v, wt, lo, hi, band, mid_w, amax, slope, lam, prev, has_prev, n_starts,
                max_iter, precision, fk, fw, n_floor):
    kmin = k.min()
    kmax = k.max()
    span = max(kmax - kmin, 1e-3)
    wref = max(v.mean(), 1e-8)
    # bounds, steps and tolerances as tuples: a fit is a few dozen microseconds, and each
    # small array would be an allocation
    mb = (kmin - span, kmax + span)
    sb = (np.log(1e-4), np.log(10.0))
    C, h = fit_rows(amax, slope, fk, fw, n_floor)
    D = (k, v, wt, lo, hi, band, mid_w, slope, lam, wref, prev, mb, sb, C, h, fk,
         inner_scratch(wt, v, band, mid_w, C))
    P = np.empty((3, 2))
    V = np.empty((3, 4))  # per vertex: the objective, then the inner (a, d, c)
    T = np.empty((4, 2))  # centroid, reflected, expanded, contracted
    best_x = (0.0, 0.0)
    best_v = (np.inf, 0.0, 0.0, 0.0)  # (objective, a, d, c) at best_x
    nev_tot = 0
    step = (0.1 * span, 0.3)
    xtol = (1e-5 * span * precision, 1e-4 * precision, precision)
    if has_prev:
        x0 = (prev[3], np.log(max(prev[4], 1e-4)))
        # the previous m is usually close, the previous sigma less so: a first simplex as
        # small in log sigma as in m (0.3 of a cold start's) leaves 4.9 % of real warm refits
        # more than 1 % above the best loss known, against 1.8 % with this one, for 1.4 % more
        # evaluations
        best_x, best_v, nev_tot = _nelder_mead(x0, (step[0] * 0.3, step[1] * 0.7), max_iter,
                                               1e-9, xtol, D, P, V, T)
    # cold starts: asked for, or the warm start found no feasible point (a floor, or a
    # degenerate previous fit) and must not decide the result alone
    n_cold = n_starts - 1 if has_prev else n_starts
    if best_v[0] == np.inf:
        n_cold = max(n_cold, 1)
    if n_cold > 0:
        # coarse 7 x 6 grid over (m, log sigma); the best n_cold nodes seed Nelder-Mead
        gx = np.empty((42, 2))
        gf = np.empty(42)
        _grid(gx, gf, kmin, span, D)
        order = np.argsort(gf, kind="mergesort")
        for i in range(min(n_cold, 42)):
            x, val, nev = _nelder_mead((gx[order[i], 0], gx[order[i], 1]), step, max_iter,
                                       1e-9, xtol, D, P, V, T)
            nev_tot += nev
            if val[0] < best_v[0] or best_v[0] == np.inf and i == 0:
                best_v = val
                best_x = x
    obj, a, d, c = best_v
    out = np.empty(6)
    out[0] = a
    out[1] = c / np.exp(min(max(best_x[1], sb[0]), sb[1]))
    out[2] = max(-1.0, min(1.0, d / c)) if c > 1e-300 else 0.0
    out[3] = min(max(best_x[0], mb[0]), mb[1])
    out[4] = np.exp(min(max(best_x[1], sb[0]), sb[1]))
    out[5] = obj
    return out, nev_tot


@njit(cache=True)
def fit_slice(k, iv_mid, t, w, iv_bid, iv_ask, band, mid_weight, slope, lam, prev,
              start_at_prev, n_starts, max_iter, precision, fk, fw, n_floor):
    """:func:`fit_svi`'s compiled part, from its normalised arguments (the quote weights
    ``w`` as given: they are normalised here): the kernel's output row
    ``(a, b, rho, m, sigma, loss)`` and the number of objective evaluations."""
    v, wt, lo, hi, mw, amax = _slice_inputs(iv_mid, t, w, iv_bid, iv_ask, band, mid_weight,
                                            fw[:n_floor])
    return _fit_kernel(k, v, wt, lo, hi, band, mw, amax, slope, lam, prev, start_at_prev,
                       n_starts, max_iter, precision, fk, fw, n_floor)


def vol_weights(iv: np.ndarray, t: float) -> np.ndarray:
    """Factor turning squared total-variance errors into squared vol-point errors:
    ``d(iv) = dw / (2 iv t)``, times 100 for points."""
    iv = np.maximum(np.asarray(iv, dtype=float), 1e-3)
    return (100.0 / (2.0 * iv * t)) ** 2


@njit(cache=True)
def _slice_inputs(iv_mid, t, w, iv_bid, iv_ask, band, mid_weight, fw):
    """The kernel's per-quote arrays of one slice, in one pass: total variances ``v = iv^2 t``
    of the mids, the loss band ``lo, hi`` (of bid and ask in band mode, else ``v``), the
    weights ``unit_weights(w) * vol_weights(iv_mid, t)``, the mid pull ``mid_weight`` (band
    mode) and the level bound ``amax = max(hi, fw)``.  Each value is computed as
    :func:`unit_weights`, :func:`vol_weights` and numpy compute it, to the bit (the sum as
    ``numpy.sum`` sums, :mod:`calibration.sums`; NaN propagates as in ``np.maximum`` and
    ``max``)."""
    n = iv_mid.shape[0]
    v, wt, lo, hi, mw = np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    s = pairwise_sum(w, 0, n)
    total = 1e-300 if 1e-300 > s else s
    amax = -np.inf
    for i in range(n):
        iv = iv_mid[i]
        floored = iv if (iv >= 1e-3 or iv != iv) else 1e-3
        x = 100.0 / (2.0 * floored * t)
        wt[i] = (w[i] / total) * (x * x)
        v[i] = iv * iv * t
        if band:
            lo[i] = iv_bid[i] * iv_bid[i] * t
            hi[i] = iv_ask[i] * iv_ask[i] * t
            mw[i] = mid_weight
        else:
            lo[i] = hi[i] = v[i]
            mw[i] = 0.0
        amax = _nan_max(amax, hi[i])
    top = -np.inf  # a floor above every quote must lift the level bound
    for j in range(fw.shape[0]):
        top = _nan_max(top, fw[j])
    return v, wt, lo, hi, mw, (top if top > amax else amax)


@njit(cache=True)
def _nan_max(acc: float, x: float) -> float:
    """One step of numpy's ``max``: NaN, once seen, stays."""
    return x if (x > acc or x != x) and acc == acc else acc


def fit_svi(k: np.ndarray, iv_mid: np.ndarray, t: float, weights: np.ndarray | None = None,
            iv_bid: np.ndarray | None = None, iv_ask: np.ndarray | None = None, *,
            prev: SVIParams | None = None, lam: float = 0.0, band: bool = False,
            mid_weight: float = 0.1, n_starts: int = 1, max_iter: int = 80,
            slope_max: float = LEE_SLOPE, precision: float = 1.0, warm: bool = True,
            floor_k: np.ndarray | None = None, floor_w: np.ndarray | None = None,
            ceil_k: np.ndarray | None = None, ceil_w: np.ndarray | None = None) -> SVIFit:
    """Fit raw SVI to one slice (quasi-explicit, Zeliade 2009); see the module docstring.

    ``weights`` are the caller's quote weights (normalised here to sum 1); the loss is in vol
    points squared.  With ``prev`` the outer search is warm-started there (one start unless
    ``n_starts > 1``) and ``lam > 0`` adds the Tikhonov term towards it; ``warm=False``
    keeps ``prev`` as the Tikhonov anchor only and starts cold.

    The outer search stops when the simplex is below ``1e-5 * precision`` of the quoted ``k``
    span in ``m`` and ``1e-4 * precision`` in ``log sigma``, or its losses agree within
    ``1e-7 * precision`` vol points^2 (invisible in any fit figure); ``precision < 1`` buys
    more digits of the parameters at the cost of speed.

    ``floor_k, floor_w`` impose ``w(floor_k) >= floor_w`` and ``ceil_k, ceil_w`` impose
    ``w(ceil_k) <= ceil_w`` exactly (the calendar rows of the module docstring); the result has
    ``feasible=False`` when no searched ``(m, sigma)`` admits them.
    """
    k = np.ascontiguousarray(k, dtype=float)
    iv_mid = np.ascontiguousarray(iv_mid, dtype=float)
    w = np.ones_like(k) if weights is None else np.ascontiguousarray(weights, dtype=float)
    fk, fw = _rows(floor_k, floor_w, ceil_k, ceil_w)
    n_floor = 0 if floor_k is None else len(floor_k)
    bid, ask = ((np.ascontiguousarray(iv_bid, dtype=float),
                 np.ascontiguousarray(iv_ask, dtype=float)) if band else (iv_mid, iv_mid))
    has_prev = prev is not None
    pv = prev.to_array() if has_prev else np.zeros(5)
    out, nev = fit_slice(k, iv_mid, float(t), w, bid, ask, bool(band), float(mid_weight),
                         float(slope_max), float(lam) if has_prev else 0.0, pv,
                         has_prev and warm, int(n_starts), int(max_iter), float(precision), fk,
                         fw, n_floor)
    return fit_result(out.tolist(), nev)


def _rows(floor_k, floor_w, ceil_k, ceil_w) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's calendar points and bounds: the floors', then the ceilings'."""
    ks = [x for x in (floor_k, ceil_k) if x is not None]
    ws = [x for x in (floor_w, ceil_w) if x is not None]
    if not ks:
        return _NONE, _NONE
    return (np.ascontiguousarray(np.concatenate(ks), dtype=float),
            np.ascontiguousarray(np.concatenate(ws), dtype=float))


def unit_weights(w: np.ndarray) -> np.ndarray:
    """Quote weights normalised to sum 1: the numpy definition of what the compiled fit does
    to the weights it is given (:func:`_slice_inputs`; a test compares the two)."""
    s = np.add.reduce(w)  # w.sum(), without its Python-level wrapper
    return w / (1e-300 if 1e-300 > s else s)


def fit_result(out: list[float], nev: int) -> SVIFit:
    """The :class:`SVIFit` of a kernel's output row ``(a, b, rho, m, sigma, loss)`` (as
    Python floats: ``row.tolist()``).

    Both dataclasses are filled as unpickling fills them, past their generated ``__init__``:
    a frozen dataclass sets each field through ``object.__setattr__``, and the two cost a
    twentieth of a warm fit.  The fields are the kernel's, so there is nothing to check."""
    a, b, rho, m, sigma, loss = out
    params = object.__new__(SVIParams)
    params.__dict__.update(a=a, b=b, rho=rho, m=m, sigma=sigma)
    fit = object.__new__(SVIFit)
    fit.__dict__.update(params=params, loss=loss, n_eval=int(nev), feasible=math.isfinite(loss))
    return fit
