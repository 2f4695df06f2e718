"""Sweep objectives: arithmetic over metric names, nothing else; unknown names named with their
closest matches; per-run failures (null metric, domain error) kept apart from config mistakes;
and the list of known names matches what a real backtest writes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import replay
from replay.analytics.objective import (
    flatten,
    known_metric_names,
    objective_from_config,
    parse_objective,
)
from replay.errors import ConfigError, ObjectiveValueError

METRICS = {
    "events_replayed": 1000,
    "journal_hash": "ab12",
    "pnl": {"step_std_usd": 10.0, "fees_usd": -4.0, "slippage_usd": -2.0, "total_usd": None},
    "execution": {"n_fills": 3, "markout_bps": {"10s": -1.5}},
    "dynamics": {"ssr": {"7-30d": 1.5, "90d+": 0.5}},
}


def test_default_style_expression_adds_costs():
    obj = parse_objective("pnl.step_std_usd - 0.5 * (pnl.fees_usd + pnl.slippage_usd)")
    assert obj.evaluate(METRICS) == pytest.approx(13.0)
    assert obj.names == ("pnl.step_std_usd", "pnl.fees_usd", "pnl.slippage_usd")
    # flat metrics (a summary row) give the same value
    assert obj.evaluate(flatten(METRICS)) == pytest.approx(13.0)


@pytest.mark.parametrize("expr, value", [
    ("-pnl.fees_usd ** 2", -16.0),  # ** binds tighter than unary minus, as in Python
    ("(-pnl.fees_usd) ** 0.5", 2.0),
    ("abs(pnl.fees_usd) + sqrt(pnl.step_std_usd * 10)", 14.0),
    ("max(pnl.fees_usd, pnl.slippage_usd, -3)", -2.0),
    ("min(pnl.fees_usd, 1e-3)", -4.0),
    ("log(pnl.step_std_usd) + log(100, 10)", math.log(10) + 2),
    ("execution.markout_bps.10s * 2", -3.0),
    ("execution.n_fills / 2 + events_replayed / 1000", 2.5),
    ("1.5e2 + .5", 150.5),
    # expiry buckets of days: their "-" and "+" belong to the name
    ("dynamics.ssr.7-30d-1", 0.5),
    ("abs(dynamics.ssr.7-30d - 2) + dynamics.ssr.90d+ + 1", 2.0),
])
def test_arithmetic(expr, value):
    assert parse_objective(expr).evaluate(METRICS) == pytest.approx(value)


@pytest.mark.parametrize("expr, word", [
    ("__import__('os').system('true')", "call of __import__('os').system"),
    ("__import__('os')", "call of __import__"),
    ("'text'", "constant 'text'"),
    ("pnl.fees_usd < 2", "Compare"),
    ("pnl.fees_usd // 2", "operator FloorDiv"),
    ("~pnl.fees_usd", "operator Invert"),
    ("sqrt(1, 2)", "sqrt() with 2 arguments"),
    ("max(pnl.fees_usd)", "max() with 1 arguments"),
    ("abs(x=1)", "call of abs"),
    ("[pnl.fees_usd]", "List"),
    ("pnl.fees_usd if 1 else 2", "cannot parse"),  # keywords read as names: not Python
    ("lambda: 1", "cannot parse"),
])
def test_anything_but_arithmetic_is_rejected(expr, word):
    with pytest.raises(ConfigError) as e:
        parse_objective(expr)
    assert word in str(e.value) and str(e.value).startswith("objective.expr:")


@pytest.mark.parametrize("expr", ["pnl.fees_usd +", "pnl..fees", "2pnl.fees_usd", ""])
def test_unparsable_is_a_config_error(expr):
    with pytest.raises(ConfigError, match="objective.expr"):
        parse_objective(expr)


def test_unknown_names_are_named_with_close_matches():
    known = known_metric_names()
    with pytest.raises(ConfigError) as e:
        parse_objective("pnl.step_std + 1", known=known)
    assert "unknown metric 'pnl.step_std'" in str(e.value)
    assert "pnl.step_std_usd" in str(e.value)
    with pytest.raises(ConfigError, match="execution.markout_bps.10s"):
        parse_objective("execution.markout_bps.10 * 2", known=known)
    for flag in ("journal_hash", "surface_stream.built"):
        with pytest.raises(ConfigError, match="not a number"):
            parse_objective(flag, known=known)
    # a calibration scheme may report figures of its own: checked per run instead
    obj = parse_objective("calibration.my_scheme_figure", known=known)
    with pytest.raises(ConfigError, match="unknown metric 'calibration.my_scheme_figure'"):
        obj.evaluate({"calibration": {"n_fits": 3}})
    with pytest.raises(ConfigError, match="objective.direction: 'down' is not allowed"):
        parse_objective("pnl.total_usd", "down")


def test_per_run_failures_are_not_config_errors():
    with pytest.raises(ObjectiveValueError, match="pnl.total_usd is null"):
        parse_objective("pnl.total_usd").evaluate(METRICS)
    with pytest.raises(ObjectiveValueError, match="cannot be computed"):
        parse_objective("log(pnl.fees_usd)").evaluate(METRICS)
    with pytest.raises(ObjectiveValueError, match="cannot be computed"):
        parse_objective("pnl.step_std_usd / (pnl.fees_usd + 4)").evaluate(METRICS)
    with pytest.raises(ObjectiveValueError, match="cannot be computed"):  # no endless bigint
        parse_objective("10 ** 10 ** 10").evaluate(METRICS)
    with pytest.raises(ObjectiveValueError, match="cannot be computed"):  # no complex numbers
        parse_objective("pnl.fees_usd ** 0.5").evaluate(METRICS)
    with pytest.raises(ObjectiveValueError, match="not a number"):
        parse_objective("journal_hash").evaluate(METRICS)


def test_from_config_uses_the_objective_node():
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"objective": {"expr": "pnl.total_usd", "direction": "maximize"}})
    obj = objective_from_config(cfg, known_metric_names())
    assert obj.direction == "maximize" and obj.names == ("pnl.total_usd",)
    with pytest.raises(ConfigError, match="objective: missing"):
        objective_from_config(OmegaConf.create({"seed": 0}))


@pytest.fixture
def store(gbm_quarter_hour) -> Path:
    return gbm_quarter_hour


def test_known_names_are_what_a_backtest_writes(store, tmp_path):
    """The start-of-sweep check must accept every numeric metric a run writes, and only
    those (so it cannot drift from the metrics silently)."""
    from hydra import compose, initialize_config_dir

    from replay.app.hydra_app import CONF_DIR
    from replay.model.config import register

    register()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[
            f"data.db={store}", f"+out_dir={tmp_path / 'run'}", "report.html=false",
            "report.markout_horizons_s=[1.0,2.5]", "calibration.every=300s",
            "margin=portfolio", "forecast=all", "forecast.horizons_s=[120.0]",
            "forecast.every_s=60", "forecast.sample_s=10", "forecast.min_returns=6"])
    m = replay.run(cfg)
    # the strings (journal hash, the surface stream's key, path and cache mode) and the flags
    # (whether the stream was built) are no metric
    written = {k for k, v in flatten(m).items() if not isinstance(v, str | bool)}
    assert written == known_metric_names([1.0, 2.5])
    assert "execution.markout_bps.2p5s" in written
    value = parse_objective("pnl.step_std_usd - 0.5 * (pnl.fees_usd + pnl.slippage_usd)",
                            known=written).evaluate(m)
    assert value == pytest.approx(m["pnl"]["step_std_usd"]
                                  - 0.5 * (m["pnl"]["fees_usd"] + m["pnl"]["slippage_usd"]))


def test_config_metric_names_read_the_configs_horizons():
    from omegaconf import OmegaConf

    from replay.analytics.objective import config_metric_names, known_metric_names

    for cfg in ({"report": {"markout_horizons_s": [2.0]}},
                OmegaConf.create({"report": {"markout_horizons_s": [2.0]}})):
        assert "execution.markout_bps.2s" in config_metric_names(cfg)
    # no config, or horizons that do not resolve: the defaults
    assert config_metric_names(None) == known_metric_names()
    broken = OmegaConf.create({"report": {"markout_horizons_s": "${nowhere}"}})
    assert config_metric_names(broken) == known_metric_names()


def test_every_known_name_reads_as_one_name():
    """Each metric an objective may name parses as that one name (the dynamics buckets
    ``dynamics.ssr.7-30d`` and ``dynamics.ssr.90d+`` were read as arithmetic)."""
    for name in sorted(known_metric_names()):
        assert parse_objective(name).names == (name,), name
