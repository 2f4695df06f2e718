"""Breach backtests: the tests' statistics against known values, and the theory check on GBM
(a margin sized at the normal quantile breaches at the normal tail rate)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import duckdb
import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.stats import chi2, norm

from replay.analytics.breach import (
    breach_metrics,
    breach_windows,
    christoffersen_independence,
    kupiec_pof,
    margin_block,
)
from replay.consumers.margin import PMParams, make_legs, portfolio_margin
from replay.synth.paths import ModelParams, initial_state, simulate_block

NS = 10**9
H_S = 3600.0
SIGMA = 0.5


def test_kupiec_against_the_closed_form():
    n, x, p = 250, 7, 0.01
    phat = x / n
    lr = -2 * ((n - x) * math.log(1 - p) + x * math.log(p)) \
        + 2 * ((n - x) * math.log(1 - phat) + x * math.log(phat))
    got_lr, got_p = kupiec_pof(n, x, p)
    assert_allclose(got_lr, lr, rtol=1e-13)
    assert_allclose(got_p, chi2.sf(lr, 1), rtol=1e-13)
    assert kupiec_pof(100, 0, 0.01)[0] == pytest.approx(-2 * 100 * math.log(0.99))


def test_christoffersen_sees_clustered_breaches():
    spread = np.zeros(400, bool)
    spread[::40] = True
    clustered = np.zeros(400, bool)
    clustered[100:110] = True
    assert christoffersen_independence(spread)[1] > 0.05
    assert christoffersen_independence(clustered)[1] < 1e-6


def test_christoffersen_counts_only_windows_that_follow_directly():
    """Twenty breaches, each followed by a window without margin, then 200 clean windows:
    no breach directly follows another, so nothing clusters.  Before the fix the gaps were
    skipped, the twenty breaches counted as 19 breach-after-breach transitions, and the test
    rejected independence (p below 1e-6)."""
    held = np.array([5.0, 0.0] * 20 + [5.0] * 201)
    step = np.array([-10.0, 10.0] * 20 + [0.0] * 201)  # equity's change over each window
    equity = 100.0 + np.concatenate(([0.0], np.cumsum(step)[:-1]))
    ts = np.arange(held.size, dtype=np.int64) * 10 * NS
    m = breach_metrics(ts, equity, held, 10, 0.01)
    assert (m["observations"], m["breaches"]) == (220, 20)
    assert m["christoffersen_p"] == pytest.approx(1.0)
    hits = np.array([True] * 20 + [False] * 200)
    assert christoffersen_independence(hits)[1] < 1e-6  # the same hits, read as adjacent
    assert math.isnan(christoffersen_independence(hits[:2], np.array([False]))[1])


def test_windows_do_not_overlap_and_use_as_of_values():
    ts = np.array([0, 10, 20, 30, 40, 50, 60]) * NS
    equity = np.array([100, 99, 90, 95, 94, 80, 81], float)
    margin = np.array([5, 5, 5, 0, 5, 5, 5], float)
    starts, loss, held = breach_windows(ts, equity, margin, 20 * NS)
    # windows [0, 20], [20, 40], [40, 60]; the one from 20 s holds 5 (as of 20 s)
    assert_allclose(starts, np.array([0, 20, 40]) * NS)
    assert_allclose(loss, [10, -4, 13])
    m = breach_metrics(ts, equity, margin, 20, 0.01)
    assert (m["observations"], m["breaches"]) == (3, 2)


def _gbm_minutes(hours: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    p = ModelParams(sigma=SIGMA)
    block, _ = simulate_block("gbm", p, initial_state("gbm", p), 0, hours * 60, 60 * NS,
                              np.random.default_rng(seed))
    return np.arange(block.spot.size, dtype=np.int64) * 60 * NS, block.spot


def _breaches_of_a_long_btc(z: float, hours: int = 4000, seed: int = 11) -> dict:
    """Long 1 BTC held through a GBM path; portfolio margin with price_range = z sigma sqrt(h)
    (no delta shock), evaluated every minute; tested against the 1 % breach rate."""
    ts, spot = _gbm_minutes(hours, seed)
    rng_h = z * SIGMA * math.sqrt(H_S / (365 * 86400))
    p = PMParams(price_range=rng_h, max_delta_shock=0.0)
    im = np.array([portfolio_margin(make_legs([1.0], [s]), p).im[0] for s in spot[::60]])
    im = np.repeat(im, 60)[: spot.size]
    equity = 1e6 + (spot - spot[0])
    assert_allclose(im[::60], rng_h * spot[::60], rtol=1e-12)  # the worst scenario: -range
    return breach_metrics(ts, equity, im, H_S, 0.01)


def test_gbm_margin_at_the_normal_quantile_breaches_at_the_tail_rate():
    m = _breaches_of_a_long_btc(norm.isf(0.01))
    assert m["observations"] == 3999
    # binomial(3999, 1 %): 40 expected, sd 6.3
    assert abs(m["breaches"] - 0.01 * m["observations"]) < 4 * math.sqrt(3999 * 0.01 * 0.99)
    assert m["kupiec_p"] > 0.01
    assert m["christoffersen_p"] > 0.01


def test_a_margin_far_too_small_is_rejected():
    m = _breaches_of_a_long_btc(norm.isf(0.01) * 0.5)
    assert m["breach_rate"] > 0.05
    assert m["kupiec_p"] < 1e-6


@pytest.mark.parametrize("currency, breaches", [("coin", 0), ("usd", 24)])
def test_coin_collateral_is_judged_in_coin(tmp_path, currency, breaches):
    """A flat book on 10 BTC of collateral while BTC falls 1 % an hour: in USD the account
    loses about 5,000 an hour, more than its 2,000 of margin, but in coin it loses nothing,
    and a coin account is judged in coin (it counted 24 breaches in 24 windows)."""
    ts = np.arange(0, 24 * 3600 + 1, 60) * 10**9
    usd = 50_000.0 * np.exp(-0.01 * ts / 1e9 / 3600)
    # the coin account's equity in USD; a USD account losing about as much, which breaches
    equity = 10.0 * usd if currency == "coin" else 500_000.0 - 5_000.0 * ts / 1e9 / 3600
    path = tmp_path / "journal.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE margin AS SELECT * FROM (SELECT unnest($ts) AS ts, "
                    "2000.0 AS initial_usd, 1600.0 AS maintenance_usd, "
                    "2000.0 AS initial_isolated_usd, 1600.0 AS maintenance_isolated_usd, "
                    "unnest($eq) AS equity_usd, unnest($usd) AS usd_per_coin, "
                    "2.0 AS equity_over_mm)",
                    {"ts": ts.tolist(), "eq": equity.tolist(), "usd": usd.tolist()})
    consumer = SimpleNamespace(model="portfolio", mode="cross", counts={},
                               breach_horizon_s=3600.0, breach_p=0.01,
                               venue=SimpleNamespace(cfg=SimpleNamespace(equity_currency=currency)))
    block = margin_block(path, consumer)
    assert block["observations"] == 24 and block["breaches"] == breaches


@pytest.mark.parametrize("currency", ["coin", "usd"])
def test_a_run_with_no_margin_rows_gives_nulls(tmp_path, currency):
    """Every evaluation skipped (no coin price yet): null statistics in either currency (a
    coin account raised KeyError 'usd_per_coin')."""
    path = tmp_path / "journal.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE margin (ts BIGINT, initial_usd DOUBLE, maintenance_usd DOUBLE, "
                    "initial_isolated_usd DOUBLE, maintenance_isolated_usd DOUBLE, "
                    "equity_usd DOUBLE, usd_per_coin DOUBLE, equity_over_mm DOUBLE)")
    consumer = SimpleNamespace(model="standard", mode="cross", counts={},
                               breach_horizon_s=3600.0, breach_p=0.01,
                               venue=SimpleNamespace(cfg=SimpleNamespace(equity_currency=currency)))
    block = margin_block(path, consumer)
    assert block["initial_usd_mean"] is None and block["observations"] == 0
