"""``run_replay``'s process-level settings: the garbage collector is set for the replay and
given back as it was, also to a caller that froze its own heap."""

from __future__ import annotations

import gc

import pytest

from replay.engine.loop import run_replay
from replay.errors import ConfigError, RefusedAtStart
from tests.replay.engine import MS, build_store
from tests.replay.engine.toys import Periodic


class CollectorProbe(Periodic):
    """Records the collector's settings at every wake."""

    def __init__(self) -> None:
        super().__init__("probe", 500 * MS)
        self.seen: set[tuple] = set()

    def on_wake(self, ctx):
        self.seen.add((gc.get_threshold()[0], gc.get_freeze_count() > 0))
        return super().on_wake(ctx)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    p = tmp_path_factory.mktemp("loop") / "s.duckdb"
    build_store(p, seed=5)
    return p


@pytest.mark.parametrize("caller_froze", [False, True])
def test_replay_sets_the_collector_and_restores_it(store, tmp_path, caller_froze):
    before = gc.get_threshold()
    if caller_froze:
        gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        probe = CollectorProbe()
        run_replay(store, [probe], tmp_path / "r")
        assert probe.n > 0 and probe.seen == {(50_000, True)}
        assert gc.get_threshold() == before
        if caller_froze:  # still frozen: its heap and what the replay froze with it
            assert gc.get_freeze_count() >= frozen > 0
        else:
            assert gc.get_freeze_count() == frozen == 0
    finally:
        gc.unfreeze()


class RefusesAtStart(Periodic):
    def __init__(self) -> None:
        super().__init__("refuses", 500 * MS)

    def on_start(self, ctx):
        raise ConfigError("strategy.hedge: no spot of BTC in the store")


def test_a_consumer_refusing_at_start_is_told_apart_and_the_journal_let_go(store, tmp_path):
    """Its error says nothing was replayed (the run may then free its directory), and the
    journal's writer thread and database are closed: the file can be opened for writing."""
    import threading

    import duckdb

    with pytest.raises(RefusedAtStart, match="strategy.hedge: no spot"):
        run_replay(store, [RefusesAtStart()], tmp_path / "run", progress=False)
    assert not [t for t in threading.enumerate() if t.name.startswith("journal")]
    duckdb.connect(str(tmp_path / "run" / "journal.duckdb")).close()


class FailsAtSecondWake(Periodic):
    def __init__(self) -> None:
        super().__init__("fails", 500 * MS)
        self.wakes = 0

    def on_wake(self, ctx):
        self.wakes += 1
        if self.wakes == 2:
            raise RuntimeError("a consumer failed mid-run")
        return super().on_wake(ctx)


def test_a_failed_run_leaves_no_read_ahead_thread(store, tmp_path):
    """The feed's read-ahead thread ends with the run, also one that failed (it lived on as
    long as the error's traceback did, reading a closed store)."""
    import threading

    with pytest.raises(RuntimeError, match="failed mid-run") as failed:
        run_replay(store, [FailsAtSecondWake()], tmp_path / "run", progress=False,
                   window_ns=20 * MS)  # many windows: the reader is still reading
    assert failed.value is not None  # the traceback, and with it the run's frames, held here
    assert not [t for t in threading.enumerate() if t.name == "volreplay-feed"]


@pytest.mark.parametrize("cadence", [{"snapshot_every_events": 0},
                                     {"snapshot_every_ns": -1}])
def test_a_snapshot_cadence_must_be_positive(store, tmp_path, cadence):
    with pytest.raises(ValueError, match="must be positive"):
        run_replay(store, [Periodic("p", 500 * MS)], tmp_path / "run", progress=False,
                   **cadence)
