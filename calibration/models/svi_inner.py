"""The inner problem of an SVI slice fit: the best ``(a, d, c)`` for fixed ``(m, sigma)``.

:func:`inner_fit` sets up the 3-parameter QP of :mod:`calibration.models.svi_qp` for one slice
of :mod:`calibration.models.svi` (the normal equations of the weighted least squares, in the
wing basis; in band mode the quadratic of the quotes' sides of their bid/ask bands, until the
sides settle) and solves it with that module's dual active-set method.
:func:`inner_scratch` and :func:`fit_rows` make once per fit what every evaluation of the
outer search shares.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from calibration.models.svi_qp import (
    N_DOMAIN_ROWS,
    OK,
    domain_rows,
    qp_factor,
    qp_rows,
    qp_run,
    qp_setup,
    row_lengths,
)

N_BAND_ROUNDS = 4  # projections onto the bid/ask band per inner fit (band mode, no mid pull)
MAX_BAND_STEPS = 12  # classifications of the quotes per inner fit (band mode with a mid pull)


@njit(cache=True, inline="always")
def wings(y: float) -> tuple[float, float]:
    """``(z + y, z - y)`` with ``z = sqrt(y^2 + 1)``, each without cancellation: the large
    one is ``|y| + z``, the small one ``1 / (the large one)`` since ``(z + y)(z - y) = 1``.
    Branch-free, so that a loop over many ``y`` vectorises."""
    big = abs(y) + np.sqrt(y * y + 1.0)
    small = 1.0 / big
    return (big, small) if y >= 0.0 else (small, big)


@njit(cache=True, inline="always")
def inner_fit(m, s, k, v, wt, lo, hi, band, mid_w, slope, lam_adc, prev_adc, C, h, fk, scratch):
    """Best ``(a, d, c)`` of an SVI slice for fixed ``(m, s)`` under the loss of
    :mod:`calibration.models.svi`; returns (objective, a, d, c), objective ``inf`` when
    the rows ``C, h`` (:func:`fit_rows`: the domain, then one row per floor or ceiling point
    ``fk``) leave no feasible point.  The rows that depend on ``(m, s)`` are updated in place.

    The QP is solved in the wing basis ``u = (a, p, q)`` with ``d = p - q``, ``c = p + q``, so
    ``w = a + p (z + y) + q (z - y)``: ``2p`` and ``2q`` are the right and left wing slopes
    times ``sigma``.  In ``(a, d, c)`` the columns ``y`` and ``z`` are nearly collinear once
    ``sigma`` is small against the distance of the quotes from ``m`` (``z ~ |y|``), which
    makes the normal matrix singular to working precision; in the wing basis one of
    ``z + y``, ``z - y`` is about ``1 / (2|y|)`` and the other about ``2|y|`` (both computed
    without cancellation, :func:`wings`), so the columns stay independent and the normal
    matrix keeps its digits.

    In band mode with a mid pull the minimiser is exact (:func:`_band_exact`); without one,
    the band alone may not determine it, and :data:`N_BAND_ROUNDS` alternating projections
    onto the bands (each a majorise-minimise step of the band loss) start from the mid fit.

    ``lam_adc`` holds the per-coordinate Tikhonov weights (already normalised), on
    ``(a, d, c)``; ``scratch`` is :func:`inner_scratch`'s, made once per fit: the search
    evaluates this a few dozen times, and allocating at each call cost a tenth of the fit.
    It carries the quotes' sides from one evaluation to the next.
    """
    h[2] = h[3] = -slope * s
    for j in range(fk.shape[0]):
        zp, zm = wings((fk[j] - m) / s)
        sign = C[N_DOMAIN_ROWS + j, 0]  # +1 a floor, -1 a ceiling (fit_rows)
        C[N_DOMAIN_ROWS + j, 1], C[N_DOMAIN_ROWS + j, 2] = sign * zp, sign * zm
    n = k.shape[0]
    Y, W, nrm, act, side, exact = scratch
    yp, ym, w1, mv, op = Y[0], Y[1], Y[2], Y[3], Y[4]
    # the wing columns first, in a loop of their own that the compiler can vectorise (the
    # normal equations' sums below are sequential)
    inv_s = 1.0 / s
    for i in range(n):
        yp[i], ym[i] = wings((k[i] - m) * inv_s)
    g00 = g01 = g02 = g11 = g12 = g22 = 0.0
    r0 = r1 = r2 = 0.0  # the targets are the mids
    o = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # the quotes outside their band
    for i in range(n):
        pi, qi = yp[i], ym[i]
        wi = w1[i]
        g00 += wi
        g01 += wi * pi
        g02 += wi * qi
        g11 += wi * pi * pi
        g12 += wi * pi * qi
        g22 += wi * qi * qi
        wv = wi * v[i]
        r0 += wv
        r1 += wv * pi
        r2 += wv * qi
        if exact and side[i] != 0:
            o = _add_outside(o, wt[i], pi, qi, lo[i] if side[i] < 0 else hi[i])
    if exact:
        return _band_exact((g00, g01, g02, g11, g12, g22), (r0, r1, r2), o, yp, ym, wt, v, lo,
                           hi, mid_w, side, lam_adc, prev_adc, C, h, nrm, act, W, n)
    # the rounds share G and the rows: the inverse and the rows' lengths are computed once
    _set_normal(W, (g00, g01, g02, g11, g12, g22), lam_adc)
    tol = qp_setup(W, C, h, nrm, N_DOMAIN_ROWS)  # only the floor rows move with (m, s)
    u = W[9]
    rounds = N_BAND_ROUNDS if band else 1
    for it in range(rounds):
        if qp_run(W, _rhs(r0, r1, r2, lam_adc, prev_adc), C, h, nrm, tol, act, 100) != OK:
            return np.inf, 0.0, 0.0, 0.0
        if it == rounds - 1:
            break
        # band mode without a mid pull: project the fit onto each quote's band, and sum the
        # next round's right-hand side in the same pass
        r0, r1, r2 = _band_rhs(u[0], u[1], u[2], yp, ym, w1, lo, hi, mv, op, n)
    return _result(_loss(u[0], u[1], u[2], yp, ym, wt, v, lo, hi, mid_w, band, n), u[0], u[1],
                   u[2], lam_adc, prev_adc)


@njit(cache=True, inline="always")
def _result(loss, u0, u1, u2, lam_adc, prev_adc):
    """``(objective, a, d, c)`` of the wing-basis solution ``u`` whose loss is ``loss``."""
    a, d, c = u0, u1 - u2, u1 + u2
    obj = loss + lam_adc[0] * (a - prev_adc[0]) ** 2 + lam_adc[1] * (d - prev_adc[1]) ** 2 \
        + lam_adc[2] * (c - prev_adc[2]) ** 2
    return obj, a, d, c


@njit(cache=True, inline="always")
def _set_normal(W, g, lam_adc) -> None:
    """The normal matrix ``g`` (its six sums) plus the Tikhonov weights into rows 3-5 of
    ``W``, as :func:`~calibration.models.svi_qp.qp_setup` reads it."""
    W[3, 0] = g[0] + lam_adc[0]
    W[4, 1] = g[3] + (lam_adc[1] + lam_adc[2])
    W[5, 2] = g[5] + (lam_adc[1] + lam_adc[2])
    W[3, 1] = W[4, 0] = g[1]
    W[3, 2] = W[5, 0] = g[2]
    W[4, 2] = W[5, 1] = g[4] + (lam_adc[2] - lam_adc[1])


@njit(cache=True, inline="always")
def _rhs(r0, r1, r2, lam_adc, prev_adc):
    """The QP's right-hand side: the normal equations' ``(r0, r1, r2)`` plus the Tikhonov
    pull towards ``prev_adc``, in the wing basis (as :func:`_set_normal` adds its weights)."""
    return (r0 + lam_adc[0] * prev_adc[0],
            r1 + (lam_adc[1] * prev_adc[1] + lam_adc[2] * prev_adc[2]),
            r2 + (lam_adc[2] * prev_adc[2] - lam_adc[1] * prev_adc[1]))


@njit(cache=True, inline="always")
def _add_outside(o, wi, pi, qi, b):
    """The sums ``o`` of the quotes outside their band (``wt x x'``, six, then ``wt b x``,
    three; ``x = (1, p, q)``) with one more quote, of weight ``wi`` and band edge ``b``."""
    wb = wi * b
    return (o[0] + wi, o[1] + wi * pi, o[2] + wi * qi, o[3] + wi * pi * pi,
            o[4] + wi * pi * qi, o[5] + wi * qi * qi, o[6] + wb, o[7] + wb * pi, o[8] + wb * qi)


@njit(cache=True, inline="always")
def _classify(u0, u1, u2, yp, ym, wt, lo, hi, side, n):
    """The quotes' sides of their band at the fit ``u`` (-1 below, 0 inside, 1 above) into
    ``side``, whether any changed, and the outside sums of the new sides
    (:func:`_add_outside`, in quote order)."""
    o = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    changed = False
    for i in range(n):
        f = u0 + u1 * yp[i] + u2 * ym[i]
        # branch-free: as a conditional expression this loop compiled 20 times as slow
        si = np.int64(f > hi[i]) - np.int64(f < lo[i])
        if si != side[i]:
            changed = True
            side[i] = si
        if si != 0:
            o = _add_outside(o, wt[i], yp[i], ym[i], lo[i] if si < 0 else hi[i])
    return changed, o


@njit(cache=True, inline="always")
def _band_exact(g, r, o, yp, ym, wt, v, lo, hi, mid_w, side, lam_adc, prev_adc, C, h, nrm,
                act, W, n):
    """The exact minimiser of the band loss for fixed ``(m, sigma)``, by the quotes' sides.

    With every quote's side of its band fixed, the loss is a quadratic: inside, only the mid
    pull ``wt mid_w (f - v)^2``; outside, also ``wt (f - edge)^2``.  So ``G = g + o`` (``g``
    the pull's sums, ``o`` the outside quotes', :func:`_add_outside`) and the QP is solved
    exactly; the quotes are then classified at its solution, and when no quote changed side
    the solution is the minimiser of the (convex) band loss over the domain: the loss equals
    that quadratic around it.  This is a semismooth Newton method on the piecewise quadratic
    loss (Qi and Sun 1993, "A nonsmooth version of Newton's method", Math. Programming 58),
    started from the sides of the search's previous evaluation (all inside at first), which
    are usually right: about two solves an evaluation.  The final solution depends only on
    the final sides, not on the path.  Should the sides still change after
    :data:`MAX_BAND_STEPS` solves, the last solution is kept: the objective is its loss, never
    below the minimum."""
    tol = qp_rows(C, h, nrm, N_DOMAIN_ROWS)  # the rows are the same for every side
    for _ in range(MAX_BAND_STEPS):
        _set_normal(W, (g[0] + o[0], g[1] + o[1], g[2] + o[2], g[3] + o[3], g[4] + o[4],
                        g[5] + o[5]), lam_adc)
        qp_factor(W)
        rr = _rhs(r[0] + o[6], r[1] + o[7], r[2] + o[8], lam_adc, prev_adc)
        if qp_run(W, rr, C, h, nrm, tol, act, 100) != OK:
            return np.inf, 0.0, 0.0, 0.0
        changed, o = _classify(W[9, 0], W[9, 1], W[9, 2], yp, ym, wt, lo, hi, side, n)
        if not changed:
            break
    u0, u1, u2 = W[9, 0], W[9, 1], W[9, 2]
    return _result(_loss(u0, u1, u2, yp, ym, wt, v, lo, hi, mid_w, True, n), u0, u1, u2,
                   lam_adc, prev_adc)


# The two sums over the quotes that every evaluation makes in four fixed lanes (quote i adds
# into lane i % 4, the lanes then add as (0 + 1) + (2 + 3), the last n % 4 quotes after):
# four independent chains instead of one, which the CPU overlaps, in an order written here
# and so the same compiled or interpreted, on any CPU.  (Letting the compiler reassociate
# would tie the order, and so the last bits, to the vector width of the machine.)

@njit(cache=True, inline="always")
def _band_wv(i, u0, u1, u2, yp, ym, w1, lo, hi, mv, op):
    f = u0 + u1 * yp[i] + u2 * ym[i]
    return w1[i] * ((min(max(f, lo[i]), hi[i]) + mv[i]) * op[i])


@njit(cache=True, inline="always")
def _band_rhs(u0, u1, u2, yp, ym, w1, lo, hi, mv, op, n):
    """The next band round's right-hand side ``sum_i w1_i t_i (1, p_i, q_i)``, ``t_i`` the fit
    projected onto quote i's band and pulled towards its mid."""
    a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = c0 = c1 = c2 = c3 = 0.0
    n4 = n - n % 4
    for i in range(0, n4, 4):
        x0 = _band_wv(i, u0, u1, u2, yp, ym, w1, lo, hi, mv, op)
        x1 = _band_wv(i + 1, u0, u1, u2, yp, ym, w1, lo, hi, mv, op)
        x2 = _band_wv(i + 2, u0, u1, u2, yp, ym, w1, lo, hi, mv, op)
        x3 = _band_wv(i + 3, u0, u1, u2, yp, ym, w1, lo, hi, mv, op)
        a0 += x0
        a1 += x1
        a2 += x2
        a3 += x3
        b0 += x0 * yp[i]
        b1 += x1 * yp[i + 1]
        b2 += x2 * yp[i + 2]
        b3 += x3 * yp[i + 3]
        c0 += x0 * ym[i]
        c1 += x1 * ym[i + 1]
        c2 += x2 * ym[i + 2]
        c3 += x3 * ym[i + 3]
    r0, r1, r2 = (a0 + a1) + (a2 + a3), (b0 + b1) + (b2 + b3), (c0 + c1) + (c2 + c3)
    for i in range(n4, n):
        wv = _band_wv(i, u0, u1, u2, yp, ym, w1, lo, hi, mv, op)
        r0 += wv
        r1 += wv * yp[i]
        r2 += wv * ym[i]
    return r0, r1, r2


