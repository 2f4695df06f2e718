"""The Optuna sweeper (replay/app/sweeps/optuna.py, replay/app/sweeps/space.py): search spaces in Hydra's grammar,
samplers, batches through the launcher, failed jobs as failed trials, resumable studies,
one-line user errors, and an end-to-end ``volreplay run -m hydra/sweeper=optuna`` with joblib.

Most cases use a small Hydra app whose "backtest" is a formula, so that the sweeper's own
behaviour is checked in seconds; the last case runs real backtests on a synthetic store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from replay.app.sweeps.summary import sweep_exit_code
from replay.errors import EXIT_USER_ERROR

TOY_APP = '''
import json
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg):
    out = Path(HydraConfig.get().runtime.output_dir)
    if cfg.mode == "raise":
        raise RuntimeError("asked to raise")
    if cfg.mode == "blank":  # a job that ran but whose objective cannot be computed
        m = {"pnl": {"step_std_usd": None, "fees_usd": 0.0, "slippage_usd": 0.0}}
        (out / "metrics.json").write_text(json.dumps(m))
        return m
    if cfg.mode == "none":  # what volreplay's task does with a failing job
        (out / "error.json").write_text(json.dumps({"error": "ValueError: asked to fail"}))
        return None
    m = {"pnl": {"step_std_usd": (cfg.x - 1.0) ** 2 + cfg.k, "fees_usd": -0.1 * cfg.k,
                 "slippage_usd": 0.0}}
    (out / "metrics.json").write_text(json.dumps(m))
    return m


if __name__ == "__main__":
    main()
'''
TOY_CONFIG = """
x: 0.0
k: 1
mode: ok
objective:
  expr: "pnl.step_std_usd - (pnl.fees_usd + pnl.slippage_usd)"
  direction: minimize
hydra:
  sweep:
    dir: sweep
    subdir: ${hydra.job.num}
  callbacks:
    sweep_summary:
      _target_: replay.app.sweeps.summary.SweepSummary
"""
TOY_SWEEPER = """
defaults:
  - volreplay_optuna
n_trials: 6
n_jobs: 3
params:
  x: tag(log, interval(0.1, 4))
  k: range(1, 4)
