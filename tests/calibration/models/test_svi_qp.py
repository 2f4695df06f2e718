"""The inner SVI QP (dual active set) against a brute-force reference: every face of the
polytope (every subset of at most three rows, as equalities) solved by its KKT system, the
feasible KKT point with non-negative multipliers kept.  Written independently of the solver."""

from itertools import combinations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from calibration.models.svi_qp import INFEASIBLE, OK, domain_rows, qp_solve


def brute_force(G, r, C, h):
    """``argmin x'Gx - 2r'x`` s.t. ``Cx >= h`` by enumerating active sets; ``None`` if
    infeasible."""
    best, best_f = None, np.inf
    for q in range(0, 4):
        for rows in combinations(range(len(h)), q):
            A = C[list(rows)]
            K = np.zeros((3 + q, 3 + q))
            K[:3, :3] = 2 * G
            K[:3, 3:] = -A.T
            K[3:, :3] = A
            rhs = np.concatenate([2 * r, h[list(rows)]])
            try:
                sol = np.linalg.solve(K, rhs)
            except np.linalg.LinAlgError:
                continue
            x, lam = sol[:3], sol[3:]
            scale = np.abs(C).sum(axis=1) + np.abs(h)
            if np.all(C @ x >= h - 1e-9 * scale) and np.all(lam >= -1e-9):
                f = x @ G @ x - 2 * r @ x
                if f < best_f:
                    best, best_f = x, f
    return best


def random_problem(rng, n_floor):
    X = rng.normal(size=(12, 3))
    G = X.T @ X + 1e-3 * np.eye(3)
    r = rng.normal(size=3) * 2
    C, h = domain_rows(0.7, 1.3)
    if n_floor:
        m, s = rng.normal(0, 0.1), np.exp(rng.normal(-1.5, 0.5))
        y = (np.linspace(-0.5, 0.5, n_floor) - m) / s
        F = np.column_stack([np.ones(n_floor), y, np.sqrt(y * y + 1)])
        C = np.vstack([C, F])
        h = np.concatenate([h, rng.uniform(0.0, 0.6, n_floor)])
    return G, r, C, h


@pytest.mark.parametrize("n_floor", [0, 3, 12])
@pytest.mark.parametrize("seed", range(12))
def test_dual_active_set_matches_brute_force(seed, n_floor):
    rng = np.random.default_rng(seed)
    G, r, C, h = random_problem(rng, n_floor)
    x, status = qp_solve(G, r, C, h)
    ref = brute_force(G, r, C, h)
    if ref is None:
        assert status == INFEASIBLE
        return
    assert status == OK
    f = lambda z: z @ G @ z - 2 * r @ z
    assert np.all(C @ x - h >= -1e-9 * (np.abs(C).sum(axis=1) + np.abs(h)))
    # objective to 1e-10 relative (1e-12 absolute near 0); the argmin to 1e-7 (G may be
    # poorly conditioned)
    assert f(x) <= f(ref) + 1e-10 * (abs(f(ref)) + 1e-2)
    assert_allclose(x, ref, atol=1e-7)


def test_infeasible_rows_are_reported():
    G = np.eye(3)
    C = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
    h = np.array([1.0, 0.0])  # a >= 1 and a <= 0
    _, status = qp_solve(G, np.zeros(3), C, h)
    assert status == INFEASIBLE


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.integers(0, 40))
def test_optimum_is_a_kkt_point(seed, n_floor):
    """Property: whenever the solver says OK, the point is feasible and no feasible direction
    improves it (KKT: the gradient is a non-negative combination of the active rows)."""
    rng = np.random.default_rng(seed)
    G, r, C, h = random_problem(rng, n_floor)
    x, status = qp_solve(G, r, C, h)
    if status != OK:
        assert status == INFEASIBLE
        assert brute_force(G, r, C, h) is None if n_floor <= 12 else True
        return
    scale = np.abs(C).sum(axis=1) + np.abs(h)
    slack = C @ x - h
    assert np.all(slack >= -1e-9 * scale)
    active = np.flatnonzero(slack <= 1e-7 * scale)
    grad = 2 * (G @ x - r)
    if active.size == 0:
        assert_allclose(grad, 0, atol=1e-7 * (1 + np.abs(r).max()))
        return
    # grad = A' lam with lam >= 0 (non-negative least squares residual ~ 0)
    from scipy.optimize import nnls

    lam, resid = nnls(C[active].T, grad)
    assert resid <= 1e-6 * (1 + np.linalg.norm(grad))