@njit(cache=True, inline="always")
def _quote_loss(i, u0, u1, u2, yp, ym, wt, v, lo, hi, mid_w, band):
    f = u0 + u1 * yp[i] + u2 * ym[i]
    if band:
        t = min(max(f, lo[i]), hi[i])
        return wt[i] * ((f - t) ** 2 + mid_w[i] * (f - v[i]) ** 2)
    return wt[i] * (f - v[i]) ** 2


@njit(cache=True, inline="always")
def _loss(u0, u1, u2, yp, ym, wt, v, lo, hi, mid_w, band, n):
    """The fit's loss over the quotes (before the Tikhonov term): to the band plus the pull
    to the mid in band mode, else to the mid."""
    s0 = s1 = s2 = s3 = 0.0
    n4 = n - n % 4
    for i in range(0, n4, 4):
        s0 += _quote_loss(i, u0, u1, u2, yp, ym, wt, v, lo, hi, mid_w, band)
        s1 += _quote_loss(i + 1, u0, u1, u2, yp, ym, wt, v, lo, hi, mid_w, band)
        s2 += _quote_loss(i + 2, u0, u1, u2, yp, ym, wt, v, lo, hi, mid_w, band)
        s3 += _quote_loss(i + 3, u0, u1, u2, yp, ym, wt, v, lo, hi, mid_w, band)
    obj = (s0 + s1) + (s2 + s3)
    for i in range(n4, n):
        obj += _quote_loss(i, u0, u1, u2, yp, ym, wt, v, lo, hi, mid_w, band)
    return obj


