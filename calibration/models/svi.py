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
``sigma`` is tiny (:func:`_inner`).

Constraints on ``(a, d, c)`` (Zeliade's domain, with two changes: the wing slope bound is
Lee's, and ``a`` may be negative as long as the variance stays positive):

* ``a <= max(w_target)``;
* ``|d| <= c`` (that is ``|rho| <= 1``, ``b >= 0``);
* ``c + |d| <= slope_max * sigma`` (``b (1 + |rho|) <= slope_max``; Lee 2004 requires the wing
  slopes of ``w`` to be at most 2, the default);
* ``a + c - |d| >= 0``, a linear sufficient condition for ``min_k w = a + sqrt(c^2 - d^2) >= 0``
  (Zeliade's ``a >= 0`` is too strict for crypto smiles, whose fits want ``a < 0``).

Loss: residuals are measured in implied-vol points (``dw = 2 iv t d(iv)``), weighted by the
caller's weights.  In band mode the target of each quote is the nearest point of its
``[bid, ask]`` total-variance band (alternating projection, a fixed number of rounds, with an
optional pull ``mid_weight`` towards the mid).  Tikhonov regularisation adds
``lam * |theta - theta_prev|^2`` in normalised units: ``(a, d, c)`` divided by the ATM total
variance, ``(m, sigma)`` divided by its square root.

Calendar floor.  SVI slices are independent, so nothing above prevents two expiries from
crossing.  The rare slice that does is refitted with ``floor_k, floor_w``: for fixed
``(m, sigma)`` the floor ``w(k_j) >= w_floor_j`` is one more linear row per point,
``a + d y_j + c sqrt(y_j^2 + 1) >= w_floor_j``, so the inner problem stays an exact QP and the
floor holds at every floor point for any ``(m, sigma)`` the outer search visits.  Where no
``(a, d, c)`` meets the rows the inner objective is ``+inf``; a fit with no feasible point at
all says so (``SVIFit.feasible``) instead of returning a crossing slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from calibration.models.svi_formula import SVIParams, svi_derivatives, svi_total_variance
from calibration.models.svi_qp import OK, domain_rows, qp_solve

__all__ = ["LEE_SLOPE", "SVIFit", "SVIParams", "fit_svi", "svi_derivatives",
           "svi_total_variance", "vol_weights"]

LEE_SLOPE = 2.0
N_BAND_ROUNDS = 4
_NONE = np.zeros(0)  # no floor points (read-only use)


@dataclass(frozen=True)
class SVIFit:
    params: SVIParams
    loss: float  # weighted mean squared error in vol points^2 (plus penalty)
    n_eval: int
    feasible: bool = True  # False only for a floor no (m, sigma) searched could meet


# --------------------------------------------------------------------------- inner problem

@njit(cache=True)
def _wings(y: float) -> tuple[float, float]:
    """``(z + y, z - y)`` with ``z = sqrt(y^2 + 1)``, each without cancellation: the small one
    is ``1 / (the large one)`` since ``(z + y)(z - y) = 1``."""
    z = np.sqrt(y * y + 1.0)
    if y >= 0.0:
        return y + z, 1.0 / (y + z)
    return 1.0 / (z - y), z - y


@njit(cache=True)
def _inner(m, s, k, v, wt, lo, hi, band, mid_w, slope, lam_adc, prev_adc, C, h, fk):
    """Best (a, d, c) for fixed (m, s); returns (objective, a, d, c), objective ``inf`` when
    the rows ``C, h`` (:func:`_rows`: the domain, then one row per floor point ``fk``) leave
    no feasible point.  The rows that depend on ``(m, s)`` are updated in place.

    The QP is solved in the wing basis ``u = (a, p, q)`` with ``d = p - q``, ``c = p + q``, so
    ``w = a + p (z + y) + q (z - y)``: ``2p`` and ``2q`` are the right and left wing slopes
    times ``sigma``.  In ``(a, d, c)`` the columns ``y`` and ``z`` are nearly collinear once
    ``sigma`` is small against the distance of the quotes from ``m`` (``z ~ |y|``), which
    makes the normal matrix singular to working precision; in the wing basis one of
    ``z + y``, ``z - y`` is about ``1 / (2|y|)`` and the other about ``2|y|`` (both computed
    without cancellation, :func:`_wings`), so the columns stay independent and the normal
    matrix keeps its digits.

    ``lam_adc`` holds the per-coordinate Tikhonov weights (already normalised), on
    ``(a, d, c)``.
    """
    h[2] = h[3] = -slope * s
    for j in range(fk.shape[0]):
        C[7 + j, 1], C[7 + j, 2] = _wings((fk[j] - m) / s)
    n = k.shape[0]
    G = np.zeros((3, 3))
    yp = np.empty(n)
    ym = np.empty(n)
    for i in range(n):
        pi, qi = _wings((k[i] - m) / s)
        yp[i] = pi
        ym[i] = qi
        wi = wt[i] * (1.0 + mid_w[i]) if band else wt[i]
        G[0, 0] += wi
        G[0, 1] += wi * pi
        G[0, 2] += wi * qi
        G[1, 1] += wi * pi * pi
        G[1, 2] += wi * pi * qi
        G[2, 2] += wi * qi * qi
    # Tikhonov on (a, d, c) = T u with T = [[1, 0, 0], [0, 1, -1], [0, 1, 1]]: G += T' L T
    G[0, 0] += lam_adc[0]
    G[1, 1] += lam_adc[1] + lam_adc[2]
    G[2, 2] += lam_adc[1] + lam_adc[2]
    G[1, 2] += lam_adc[2] - lam_adc[1]
    G[1, 0] = G[0, 1]
    G[2, 0] = G[0, 2]
    G[2, 1] = G[1, 2]
    tgt = v.copy()
    r = np.zeros(3)
    u = np.zeros(3)
    rounds = N_BAND_ROUNDS if band else 1
    for _it in range(rounds):
        r[:] = 0.0
        for i in range(n):
            wi = (wt[i] * (1.0 + mid_w[i]) if band else wt[i]) * tgt[i]
            r[0] += wi
            r[1] += wi * yp[i]
            r[2] += wi * ym[i]
        # T' L prev
        r[0] += lam_adc[0] * prev_adc[0]
        r[1] += lam_adc[1] * prev_adc[1] + lam_adc[2] * prev_adc[2]
        r[2] += lam_adc[2] * prev_adc[2] - lam_adc[1] * prev_adc[1]
        u, status = qp_solve(G, r, C, h)
        if status != OK:
            return np.inf, 0.0, 0.0, 0.0
        if band:
            for i in range(n):
                f = u[0] + u[1] * yp[i] + u[2] * ym[i]
                t = min(max(f, lo[i]), hi[i])
                tgt[i] = (t + mid_w[i] * v[i]) / (1.0 + mid_w[i])
    a, d, c = u[0], u[1] - u[2], u[1] + u[2]
    obj = 0.0
    for i in range(n):
        f = u[0] + u[1] * yp[i] + u[2] * ym[i]
        if band:
            t = min(max(f, lo[i]), hi[i])
            obj += wt[i] * ((f - t) ** 2 + mid_w[i] * (f - v[i]) ** 2)
        else:
            obj += wt[i] * (f - v[i]) ** 2
    obj += lam_adc[0] * (a - prev_adc[0]) ** 2 + lam_adc[1] * (d - prev_adc[1]) ** 2 \
        + lam_adc[2] * (c - prev_adc[2]) ** 2
    return obj, a, d, c


@njit(cache=True)
def _rows(amax, slope, fk, fw):
    """The QP rows ``C u >= h`` of one fit in the wing basis ``u = (a, p, q)`` of
    :func:`_inner`: the domain (:func:`calibration.models.svi_qp.domain_rows` times ``T``; slope rows
    set per ``sigma`` by :func:`_inner`) and a floor row ``a + p (z_j + y_j) + q (z_j - y_j)
    >= fw_j`` per floor point (set per ``(m, sigma)``)."""
    nf = fk.shape[0]
    C = np.empty((7 + nf, 3))
    h = np.empty(7 + nf)
    C0, h0 = domain_rows(amax, slope)
    for j in range(7):  # (a, d, c) = T u
        C[j, 0] = C0[j, 0]
        C[j, 1] = C0[j, 1] + C0[j, 2]
        C[j, 2] = C0[j, 2] - C0[j, 1]
    h[:7] = h0
    for j in range(nf):
        C[7 + j, 0] = 1.0
        h[7 + j] = fw[j]
    return C, h


@njit(cache=True)
def _outer_obj(x, D):
    """Outer objective at ``x = (m, log sigma)``; ``D`` is the problem tuple
    ``(k, v, wt, lo, hi, band, mid_w, slope, lam, wref, prev, mbounds, sbounds, C, h, fk)``.
    Returns ``(objective, a, d, c)``."""
    k, v, wt, lo, hi, band, mid_w, slope, lam, wref, prev, mb, sb, C, h, fk = D
    m = min(max(x[0], mb[0]), mb[1])
    s = np.exp(min(max(x[1], sb[0]), sb[1]))
    lam_adc = np.zeros(3)
    prev_adc = np.zeros(3)
    pen = 0.0
    if lam > 0.0:
        # previous (a, d, c) = (a, rho b sigma, b sigma) at the trial sigma
        prev_adc[0] = prev[0]
        prev_adc[1] = prev[2] * prev[1] * s
        prev_adc[2] = prev[1] * s
        lam_adc[:] = lam / (wref * wref)
        pen = lam * ((m - prev[3]) ** 2 + (s - prev[4]) ** 2) / wref
    obj, a, d, c = _inner(m, s, k, v, wt, lo, hi, band, mid_w, slope, lam_adc, prev_adc, C, h,
                          fk)
    # a penalty for leaving the box keeps Nelder-Mead inside it
    out = (x[0] - m) ** 2 + (x[1] - np.log(s)) ** 2
    return obj + pen + 1e3 * out, a, d, c


@njit(cache=True)
def _nelder_mead(x0, step, max_iter, ftol, xtol, D):
    """2-D Nelder-Mead (standard coefficients 1, 2, 0.5, 0.5) with a fixed budget."""
    P = np.empty((3, 2))
    F = np.empty(3)
    for i in range(3):
        P[i] = x0
        if i > 0:
            P[i, i - 1] += step[i - 1]
        F[i] = _outer_obj(P[i], D)[0]
    nev = 3
    for _it in range(max_iter):
        order = np.argsort(F, kind="mergesort")  # stable: ties order alike compiled or not
        P = P[order].copy()
        F = F[order].copy()
        if F[0] == np.inf:  # no vertex meets the floor: nowhere to go
            break
        # loss is in vol points^2: differences below 1e-7 are invisible in any figure
        if F[2] - F[0] <= ftol * abs(F[0]) + 1e-7 * xtol[2]:
            break
        # the simplex is smaller than anything that moves the smile visibly
        if (max(abs(P[1, 0] - P[0, 0]), abs(P[2, 0] - P[0, 0])) < xtol[0]
                and max(abs(P[1, 1] - P[0, 1]), abs(P[2, 1] - P[0, 1])) < xtol[1]):
            break
        c = 0.5 * (P[0] + P[1])
        xr = c + (c - P[2])
        fr = _outer_obj(xr, D)[0]
        nev += 1
        if fr < F[0]:
            xe = c + 2.0 * (c - P[2])
            fe = _outer_obj(xe, D)[0]
            nev += 1
            P[2], F[2] = (xe, fe) if fe < fr else (xr, fr)
        elif fr < F[1]:
            P[2], F[2] = xr, fr
        else:
            xc = c + 0.5 * (xr - c) if fr < F[2] else c + 0.5 * (P[2] - c)
            fc = _outer_obj(xc, D)[0]
            nev += 1
            if fc < min(fr, F[2]):
                P[2], F[2] = xc, fc
            else:
                for i in (1, 2):
                    P[i] = P[0] + 0.5 * (P[i] - P[0])
                    F[i] = _outer_obj(P[i], D)[0]
                    nev += 1
    ib = np.argmin(F)
    return P[ib].copy(), F[ib], nev


@njit(cache=True)
def _fit_kernel(k, v, wt, lo, hi, band, mid_w, amax, slope, lam, prev, has_prev, n_starts,
                max_iter, precision, fk, fw):
    kmin = k.min()
    kmax = k.max()
    span = max(kmax - kmin, 1e-3)
    wref = max(v.mean(), 1e-8)
    mb = np.array([kmin - span, kmax + span])
    sb = np.array([np.log(1e-4), np.log(10.0)])
    C, h = _rows(amax, slope, fk, fw)
    D = (k, v, wt, lo, hi, band, mid_w, slope, lam, wref, prev, mb, sb, C, h, fk)
    best_x = np.empty(2)
    best_f = np.inf
    nev_tot = 0
    step = np.array([0.1 * span, 0.3])
    xtol = np.array([1e-5 * span * precision, 1e-4 * precision, precision])
    if has_prev:
        x0 = np.array([prev[3], np.log(max(prev[4], 1e-4))])
        best_x, best_f, nev_tot = _nelder_mead(x0, step * 0.3, max_iter, 1e-9, xtol, D)
    # cold starts: asked for, or the warm start found no feasible point (a floor, or a
    # degenerate previous fit) and must not decide the result alone
    n_cold = n_starts - 1 if has_prev else n_starts
    if best_f == np.inf:
        n_cold = max(n_cold, 1)
    if n_cold > 0:
        # coarse 7 x 6 grid over (m, log sigma); the best n_cold nodes seed Nelder-Mead
        gx = np.empty((42, 2))
        gf = np.empty(42)
        for i in range(7):
            for j in range(6):
                gx[6 * i + j, 0] = kmin + span * (i + 0.5) / 7
                gx[6 * i + j, 1] = np.log(0.02 * span) + np.log(100.0) * j / 5
                gf[6 * i + j] = _outer_obj(gx[6 * i + j], D)[0]
        order = np.argsort(gf, kind="mergesort")
        for i in range(min(n_cold, 42)):
            x, f, nev = _nelder_mead(gx[order[i]], step, max_iter, 1e-9, xtol, D)
            nev_tot += nev
            if f < best_f or best_f == np.inf and i == 0:
                best_f = f
                best_x = x
    obj, a, d, c = _outer_obj(best_x, D)
    out = np.empty(6)
    out[0] = a
    out[1] = c / np.exp(min(max(best_x[1], sb[0]), sb[1]))
    out[2] = max(-1.0, min(1.0, d / c)) if c > 1e-300 else 0.0
    out[3] = min(max(best_x[0], mb[0]), mb[1])
    out[4] = np.exp(min(max(best_x[1], sb[0]), sb[1]))
    out[5] = obj
    return out, nev_tot


def vol_weights(iv: np.ndarray, t: float) -> np.ndarray:
    """Factor turning squared total-variance errors into squared vol-point errors:
    ``d(iv) = dw / (2 iv t)``, times 100 for points."""
    iv = np.maximum(np.asarray(iv, dtype=float), 1e-3)
    return (100.0 / (2.0 * iv * t)) ** 2


@njit(cache=True)
def _slice_inputs(iv_mid, t, wq, iv_bid, iv_ask, band, mid_weight, fw):
    """The kernel's per-quote arrays of one slice, in one pass: total variances ``v = iv^2 t``
    of the mids, the loss band ``lo, hi`` (of bid and ask in band mode, else ``v``), the
    weights ``wq * vol_weights(iv_mid, t)``, the mid pull ``mid_weight`` (band mode) and the
    level bound ``amax = max(hi, fw)``.  Each value is computed as :func:`vol_weights` and
    numpy compute it, to the bit (NaN propagates as in ``np.maximum`` and ``max``)."""
    n = iv_mid.shape[0]
    v, wt, lo, hi, mw = np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    amax = -np.inf
    for i in range(n):
        iv = iv_mid[i]
        floored = iv if (iv >= 1e-3 or iv != iv) else 1e-3
        x = 100.0 / (2.0 * floored * t)
        wt[i] = wq[i] * (x * x)
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
            floor_k: np.ndarray | None = None, floor_w: np.ndarray | None = None) -> SVIFit:
    """Fit raw SVI to one slice (quasi-explicit, Zeliade 2009); see the module docstring.

    ``weights`` are the caller's quote weights (normalised here to sum 1); the loss is in vol
    points squared.  With ``prev`` the outer search is warm-started there (one start unless
    ``n_starts > 1``) and ``lam > 0`` adds the Tikhonov term towards it; ``warm=False``
    keeps ``prev`` as the Tikhonov anchor only and starts cold.

    The outer search stops when the simplex is below ``1e-5 * precision`` of the quoted ``k``
    span in ``m`` and ``1e-4 * precision`` in ``log sigma``, or its losses agree within
    ``1e-7 * precision`` vol points^2 (invisible in any fit figure); ``precision < 1`` buys
    more digits of the parameters at the cost of speed.

    ``floor_k, floor_w`` impose ``w(floor_k) >= floor_w`` exactly (the calendar floor of the
    module docstring); the result has ``feasible=False`` when no searched ``(m, sigma)`` admits
    it.
    """
    k = np.ascontiguousarray(k, dtype=float)
    iv_mid = np.ascontiguousarray(iv_mid, dtype=float)
    wq = np.ones_like(k) if weights is None else np.asarray(weights, dtype=float)
    wq = np.ascontiguousarray(wq / max(wq.sum(), 1e-300))
    fk = _NONE if floor_k is None else np.ascontiguousarray(floor_k, dtype=float)
    fw = _NONE if floor_w is None else np.ascontiguousarray(floor_w, dtype=float)
    bid, ask = ((np.ascontiguousarray(iv_bid, dtype=float),
                 np.ascontiguousarray(iv_ask, dtype=float)) if band else (iv_mid, iv_mid))
    # a <= amax keeps the level near the data
    v, wt, lo, hi, mw, amax = _slice_inputs(iv_mid, float(t), wq, bid, ask, bool(band),
                                            float(mid_weight), fw)
    has_prev = prev is not None
    pv = prev.to_array() if has_prev else np.zeros(5)
    start_at_prev = has_prev and warm
    out, nev = _fit_kernel(k, v, wt, lo, hi, bool(band), mw, amax, float(slope_max),
                           float(lam) if has_prev else 0.0, pv, start_at_prev, int(n_starts),
                           int(max_iter), float(precision), fk, fw)
    return SVIFit(SVIParams.from_array(out[:5]), float(out[5]), int(nev),
                  bool(np.isfinite(out[5])))