"""


def toy_value(x: float, k: int) -> float:
    return (x - 1.0) ** 2 + 1.1 * k


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("toy")
    (d / "app.py").write_text(TOY_APP)
    (d / "conf" / "hydra" / "sweeper").mkdir(parents=True)
    (d / "conf" / "config.yaml").write_text(TOY_CONFIG)
    (d / "conf" / "hydra" / "sweeper" / "toy.yaml").write_text(TOY_SWEEPER)
    return d


def _toy(toy: Path, sweep: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(toy / "app.py"), "-m", f"hydra.sweep.dir={sweep}",
                           *args], cwd=toy, capture_output=True, text=True, timeout=300)


def _results(sweep: Path) -> dict:
    return yaml.safe_load((sweep / "optimization_results.yaml").read_text())


def _job_overrides(job: Path) -> list[str]:
    return yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())


def test_grid_with_failed_jobs(toy, tmp_path):
    sweep = tmp_path / "grid"
    p = _toy(toy, sweep, "hydra/sweeper=volreplay_optuna", "hydra.sweeper.sampler=grid",
             "hydra.sweeper.n_trials=20", "mode=ok,none,raise", "x=range(0,3)")
    assert p.returncode == 0, p.stderr[-3000:]
    res = _results(sweep)
    assert res["n_trials"] == 9 and res["n_complete"] == 3 and res["n_failed"] == 6
    assert res["best_params"] == {"mode": "ok", "x": 1}
    assert res["best_value"] == pytest.approx(toy_value(1, 1))
    assert res["objective"] == {"expr": "pnl.step_std_usd - (pnl.fees_usd + pnl.slippage_usd)",
                                "direction": "minimize"}
    for t in res["trials"]:
        mode = t["params"]["mode"]
        assert t["state"] == ("COMPLETE" if mode == "ok" else "FAIL")
        assert (t["error"] or "") == {"ok": "", "none": "ValueError: asked to fail",
                                      "raise": "RuntimeError: asked to raise"}[mode]
        if mode == "ok":
            assert t["value"] == pytest.approx(toy_value(t["params"]["x"], 1))
        assert sorted(_job_overrides(sweep / str(t["job"]))) == sorted(
            [f"mode={mode}", f"x={t['params']['x']}"])
    # the usual sweep summary, with failures kept and the objective as a column
    df = pd.read_parquet(sweep / "summary.parquet").set_index("job")
    assert len(df) == 9
    for t in res["trials"]:
        row = df.loc[t["job"]]
        if t["state"] == "COMPLETE":
            assert row.status == "ok" and row.objective == pytest.approx(t["value"])
        else:
            assert row.status == "failed" and pd.isna(row.objective)
    assert any("asked to fail" in e for e in df.error.dropna())
    assert "objective" in (sweep / "sweep.html").read_text()


def test_a_search_whose_objective_no_job_can_give_exits_non_zero(toy, tmp_path, capsys):
    """Every job ran and wrote its metrics, but the objective is null on each: no trial
    completed, so the search failed (the sweep's exit code 2: the objective is the user's),
    while a search with one computable trial succeeds."""
    sweep = tmp_path / "null"
    p = _toy(toy, sweep, "hydra/sweeper=volreplay_optuna", "hydra.sweeper.sampler=grid",
             "hydra.sweeper.n_trials=4", "mode=blank", "x=0,1")
    assert p.returncode == 0, p.stderr[-3000:]  # the toy app leaves the exit code to volreplay
    res = _results(sweep)
    assert res["n_complete"] == 0 and res["n_failed"] == 2 and res["best_trial"] is None
    assert all((sweep / str(t["job"]) / "metrics.json").exists() for t in res["trials"])
    assert sweep_exit_code(sweep, search=True) == EXIT_USER_ERROR
    assert "no trial completed" in capsys.readouterr().err
    one = tmp_path / "one"
    p = _toy(toy, one, "hydra/sweeper=volreplay_optuna", "hydra.sweeper.sampler=grid",
             "hydra.sweeper.n_trials=4", "mode=blank,ok", "x=1")
    assert _results(one)["n_complete"] == 1 and sweep_exit_code(one, search=True) == 0


def test_tpe_batches_config_params_and_same_seed_same_trials(toy, tmp_path):
    runs = []
    for name in ("a", "b"):
        sweep = tmp_path / name
        # k is searched in the sweeper's params, but fixed on the command line: that wins
        p = _toy(toy, sweep, "hydra/sweeper=toy", "k=2")
        assert p.returncode == 0, p.stderr[-3000:]
        res = _results(sweep)
        assert res["n_trials"] == 6 and res["n_complete"] == 6 and res["sampler"] == "tpe"
        assert (p.stdout + p.stderr).count("Launching 3 jobs locally") == 2  # n_jobs=3 a batch
        xs = [t["params"]["x"] for t in res["trials"]]
        assert all(set(t["params"]) == {"x"} for t in res["trials"])
        assert all(0.1 <= x <= 4 for x in xs) and len(set(xs)) == 6
        for t in res["trials"]:
            assert "k=2" in _job_overrides(sweep / str(t["job"]))
            assert t["value"] == pytest.approx(toy_value(t["params"]["x"], 2))
        assert res["best_value"] == pytest.approx(min(t["value"] for t in res["trials"]))
        runs.append(xs)
    assert runs[0] == runs[1]


def test_study_in_a_database_continues(toy, tmp_path):
    db = tmp_path / "study.db"
    args = ["hydra/sweeper=volreplay_optuna", "hydra.sweeper.n_trials=2",
            f"hydra.sweeper.storage=sqlite:///{db}", "hydra.sweeper.study_name=toy",
            "hydra.sweeper.sampler=random", "x=interval(-2,4)"]
    first, second = tmp_path / "s1", tmp_path / "s2"
    for sweep, seed in ((first, 1), (second, 2)):
        p = _toy(toy, sweep, *args, f"hydra.sweeper.seed={seed}")
        assert p.returncode == 0, p.stderr[-3000:]
    r1, r2 = _results(first), _results(second)
    assert [t["number"] for t in r1["trials"]] == [0, 1]
    assert [t["number"] for t in r2["trials"]] == [2, 3]
    values = [t["value"] for t in r1["trials"] + r2["trials"]]
    assert r2["best_value"] == pytest.approx(min(values))  # the best of both sweeps
    assert r2["study_name"] == "toy" and db.exists()


@pytest.mark.parametrize("args, message", [
    (["objective.expr=pnl.step_std * 2", "x=interval(0,2)"],
     "objective.expr: unknown metric 'pnl.step_std'; did you mean pnl.step_std_usd"),
    (["objective.direction=up", "x=interval(0,2)"],
     "objective.direction: 'up' is not allowed; choose one of minimize, maximize"),
    (["hydra.sweeper.sampler=cmaes", "x=interval(0,2)"],
     "hydra.sweeper.sampler: 'cmaes' is not allowed; choose one of tpe, random, grid"),
    (["hydra.sweeper.n_trials=0", "x=interval(0,2)"], "hydra.sweeper.n_trials: 0 is out of range"),
    (["x=1"], "hydra/sweeper=optuna: nothing to search"),
    (["hydra.sweeper.sampler=grid", "x=interval(0,2)"], "hydra.sweeper.sampler=grid: x is a continuous interval"),
    (["x=tag(log, interval(0, 2))"], "x: a log interval must start above 0"),
    (["x=tag(sorted, interval(0, 2))"], "x: unknown tag 'sorted'"),
    (["y=interval(0,2)"], "Could not override 'y'"),
    (["hydra.sweeper.storage=band.db", "x=interval(0,2)"],  # was a SQLAlchemy traceback
     "hydra.sweeper.storage: 'band.db': Could not parse SQLAlchemy URL"),
])
def test_user_mistakes_are_one_line_before_any_job(toy, tmp_path, args, message):
    sweep = tmp_path / "bad"
    p = _toy(toy, sweep, "hydra/sweeper=volreplay_optuna", *args)
    assert p.returncode == 2, p.stderr[-3000:]
    assert f"volreplay: error: {message}" in p.stderr
    assert "Traceback" not in p.stderr
    assert not sweep.exists() or not any(c.name.isdigit() for c in sweep.iterdir())


def test_a_stored_study_searched_over_another_space_is_refused(tmp_path):
    """Continuing a stored study with ``x`` now a choice where it was an interval: one
    ConfigError naming the parameters, and the trial opened for it failed, not left RUNNING
    in the storage (Optuna's ValueError was a traceback)."""
    from types import SimpleNamespace

    import optuna

    from replay.app.sweeps.optuna import OptunaSweeper
    from replay.errors import ConfigError

    url = f"sqlite:///{tmp_path / 's.db'}"
    study = optuna.create_study(storage=url, study_name="s")
    study.optimize(lambda t: t.suggest_float("x", 0.0, 2.0), n_trials=1)
    space = SimpleNamespace(distributions={"x": optuna.distributions.CategoricalDistribution(
        [0.1, 0.2])})
    with pytest.raises(ConfigError, match="hydra.sweeper.params: study 's' .* another space"):
        OptunaSweeper._ask(SimpleNamespace(storage=url), study, space, 2)
    states = [t.state.name for t in optuna.load_study(study_name="s", storage=url).trials]
    assert states == ["COMPLETE", "FAIL"]


@pytest.fixture
def store(gbm_quarter_hour) -> Path:
    return gbm_quarter_hour


def test_volreplay_optuna_sweep_with_joblib(store, tmp_path):
    """Real backtests: two trials at a time through joblib, one of three fails, the objective
    comes from the command line, and `volreplay report` rebuilds the objective column."""
    sweep = tmp_path / "opt"
    expr = "pnl.step_std_usd + 2 * abs(pnl.fees_usd)"
    p = subprocess.run(
        [sys.executable, "-m", "replay", "run", "-m", "hydra/sweeper=optuna",
         "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
         "hydra.sweeper.sampler=grid", f"objective.expr='{expr}'", f"data.db={store}",
         f"hydra.sweep.dir={sweep}", "report.html=false", "calibration.every=300s",
         "strategy.band=choice(0.05,0.2,-1)"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    res = _results(sweep)
    assert res["objective"]["expr"] == expr and res["n_trials"] == 3
    values = {}
    for t in res["trials"]:
        job = sweep / str(t["job"])
        if t["params"]["strategy.band"] == -1:
            assert t["state"] == "FAIL" and "strategy.band" in t["error"]
            assert (job / "error.json").exists()
            continue
        m = json.loads((job / "metrics.json").read_text())
        assert t["state"] == "COMPLETE"
        assert t["value"] == pytest.approx(m["pnl"]["step_std_usd"] + 2 * abs(m["pnl"]["fees_usd"]))
        values[t["job"]] = t["value"]
    assert len(values) == 2 and res["best_value"] == pytest.approx(min(values.values()))
    df = pd.read_parquet(sweep / "summary.parquet").set_index("job")
    assert (df.status == "failed").sum() == 1
    for job, v in values.items():
        assert df.loc[job, "objective"] == pytest.approx(v)
    # a re-render reads the objective from the sweep's multirun.yaml
    (sweep / "summary.parquet").unlink()
    r = subprocess.run([sys.executable, "-m", "replay", "report", str(sweep)], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    again = pd.read_parquet(sweep / "summary.parquet").set_index("job")
    for job, v in values.items():
        assert again.loc[job, "objective"] == pytest.approx(v)
