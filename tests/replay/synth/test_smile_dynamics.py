"""The synthetic market's smile dynamics: the true smile moves with spot at the configured SSR
(on top of the move the Heston variance makes), measured on the true smiles themselves."""

from __future__ import annotations

import math

import numpy as np
from numpy.testing import assert_allclose

from calibration.pricing.smile_delta import ssr_estimate
from replay.synth.chain import ChainParams, smile_k, true_vol
from replay.synth.paths import ModelParams, initial_state, simulate_block

NS = 10**9


def _atm_series(ssr: float, seed: int = 3):
    """Every minute for 2 days: the 30-day expiry's true ATM vol and skew in the regime."""
    p, cp = ModelParams(), ChainParams(smile_ssr=ssr)
    block, _ = simulate_block("heston", p, initial_state("heston", p), 0, 2 * 1440, 60 * NS,
                              np.random.default_rng(seed))
    tau = np.full(block.spot.size, 30 / 365)
    v = block.var

    def vol(k):
        return true_vol("heston", p, cp, v, tau, smile_k(k, block.spot, p, cp))[0]

    h = 1e-4
    atm = vol(np.zeros(block.spot.size))
    skew = (vol(np.full(block.spot.size, h)) - vol(np.full(block.spot.size, -h))) / (2 * h)
    return np.log(block.spot), atm, skew


def test_the_default_is_sticky_moneyness_and_unchanged():
    k = np.linspace(-0.3, 0.3, 7)
    assert smile_k(k, 120_000.0, ModelParams(), ChainParams()) is k


def test_regimes_differ_by_their_ssr():
    """Same path in each regime: the measured SSRs differ by the configured ones (the
    variance's own, spot-correlated move is common to all and cancels)."""
    est = {}
    for r in (0.0, 1.0, 2.0):
        lf, atm, skew = _atm_series(r)
        est[r] = ssr_estimate(skew[:-1] * np.diff(lf), np.diff(atm))
    for r in (1.0, 2.0):
        diff = est[r][0] - est[0.0][0]
        se = math.hypot(est[r][1], est[0.0][1])
        assert abs(diff - r) < max(3 * se, 0.05), (r, diff, se)
    assert_allclose(est[1.0][0] - est[0.0][0], 1.0, atol=0.1)
