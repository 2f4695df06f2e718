"""Cluster launchers: a real two-job sweep through submitit's local executor (our
``hydra/launcher=cluster_local`` preset), the path a SLURM sweep takes, on one machine.

Both jobs run at once in their own processes on the same store, so a job that opened the store
for writing would make the other fail on DuckDB's file lock; and a job run through submitit
must give the journal hash of the same run made in-process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import replay

JOB_ARGS = ["report.html=false", "calibration.every=300s"]


@pytest.fixture
def store(gbm_quarter_hour) -> Path:
    return gbm_quarter_hour


def test_submitit_local_two_jobs(store, tmp_path):
    sweep = tmp_path / "cluster"
    p = subprocess.run(
        [sys.executable, "-m", "replay", "run", "-m", "hydra/launcher=cluster_local",
         "hydra.launcher.timeout_min=5", f"data.db={store}", f"hydra.sweep.dir={sweep}",
         *JOB_ARGS, "strategy=delta_band,whalley_wilmott"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "Submitit 'local' sweep output dir" in p.stdout + p.stderr

    df = pd.read_parquet(sweep / "summary.parquet").set_index("job")
    assert sorted(df["override.strategy"]) == ["delta_band", "whalley_wilmott"]
    assert (df.status == "ok").all(), df.error.tolist()
    hashes = {}
    for job in (0, 1):
        m = json.loads((sweep / str(job) / "metrics.json").read_text())
        assert m["events_replayed"] > 0 and m["execution"]["n_orders"] > 0
        assert m["journal_hash"] == df.loc[job, "journal_hash"]
        hashes[df.loc[job, "override.strategy"]] = m["journal_hash"]
    assert hashes["delta_band"] != hashes["whalley_wilmott"]
    # both jobs started together on one calibration config: at most one built the surface
    # stream (none if an earlier test of the session did), the other waited and read it
    assert df["surface_stream.key"].nunique() == 1
    assert df["surface_stream.built"].sum() <= 1
    assert "surface stream builds: " in p.stdout

    # each job went through submitit: its own folder with the pickled job, result and logs
    folders = [d for d in (sweep / ".submitit").iterdir() if d.name != "%j"]
    assert len(folders) == 2
    for d in folders:
        assert (d / f"{d.name}_0_result.pkl").exists() and (d / f"{d.name}_0_log.err").exists()

    # the same job in this process gives the same journal
    from hydra import compose, initialize_config_dir

    from replay.app.hydra_app import CONF_DIR
    from replay.model.config import register

    register()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"data.db={store}", f"+out_dir={tmp_path / 'local'}",
                                           *JOB_ARGS, "strategy=delta_band"])
    assert replay.run(cfg)["journal_hash"] == hashes["delta_band"]
