"""The inner problem of quasi-explicit SVI calibration: a 3-parameter convex QP over a polytope.

For fixed ``(m, sigma)`` raw SVI is linear in ``theta = (a, d, c)`` (Zeliade Systems 2009,
"Quasi-explicit calibration of Gatheral's SVI model"; see :mod:`calibration.models.svi`), so the best
``theta`` minimises ``theta' G theta - 2 r' theta`` subject to linear rows ``C theta >= h``:
the seven rows of Zeliade's domain (:func:`domain_rows`) and, for a calendar-constrained refit,
one row per floor point ``w(k_j) = a + d y_j + c sqrt(y_j^2 + 1) >= w_floor_j``.
:func:`inner_fit` builds that QP for one slice (the normal equations, the band projections of
the loss) and solves it with :func:`qp_solve`.

The QP is solved exactly, in finitely many steps, by the dual active-set method of Goldfarb and
Idnani (1983, "A numerically stable dual method for solving strictly convex quadratic
programs", Math. Programming 27): start at the unconstrained minimiser, add the most violated
row, and take the largest step along the direction that keeps the active rows satisfied and
their multipliers non-negative, dropping a row whose multiplier would turn negative.  Each
iteration costs a few 3 x 3 solves, for any number of rows.  The answer is a KKT point of a
strictly convex problem, so it is the global optimum (Nocedal and Wright, *Numerical
Optimization*, 2nd ed., 2006, ch. 16); infeasibility is detected, never guessed.  Whatever the
iteration path, the returned point is checked against every row before it is reported
feasible, so no published property rests on how the iterations went.
"""

from __future__ import annotations

import numpy as np
from numba import njit

OK = 0
INFEASIBLE = 1
NOT_CONVERGED = 2
N_BAND_ROUNDS = 4  # projections onto the bid/ask band per inner fit (band mode)
N_DOMAIN_ROWS = 7  # the rows of domain_rows; a fit's floor rows follow them


@njit(cache=True)
def domain_rows(amax: float, bd: float) -> tuple[np.ndarray, np.ndarray]:
    """Zeliade's domain for ``theta = (a, d, c)`` as ``C theta >= h`` (7 rows).

    ``c - d >= 0`` and ``c + d >= 0`` (``|rho| <= 1``); ``c + d <= bd`` and ``c - d <= bd``
    (wing slopes, ``bd = slope_max * sigma``); ``a + c - d >= 0`` and ``a + c + d >= 0`` (a
    linear sufficient condition for ``min w = a + sqrt(c^2 - d^2) >= 0``, since
    ``sqrt(c^2 - d^2) >= c - |d|``); ``a <= amax``.
    """
    C = np.array([[0.0, -1.0, 1.0], [0.0, 1.0, 1.0], [0.0, -1.0, -1.0], [0.0, 1.0, -1.0],
                  [1.0, -1.0, 1.0], [1.0, 1.0, 1.0], [-1.0, 0.0, 0.0]])
    h = np.array([0.0, 0.0, -bd, -bd, 0.0, 0.0, -amax])
    return C, h


@njit(cache=True)
def _inv3_rows(W: np.ndarray, scale: float) -> None:
    """``W[0:3] = (W[3:6] / scale)^-1``, a 3 x 3 inverse by cofactors (the matrix in rows 3-5
    is symmetric positive definite here)."""
    W[0, 0] = W[4, 1] * W[5, 2] - W[4, 2] * W[5, 1]
    W[0, 1] = W[3, 2] * W[5, 1] - W[3, 1] * W[5, 2]
    W[0, 2] = W[3, 1] * W[4, 2] - W[3, 2] * W[4, 1]
    W[1, 0] = W[4, 2] * W[5, 0] - W[4, 0] * W[5, 2]
    W[1, 1] = W[3, 0] * W[5, 2] - W[3, 2] * W[5, 0]
    W[1, 2] = W[3, 2] * W[4, 0] - W[3, 0] * W[4, 2]
    W[2, 0] = W[4, 0] * W[5, 1] - W[4, 1] * W[5, 0]
    W[2, 1] = W[3, 1] * W[5, 0] - W[3, 0] * W[5, 1]
    W[2, 2] = W[3, 0] * W[4, 1] - W[3, 1] * W[4, 0]
    f = scale / (W[3, 0] * W[0, 0] + W[3, 1] * W[1, 0] + W[3, 2] * W[2, 0])
    for i in range(3):
        for j in range(3):
            W[i, j] *= f


