"""Realised measures against the synthetic market's true integrated variance."""

from __future__ import annotations

import math

import numpy as np
from numpy.testing import assert_allclose

from replay.consumers.forecast.realized import (
    bipower_variation,
    jump_ratio_z,
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


def test_bipower_variation_is_unbiased_for_a_constant_vol():
    """With ``n / (n - 1)``, E[BV] is the integrated variance of i.i.d. normal returns; 24
    returns (2 hours of 5-minute bars) would otherwise read 4 % low."""
    rng = np.random.default_rng(3)
    ratios = [bipower_variation(rng.standard_normal(24) * 0.001) / (24 * 1e-6)
              for _ in range(20000)]
    assert abs(np.mean(ratios) - 1) < 3 * np.std(ratios) / math.sqrt(len(ratios))


def test_the_jump_ratio_statistic_is_standard_normal_without_jumps_and_sees_one():
    rng = np.random.default_rng(4)
    z = np.array([jump_ratio_z(rng.standard_normal(288) * 0.001) for _ in range(4000)])
    assert abs(np.mean(z)) < 0.1 and abs(np.std(z) - 1) < 0.1
    assert abs(np.mean(z > 1.645) - 0.05) < 0.015  # its size at 5 %
    r = rng.standard_normal(288) * 0.001
    r[100] += 0.01  # a ten-sigma jump
    assert jump_ratio_z(r) > 3


def test_the_realized_block_leaves_out_what_too_few_returns_cannot_say():
    from replay.analytics.forecast_scores import MIN_JUMP_RETURNS, REALIZED_KEYS, realized_block

    rng = np.random.default_rng(5)
    grid = np.arange(3601, dtype=np.int64) * 10**9  # an hour of 1-second samples
    mid = 60_000 * np.exp(np.cumsum(rng.standard_normal(grid.size) * 1e-4))
    short = realized_block(grid[:601], mid[:601], 300.0)  # 2 five-minute returns
    assert short["rv_vol"] is not None
    assert short["bv_vol"] is short["jump_share"] is short["jump_z"] is None
    full = realized_block(grid, mid, 60.0)  # 60 one-minute returns
    assert 60 >= MIN_JUMP_RETURNS and None not in full.values()
    assert tuple(full) == tuple(short) == REALIZED_KEYS  # the names the metrics list


def test_realized_vols_are_annualised_over_the_span_their_returns_cover():
    """On an hour of 1-second samples whose last five-minute sample falls before the grid's
    end (3,599 s: eleven returns cover 3,300 s), the five-minute RV is annualised over 3,300 s,
    not 3,599 s (which put its variance 8 % low); the mean over many paths is the true
    variance within its Monte Carlo error (about 1.5 %)."""
    from replay.analytics.forecast_scores import realized_block

    rng = np.random.default_rng(11)
    sigma, n, year_s = 0.5, 3600, 365 * 86400
    grid = (np.arange(n, dtype=np.int64) + 1) * 10**9
    var = []
    for _ in range(800):
        x = np.cumsum(rng.standard_normal(n) * sigma * np.sqrt(1 / year_s))
        var.append(realized_block(grid, 1e5 * np.exp(x), 300.0)["rv_vol"] ** 2)
    assert abs(np.mean(var) / sigma**2 - 1) < 0.045


def test_a_hole_in_the_tape_is_left_out_of_the_realized_measures():
    """Twelve hours of 1-second GBM samples with two hours missing: each measure is
    annualised over the time its returns cover, so the vols are the hole-free series' own
    scale rather than understated by a sixth, and no return spans the hole (its move would
    count as one five-minute return, a spurious jump)."""
    from replay.analytics.forecast_scores import realized_block

    rng = np.random.default_rng(3)
    sigma, n, year_s, hour = 0.5, 12 * 3600, 365 * 86400, 3600
    grid = (np.arange(n, dtype=np.int64) + 1) * 10**9
    x = np.cumsum(rng.standard_normal(n) * sigma * np.sqrt(1 / year_s))
    x[5 * hour:] += 0.05  # the price moved 5 % while nothing was quoted
    hole = (grid > 5 * hour * 10**9) & (grid <= 7 * hour * 10**9)
    mid = np.where(hole, np.nan, 1e5 * np.exp(x))
    got = realized_block(grid, mid, 300.0)
    for key in ("rv_vol", "bv_vol", "tsrv_vol"):
        assert abs(got[key] / sigma - 1) < 0.2, (key, got[key])  # 120 returns
    assert got["jump_share"] < 0.2 and abs(got["jump_z"]) < 3