@njit(cache=True)
def inner_scratch(wt, v, band, mid_w, C):
    """:func:`inner_fit`'s work arrays for the quotes ``wt, v, mid_w`` and the QP rows ``C``:
    the wing columns (rows 0-1 of the first), then what every evaluation shares: the weights
    of the normal equations' first sums (``wt mid_w`` in band mode with a mid pull, ``wt (1 +
    mid_w)`` without one, else ``wt``), ``mid_w v`` and ``1 / (1 + mid_w)`` (rows 2-4);
    :func:`~calibration.models.svi_qp.qp_setup`'s 16 x 3 block (``G`` goes in rows 3-5); the
    rows' lengths (the domain's, which no evaluation changes, set here); the active set; the
    quotes' sides of their bands (all inside at first); and whether the band loss is
    minimised exactly (band mode with a mid pull)."""
    n = wt.shape[0]
    exact = band and n > 0 and mid_w.min() > 0.0
    Y = np.empty((5, n))
    for i in range(n):
        Y[2, i] = wt[i] * mid_w[i] if exact else (wt[i] * (1.0 + mid_w[i]) if band else wt[i])
        Y[3, i] = mid_w[i] * v[i]
        Y[4, i] = 1.0 / (1.0 + mid_w[i])
    nrm = np.empty(C.shape[0])
    row_lengths(C, nrm, 0, N_DOMAIN_ROWS)
    return Y, np.empty((16, 3)), nrm, np.empty(3, dtype=np.int64), np.zeros(n, np.int64), exact


