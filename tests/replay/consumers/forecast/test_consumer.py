"""Forecasts inside a backtest: the metrics and journal contract, realised vols filled in after
the run (never during it), determinism, and hedging at a forecast vol."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import replay
from replay.consumers.forecast import ForecastConsumer
from replay.errors import ConfigError
from replay.synth import SynthConfig, synthesize
from tests.helpers import conf_group, journal_query

SCORE_KEYS = {"qlike", "mse", "n", "mz_r2"}
FAST = {"horizons_s": [300.0], "every_s": 60.0, "sample_s": 30.0, "refit_s": 600.0,
        "lookback_s": 3600.0, "min_returns": 10}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("synth") / "s.duckdb"
    synthesize(db, SynthConfig(hours=1.0, seed=4, model="heston", scale="small"))
    return db



def _cfg(db: Path, out: Path, strategy: dict | None = None) -> dict:
    return {"data": {"db": str(db)}, "seed": 0, "out_dir": str(out),
            "report": {"html": False, "pnl_every_s": 60.0},
            "calibration": {**conf_group("calibration", "svi"), "every": "60s"},
            "book": conf_group("book", "fixed"),
            "strategy": {**conf_group("strategy", "delta_band"), **(strategy or {})},
            "forecast": {**conf_group("forecast", "all"), **FAST}}



def test_forecast_metrics_journal_and_determinism(store, tmp_path):
    a = replay.run(_cfg(store, tmp_path / "a"))
    block = a["forecast"]
    names = {"flat", "last", "ewma", "garch", "gjr_garch", "har", "implied"}
    assert names <= set(block) and block["best_by_qlike"] in names
    for n in names:
        assert SCORE_KEYS <= set(block[n]) and block[n]["n"] > 10, n
    assert block["vrp_mean"] is not None
    # a synthetic store: scored against the true variance too, and ranked
    assert all(block[n]["qlike_truth"] is not None for n in names)
    assert set(block["ranking_truth"].split(" < ")) == names
    rows = journal_query(tmp_path / "a", "SELECT * FROM vol_forecasts")
    assert set(rows["forecaster"]) == names
    # realised over (t, t + h]: filled after the run where the data cover the horizon
    end = rows["ts"].max()
    covered = rows["ts"] <= end - 600 * 10**9
    assert np.isfinite(rows.loc[covered, "realized_vol"]).all()
    assert np.isfinite(rows.loc[covered, "true_vol"]).all()  # a synthetic store has the truth
    # the filled columns are not part of the journal: a second run has the same hash
    b = replay.run(_cfg(store, tmp_path / "b"))
    assert b["journal_hash"] == a["journal_hash"]


def test_hedging_at_a_forecast_vol(store, tmp_path):
    base = replay.run(_cfg(store, tmp_path / "s"))
    fc = replay.run(_cfg(store, tmp_path / "f", {"hedge_vol": "forecast", "forecast": "ewma"}))
    assert fc["journal_hash"] != base["journal_hash"]  # other deltas, other trades
    dec = journal_query(tmp_path / "f", "SELECT ts, target_delta FROM hedge_decisions")
    assert len(dec) and np.isfinite(dec["target_delta"]).all()
    with pytest.raises(ConfigError, match="strategy.forecast: 'arima' is not allowed"):
        replay.run(_cfg(store, tmp_path / "bad", {"hedge_vol": "forecast", "forecast": "arima"}))
    cfg = _cfg(store, tmp_path / "bad2", {"hedge_vol": "forecast"})
    cfg["forecast"] = None
    with pytest.raises(ConfigError, match="needs forecasts"):
        replay.run(cfg)


def test_bad_forecast_config_names_the_key(store, tmp_path):
    cfg = _cfg(store, tmp_path / "bad")
    cfg["forecast"]["forecasters"] = ["ewma", "prophet"]
    with pytest.raises(ConfigError, match="forecast.forecasters: 'prophet'"):
        replay.run(cfg)
    cfg["forecast"]["forecasters"] = ["ewma"]
    cfg["forecast"]["ewma_lambda"] = 1.5
    with pytest.raises(ConfigError, match="forecast.ewma_lambda"):
        replay.run(cfg)
    cfg["forecast"]["ewma_lambda"] = 0.94
    cfg["forecast"]["every_s"] = 45.0  # between the 30 s bars' ends: a stale bar, a late target
    with pytest.raises(ConfigError, match="forecast.every_s: 45 s is not a whole number of bars"):
        replay.run(cfg)
    for key in ("forecasters", "horizons_s"):  # an empty list took the default
        with pytest.raises(ConfigError, match=f"^forecast.{key}: an empty list"):
            ForecastConsumer(**{key: []})


def test_vega_split_and_dynamics_blocks(store, tmp_path):
    """The vega bucket's split by smile move sums to it, and a calibrated run measures the
    SSR per expiry bucket and writes surface_dynamics."""
    m = replay.run(_cfg(store, tmp_path / "v"))
    split = m["attribution_vega"]
    assert set(split) == {"level", "skew", "curvature"}
    np.testing.assert_allclose(sum(split.values()), m["attribution"]["vega"], rtol=1e-9,
                               atol=1e-9)
    assert abs(split["level"]) > 0
    dyn = m["dynamics"]
    assert dyn["pairs"] > 0 and set(dyn["ssr"]) == set(dyn["ssr_se"])
    assert any(v is not None for v in dyn["ssr"].values())
    rows = journal_query(tmp_path / "v", "SELECT * FROM surface_dynamics")
    assert {"ts", "expiry", "atm_vol", "atm_skew", "ssr", "window_s"} <= set(rows)


class _Ctx:
    def __init__(self, now: int) -> None:
        self.now, self.emitted = now, []

    def emit(self, kind: str, **row) -> None:
        self.emitted.append(row)


def test_a_forecast_is_dropped_once_its_window_passes_with_no_newer_one():
    """EWMA forecasts the next hour at 0 and then, after a hole in the tape, cannot forecast.
    Before, the board kept 0.5 for the rest of the run, and a hedger at ``hedge_vol=forecast``
    and a margin rule read it hours later; now it holds for the hour it covers, after which
    the readers take their own fallback (NaN on the board)."""
    from replay.consumers.forecast import ForecastBoard, ForecastConsumer
    from replay.units import NS

    c = ForecastConsumer(forecasters=["ewma"], horizons_s=[3600.0], every_s=600.0,
                         sample_s=300.0)
    c.at = np.arange(0, 4 * 3600 * NS, 600 * NS, dtype=np.int64)
    col = np.full(c.at.size, np.nan)
    col[0] = 0.5
    c.table = {("ewma", 3600.0): col}
    seen = []
    for now in c.at.tolist():
        ctx = _Ctx(now)
        c.on_wake(ctx)
        seen.append(c.forecasts.vol("ewma"))
        assert len(ctx.emitted) == (now == 0)  # only what was forecast is journaled
    at_hour = int(np.searchsorted(c.at, 3600 * NS))
    assert seen[:at_hour] == [0.5] * at_hour and all(np.isnan(seen[at_hour:]))
    # a board resumed from the state after the first forecast drops it at the same instant
    first = ForecastConsumer(forecasters=["ewma"], horizons_s=[3600.0], every_s=600.0,
                             sample_s=300.0)
    resumed = ForecastConsumer(forecasters=["ewma"], horizons_s=[3600.0], every_s=600.0,
                               sample_s=300.0, forecasts=ForecastBoard())
    for x in (first, resumed):
        x.at, x.table = c.at, c.table
    first.on_wake(_Ctx(0))
    resumed.load_state_dict(first.state_dict())
    for now in c.at[1:at_hour + 1].tolist():
        resumed.on_wake(_Ctx(now))
        assert (resumed.forecasts.vol("ewma") == 0.5) == (now < 3600 * NS)
