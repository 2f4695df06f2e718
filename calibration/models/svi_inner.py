"""The inner problem of an SVI slice fit: the best ``(a, d, c)`` for fixed ``(m, sigma)``.

:func:`inner_fit` sets up the 3-parameter QP of :mod:`calibration.models.svi_qp` for one slice
of :mod:`calibration.models.svi` (the normal equations of the weighted least squares, in the
wing basis; in band mode the alternating projections onto each quote's bid/ask band) and
solves it with that module's dual active-set method.  :func:`inner_scratch` and
:func:`fit_rows` make once per fit what every evaluation of the outer search shares.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from calibration.models.svi_qp import (
    N_DOMAIN_ROWS,
    OK,
    domain_rows,
    qp_run,
    qp_setup,
    row_lengths,
)

N_BAND_ROUNDS = 4  # projections onto the bid/ask band per inner fit (band mode)


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
    the rows ``C, h`` (:func:`fit_rows`: the domain, then one row per floor point ``fk``) leave
    no feasible point.  The rows that depend on ``(m, s)`` are updated in place.

    The QP is solved in the wing basis ``u = (a, p, q)`` with ``d = p - q``, ``c = p + q``, so
    ``w = a + p (z + y) + q (z - y)``: ``2p`` and ``2q`` are the right and left wing slopes
    times ``sigma``.  In ``(a, d, c)`` the columns ``y`` and ``z`` are nearly collinear once
    ``sigma`` is small against the distance of the quotes from ``m`` (``z ~ |y|``), which
    makes the normal matrix singular to working precision; in the wing basis one of
    ``z + y``, ``z - y`` is about ``1 / (2|y|)`` and the other about ``2|y|`` (both computed
    without cancellation, :func:`wings`), so the columns stay independent and the normal
    matrix keeps its digits.

    ``lam_adc`` holds the per-coordinate Tikhonov weights (already normalised), on
    ``(a, d, c)``; ``scratch`` is :func:`inner_scratch`'s, made once per fit: the search
    evaluates this a few dozen times, and allocating at each call cost a tenth of the fit.
    """
    h[2] = h[3] = -slope * s
    for j in range(fk.shape[0]):
        C[N_DOMAIN_ROWS + j, 1], C[N_DOMAIN_ROWS + j, 2] = wings((fk[j] - m) / s)
    n = k.shape[0]
    Y, W, nrm, act = scratch
    yp, ym, w1, mv, op = Y[0], Y[1], Y[2], Y[3], Y[4]
    # the wing columns first, in a loop of their own that the compiler can vectorise (the
    # normal equations' sums below are sequential)
    inv_s = 1.0 / s
    for i in range(n):
        yp[i], ym[i] = wings((k[i] - m) * inv_s)
    g00 = g01 = g02 = g11 = g12 = g22 = 0.0
    r0 = r1 = r2 = 0.0  # the first round's right-hand side: the targets are the mids
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
    # the rounds share G and the rows: the inverse and the rows' lengths are computed once
    W[3, 0] = g00 + lam_adc[0]
    W[4, 1] = g11 + (lam_adc[1] + lam_adc[2])
    W[5, 2] = g22 + (lam_adc[1] + lam_adc[2])
    W[3, 1] = W[4, 0] = g01
    W[3, 2] = W[5, 0] = g02
    W[4, 2] = W[5, 1] = g12 + (lam_adc[2] - lam_adc[1])
    tol = qp_setup(W, C, h, nrm, N_DOMAIN_ROWS)  # only the floor rows move with (m, s)
    u = W[9]
    rounds = N_BAND_ROUNDS if band else 1
    for it in range(rounds):
        r = (r0 + lam_adc[0] * prev_adc[0],
             r1 + (lam_adc[1] * prev_adc[1] + lam_adc[2] * prev_adc[2]),
             r2 + (lam_adc[2] * prev_adc[2] - lam_adc[1] * prev_adc[1]))
        if qp_run(W, r, C, h, nrm, tol, act, 100) != OK:
            return np.inf, 0.0, 0.0, 0.0
        if it == rounds - 1:
            break
        # band mode: project the fit onto each quote's band (pulled towards the mid), and sum
        # the next round's right-hand side in the same pass
        r0, r1, r2 = _band_rhs(u[0], u[1], u[2], yp, ym, w1, lo, hi, mv, op, n)
    a, d, c = u[0], u[1] - u[2], u[1] + u[2]
    obj = _loss(u[0], u[1], u[2], yp, ym, wt, v, lo, hi, mid_w, band, n)
    obj += lam_adc[0] * (a - prev_adc[0]) ** 2 + lam_adc[1] * (d - prev_adc[1]) ** 2 \
        + lam_adc[2] * (c - prev_adc[2]) ** 2
    return obj, a, d, c


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
    ``wt (1 + mid_w)`` (band mode, else ``wt``), ``mid_w v`` and ``1 / (1 + mid_w)`` (rows
    2-4); :func:`~calibration.models.svi_qp.qp_setup`'s 16 x 3 block (``G`` goes in rows
    3-5); the rows' lengths (the domain's, which no evaluation changes, set here); and the
    active set."""
    n = wt.shape[0]
    Y = np.empty((5, n))
    for i in range(n):
        Y[2, i] = wt[i] * (1.0 + mid_w[i]) if band else wt[i]
        Y[3, i] = mid_w[i] * v[i]
        Y[4, i] = 1.0 / (1.0 + mid_w[i])
    nrm = np.empty(C.shape[0])
    row_lengths(C, nrm, 0, N_DOMAIN_ROWS)
    return Y, np.empty((16, 3)), nrm, np.empty(3, dtype=np.int64)


@njit(cache=True)
def fit_rows(amax, slope, fk, fw):
    """The QP rows ``C u >= h`` of one fit in the wing basis ``u = (a, p, q)`` of
    :func:`inner_fit`: the domain (:func:`~calibration.models.svi_qp.domain_rows` times
    ``T``; slope rows set per ``sigma`` by :func:`inner_fit`) and a floor row
    ``a + p (z_j + y_j) + q (z_j - y_j) >= fw_j`` per floor point (set per ``(m, sigma)``)."""
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
        C[N_DOMAIN_ROWS + j, 0] = 1.0
        h[N_DOMAIN_ROWS + j] = fw[j]
    return C, h