@njit(cache=True)
def fit_rows(amax, slope, fk, fw, n_floor):
    """The QP rows ``C u >= h`` of one fit in the wing basis ``u = (a, p, q)`` of
    :func:`inner_fit`: the domain (:func:`~calibration.models.svi_qp.domain_rows` times
    ``T``; slope rows set per ``sigma`` by :func:`inner_fit`), a floor row
    ``w_j = a + p (z_j + y_j) + q (z_j - y_j) >= fw_j`` for each of the first ``n_floor``
    points ``fk_j`` and a ceiling row ``-w_j >= -fw_j`` for each of the others (their ``(y,
    z)`` set per ``(m, sigma)``; the row's sign is its first coefficient)."""
    nf = fk.shape[0]
    C = np.empty((N_DOMAIN_ROWS + nf, 3))
    h = np.empty(N_DOMAIN_ROWS + nf)
    C0, h0 = domain_rows(amax, slope)
    for j in range(N_DOMAIN_ROWS):  # (a, d, c) = T u
        C[j, 0] = C0[j, 0]
        C[j, 1] = C0[j, 1] + C0[j, 2]
        C[j, 2] = C0[j, 2] - C0[j, 1]
    h[:N_DOMAIN_ROWS] = h0
    for j in range(nf):
        sign = 1.0 if j < n_floor else -1.0
        C[N_DOMAIN_ROWS + j, 0] = sign
        h[N_DOMAIN_ROWS + j] = sign * fw[j]
    return C, h
