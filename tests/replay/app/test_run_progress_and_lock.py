"""A run that is not on a terminal logs progress lines (at most one per interval, with events,
market time and rate) without changing its journal; and the metrics phase waits for a store
whose write lock a concurrent ``volreplay ingest`` holds, then says so in one line."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

import replay
import replay.analytics.execution as analytics
import replay.engine.loop as loop
from replay.errors import StoreError


def _cfg(db: Path, out: Path) -> dict:
    return {"data": {"db": str(db), "window_s": 60.0}, "out_dir": str(out),
            "report": {"html": False},
            "calibration": {"_target_": "replay.consumers.calibration.CalibrationConsumer", "every": "300s"},
            "book": {"_target_": "strategies.books.FixedBook", "size": 1.0},
            "strategy": {"_target_": "strategies.hedging.registry.DeltaBand", "band": 0.1}}


def test_progress_lines_when_not_a_terminal_and_the_same_hash(gbm_quarter_hour, tmp_path,
                                                             monkeypatch, caplog):
    quiet = replay.run(_cfg(gbm_quarter_hour, tmp_path / "quiet"))
    assert not [r for r in caplog.records if r.getMessage().startswith("replay: ")]
    monkeypatch.setattr(loop, "PROGRESS_EVERY_S", 0.0)  # a line at every batch
    with caplog.at_level(logging.INFO, logger="replay.engine.loop"):
        loud = replay.run(_cfg(gbm_quarter_hour, tmp_path / "loud"))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("replay: ")]
    assert len(lines) >= 5  # one per 60 s window of the 15-minute store at least
    assert "events, market time 2025-01-06T00:" in lines[-1] and lines[-1].endswith("events/s")
    assert loud["journal_hash"] == quiet["journal_hash"]


def test_progress_lines_are_throttled(monkeypatch, caplog):
    clock = iter([0.0, 1.0, 5.0, 10.5, 12.0, 21.0])
    monkeypatch.setattr(loop.time, "monotonic", lambda: next(clock))
    tick = loop.ProgressLog(n_events=100, every_s=10.0)  # reads the clock once (t=0)
    with caplog.at_level(logging.INFO, logger="replay.engine.loop"):
        for n in (200, 300, 1150, 1200, 2000):  # at t = 1, 5, 10.5, 12, 21
            tick(n, 1_736_121_600_000_000_000)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["replay: 1,150 events, market time 2025-01-06T00:00:00Z, 100 events/s",
                     "replay: 2,000 events, market time 2025-01-06T00:00:00Z, 81 events/s"]


HOLD_LOCK = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1])  # read-write: DuckDB's write lock, as `volreplay ingest`
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
"""


def _hold_lock(db: Path, seconds: float) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(db), str(seconds)],
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


@pytest.fixture(scope="module")
def finished(gbm_quarter_hour, tmp_path_factory) -> tuple[Path, Path]:
    """A copy of the store (the lock must not disturb other tests) and a run's journal."""
    import shutil

    d = tmp_path_factory.mktemp("lock")
    db = d / "s.duckdb"
    shutil.copy(gbm_quarter_hour, db)
    replay.run(_cfg(db, d / "run"))
    return db, d / "run" / "journal.duckdb"


def test_metrics_on_a_store_being_written_is_one_clear_error(finished, monkeypatch):
    db, journal = finished
    monkeypatch.setattr(analytics, "LOCK_WAIT_S", 0.5)
    holder = _hold_lock(db, 30)
    try:
        t0 = time.monotonic()
        with pytest.raises(StoreError, match=r"is being written by another process .*stayed "
                                             r"locked for 0.5 s") as e:
            analytics.execution_metrics(journal, db, [1.0])
        assert time.monotonic() - t0 >= 0.5
        assert "\n" not in str(e.value)
    finally:
        holder.kill()
        holder.wait()


def test_metrics_wait_for_a_short_write_lock(finished):
    db, journal = finished
    want = analytics.execution_metrics(journal, db, [1.0])
    holder = _hold_lock(db, 1.0)
    try:
        assert analytics.execution_metrics(journal, db, [1.0]) == want
    finally:
        holder.wait()
