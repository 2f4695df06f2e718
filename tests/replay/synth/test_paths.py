"""The synthetic underlying's processes (replay/synth/paths.py): the Heston QE step against
the CIR moments, the variance's mean reversion, and the index's growth at the futures basis."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from replay.synth.paths import YEAR_S, ModelParams, PathState, _heston_qe, simulate_block


def test_heston_qe_step_matches_the_cir_moments():
    """QE matches the exact conditional mean and variance of the CIR variance (Andersen 2008,
    eqs. 17-18) by construction; 40 000 one-step draws give the mean to ~0.5 % (4 SE)."""
    kappa, theta, xi, rho, dt = 2.0, 0.09, 0.8, -0.5, 0.25
    rng = np.random.default_rng(0)
    for v0 in (0.04, 0.25, 0.002):  # quadratic branch, both, exponential branch
        n = 40_000
        z, u = rng.standard_normal(n), rng.random(n)
        nxt = np.array([_heston_qe(v0, kappa, theta, xi, rho, dt, z[i:i + 1], z[i:i + 1],
                                   u[i:i + 1])[0][1] for i in range(n)])
        e = math.exp(-kappa * dt)
        mean = theta + (v0 - theta) * e
        var = v0 * xi**2 * e * (1 - e) / kappa + theta * xi**2 * (1 - e) ** 2 / (2 * kappa)
        assert (nxt >= 0).all()
        assert_allclose(nxt.mean(), mean, atol=4 * math.sqrt(var / n))
        assert_allclose(nxt.var(), var, rtol=0.08)


def test_heston_variance_reverts_to_theta():
    """Ergodic mean of v over 200 years of 0.01-year steps: correlation time 1/kappa = 1/3 year,
    so ~600 independent draws of stationary sd sqrt(theta xi^2 / (2 kappa)) = 0.2; 4 SE ~ 0.035."""
    p = ModelParams(v0=0.6, theta=0.25, kappa=3.0, xi=1.0)
    state = PathState(math.log(p.s0), p.v0, p.funding_mean)
    step_ns = int(0.01 * YEAR_S * 1e9)
    block, _ = simulate_block("heston", p, state, 0, 20_000, step_ns, np.random.default_rng(1))
    assert_allclose(block.var[2000:].mean(), p.theta, atol=0.035)
    assert (block.var >= 0).all() and (block.spot > 0).all()


@pytest.mark.parametrize("model", ["gbm", "heston", "bates"])
def test_the_index_grows_at_the_futures_basis(model):
    """``E[S_T] = S_0 exp(b T)``, the forward the chain prices options and futures off, so a
    short option earns no built-in carry: 3,000 independent 91-day paths of daily steps.  With
    a 40 % basis the growth (10.5 %) is about 20 standard errors from a driftless index; the
    test allows 4 (QE's small discretisation bias in the mean is well inside that)."""
    p = ModelParams(basis=0.40)
    step_ns, n_steps, n = 86_400 * 10**9, 91, 3_000
    end = np.empty(n)
    for i in range(n):
        block, _ = simulate_block(model, p, PathState(math.log(p.s0), p.v0, p.funding_mean),
                                  0, n_steps, step_ns, np.random.default_rng([7, i]))
        end[i] = block.spot[-1] / p.s0
    growth = math.exp(p.basis * n_steps / 365.0)
    assert_allclose(end.mean(), growth, atol=4 * end.std() / math.sqrt(n))

