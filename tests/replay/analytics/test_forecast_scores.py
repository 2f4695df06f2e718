"""The Diebold-Mariano test of the forecast scores: exact where it reduces to a textbook test,
and of the right size on overlapping forecasts."""

from __future__ import annotations

import numpy as np
from numpy.testing import assert_allclose
from scipy.stats import ttest_1samp

from replay.analytics.forecast_scores import diebold_mariano, long_run_var


def test_one_step_dm_is_the_one_sample_t_test():
    """Without overlap (``lags = 0``) the corrected statistic is the t statistic of the loss
    differential's mean and its p-value Student's: the Harvey-Leybourne-Newbold factor
    ``sqrt((n - 1) / n)`` turns the population variance into the sample one."""
    rng = np.random.default_rng(3)
    a, b = rng.gamma(2.0, 1.0, 97), rng.gamma(2.2, 1.0, 97)
    stat, p = diebold_mariano(a, b, lags=0)
    ref = ttest_1samp(a - b, 0.0)
    assert_allclose([stat, p], [ref.statistic, ref.pvalue], rtol=1e-12)


def test_dm_has_its_size_on_overlapping_forecasts():
    """Loss differentials of 12-step forecasts made every step overlap: under the null they
    are an MA(11) with mean 0.  A day of them (288) rejects at 5 % about 6.5 % of the time;
    Bartlett's weights at 11 lags (the test before) rejected 13 %."""
    rng = np.random.default_rng(11)
    n, h, sims = 288, 12, 3000
    p = np.empty(sims)
    bartlett = np.empty(sims)
    for i in range(sims):
        d = np.convolve(rng.standard_normal(n + h - 1), np.ones(h), "valid")
        p[i] = diebold_mariano(d, np.zeros(n), lags=h - 1)[1]
        bartlett[i] = d.mean() / np.sqrt(long_run_var(d, h - 1, bartlett=True) / n)
    assert 0.04 < np.mean(p < 0.05) < 0.085
    assert np.mean(np.abs(bartlett) > 1.96) > 0.11  # the old statistic's size, for contrast


def test_dm_is_null_on_a_sample_no_longer_than_two_horizons():
    """Ten one-hour forecasts made every 5 minutes (h = 12 steps): the HLN factor is positive
    again (0.02) and the uniform long-run variance rounds to 4e-18, which gave a statistic of
    3.7e7.  No test is possible on so few overlapping forecasts; from ``n > 2h`` on it is."""
    rng = np.random.default_rng(5)
    h = 12
    for n in (10, 2 * h):
        d = rng.standard_normal(n) + 0.3
        assert np.isnan(diebold_mariano(d, np.zeros(n), lags=h - 1)).all()
    d = rng.standard_normal(2 * h + 1) + 0.3
    assert np.isfinite(diebold_mariano(d, np.zeros(d.size), lags=h - 1)).all()
    assert np.isnan(diebold_mariano(np.ones(40), np.zeros(40), lags=0)).all()  # no variance


def test_forecasters_are_ranked_on_the_times_all_of_them_forecast(tmp_path):
    """A flat forecast from the start and a GARCH only after its warm-up: over its own rows
    the flat one pays for the first half's higher vol, which the GARCH never saw; on the
    times both forecast, the flat one (right there) beats the GARCH.  Each one's own scores
    stay over its own rows; the best and the ranking are on the common times."""
    import duckdb
    import pandas as pd

    from replay.analytics.forecast_scores import forecast_block

    rows = []
    for i in range(48):
        rv = 1.0 if i < 24 else 0.5
        ts = (i + 1) * 300 * 10**9
        rows.append((2 * i, ts, "flat", 3600.0, 0.5, rv, rv))
        if i >= 24:
            rows.append((2 * i + 1, ts, "garch", 3600.0, 0.45, rv, rv))
    df = pd.DataFrame(rows, columns=["seq", "ts", "forecaster", "horizon_s", "forecast_vol",
                                     "realized_vol", "true_vol"])
    path = tmp_path / "j.duckdb"
    with duckdb.connect(str(path)) as con:
        con.register("d", df)
        con.execute("CREATE TABLE vol_forecasts AS SELECT * FROM d")
    out = forecast_block(path, 300.0, ("flat", "garch"))
    assert (out["flat"]["n"], out["garch"]["n"]) == (48, 24)
    assert out["flat"]["qlike"] > out["garch"]["qlike"] > 0  # own rows: flat looks worse
    assert out["best_by_qlike"] == "flat"
    assert out["ranking_truth"] == "flat < garch"


def test_realized_vol_is_annualised_over_the_bars_it_sums():
    """Bars of a constant squared return: the realised vol over any horizon is the bars'
    own vol, also when the horizon is not a whole number of bars (it was annualised over the
    horizon, not the bars' span: 0.9228 or 1.0655 for 0.9727) or its windows start between
    bar ends; no whole bar in the horizon is NaN (it was 0)."""
    import pytest

    from replay.analytics.forecast_scores import realized_over
    from replay.consumers.forecast.consumer import ForecastConsumer
    from replay.consumers.forecast.forecasters import Bars
    from replay.errors import ConfigError

    s, step = 10 ** 9, 300 * 10 ** 9
    ts = np.arange(1, 400, dtype=np.int64) * step
    bars = Bars(ts, 0.003 * np.where(np.arange(ts.size) % 2, 1.0, -1.0), step)
    vol = np.sqrt(9e-6 * 365 * 86400 / 300)
    for every_s, h in ((300, 3600.0), (300, 1000.0), (100, 1000.0), (300, 1200.0)):
        at = np.arange(200 * step, 300 * step, every_s * s, dtype=np.int64)
        assert_allclose(realized_over(bars, at, np.full(at.size, int(h * s))), vol, rtol=1e-12)
    at = np.array([200 * step])
    assert np.isnan(realized_over(bars, at, np.array([60 * s]))).all()
    # the forecasters forecast whole bars: a horizon of 1.5 bars was forecast over 2 and
    # never scored (one bar ends in it); the consumer refuses such horizons
    for h in (60.0, 450.0):
        with pytest.raises(ConfigError, match=f"forecast.horizons_s: {h:g} s is not a whole "
                                              "number of bars"):
            ForecastConsumer(horizons_s=[3600.0, h], sample_s=300.0)
