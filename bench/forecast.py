"""Bench ``forecast``: realised measures and every forecaster over the synthetic day.

On ``bench_day.duckdb`` (the ``backtest`` case's store; ``--quick``: its two-hour store), in
one process: the store's previous-tick sampling of the underlying at 1 s (one DuckDB ASOF
JOIN), the realised measures of the day (5-minute RV, bipower variation, two-scales RV of
the 1-second prices) and every batch forecaster (flat, last, EWMA, GARCH, GJR-GARCH through
``arch``, HAR) at the default schedule: a forecast every 5 min for a 1-hour horizon,
re-estimated every hour.  ``implied`` is left out: it is the surface's ATM vol read at each
forecast time during a replay.  ``events`` is the underlying quotes of the day.  Goal: under
5 s.
"""

from __future__ import annotations

import time

import numpy as np


def run(quick: bool) -> dict:
    from replay.analytics.forecast_scores import realized_block
    from replay.app.bench import day_store
    from replay.consumers.forecast.forecasters import ForecastConfig, bars_from_mid, batch_forecasts
    from replay.store import open_store

    db = day_store(quick)
    cfg = ForecastConfig(forecasters=("flat", "last", "ewma", "garch", "gjr_garch", "har"))
    t0 = time.perf_counter()
    with open_store(db) as st:
        lo, hi = st.time_span("underlying_quotes")
        iid = st.instrument_ids()["BTC-USD"]
        events = st.count("underlying_quotes")
        grid, mid = st.sampled_mid(iid, lo - lo % 10**9, hi, 10**9,
                                   max_age_ns=int(cfg.sample_s * 1e9))
    t_sample = time.perf_counter()
    # as a run's metrics compute them: each annualised over the time its returns cover
    measures = realized_block(grid, mid, cfg.sample_s)
    t_measures = time.perf_counter()
    bars = bars_from_mid(grid, mid, cfg.sample_s)
    step = int(cfg.every_s * 1e9)
    at = np.arange((lo // step + 1) * step, hi + 1, step)
    fc = batch_forecasts(bars, at, cfg)
    t_end = time.perf_counter()
    return {
        "events": int(events), "seconds": round(t_end - t0, 3),
        "sample_seconds": round(t_sample - t0, 3),
        "measures_seconds": round(t_measures - t_sample, 3),
        "forecasters_seconds": round(t_end - t_measures, 3),
        "forecast_times": int(at.size), "forecasts": int(sum(np.isfinite(v).sum() for v in fc.values())),
        **{k: None if measures[k] is None else round(measures[k], 4)
           for k in ("rv_vol", "bv_vol", "tsrv_vol")},
        "goal_seconds": 5.0,
    }
