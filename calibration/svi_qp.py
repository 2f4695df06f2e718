"""The inner problem of quasi-explicit SVI calibration: a 3-parameter convex QP over a polytope.

For fixed ``(m, sigma)`` raw SVI is linear in ``theta = (a, d, c)`` (Zeliade Systems 2009,
"Quasi-explicit calibration of Gatheral's SVI model"; see :mod:`calibration.svi`), so the best
``theta`` minimises ``theta' G theta - 2 r' theta`` subject to ``C theta >= h``.  With 3 unknowns
and 7 constraint rows, the exact solution is found by enumerating faces (at most 3 active rows,
each a KKT solve of size at most 6): for a convex quadratic the first face whose minimiser is
feasible with non-negative multipliers is the global optimum (Nocedal and Wright, *Numerical
Optimization*, 2nd ed., 2006, thm. 16.4 and the active-set discussion of ch. 16).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _solve_small(A: np.ndarray, r: np.ndarray, n: int) -> tuple[np.ndarray, bool]:
    """Solve the leading n x n system (n <= 6) by Gaussian elimination with partial
    pivoting; ``ok`` is False when it is numerically singular."""
    M = np.empty((6, 7))
    scale = 0.0
    for i in range(n):
        for j in range(n):
            M[i, j] = A[i, j]
            scale = max(scale, abs(A[i, j]))
        M[i, 6] = r[i]
    x = np.zeros(6)
    eps = 1e-17 * max(scale, 1e-300)
    for col in range(n):
        piv = col
        for i in range(col + 1, n):
            if abs(M[i, col]) > abs(M[piv, col]):
                piv = i
        if abs(M[piv, col]) <= eps:
            return x, False
        if piv != col:
            row = M[col].copy()
            M[col] = M[piv]
            M[piv] = row
        d = M[col, col]
        for i in range(col + 1, n):
            f = M[i, col] / d
            if f != 0.0:
                for j in range(col, n):
                    M[i, j] -= f * M[col, j]
                M[i, 6] -= f * M[col, 6]
    for i in range(n - 1, -1, -1):
        s = M[i, 6]
        for j in range(i + 1, n):
            s -= M[i, j] * x[j]
        x[i] = s / M[i, i]
    return x, True


_C = np.array([[0.0, -1.0, 1.0], [0.0, 1.0, 1.0], [0.0, -1.0, -1.0], [0.0, 1.0, -1.0],
               [1.0, -1.0, 1.0], [1.0, 1.0, 1.0], [-1.0, 0.0, 0.0]])


@njit(cache=True)
def _face(G, r, C, h, sub, q, tr, tol):
    """Minimiser of the quadratic on the face where the rows ``sub[:q]`` are active.

    Returns ``(theta, f, status)``: status 2 when it is feasible with non-negative
    multipliers (the optimum), 1 when only feasible, 0 otherwise.
    """
    n = 3 + q
    K = np.zeros((6, 6))
    rhs = np.zeros(6)
    for i in range(3):
        rhs[i] = r[i]
        for j in range(3):
            K[i, j] = G[i, j]
        K[i, i] += 1e-10 * tr + 1e-300
    for j in range(q):
        for i in range(3):
            K[i, 3 + j] = -C[sub[j], i]
            K[3 + j, i] = C[sub[j], i]
        rhs[3 + j] = h[sub[j]]
    x, ok = _solve_small(K, rhs, n)
    if not ok:
        return x, np.inf, 0
    for ci in range(C.shape[0]):
        if C[ci, 0] * x[0] + C[ci, 1] * x[1] + C[ci, 2] * x[2] < h[ci] - tol:
            return x, np.inf, 0
    f = 0.0
    for i in range(3):
        f -= 2.0 * r[i] * x[i]
        for j in range(3):
            f += x[i] * G[i, j] * x[j]
    for j in range(q):
        if x[3 + j] < -1e-10 * (tr + 1e-300):
            return x, f, 1
    return x, f, 2


@njit(cache=True)
def qp_polytope(G: np.ndarray, r: np.ndarray, amax: float, bd: float, hint: np.ndarray
             ) -> np.ndarray:
    """argmin theta' G theta - 2 r' theta over theta = (a, d, c) with ``C theta >= h``.

    The 7 constraint rows: ``c - d >= 0``, ``c + d >= 0`` (``|rho| <= 1``); ``c + d <= bd``,
    ``c - d <= bd`` (wing slopes); ``a + c - d >= 0``, ``a + c + d >= 0`` (a linear sufficient
    condition for ``min w = a + sqrt(c^2 - d^2) >= 0``, since ``sqrt(c^2 - d^2) >= c - |d|``);
    ``a <= amax``.  Faces (subsets of at most 3 active rows) are visited by size, after the
    face that was optimal in the previous call (``hint = [q, rows...]``, updated); each is a
    KKT solve of size at most 6.  The first face whose minimiser is feasible with
    non-negative multipliers is the optimum (KKT conditions are sufficient for a convex
    quadratic); should round-off defeat the multiplier test, the best feasible face minimum
    found is returned.
    """
    h = np.array([0.0, 0.0, -bd, -bd, 0.0, 0.0, -amax])
    nc = 7
    tol = 1e-12 + 1e-9 * (bd + abs(amax))
    # scaling the objective leaves the argmin alone and keeps the KKT pivots O(1)
    tr = G[0, 0] + G[1, 1] + G[2, 2]
    G = G / tr
    r = r / tr
    tr = 1.0
    best = np.zeros(3)
    best_f = np.inf
    sub = np.zeros(3, dtype=np.int64)
    x, f, st = _face(G, r, _C, h, sub, 0, tr, tol)
    if st == 2:
        hint[0] = 0
        return x[:3].copy()
    if hint[0] > 0:
        for j in range(hint[0]):
            sub[j] = hint[1 + j]
        x, f, st = _face(G, r, _C, h, sub, hint[0], tr, tol)
        if st == 2:
            return x[:3].copy()
    for q in range(1, 4):
        for j in range(q):
            sub[j] = j
        while True:
            x, f, st = _face(G, r, _C, h, sub, q, tr, tol)
            if st == 2:
                hint[0] = q
                for j in range(q):
                    hint[1 + j] = sub[j]
                return x[:3].copy()
            if st == 1 and f < best_f:
                best_f = f
                best[:] = x[:3]
            j = q - 1
            while j >= 0 and sub[j] == nc - q + j:
                j -= 1
            if j < 0:
                break
            sub[j] += 1
            for jj in range(j + 1, q):
                sub[jj] = sub[jj - 1] + 1
    return best
