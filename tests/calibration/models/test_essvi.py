"""eSSVI: formula, derivatives, admissible set (butterfly and calendar), calibration."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from calibration.arbitrage import durrleman_g
from calibration.loss import FitData, LossConfig
from calibration.models.essvi import (
    ESSVIParams,
    essvi_derivatives,
    essvi_total_variance,
    essvi_wing_slopes,
    feasible_rho,
    fit_essvi_slice,
    fit_essvi_surface,
    is_admissible,
    psi_bounds,
)

K = np.linspace(-0.8, 0.8, 31)
UNIFORM_MID = LossConfig(weighting="uniform", band=False)


def data(p: ESSVIParams, t: float, k: np.ndarray = K, noise: float = 0.0, seed: int = 0,
         half: float = 0.005) -> FitData:
    iv = np.sqrt(essvi_total_variance(k, p) / t)
    iv = iv + np.random.default_rng(seed).normal(0, noise, k.size)
    n = k.size
    return FitData(t, k, iv, iv - half, iv + half, np.full(n, 1.0 / n), np.arange(n))


def test_formula_is_ssvi_with_phi():
    p = ESSVIParams(0.04, -0.4, 0.2)
    phi = p.psi / p.theta
    ssvi = p.theta / 2 * (1 + p.rho * phi * K + np.sqrt((phi * K + p.rho) ** 2 + 1 - p.rho ** 2))
    assert_allclose(essvi_total_variance(K, p), ssvi, rtol=1e-14)
    assert_allclose(essvi_total_variance(np.array([0.0]), p), [p.theta], rtol=1e-14)


def test_derivatives_and_wings():
    p = ESSVIParams(0.05, 0.3, 0.4)
    w, w1, w2 = essvi_derivatives(K, p)
    h = 1e-5
    assert_allclose(w1, (essvi_total_variance(K + h, p) - essvi_total_variance(K - h, p)) / (2 * h),
                    rtol=1e-7, atol=1e-10)
    assert_allclose(w2, (essvi_total_variance(K + h, p) - 2 * w + essvi_total_variance(K - h, p))
                    / h ** 2, rtol=1e-4, atol=1e-6)
    left, right = essvi_wing_slopes(p)
    far = np.array([-1e6, 1e6])
    assert_allclose(essvi_total_variance(far, p) / np.abs(far), [left, right], rtol=1e-5)


def test_random_admissible_slices_are_free_of_butterfly_and_calendar_arbitrage():
    """The imposed conditions, sampled: no density < 0, no crossing on a wide grid."""
    rng = np.random.default_rng(42)
    k = np.linspace(-6, 6, 2401)
    n_pairs = 0
    for _ in range(3000):
        p1 = ESSVIParams(rng.uniform(0.001, 0.5), rng.uniform(-0.95, 0.95), 1.0)
        lo, hi = psi_bounds(p1.theta, p1.rho, None)
        p1 = ESSVIParams(p1.theta, p1.rho, lo + (hi - lo) * rng.uniform(0.01, 1.0))
        theta2 = p1.theta * (1 + rng.exponential(0.3))
        rho2 = rng.uniform(-0.95, 0.95)
        lo, hi = psi_bounds(theta2, rho2, p1)
        if lo > hi:
            continue
        p2 = ESSVIParams(theta2, rho2, lo + (hi - lo) * rng.uniform())
        assert is_admissible(p1, None) and is_admissible(p2, p1)
        n_pairs += 1
        for p in (p1, p2):
            assert durrleman_g(k, *essvi_derivatives(k, p)).min() >= -1e-9
        assert np.max(essvi_total_variance(k, p1) - essvi_total_variance(k, p2)) <= 1e-12
    assert n_pairs > 300


def test_recovers_parameters_noise_free():
    true = ESSVIParams(0.03, -0.35, 0.25)
    fit = fit_essvi_slice(data(true, 0.2), UNIFORM_MID)
    assert fit.feasible
    assert_allclose(fit.params.to_array(), true.to_array(), rtol=1e-5)
    assert fit.loss < 1e-10


def test_noisy_fit_and_warm_start_agree_with_cold():
    true = ESSVIParams(0.03, -0.35, 0.25)
    d = data(true, 0.2, noise=0.002, seed=3)
    cold = fit_essvi_slice(d, UNIFORM_MID)
    warm = fit_essvi_slice(d, UNIFORM_MID, warm=ESSVIParams(0.032, -0.3, 0.22))
    assert_allclose(warm.params.to_array(), cold.params.to_array(), rtol=1e-4)
    assert_allclose(cold.params.to_array(), true.to_array(), rtol=0.1)


def test_constraints_hold_after_calibration_even_when_data_cross():
    """The second expiry's quotes sit below the first in the wings (calendar arbitrage in the
    data): the fit must stay admissible and non-crossing."""
    p1 = ESSVIParams(0.02, -0.2, 0.3)
    p2_data = ESSVIParams(0.025, -0.6, 0.15)  # flatter call wing, below slice 1 far out
    fits = fit_essvi_surface([data(p1, 0.1), data(p2_data, 0.15)], UNIFORM_MID)
    assert all(f.feasible for f in fits)
    a, b = fits[0].params, fits[1].params
    assert is_admissible(a, None) and is_admissible(b, a)
    k = np.linspace(-5, 5, 2001)
    assert np.max(essvi_total_variance(k, a) - essvi_total_variance(k, b)) <= 1e-12
    assert b.theta >= a.theta


@settings(max_examples=40, deadline=None)
@given(th1=st.floats(0.005, 0.08), r1=st.floats(-0.9, 0.9), f1=st.floats(0.05, 0.95),
       th2=st.floats(0.3, 1.5), r2=st.floats(-0.95, 0.95), f2=st.floats(0.05, 0.95))
def test_property_fits_are_admissible_whatever_the_data(th1, r1, f1, th2, r2, f2):
    """Property: for any pair of slices, crossing or not, both fits satisfy every condition
    (admissibility holds by construction of the decoded variables, not by convergence)."""
    p1 = ESSVIParams(th1, r1, f1 * psi_bounds(th1, r1, None)[1])
    th2 = th1 * th2  # the later slice's data may sit below the first's
    p2 = ESSVIParams(th2, r2, f2 * psi_bounds(th2, r2, None)[1])
    fits = fit_essvi_surface([data(p1, 0.1), data(p2, 0.2)], UNIFORM_MID)
    assert all(f.feasible for f in fits)
    a, b = fits[0].params, fits[1].params
    assert is_admissible(a, None) and is_admissible(b, a)


@pytest.mark.parametrize("rho", [-0.95, -0.3, 0.0, 0.5, 0.95])
def test_feasible_rho_lands_where_psi_has_room(rho):
    prev = ESSVIParams(0.02, -0.2, 0.8 * psi_bounds(0.02, -0.2, None)[1])  # admissible
    for theta in (0.02, 0.021, 0.05):
        r = feasible_rho(theta, rho, prev)
        lo, hi = psi_bounds(theta, r, prev)
        assert hi >= lo * (1 - 1e-12)
        if psi_bounds(theta, rho, prev)[1] >= psi_bounds(theta, rho, prev)[0]:
            assert r == rho  # feasible points are left alone


@pytest.mark.parametrize("rho", [-0.9, 0.0, 0.7])
def test_psi_bounds_match_the_stated_conditions(rho):
    theta = 0.04
    lo, hi = psi_bounds(theta, rho, None)
    assert lo == 0.0
    assert hi == pytest.approx(min(4 / (1 + abs(rho)), np.sqrt(4 * theta / (1 + abs(rho)))),
                               rel=1e-8)
    prev = ESSVIParams(0.02, -0.3, 0.1)
    lo, hi = psi_bounds(theta, rho, prev)
    assert lo == pytest.approx(max(0.1 * 0.7 / (1 + rho), 0.1 * 1.3 / (1 - rho)))
    assert hi <= 0.1 * theta / 0.02 + 1e-15
