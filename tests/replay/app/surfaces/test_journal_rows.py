"""How a run's journal keeps the rows of the surface stream it replays: linked to the stream's
files or copied (``calibration.journal_rows``), with the rows, types and hash of a live run;
copied where DuckDB would read the cache's path as a glob; and stored from a resume on,
whichever way the run began."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import replay
from replay.errors import ConfigError
from replay.store.journal_file import recompute_hash
from tests.replay.app.surfaces.test_cache import _cfg


def test_linked_and_copied_rows_are_the_live_runs(gbm_quarter_hour, cold, tmp_path):
    """``calibration.journal_rows=link`` (the default) makes the journal's ``surface_fits``
    and ``calibration_quotes`` views of the stream's files, ``copy`` stores them: both hold
    the rows of a live run (but for its own wall-clock ``fit_ms``), under the same hash."""
    calib = {"every": "5s", "quotes_every_s": 30.0}
    runs = {name: replay.run(_cfg(gbm_quarter_hour, tmp_path / name, **calib, **extra))
            for name, extra in (("live", {"cache": "off"}), ("copy", {"journal_rows": "copy"}),
                                ("link", {}))}
    assert len({m["journal_hash"] for m in runs.values()}) == 1
    stream = Path(runs["link"]["surface_stream"]["path"])
    rows, kinds = {}, {}
    for name in runs:
        journal = tmp_path / name / "journal.duckdb"
        assert recompute_hash(journal) == runs[name]["journal_hash"]
        with duckdb.connect(str(journal), read_only=True) as con:
            kinds[name] = dict(con.sql(
                "SELECT table_name, table_type FROM information_schema.tables WHERE "
                "table_name IN ('surface_fits', 'calibration_quotes')").fetchall())
            rows[name] = [con.sql(f"SELECT * FROM {t} ORDER BY seq, {by}").df()
                          for t, by in (("surface_fits", "expiry"),
                                        ("calibration_quotes", "instrument"))]
            meta = dict(con.sql("SELECT key, value FROM journal_meta").fetchall())
        assert ("link:surface_fit" in meta) == (name == "link")
    assert kinds["link"] == {"surface_fits": "VIEW", "calibration_quotes": "VIEW"}
    assert set(kinds["copy"].values()) == set(kinds["live"].values()) == {"BASE TABLE"}
    assert meta["link:calibration_quotes"] == str((stream / "quotes.parquet").resolve())
    for linked, copied, live in zip(rows["link"], rows["copy"], rows["live"]):
        assert len(linked) > 0
        pd.testing.assert_frame_equal(linked, copied)
        if "fit_ms" in live:
            linked, live = linked.drop(columns="fit_ms"), live.drop(columns="fit_ms")
        pd.testing.assert_frame_equal(linked, live)


def test_a_bad_journal_rows_is_named(gbm_quarter_hour, cold, tmp_path):
    with pytest.raises(ConfigError, match="calibration.journal_rows: 'views'"):
        replay.run(_cfg(gbm_quarter_hour, tmp_path / "x", journal_rows="views"))


def test_a_cache_path_duckdb_would_glob_copies_the_rows(gbm_quarter_hour, tmp_path,
                                                       monkeypatch):
    """A cache folder whose path DuckDB would read as a glob (``[``, ``*``, ``?``) cannot be
    named by a view: the journal copies the stream's rows, under the same hash."""
    from replay.store.journal_file import links

    monkeypatch.setenv("VOLREPLAY_CACHE_DIR", str(tmp_path / "cache[1]"))
    m = replay.run(_cfg(gbm_quarter_hour, tmp_path / "run"))
    assert m["surface_stream"]["built"] and "cache[1]" in m["surface_stream"]["path"]
    journal = tmp_path / "run" / "journal.duckdb"
    with duckdb.connect(str(journal), read_only=True) as con:
        assert links(con) == {}
        assert con.sql("SELECT count(*) FROM surface_fits").fetchall()[0][0] > 0
    assert recompute_hash(journal) == m["journal_hash"]


@pytest.mark.parametrize("first,then", [
    ({}, {}),                                            # linked, resumed linking
    ({"journal_rows": "copy"}, {}),                      # copied, resumed linking
    ({}, {"journal_rows": "copy", "cache": "refresh"}),  # linked, the stream rebuilt
])
def test_resume_of_a_cached_run_reaches_the_uninterrupted_hash(gbm_quarter_hour, cold,
                                                               tmp_path, first, then):
    """A run resumed from a snapshot, whether its journal linked or copied the stream's rows
    and whichever ``journal_rows`` the resume runs with, reaches the uninterrupted run's hash
    and rows, and its journal then stores them (it reads no stream: the audit recomputes the
    hash from its own tables).  Resuming it with ``calibration.cache=off`` is refused: a live
    scheme would start without the fits it warm-starts from, another journal."""
    from replay.engine import snapshot as snap

    def cfg(**calibration) -> dict:
        return {**_cfg(gbm_quarter_hour, tmp_path / "full", latency=45.0, **calibration),
                "snapshot_every_s": 120}

    full = replay.run(cfg(**first))
    run = tmp_path / "cut"
    shutil.copytree(tmp_path / "full", run)
    for f in sorted((run / "snapshots").glob("*.snap"))[3:]:
        f.unlink()
    (run / "metrics.json").unlink()
    assert snap.find_latest(run)[0] is not None
    before = sorted(p.name for p in run.rglob("*"))
    with pytest.raises(ConfigError, match=r"calibration\.cache: 'auto' -> 'off'"):
        replay.run({**cfg(**first, cache="off"), "out_dir": str(run), "resume": str(run)})
    assert sorted(p.name for p in run.rglob("*")) == before
    resumed = replay.run({**cfg(**then), "out_dir": str(run), "resume": str(run)})
    assert resumed["journal_hash"] == full["journal_hash"]
    assert recompute_hash(run / "journal.duckdb") == full["journal_hash"]
    rows = {}
    for name in ("cut", "full"):
        with duckdb.connect(str(tmp_path / name / "journal.duckdb"), read_only=True) as con:
            if name == "cut":
                assert {r[0] for r in con.sql("SELECT table_name FROM duckdb_tables()")
                        .fetchall()} >= {"surface_fits", "calibration_quotes"}
                assert con.sql("SELECT count(*) FROM journal_links").fetchall() == [(0,)]
            # fit_ms is the wall clock of a live fit
            rows[name] = [con.sql(f"SELECT {cols} FROM {t} ORDER BY seq, {by}").df()
                          for t, cols, by in (("surface_fits", "* EXCLUDE (fit_ms)", "expiry"),
                                              ("calibration_quotes", "*", "instrument"))]
    for got, want in zip(rows["cut"], rows["full"]):
        assert len(got) > 0
        pd.testing.assert_frame_equal(got, want)
    if not first and not then:
        live = replay.run({**_cfg(gbm_quarter_hour, tmp_path / "live", latency=45.0,
                                  cache="off"), "snapshot_every_s": 120})
        assert live["journal_hash"] == full["journal_hash"]
