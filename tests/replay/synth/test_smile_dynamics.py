"""The synthetic market's smile dynamics, checked on the true smiles themselves: a configured
skew stickiness ratio is what the ATM vol's regression on spot measures, the default market's
SSR is the variance channel's, and the delta model that matches the regime hedges best."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from calibration.pricing.black import black_price
from calibration.pricing.smile_delta import dynamics_delta, ssr_estimate, ssr_vol_move
from replay.synth.chain import ChainParams, smile_k, smile_var, true_vol
from replay.synth.paths import ModelParams, initial_state, simulate_block

NS = 10**9
TAU0 = 30 / 365  # the expiry studied: 30 days at the start
H = 1e-4  # log-moneyness step of the skew's central difference


def _path(seed: int = 3, days: int = 2):
    """A Heston path every minute (its own fixed sub-stream)."""
    p = ModelParams()
    block, _ = simulate_block("heston", p, initial_state("heston", p), 0, days * 1440, 60 * NS,
                              np.random.default_rng(seed))
    tau = TAU0 - np.arange(block.spot.size) * 60 / (365 * 86_400)
    return p, block, tau


def _smile(p, block, cp, tau):
    """``vol(k)``: the true smile at log-moneyness ``k`` (an array, one per step)."""
    v = smile_var(block, cp)
    return lambda k: true_vol("heston", p, cp, v, tau, smile_k(k, block.spot, p, cp))[0]


def _measured_ssr(cp: ChainParams, seed: int = 3) -> tuple[float, float]:
    p, block, tau = _path(seed)
    vol = _smile(p, block, cp, tau)
    zero = np.zeros(block.spot.size)
    atm, skew = vol(zero), (vol(zero + H) - vol(zero - H)) / (2 * H)
    lnf = np.log(block.spot) + p.basis * tau
    return ssr_estimate(skew[:-1] * np.diff(lnf), np.diff(atm))


def test_the_default_market_is_unchanged():
    """Unset, the smile sits at fixed moneyness and its level is the model's variance."""
    k = np.linspace(-0.3, 0.3, 7)
    cp = ChainParams()
    assert cp.smile_ssr is None and smile_k(k, 120_000.0, ModelParams(), cp) is k
    _, block, _ = _path()
    assert smile_var(block, cp) is block.var


def test_smile_variance_is_uncorrelated_with_spot():
    """``smile_var`` keeps the variance's own moves but not their spot-correlated part: its
    increments' regression on log-spot increments is ~0, the variance's is ``rho xi``."""
    p, block, _ = _path(days=6)
    dx = np.diff(np.log(block.spot))
    beta = [float(dx @ np.diff(v) / (dx @ dx)) for v in (block.var, block.smile_var)]
    assert_allclose(beta[0], p.rho * p.xi, atol=0.05)
    assert_allclose(beta[1], 0.0, atol=0.05)


@pytest.mark.parametrize("ssr", [0.0, 1.0, 2.0, -0.5])
def test_a_configured_ssr_is_what_the_regression_measures(ssr):
    """Sticky moneyness (0), sticky strike (1), local-vol-like (2) and a negative ratio: the
    ATM vol's regression on ``skew * d ln F`` recovers the configured SSR (tolerance: the
    larger of three standard errors and 0.05; the convexity of the smile adds a bias of order
    the log-spot move)."""
    r, se = _measured_ssr(ChainParams(smile_ssr=ssr))
    assert abs(r - ssr) < max(3 * se, 0.05), (r, se)


def test_the_default_market_has_the_variance_channels_ssr():
    """Unset: ATM vol moves through ``v`` only, ``R ~ xi sqrt(T) / (eta sigma)`` (the chain
    module's docstring); the short-maturity approximations leave it within 15 %."""
    p, cp = ModelParams(), ChainParams()
    r, se = _measured_ssr(cp)
    approx = p.xi * math.sqrt(TAU0) / (cp.smile_eta * math.sqrt(p.v0))
    assert_allclose(r, approx, rtol=0.15)
    assert se < 0.1


def _hedging_error_var(cp: ChainParams, model_ssr: float, seed: int = 5) -> float:
    """Variance of the one-minute hedging error of a long 30-day strangle (puts and calls 10 %
    out of the money) delta-hedged with the forward at the delta of a smile moving at
    ``model_ssr`` (1 is sticky strike, 0 sticky moneyness)."""
    p, block, tau = _path(seed)
    vol = _smile(p, block, cp, tau)
    f = block.spot * np.exp(p.basis * tau)
    err = np.zeros(f.size - 1)
    for strike, is_call in ((0.9 * p.s0, False), (1.1 * p.s0, True)):
        k = np.log(strike / f)
        sig = vol(k)
        skew = (vol(k + H) - vol(k - H)) / (2 * H)
        value = black_price(f, strike, tau, sig, is_call)
        delta = dynamics_delta(f, strike, tau, sig, is_call, ssr_vol_move(skew, model_ssr))
        err += np.diff(value) - delta[:-1] * np.diff(f)
    return float(err.var())


@pytest.mark.parametrize("regime", [0.0, 1.0, 2.0])
def test_the_matching_delta_model_hedges_best(regime):
    """In each regime the delta of the matching dynamics leaves the smallest hedging-error
    variance, and the further a model's SSR is from the regime's, the larger it is."""
    cp = ChainParams(smile_ssr=regime)
    err = {m: _hedging_error_var(cp, m) for m in (0.0, 1.0, 2.0)}
    order = sorted(err, key=err.get)
    assert order[0] == regime, err
    assert order == sorted(err, key=lambda m: abs(m - regime)), err


@pytest.mark.parametrize("args", [["--smile-dynamics", "ssr"],
                                  ["--smile-dynamics", "sticky_strike", "--ssr", "2"]])
def test_inconsistent_dynamics_flags_are_one_error_line(args, tmp_path, capsys):
    from replay.app.cli import main
    from replay.errors import EXIT_USER_ERROR

    db = tmp_path / "s.duckdb"
    assert main(["synth", "--db", str(db), *args]) == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--ssr" in err[0] and not db.exists()
