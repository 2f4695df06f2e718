"""The walk_forward preset: one job per UTC day, data.end derived from data.start, jobs run in
parallel by the joblib launcher, and together they replay the whole store exactly once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from replay.app.resolvers import add_days
from replay.model.schema import MARKET_TABLES
from replay.store import open_store
from replay.store.parquet import export_parquet
from replay.synth import EPOCH_NS, SynthConfig, synthesize
from tests.helpers import one_error_line

NS = 1_000_000_000
DAYS = ["2025-01-05", "2025-01-06"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    """A 15-minute market straddling midnight UTC (so two days), as DuckDB and as Parquet."""
    root = tmp_path_factory.mktemp("wf")
    db = root / "two_days.duckdb"
    synthesize(db, SynthConfig(hours=0.25, seed=5, model="gbm", scale="small",
                               start_ns=EPOCH_NS - 450 * NS))
    export_parquet(db, root / "two_days.parquet")
    return {"duckdb": db, "parquet": root / "two_days.parquet"}


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "replay", "run", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_add_days_keeps_the_iso_form():
    assert add_days("2025-01-05") == "2025-01-06"
    assert add_days("2024-12-31", 1) == "2025-01-01"
    assert add_days("2025-01-05T23:55", "7") == "2025-01-12T23:55:00"
    with pytest.raises(ValueError, match="data.start must be set"):
        add_days(None)
    with pytest.raises(ValueError, match="data.start: .yesterday. is not an ISO date"):
        add_days("yesterday")


@pytest.mark.parametrize("kind", [
    "duckdb",
    "parquet",
])
def test_one_job_per_day_covers_the_store_exactly_once(stores, tmp_path, kind):
    sweep = tmp_path / "wf"
    p = _run("-m", "experiment=walk_forward", f"data.db={stores[kind]}",
             f"data.start={','.join(DAYS)}", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
             f"hydra.sweep.dir={sweep}", "report.html=false", "calibration.every=300s",
             cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    df = pd.read_parquet(sweep / "summary.parquet").sort_values("override.data.start")
    assert list(df["override.data.start"]) == DAYS
    assert (df.status == "ok").all(), list(df.error)
    for job, day in zip(df.job, DAYS):
        data = json.loads((sweep / str(job) / "run.json").read_text())["config"]["data"]
        assert (data["start"], data["end"]) == (day, add_days(day))
    with open_store(stores["duckdb"]) as st:
        total = sum(st.count(t) for t in MARKET_TABLES)
    # the days partition ts_recv: every market event is replayed by exactly one job
    assert df.events_replayed.min() > 0 and df.events_replayed.sum() == total


def test_missing_start_is_one_error_line(stores, tmp_path):
    p = _run("experiment=walk_forward", f"data.db={stores['duckdb']}", "report.html=false",
             cwd=tmp_path)
    assert p.returncode == 2
    assert "error: data.start must be set" in p.stderr and "Traceback" not in p.stderr


def test_a_day_after_the_data_stops_the_sweep_before_any_job(stores, tmp_path):
    """Before: the job replayed 0 events, wrote hash 000... and counted as ok; then: the
    job failed after the others ran."""
    sweep = tmp_path / "wf"
    p = _run("-m", "experiment=walk_forward", f"data.db={stores['duckdb']}",
             "data.start=2025-01-06,2025-01-08", f"hydra.sweep.dir={sweep}",
             "report.html=false", "calibration.every=300s", cwd=tmp_path)
    one_error_line(p, "data.start: 2025-01-08 is after the end of the data",
                   "spans 2025-01-05T23:52:30Z .. 2025-01-06T00:07:29Z",
                   "(in the sweep, data.start=2025-01-08)")
    assert not sweep.exists()
