"""The Hydra application: user mistakes without tracebacks, sweeps with summary and failed
jobs, no silent overwrite, and a user's own strategy class plugged in by ``_target_``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import replay
from replay.engine.wake import WakeCondition
from replay.synth import SynthConfig, synthesize

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("synth") / "s.duckdb"
    synthesize(db, SynthConfig(hours=0.25, seed=5, model="gbm", scale="small"))
    return db


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "replay", "run", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_typo_in_group_option_lists_the_options(store, tmp_path):
    p = _run(f"data.db={store}", "strategy=delta_bnad", cwd=tmp_path)
    assert p.returncode != 0
    assert "delta_band" in p.stderr and "whalley_wilmott" in p.stderr
    assert "Traceback" not in p.stderr


def test_bad_value_is_one_error_line(store, tmp_path):
    p = _run(f"data.db={store}", "strategy.hedge=swap", "report.html=false", cwd=tmp_path)
    assert p.returncode == 2
    assert "strategy.hedge: 'swap' is not allowed; choose one of perp, future, spot" in p.stderr
    assert "Traceback" not in p.stderr
    p = _run("data.db=/nonexistent/x.duckdb", cwd=tmp_path)
    assert p.returncode == 2 and "does not exist" in p.stderr and "Traceback" not in p.stderr


def test_sweep_summary_failed_job_and_no_overwrite(store, tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", f"data.db={store}", f"hydra.sweep.dir={sweep}", "report.html=false",
            "calibration.every=300s", "data.instruments=null,[BTC-PERPETUAL]"]
    p = _run(*args, cwd=tmp_path)
    # a failed job (here a user error only its run can see: the second job's data holds no
    # option for the book) fails the sweep, after the summary is written
    assert p.returncode == 2, p.stderr[-2000:]
    assert "1 of 2 jobs failed" in p.stderr
    df = pd.read_parquet(sweep / "summary.parquet")
    assert len(df) == 2
    ok = df[df.status == "ok"].iloc[0]
    bad = df[df.status == "failed"].iloc[0]
    assert ok["override.data.instruments"] in (None, "null") and ok["journal_hash"]
    assert "book.expiry: no BTC option expiring after the replay start" in bad["error"]
    assert "pnl.total_usd" in df.columns and "calibration.n_fits" in df.columns
    html = (sweep / "sweep.html").read_text()
    assert "<table id=\"jobs\">" in html and "sortBy" in html
    # the same sweep dir again: the first jobs are kept, not overwritten
    p = _run(*args, cwd=tmp_path)
    assert p.returncode == 2
    kept = list(sweep.glob("previous-*/0/metrics.json"))
    assert len(kept) == 1 and "moved them to" in p.stderr


class HoldOneContract:
    """A user's own strategy: buys one contract of the underlying at start, then sleeps."""

    name = "mine"

    def __init__(self, board=None, size: float = 1.0):
        self.size, self.done = size, False

    def on_start(self, ctx):
        return WakeCondition(deadline=ctx.now + 1_000_000_000)

    def on_wake(self, ctx):
        if not self.done:
            ctx.submit(ctx.market.underlying_id, self.size)
            self.done = True
        return None

    def state_dict(self):
        return {"done": self.done}

    def load_state_dict(self, d):
        self.done = d["done"]


def test_user_strategy_class_by_target(store, tmp_path):
    cfg = {"data": {"db": str(store)}, "out_dir": str(tmp_path / "mine"),
           "report": {"html": False}, "calibration": None, "book": None,
           "strategy": {"_target_": f"{__name__}.HoldOneContract", "size": 3.0}}
    m = replay.run(cfg)
    assert m["execution"]["n_orders"] == 1 and m["execution"]["n_fills"] >= 1


def test_joblib_launcher_runs_jobs_in_parallel_on_a_read_only_store(store, tmp_path):
    sweep = tmp_path / "jl"
    p = _run("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"data.db={store}",
             f"hydra.sweep.dir={sweep}", "report.html=false", "calibration.every=300s",
             "strategy=delta_band,whalley_wilmott", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    df = pd.read_parquet(sweep / "summary.parquet")
    assert sorted(df["override.strategy"]) == ["delta_band", "whalley_wilmott"]
    assert (df.status == "ok").all()
