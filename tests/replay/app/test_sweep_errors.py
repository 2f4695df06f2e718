"""User errors of a sweep (``volreplay run -m``): every job's config, each swept value and the
objective are checked before any job runs, a job that fails is named in the sweep's summary
and exit code, and an experiment's own sweep is part of the check."""

from __future__ import annotations

import pytest

from replay.errors import EXIT_USER_ERROR, ConfigError
from tests.helpers import one_error_line
from tests.replay.app.test_run_errors import _run


def test_grid_sweep_with_a_failed_job_exits_non_zero_after_its_summary(gbm_quarter_hour,
                                                                        tmp_path):
    import pandas as pd

    sweep = tmp_path / "sweep"
    p = _run("-m", f"data.db={gbm_quarter_hour}", f"hydra.sweep.dir={sweep}",
             "report.html=false", "calibration.every=300s",
             # the second job's data holds no option for the book: its run refuses it
             "data.instruments=null,[BTC-PERPETUAL]", cwd=tmp_path)
    assert p.returncode == EXIT_USER_ERROR, p.stderr[-3000:]
    assert "1 of 2 jobs failed" in p.stderr
    df = pd.read_parquet(sweep / "summary.parquet").set_index("job")
    assert list(df.status) == ["ok", "failed"]
    assert "book.expiry: no BTC option expiring after the replay start" in df.loc[1, "error"]


def test_a_sweep_checks_each_jobs_hedge_instrument_before_any_job(gbm_quarter_hour, tmp_path):
    """The store has no spot to hedge with: refused before the first job (and before a
    surface stream is built for it), naming the job."""
    sweep = tmp_path / "sweep"
    p = _run("-m", f"data.db={gbm_quarter_hour}", f"hydra.sweep.dir={sweep}",
             "report.html=false", "calibration.every=300s", "strategy.hedge=perp,spot",
             cwd=tmp_path)
    one_error_line(p, "strategy.hedge: no spot of BTC in the store",
                   "(in the sweep, strategy.hedge=spot)")
    assert not (sweep / "0").exists()


@pytest.mark.parametrize("override, needle", [
    ("objective.expr=pnl.fees", "objective.expr: unknown metric 'pnl.fees'"),
    ("objective.direction=up", "objective.direction"),
    # a word Hydra cannot parse: its own message (before, a check of the default config's
    # store, "store datasets/demo.duckdb does not exist", from outside the checkout)
    ("book.size=[1", "no viable alternative at input '[1'"),
])
def test_grid_sweep_checks_its_objective_before_any_job(gbm_quarter_hour, tmp_path, override,
                                                        needle):
    sweep = tmp_path / "sweep"
    p = _run("-m", f"data.db={gbm_quarter_hour}", f"hydra.sweep.dir={sweep}",
             "report.html=false", "calibration.every=300s", "strategy.band=0.1,0.2", override,
             cwd=tmp_path)
    one_error_line(p, needle)
    assert not list(sweep.glob("*/metrics.json"))


@pytest.mark.parametrize("swept, needles", [
    ("strategy.band=0.1,abc", ("strategy.band: 'abc' is not a number",
                               "(in the sweep, strategy.band=abc)")),
    ("strategy=delta_band,delta_bnad", ("strategy=delta_bnad: no such option",)),
])
def test_grid_sweep_checks_each_value_before_any_job(gbm_quarter_hour, tmp_path, swept,
                                                    needles):
    sweep = tmp_path / "sweep"
    p = _run("-m", f"data.db={gbm_quarter_hour}", f"hydra.sweep.dir={sweep}",
             "report.html=false", "calibration.every=300s", swept, cwd=tmp_path)
    one_error_line(p, *needles)
    assert not sweep.exists()


def test_grid_sweep_checks_each_job_before_any_job(gbm_quarter_hour, tmp_path):
    # each value is valid alone, but periodic has no band: the job that combines them is
    # named, with the keys periodic allows
    sweep = tmp_path / "sweep"
    p = _run("-m", f"data.db={gbm_quarter_hour}", f"hydra.sweep.dir={sweep}",
             "report.html=false", "calibration.every=300s", "strategy=delta_band,periodic",
             "strategy.band=0.05,0.1", cwd=tmp_path)
    line = one_error_line(p, "strategy.band: unknown key",
                          "(in the sweep, strategy=periodic strategy.band=0.05)")
    assert "period_ns" in line and " band," not in line
    assert not sweep.exists()


@pytest.fixture
def checked_jobs(monkeypatch) -> list[list[str]]:
    """The override lists the sweep check composes, one per job, with composing and every
    check after it stubbed out."""
    from replay.app import hydra_app

    checked: list[list[str]] = []
    monkeypatch.setattr(hydra_app, "compose_checked", lambda words: checked.append(words) or {})
    monkeypatch.setattr("replay.model.config.checked_config", lambda cfg: None)
    monkeypatch.setattr("replay.app.selection.resolve_data", lambda data: None)
    monkeypatch.setattr("replay.analytics.objective.checked_objective", lambda cfg: None)
    return checked


def test_a_large_grid_is_checked_value_by_value(monkeypatch, checked_jobs):
    from replay.app import hydra_app
    from replay.errors import ConfigError

    checked = checked_jobs
    small = ["strategy.band=0.1,0.2", "strategy.min_trade=1,2,3"]
    hydra_app._check_sweep(small)
    assert len(checked) == 6 and ["strategy.band=0.2", "strategy.min_trade=3"] in checked
    checked.clear()
    grid = [f"strategy.band={','.join(map(str, range(1, 9)))}",
            f"strategy.min_trade={','.join(map(str, range(1, 10)))}"]  # 72 jobs
    hydra_app._check_sweep(grid)
    assert len(checked) == 17 and ["strategy.min_trade=9"] in checked

    def bad(words):
        raise ConfigError("strategy.band: no")
    monkeypatch.setattr(hydra_app, "compose_checked", bad)
    with pytest.raises(ConfigError, match=r"\(in the sweep, strategy.band=0.1 "
                                          r"strategy.min_trade=1\)"):
        hydra_app._check_sweep(small)


def test_a_swept_key_keeps_its_add_prefix_in_each_checked_job(checked_jobs):
    # a job of `+key=a,b` or `++key=a,b` is composed as Hydra composes it: with the prefix
    from replay.app import hydra_app

    hydra_app._check_sweep(["+strategy.extra=1,2", "++strategy.band=0.1,0.2"])
    assert sorted(checked_jobs) == [[f"+strategy.extra={a}", f"++strategy.band={b}"]
                                    for a in (1, 2) for b in (0.1, 0.2)]


def test_an_experiments_own_sweep_is_part_of_the_check(gbm_quarter_hour):
    """hedge_frontier sweeps strategy=whalley_wilmott,zakamouline in its hydra.sweeper.params:
    a key of those strategies given on the command line is checked against them (it was
    refused against the base config's delta_band), and a job's error names the preset's
    values with the command line's."""
    from replay.app.hydra_app import _check_sweep

    base = ["-m", "experiment=hedge_frontier", f"data.db={gbm_quarter_hour}"]
    _check_sweep([*base, "strategy.risk_aversion=0.5,1"])
    with pytest.raises(ConfigError, match=r"venue.latency_ms: -5.0 is out of range.*\(in the "
                                          r"sweep, strategy=whalley_wilmott "
                                          r"strategy.risk_aversion=0.0001\)"):
        _check_sweep([*base, "venue.latency_ms=-5"])

