"""Realised measures against the synthetic market's true integrated variance."""

from __future__ import annotations

import math

import numpy as np
from numpy.testing import assert_allclose

from replay.consumers.forecast.realized import (
    bipower_variation,
    log_returns,
    realized_variance,
    two_scale_rv,
    window_sum,
)
from replay.synth.paths import ModelParams, initial_state, simulate_block

NS = 10**9


def _path(model: str, seconds: int, seed: int, **params):
    p = ModelParams(**params)
    block, _ = simulate_block(model, p, initial_state(model, p), 0, seconds, NS,
                              np.random.default_rng(seed))
    return block


def test_realized_variance_matches_the_integrated_variance():
    """Heston, one day at 1 s, 5-minute returns: RV estimates the integrated variance with
    relative standard error about sqrt(2 / n) (n = 288 returns) for a slowly moving variance
    (Barndorff-Nielsen and Shephard 2002)."""
    errs = []
    for seed in range(20):
        b = _path("heston", 86400, seed)
        iv = float(np.sum(b.var[:-1])) / (365 * 86400)  # integral of v dt, dt = 1 s
        rv = realized_variance(log_returns(b.spot[::300]))
        errs.append(rv / iv - 1)
    errs = np.array(errs)
    se = math.sqrt(2 / 288)
    assert abs(errs.mean()) < 3 * se / math.sqrt(errs.size)
    assert_allclose(errs.std(), se, rtol=0.4)


def test_bipower_variation_removes_jumps():
    """Bates days with about two 3 % jumps each, 1-minute returns: RV carries the jumps, BV
    stays near the diffusive integrated variance (its finite-sample bias from a jump next to
    a large return is a few tens of percent at most here)."""
    rv_err, bv_err = [], []
    for seed in range(8):
        b = _path("bates", 86400, seed, jump_intensity=730.0, jump_std=0.03)
        r = log_returns(b.spot[::60])
        iv = float(np.sum(b.var[:-1])) / (365 * 86400)
        rv_err.append(realized_variance(r) / iv - 1)
        bv_err.append(bipower_variation(r) / iv - 1)
    rv_err, bv_err = np.array(rv_err), np.array(bv_err)
    assert (rv_err > 1.0).sum() >= 4  # the days with jumps
    assert np.all(np.abs(bv_err) < 0.5)
    assert np.median(np.abs(bv_err)) < 0.15


def test_two_scale_rv_is_robust_to_microstructure_noise():
    """1-second log prices with i.i.d. noise of 2 bp: RV of every second is dominated by the
    noise (2 n omega^2), TSRV is not."""
    b = _path("gbm", 86400, 5, sigma=0.5)
    iv = 0.25 / 365
    x = np.log(b.spot) + np.random.default_rng(1).normal(0, 2e-4, b.spot.size)
    rv_all = realized_variance(np.diff(x))
    assert rv_all > 5 * iv
    assert abs(two_scale_rv(x, 300) / iv - 1) < 0.15


def test_window_sum_is_trailing():
    ts = np.array([10, 20, 30, 40])
    assert_allclose(window_sum(ts, np.array([1.0, 2, 3, 4]), np.array([30, 35, 40]), 20),
                    [5.0, 5.0, 7.0])