@njit(cache=True)
def _solve_sym(M: np.ndarray, b: np.ndarray, q: int, x: np.ndarray) -> None:
    """``x[:q]`` solves the leading ``q x q`` (q <= 3) symmetric positive definite system
    ``M x = b`` (Cholesky; ``M`` is overwritten by its factor)."""
    for i in range(q):
        for j in range(i + 1):
            s = M[i, j]
            for k in range(j):
                s -= M[i, k] * M[j, k]
            M[i, j] = np.sqrt(max(s, 1e-300)) if i == j else s / M[j, j]
    for i in range(q):
        s = b[i]
        for k in range(i):
            s -= M[i, k] * x[k]
        x[i] = s / M[i, i]
    for i in range(q - 1, -1, -1):
        s = x[i]
        for k in range(i + 1, q):
            s -= M[k, i] * x[k]
        x[i] = s / M[i, i]


@njit(cache=True)
def _is_active(act: np.ndarray, q: int, j: int) -> bool:
    for a in range(q):
        if act[a] == j:
            return True
    return False


@njit(cache=True)
def _dot(C: np.ndarray, j: int, x: np.ndarray) -> float:
    return C[j, 0] * x[0] + C[j, 1] * x[1] + C[j, 2] * x[2]


@njit(cache=True)
def qp_solve(G: np.ndarray, r: np.ndarray, C: np.ndarray, h: np.ndarray,
             max_iter: int = 100) -> tuple[np.ndarray, int]:
    """``argmin theta' G theta - 2 r' theta`` subject to ``C theta >= h``; ``G`` is 3 x 3
    symmetric positive definite, ``C`` has any number of rows.

    Returns ``(theta, status)``: ``OK`` (0) for the exact optimum, ``INFEASIBLE`` (1) when no
    point satisfies every row, ``NOT_CONVERGED`` (2) should the iteration cap be met (each
    iteration adds or drops one row, so a cap of 100 is never met on these problems).
    Goldfarb and Idnani's dual method (see the module docstring) with the projections written
    out for three unknowns: with ``N`` the active normals, ``z = H n_p`` is the primal step
    direction (``H = G^-1 - G^-1 N (N' G^-1 N)^-1 N' G^-1``) and ``v = (N' G^-1 N)^-1 N' G^-1
    n_p`` the change of the active multipliers.  Violations are measured per unit row length,
    so one tolerance fits every row.
    """
    W = np.empty((16, 3))
    W[3:6] = G
    nrm = np.empty(C.shape[0])
    act = np.empty(3, dtype=np.int64)
    tol = qp_setup(W, C, h, nrm, 0)
    status = qp_run(W, r, C, h, nrm, tol, act, max_iter)
    return W[9].copy(), status


@njit(cache=True)
def qp_setup(W: np.ndarray, C: np.ndarray, h: np.ndarray, nrm: np.ndarray, j0: int) -> float:
    """The parts of :func:`qp_solve` that do not depend on ``r``, computed once for problems
    that share ``G``, ``C`` and ``h`` (the band rounds of :func:`inner_fit`).  ``G`` comes in
    rows 3-5 of the scratch ``W`` (16 x 3); out go the scaled inverse ``(G / tr)^-1`` into
    rows 0-2, the trace ``tr`` into ``W[15, 0]`` and the lengths of rows ``j0`` on into
    ``nrm`` (those before ``j0`` are the caller's, unchanged since it set them).  Returns the
    violation tolerance."""
    for j in range(j0, C.shape[0]):
        nrm[j] = np.sqrt(C[j, 0] ** 2 + C[j, 1] ** 2 + C[j, 2] ** 2)
    hmax = 0.0
    for j in range(C.shape[0]):
        hmax = max(hmax, abs(h[j]) / nrm[j])
    # scaling the objective leaves the argmin alone and keeps the steps O(1)
    tr = W[3, 0] + W[4, 1] + W[5, 2]
    _inv3_rows(W, tr)
    W[15, 0] = tr
    return 1e-13 + 1e-11 * hmax


@njit(cache=True, inline="always")
def _most_violated(W: np.ndarray, C: np.ndarray, h: np.ndarray, nrm: np.ndarray, tol: float,
                   act: np.ndarray, q: int) -> int:
    """The inactive row that ``x = W[9]`` violates most (per unit row length), or -1."""
    p = -1
    worst = -tol
    for j in range(C.shape[0]):
        s = (C[j, 0] * W[9, 0] + C[j, 1] * W[9, 1] + C[j, 2] * W[9, 2] - h[j]) / nrm[j]
        if s < worst and not _is_active(act, q, j):
            worst = s
            p = j
    return p


