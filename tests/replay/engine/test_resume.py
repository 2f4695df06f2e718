from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from replay.engine import snapshot
from replay.engine.loop import run_replay
from replay.errors import ConfigError
from replay.store.journal_file import recompute_hash
from tests.replay.engine import MS, build_store
from tests.replay.engine.test_engine_equivalence import _same, journal_rows, toys
from tests.replay.engine.toys import TouchVenue

ROOT = Path(__file__).resolve().parents[3]
SETTINGS = {"snapshot_every_events": 150, "snapshot_every_ns": 11_000 * MS,
            "window_ns": 3_000 * MS, "seed": 11}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("resume")
    ids = build_store(d / "s.duckdb", seed=5)
    full = run_replay(d / "s.duckdb", toys(ids), d / "full", venue=TouchVenue(), **SETTINGS)
    return d, ids, full


def _resume(d: Path, ids, out: Path, where) -> str:
    res = run_replay(d / "s.duckdb", toys(ids), out, venue=TouchVenue(), resume=where, **SETTINGS)
    assert recompute_hash(res.journal_path) == res.journal_hash  # the cut journal is consistent
    return res.journal_hash


def test_sigkill_mid_run_then_resume_gives_the_same_hash(world, tmp_path):
    d, ids, full = world
    out = tmp_path / "killed"
    done = tmp_path / "done"
    script = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from replay.engine.loop import run_replay
        from tests.replay.engine.toys import TouchVenue
        from tests.replay.engine.test_engine_equivalence import toys
        from tests.replay.engine.test_resume import SETTINGS
        from replay.store import open_store
        with open_store({str(d / 's.duckdb')!r}) as st:
            ids = st.instrument_ids()
        run_replay({str(d / 's.duckdb')!r}, toys(ids), {str(out)!r}, venue=TouchVenue(),
                   batch_rows=40, progress=lambda n, now: time.sleep(0.1), prefetch=False,
                   **SETTINGS)
        Path({str(done)!r}).write_text("done")
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        snaps = out / "snapshots"
        while time.monotonic() < deadline and proc.poll() is None:
            if snaps.is_dir() and len(list(snaps.glob("*.snap"))) >= 2:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL and not done.exists()
    assert _resume(d, ids, out, out) == full.journal_hash
    got, want = journal_rows(out / "journal.duckdb"), journal_rows(full.journal_path)
    assert got.keys() == want.keys()
    assert all(_same(got[t], want[t]) for t in want)


def test_resume_from_any_snapshot(world, tmp_path):
    d, ids, full = world
    files = sorted((d / "full" / "snapshots").glob("*.snap"))
    assert len(files) >= 6
    for f in (files[0], files[len(files) // 2], files[-1]):
        out = tmp_path / f.stem
        shutil.copytree(d / "full", out)
        assert _resume(d, ids, out, out / "snapshots" / f.name) == full.journal_hash


def test_torn_snapshots_are_skipped_never_loaded(world, tmp_path):
    d, ids, full = world
    out = tmp_path / "torn"
    shutil.copytree(d / "full", out)
    files = sorted((out / "snapshots").glob("*.snap"))
    newest, second = files[-1], files[-2]
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # torn write
    raw = bytearray(second.read_bytes())
    raw[-10] ^= 0xFF  # flipped bit, right length
    second.write_bytes(bytes(raw))
    for f, why in ((newest, "header says"), (second, "checksum")):
        with pytest.raises(ValueError, match=why):
            snapshot.read(f)
    with pytest.warns(snapshot.SnapshotWarning) as rec:
        h = _resume(d, ids, out, out)
    msgs = " ".join(str(w.message) for w in rec)
    assert newest.name in msgs and second.name in msgs
    assert h == full.journal_hash


def _tree(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_no_usable_snapshot_is_an_error_and_nothing_is_deleted(world, tmp_path):
    """Starting over would discard the journal of the run the user meant to continue."""
    d, ids, full = world
    out = tmp_path / "none"
    shutil.copytree(d / "full", out)
    snaps = sorted((out / "snapshots").glob("*.snap"))
    # one written by an older version (whole, but its running hash means something else),
    # the rest torn
    snaps[-1].write_bytes(b"VRSNAP01" + snaps[-1].read_bytes()[8:])
    for f in snaps[:-1]:
        f.write_bytes(b"VRSNAP01")
    before = _tree(out)
    with pytest.warns(snapshot.SnapshotWarning) as rec, \
            pytest.raises(ConfigError, match=r"resume: no usable snapshot .*nothing was changed"):
        _resume(d, ids, out, out)
    assert sum("skipping unusable snapshot" in str(w.message) for w in rec) >= 6
    assert any("another version" in str(w.message) for w in rec)
    assert _tree(out) == before


def test_mistyped_resume_path_touches_nothing(world, tmp_path):
    d, ids, full = world
    out = tmp_path / "killed"
    shutil.copytree(d / "full", out)
    before = _tree(out)
    for wrong in (tmp_path / "no_such_run", tmp_path):  # missing; exists but holds no snapshot
        with pytest.raises(ConfigError, match="resume: "):
            _resume(d, ids, out, wrong)
    assert _tree(out) == before


def test_a_refused_resume_leaves_the_journal_whole(world, tmp_path):
    """A resume that does not fit the run (a consumer fewer, or the reference engine) is
    refused before the journal is cut back to the snapshot: the run can still be resumed."""
    d, ids, full = world
    out = tmp_path / "refused"
    shutil.copytree(d / "full", out)
    first = sorted((out / "snapshots").glob("*.snap"))[0]
    events = _journal_events(out)
    with pytest.raises(ConfigError, match="resume: the snapshot holds consumers"):
        run_replay(d / "s.duckdb", toys(ids)[:-1], out, venue=TouchVenue(), resume=first,
                   **SETTINGS)
    with pytest.raises(ValueError, match="does not resume"):
        run_replay(d / "s.duckdb", toys(ids), out, venue=TouchVenue(), resume=first,
                   engine="reference", **SETTINGS)
    assert _journal_events(out) == events
    assert _resume(d, ids, out, first) == full.journal_hash


def _journal_events(run: Path) -> int:
    import duckdb

    with duckdb.connect(str(run / "journal.duckdb"), read_only=True) as con:
        return con.sql("SELECT count(*) FROM journal").fetchall()[0][0]
