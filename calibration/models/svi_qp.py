"""The inner problem of quasi-explicit SVI calibration: a 3-parameter convex QP over a polytope.

For fixed ``(m, sigma)`` raw SVI is linear in ``theta = (a, d, c)`` (Zeliade Systems 2009,
"Quasi-explicit calibration of Gatheral's SVI model"; see :mod:`calibration.models.svi`), so the best
``theta`` minimises ``theta' G theta - 2 r' theta`` subject to linear rows ``C theta >= h``:
the seven rows of Zeliade's domain (:func:`domain_rows`) and, for a calendar-constrained refit,
one row per floor point ``w(k_j) = a + d y_j + c sqrt(y_j^2 + 1) >= w_floor_j``.
:func:`calibration.models.svi_inner.inner_fit` builds that QP for one slice (the normal
equations, and in band mode those of the quotes' sides of their bands) and solves it here.

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
    that share ``G``, ``C`` and ``h`` (the band rounds of
    :func:`calibration.models.svi_inner.inner_fit`).  ``G`` comes in rows 3-5 of the scratch
    ``W`` (16 x 3); out go the scaled inverse ``(G / tr)^-1`` into rows 0-2, the trace ``tr``
    into ``W[15, 0]`` and the lengths of rows ``j0`` on into ``nrm`` (those before ``j0`` are
    the caller's, unchanged since it set them).  Returns the violation tolerance."""
    qp_factor(W)
    return qp_rows(C, h, nrm, j0)


@njit(cache=True, inline="always")
def qp_rows(C: np.ndarray, h: np.ndarray, nrm: np.ndarray, j0: int) -> float:
    """:func:`qp_setup`'s part for the rows alone (for problems that share them but not
    ``G``): the lengths of rows ``j0`` on, and the violation tolerance."""
    row_lengths(C, nrm, j0, C.shape[0])
    hmax = 0.0
    for j in range(C.shape[0]):
        hmax = max(hmax, abs(h[j]) / nrm[j])
    return 1e-13 + 1e-11 * hmax


@njit(cache=True, inline="always")
def qp_factor(W: np.ndarray) -> None:
    """:func:`qp_setup`'s part for ``G`` alone (rows 3-5 of ``W``): the scaled inverse into
    rows 0-2 and the trace into ``W[15, 0]``."""
    # scaling the objective leaves the argmin alone and keeps the steps O(1)
    tr = W[3, 0] + W[4, 1] + W[5, 2]
    _inv3_rows(W, tr)
    W[15, 0] = tr


@njit(cache=True, inline="always")
def row_lengths(C: np.ndarray, nrm: np.ndarray, j0: int, j1: int) -> None:
    """``nrm[j]`` becomes the Euclidean length of row ``C[j]``, for ``j0 <= j < j1``."""
    for j in range(j0, j1):
        nrm[j] = np.sqrt(C[j, 0] ** 2 + C[j, 1] ** 2 + C[j, 2] ** 2)


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


# without reference counting, as the SVI search that calls it (calibration.models.svi): its
# views of the scratch ``W`` would otherwise each cost two atomic counts; it allocates nothing
@njit(cache=True, _nrt=False)
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
