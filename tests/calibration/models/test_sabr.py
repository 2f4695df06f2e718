"""SABR (Hagan 2002): against QuantLib's independent implementation, and calibration."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from calibration.loss import FitData, LossConfig
from calibration.models.sabr import (
    SABRParams,
    fit_sabr,
    sabr_derivatives,
    sabr_iv,
    sabr_total_variance,
)

F = 90_000.0


@pytest.mark.parametrize("beta", [1.0, 0.5, 0.0])
def test_matches_quantlib(beta):
    ql = pytest.importorskip("QuantLib")
    rng = np.random.default_rng(int(beta * 10))
    for _ in range(40):
        t = rng.uniform(0.01, 2.0)
        rho = rng.uniform(-0.9, 0.9)
        nu = rng.uniform(0.1, 3.0)
        atm = rng.uniform(0.2, 1.2)
        p = SABRParams(atm * F ** (1 - beta), rho, nu, beta)
        strikes = F * np.exp(rng.uniform(-0.8, 0.8, 7))
        ours = sabr_iv(strikes, F, t, p)
        ref = [ql.sabrVolatility(float(K), F, t, p.alpha, beta, nu, rho) for K in strikes]
        assert_allclose(ours, ref, rtol=1e-10)


def test_at_the_money_limit_is_continuous():
    p = SABRParams(0.6, -0.3, 1.5)
    k = np.array([-1e-9, 0.0, 1e-9, 1e-7, 1e-5])
    iv = sabr_iv(F * np.exp(k), F, 0.25, p)
    assert_allclose(iv, iv[1], rtol=1e-5)
    # beta = 1: sigma_ATM = alpha (1 + (rho nu alpha / 4 + (2 - 3 rho^2) nu^2 / 24) T)
    expected = 0.6 * (1 + (-0.3 * 1.5 * 0.6 / 4 + (2 - 3 * 0.09) * 1.5 ** 2 / 24) * 0.25)
    assert iv[1] == pytest.approx(expected, rel=1e-14)


def test_derivatives_by_differences_are_consistent():
    p = SABRParams(0.5, -0.2, 1.0)
    k = np.linspace(-0.5, 0.5, 11)
    w, w1, _ = sabr_derivatives(k, F, 0.5, p)
    assert_allclose(w, sabr_total_variance(k, F, 0.5, p), rtol=1e-15)
    h = 1e-3
    assert_allclose(w1, (sabr_total_variance(k + h, F, 0.5, p)
                         - sabr_total_variance(k - h, F, 0.5, p)) / (2 * h), rtol=1e-5)


def test_calibration_recovers_parameters():
    true = SABRParams(0.55, -0.25, 1.8)
    t = 0.3
    k = np.linspace(-0.6, 0.6, 25)
    iv = sabr_iv(F * np.exp(k), F, t, true)
    n = k.size
    d = FitData(t, k, iv, iv - 0.004, iv + 0.004, np.full(n, 1 / n), np.arange(n))
    fit = fit_sabr(d, F, LossConfig(weighting="uniform", band=False))
    assert_allclose([fit.params.alpha, fit.params.rho, fit.params.nu],
                    [true.alpha, true.rho, true.nu], rtol=1e-6)
    assert fit.params.beta == 1.0
    warm = fit_sabr(d, F, LossConfig(weighting="uniform", band=False),
                    warm=SABRParams(0.5, -0.1, 1.2))
    assert_allclose(warm.params.to_array(), fit.params.to_array(), rtol=1e-6)