@njit(cache=True)
def qp_run(W: np.ndarray, r, C: np.ndarray, h: np.ndarray, nrm: np.ndarray,
           tol: float, act: np.ndarray, max_iter: int) -> int:
    """The iterations of :func:`qp_solve` after :func:`qp_setup`, for the right-hand side ``r``
    (three values: an array or a tuple); the solution is left in
    ``W[9]`` and the status returned.  ``W``'s other rows after the third, and ``act``, are
    scratch: GiN (the columns ``G^-1 n_a`` as rows), M, then vectors."""
    # the unconstrained minimiser, and the common case that it meets every row, in scalars:
    # the views below cost more than this whole test
    tr = W[15, 0]
    for i in range(3):
        W[9, i] = (W[i, 0] * r[0] + W[i, 1] * r[1] + W[i, 2] * r[2]) / tr
    q = 0
    p = _most_violated(W, C, h, nrm, tol, act, q)
    if p < 0:
        return OK
    Gi, GiN, M = W[0:3], W[3:6], W[6:9]
    x, g, z, u, b, v = W[9], W[10], W[11], W[12], W[13], W[14]
    for it in range(max_iter):
        if it > 0:
            p = _most_violated(W, C, h, nrm, tol, act, q)
            if p < 0:
                return OK
        for i in range(3):
            g[i] = _dot(Gi, i, C[p])
        gg = _dot(C, p, g)
        up = 0.0
        while True:
            for i in range(3):
                z[i] = g[i]
            for a in range(q):
                for i in range(3):
                    GiN[a, i] = _dot(Gi, i, C[act[a]])
                b[a] = _dot(GiN, a, C[p])
                for c in range(q):
                    M[a, c] = _dot(GiN, c, C[act[a]])
            if q > 0:
                _solve_sym(M, b, q, v)
                for a in range(q):
                    for i in range(3):
                        z[i] -= GiN[a, i] * v[a]
            # partial step: the first active multiplier to reach zero
            t1 = np.inf
            kdrop = -1
            for a in range(q):
                if v[a] > 1e-12 and u[a] / v[a] < t1:
                    t1 = u[a] / v[a]
                    kdrop = a
            # full step: row p becomes active (z = 0 when C[p] is spanned by the active rows)
            zz = _dot(C, p, z)
            t2 = np.inf
            if q < 3 and zz > 1e-12 * gg:
                t2 = -(_dot(C, p, x) - h[p]) / zz
            t = min(t1, t2)
            if t == np.inf:
                return INFEASIBLE
            if t2 < np.inf:
                for i in range(3):
                    x[i] += t * z[i]
            for a in range(q):
                u[a] -= t * v[a]
            up += t
            if t2 <= t1:
                act[q] = p
                u[q] = up
                q += 1
                break
            for a in range(kdrop, q - 1):
                act[a] = act[a + 1]
                u[a] = u[a + 1]
            q -= 1
    return NOT_CONVERGED


# ------------------------------------------------------- the inner problem of an SVI slice fit

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
    # sums below are sequential)
    for i in range(n):
        yp[i], ym[i] = wings((k[i] - m) / s)
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
        u0, u1, u2 = u[0], u[1], u[2]
        r0 = r1 = r2 = 0.0
        for i in range(n):
            f = u0 + u1 * yp[i] + u2 * ym[i]
            wv = w1[i] * ((min(max(f, lo[i]), hi[i]) + mv[i]) / op[i])
            r0 += wv
            r1 += wv * yp[i]
            r2 += wv * ym[i]
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
def inner_scratch(wt, v, band, mid_w, C):
    """:func:`inner_fit`'s work arrays for the quotes ``wt, v, mid_w`` and the QP rows ``C``:
    the wing columns (rows 0-1 of the first), then what every evaluation shares, each as the
    evaluation computed it before (so to the bit): the weights ``wt (1 + mid_w)`` (band mode,
    else ``wt``), ``mid_w v`` and ``1 + mid_w`` (rows 2-4); :func:`qp_setup`'s 16 x 3 block
    (``G`` goes in rows 3-5); the rows' lengths (the domain's, which no evaluation changes,
    set here); and the active set."""
    n = wt.shape[0]
    Y = np.empty((5, n))
    for i in range(n):
        Y[2, i] = wt[i] * (1.0 + mid_w[i]) if band else wt[i]
        Y[3, i] = mid_w[i] * v[i]
        Y[4, i] = 1.0 + mid_w[i]
    nrm = np.empty(C.shape[0])
    for j in range(N_DOMAIN_ROWS):
        nrm[j] = np.sqrt(C[j, 0] ** 2 + C[j, 1] ** 2 + C[j, 2] ** 2)
    return Y, np.empty((16, 3)), nrm, np.empty(3, dtype=np.int64)


@njit(cache=True)
def fit_rows(amax, slope, fk, fw):
    """The QP rows ``C u >= h`` of one fit in the wing basis ``u = (a, p, q)`` of
    :func:`inner_fit`: the domain (:func:`domain_rows` times ``T``; slope rows
    set per ``sigma`` by :func:`inner_fit`) and a floor row ``a + p (z_j + y_j) + q (z_j - y_j)
    >= fw_j`` per floor point (set per ``(m, sigma)``)."""
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
