"""``volreplay run resume=...`` end to end: ``resume=<run dir>`` alone continues in that
directory to the uninterrupted hash; a resume that finds nothing, or a new run pointed at a
used directory, stops with one error line and leaves every file of the earlier run as it was;
a resume with another config is refused naming the keys; the snapshot used is logged."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from replay.errors import EXIT_USER_ERROR

ARGS = ["report.html=false", "calibration.every=300s", "snapshot_every_s=120"]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "replay", "run", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _hash(run_dir: Path) -> str:
    return json.loads((run_dir / "metrics.json").read_text())["journal_hash"]


@pytest.fixture(scope="module")
def full(gbm_quarter_hour, tmp_path_factory) -> Path:
    """A finished run with snapshots every 2 market minutes."""
    d = tmp_path_factory.mktemp("resume_cli")
    p = _run(f"data.db={gbm_quarter_hour}", f"hydra.run.dir={d / 'full'}", *ARGS, cwd=d)
    assert p.returncode == 0, p.stderr[-3000:]
    assert len(list((d / "full" / "snapshots").glob("*.snap"))) >= 5
    return d / "full"


@pytest.fixture
def killed(full, tmp_path) -> Path:
    """The run as if killed after its third snapshot: later snapshots and results gone."""
    run = tmp_path / "killed"
    shutil.copytree(full, run)
    for f in sorted((run / "snapshots").glob("*.snap"))[3:]:
        f.unlink()
    for name in ("metrics.json",):
        (run / name).unlink()
    return run


def test_resume_with_the_run_dir_alone_continues_there(gbm_quarter_hour, full, killed, tmp_path):
    hydra_record = _tree(killed / ".hydra")
    p = _run(f"data.db={gbm_quarter_hour}", *ARGS, f"resume={killed}", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"run: {killed}" in p.stdout
    third = sorted((full / "snapshots").glob("*.snap"))[2].name
    assert f"resuming {killed} from snapshot {killed / 'snapshots' / third}" in p.stderr
    assert _hash(killed) == _hash(full)
    assert _tree(killed / ".hydra") == hydra_record  # how the run was started is kept
    assert not (tmp_path / "reports").exists()  # no stray new run directory


def test_resume_alone_takes_the_overrides_the_run_was_started_with(full, killed, tmp_path):
    p = _run(f"resume={killed}", cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    assert _hash(killed) == _hash(full)


def test_a_mistyped_resume_touches_nothing(gbm_quarter_hour, killed, tmp_path):
    before = _tree(killed)
    (tmp_path / "typo").mkdir()
    for wrong in (tmp_path / "no_such_dir", tmp_path / "typo"):
        p = _run(f"data.db={gbm_quarter_hour}", *ARGS, f"resume={wrong}",
                 f"hydra.run.dir={killed}", cwd=tmp_path)
        assert p.returncode == EXIT_USER_ERROR, p.stderr[-3000:]
        assert "volreplay: error: resume:" in p.stderr and "Traceback" not in p.stderr
        assert "starting from the beginning" not in p.stderr
    assert _tree(killed) == before


def test_a_new_run_never_reuses_a_run_directory(gbm_quarter_hour, killed, tmp_path):
    before = _tree(killed)
    p = _run(f"data.db={gbm_quarter_hour}", *ARGS, f"hydra.run.dir={killed}", cwd=tmp_path)
    assert p.returncode == EXIT_USER_ERROR
    assert f"{killed} already holds a run (journal.duckdb)" in p.stderr
    assert f"resume={killed}" in p.stderr
    assert _tree(killed) == before


@pytest.mark.parametrize("change, keys", [
    (["strategy=whalley_wilmott"], "in strategy._target_, strategy.band"),
    (["book=none"], "in book (book: FixedBook -> null)"),
    (["calibration.every=60s"], "in calibration.every (calibration.every: '300s' -> '60s')"),
    (["snapshot_every_s=60"], "in snapshot_every_s"),
])
def test_a_resume_with_another_config_is_refused(gbm_quarter_hour, killed, tmp_path, change,
                                                 keys):
    before = _tree(killed)
    args = [a for a in ARGS if a.split("=")[0] not in {c.split("=")[0] for c in change}]
    p = _run(f"data.db={gbm_quarter_hour}", *args, *change, f"resume={killed}", cwd=tmp_path)
    assert p.returncode == EXIT_USER_ERROR, p.stderr[-3000:]
    assert "Traceback" not in p.stderr
    assert f"resume: the config differs from the one {killed} was started with, {keys}" \
        in p.stderr
    assert _tree(killed) == before


def test_resume_into_another_directory_is_refused(gbm_quarter_hour, killed, tmp_path):
    p = _run(f"data.db={gbm_quarter_hour}", *ARGS, f"resume={killed}",
             f"hydra.run.dir={tmp_path / 'elsewhere'}", cwd=tmp_path)
    assert p.returncode == EXIT_USER_ERROR
    assert "a resume continues in its own directory" in p.stderr
    assert not (tmp_path / "elsewhere").exists()


def test_a_resume_after_the_store_changed_is_refused(gbm_quarter_hour, tmp_path):
    """A snapshot's place in each table is a ``seq``, which an ingest merging into the stored
    history renumbers.  Before, a resume after such an ingest replayed other rows from the
    snapshot on and finished without a word (its hash matched neither store)."""
    from replay.ingest import ingest
    from replay.store import open_store

    db, run = tmp_path / "s.duckdb", tmp_path / "run"
    shutil.copy(gbm_quarter_hour, db)
    p = _run(f"data.db={db}", f"hydra.run.dir={run}", *ARGS, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    for f in [*sorted((run / "snapshots").glob("*.snap"))[3:], run / "metrics.json"]:
        f.unlink()
    with open_store(db, read_only=False) as s:
        (name, ts), = s.con.sql("SELECT i.name, min(q.ts_recv) FROM underlying_quotes q JOIN "
                                "instruments i USING (instrument_id) GROUP BY ALL ORDER BY 2 LIMIT 1").fetchall()
        csv = tmp_path / "underlying_quotes.csv"
        csv.write_text("ts_exchange,ts_recv,instrument,bid_price,ask_price\n"
                       f"{ts + 1},{ts + 1},{name},100.0,101.0\n")
        assert ingest(s, "canonical", [str(csv)]).ingested == 1
    before = _tree(run)
    p = _run(f"data.db={db}", *ARGS, f"resume={run}", cwd=tmp_path)
    assert p.returncode == EXIT_USER_ERROR, p.stderr[-3000:]
    assert f"resume: the store {db} has changed since {run} was started" in p.stderr
    assert _tree(run) == before
