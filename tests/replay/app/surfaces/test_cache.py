"""The surface-stream cache end to end: a run that replays the cached stream has the journal
hash (and surface dynamics) of a live run (svi, essvi, sabr; with and without calibration
latency; quote-count and quality triggers; from a Parquet store); a change of data or config
is a miss; parallel jobs on a cold cache build once.  How the journal keeps the stream's rows
(linked or copied, across a resume) is in ``test_journal_rows.py``."""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import replay
from replay.app.selection import Selection
from replay.app.surfaces.cache import calibration_config, ensure_stream, stream_key
from replay.consumers.surface_stream import StreamMismatch
from replay.store.journal_file import recompute_hash


def _cfg(db: Path, out: Path, **calibration) -> dict:
    return {
        "data": {"db": str(db)}, "out_dir": str(out), "seed": 3, "report": {"html": False},
        "calibration": {"_target_": "replay.consumers.calibration.CalibrationConsumer",
                        "model": "svi", "every": "60s", **calibration},
        "book": {"_target_": "strategies.books.FixedBook", "structure": "straddle",
                 "size": 5.0},
        "strategy": {"_target_": "strategies.hedging.registry.DeltaBand", "band": 0.05,
                     "lot": 0.1},
    }


@pytest.mark.parametrize("model,latency,every", [
    ("svi", 0.0, "60s"), ("svi", 7.5, "60s"), ("essvi", 0.0, "60s"), ("essvi", 90.0, "60s"),
    ("sabr", 0.0, "60s"), ("sabr", 7.5, "60s"), ("svi", 2.0, "2000q"), ("svi", 0.0, "quality:5"),
    ("svi", 1.5, "1s"),  # a cadence short enough for expiries to be carried over
])
def test_cached_run_has_the_live_journal_hash(gbm_quarter_hour, cold, tmp_path, model, latency,
                                              every):
    calib = {"model": model, "latency": latency, "every": every, "quotes_every_s": 120.0}
    live = replay.run(_cfg(gbm_quarter_hour, tmp_path / "live", cache="off", **calib))
    built = replay.run(_cfg(gbm_quarter_hour, tmp_path / "built", cache="auto", **calib))
    reused = replay.run(_cfg(gbm_quarter_hour, tmp_path / "reused", cache="auto", **calib))
    assert live["surface_stream"]["built"] is False
    assert built["surface_stream"]["built"] is True and reused["surface_stream"]["built"] is False
    assert built["calibration"]["n_fits"] > 0
    assert live["journal_hash"] == built["journal_hash"] == reused["journal_hash"]
    # the spliced rows carry the whole hash: the fits' and quotes' rows as the live run's
    assert recompute_hash(tmp_path / "reused" / "journal.duckdb") == reused["journal_hash"]
    timeless = [{k: v for k, v in m["calibration"].items() if k != "fit_ms_median"}
                for m in (live, built, reused)]  # fit times are wall clock: the build's
    assert timeless[0] == timeless[1] == timeless[2]
    assert built["calibration"]["fit_ms_median"] == reused["calibration"]["fit_ms_median"]
    assert live["pnl"] == reused["pnl"]
    # the surface dynamics measured from the journal: the same block and table
    assert live["dynamics"] == built["dynamics"] == reused["dynamics"]
    assert live["dynamics"]["pairs"] > 0 or every != "60s"  # a trigger may refit too rarely
    tables = [_dynamics_table(tmp_path / d / "journal.duckdb") for d in ("live", "reused")]
    pd.testing.assert_frame_equal(*tables)
    if every == "1s":
        with duckdb.connect(str(tmp_path / "reused" / "journal.duckdb"), read_only=True) as con:
            assert con.execute("SELECT count(*) FROM surface_fits WHERE carried").fetchall()[0][0]


def _dynamics_table(journal: Path):
    with duckdb.connect(str(journal), read_only=True) as con:
        return con.execute("SELECT * FROM surface_dynamics ORDER BY ts, expiry").df()


def test_refresh_rebuilds_and_auto_reuses(gbm_quarter_hour, cold, tmp_path):
    a = replay.run(_cfg(gbm_quarter_hour, tmp_path / "a", cache="refresh"))
    b = replay.run(_cfg(gbm_quarter_hour, tmp_path / "b", cache="refresh"))
    c = replay.run(_cfg(gbm_quarter_hour, tmp_path / "c"))
    assert a["surface_stream"]["built"] and b["surface_stream"]["built"]
    assert not c["surface_stream"]["built"]
    assert a["surface_stream"]["key"] == b["surface_stream"]["key"] == c["surface_stream"]["key"]
    assert a["journal_hash"] == b["journal_hash"] == c["journal_hash"]
    files = list(Path(c["surface_stream"]["path"]).iterdir())
    assert files and all(not (f.stat().st_mode & 0o222) for f in files)  # read-only


def test_the_build_records_the_hash_of_a_calibration_only_run(gbm_quarter_hour, cold, tmp_path):
    """The build's replay stores no journal; the hash it records is the one a live
    calibration-only run stores: no book and no strategy, or the documented ``book=none
    strategy=none`` (whose hedger never trades, so the run leaves it and the marker out)."""
    alone = {"book": None, "strategy": None}
    live = replay.run({**_cfg(gbm_quarter_hour, tmp_path / "live", cache="off"), **alone})
    documented = replay.run({**_cfg(gbm_quarter_hour, tmp_path / "doc", cache="off"),
                             "book": None,
                             "strategy": {"_target_": "strategies.hedging.registry.NoHedge"}})
    assert documented["journal_hash"] == live["journal_hash"]
    built = replay.run(_cfg(gbm_quarter_hour, tmp_path / "built", cache="refresh"))
    stream = Path(built["surface_stream"]["path"])
    manifest = json.loads((stream / "manifest.json").read_text())
    assert manifest["calibration_journal_hash"] == live["journal_hash"]
    assert recompute_hash(tmp_path / "live" / "journal.duckdb") == live["journal_hash"]
    assert not [f for f in stream.rglob("*") if f.suffix in (".duckdb", ".wal")]


def test_a_change_of_data_or_config_is_a_miss(gbm_quarter_hour, cold, tmp_path):
    base = replay.run(_cfg(gbm_quarter_hour, tmp_path / "base"))["surface_stream"]["key"]
    lam = replay.run(_cfg(gbm_quarter_hour, tmp_path / "lam", lam=0.01))["surface_stream"]
    assert lam["built"] and lam["key"] != base
    # a hedger change is not a calibration change: the same stream
    cfg = _cfg(gbm_quarter_hour, tmp_path / "band")
    cfg["strategy"]["band"] = 0.2
    assert replay.run(cfg)["surface_stream"] == {**replay.run(
        _cfg(gbm_quarter_hour, tmp_path / "again"))["surface_stream"]}
    # one changed quote of the data
    db = tmp_path / "edited.duckdb"
    shutil.copy(gbm_quarter_hour, db)
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE option_quotes SET bid_price = bid_price * 0.999 "
                    "WHERE seq = (SELECT min(seq) FROM option_quotes)")
    edited = replay.run(_cfg(db, tmp_path / "edited"))["surface_stream"]
    assert edited["built"] and edited["key"] not in (base, lam["key"])


def test_a_stream_of_another_selection_is_refused(gbm_quarter_hour, cold, tmp_path,
                                                  monkeypatch):
    """The key prevents it; should a stream ever be read by the wrong replay, the wake
    positions recorded in it stop the run instead of publishing wrong surfaces."""
    import replay.app.surfaces.cache as sc

    full = replay.run(_cfg(gbm_quarter_hour, tmp_path / "full"))["surface_stream"]
    real = sc.ensure_stream

    def wrong(node, sel, mode=None, log=None):  # the full span's stream for a later start
        info = real(node, sel, mode=mode, log=log)
        return sc.StreamInfo(info.mode, full["key"], Path(full["path"]), False, None)

    monkeypatch.setattr(sc, "ensure_stream", wrong)
    cfg = _cfg(gbm_quarter_hour, tmp_path / "late")
    cfg["data"]["start"] = "2025-01-06T00:05:00"
    with pytest.raises(StreamMismatch, match="does not match this replay"):
        replay.run(cfg)


@pytest.mark.parametrize("damaged", ["wakes.parquet", "fits.parquet"])
def test_a_damaged_stream_is_refused_naming_the_fix(gbm_quarter_hour, cold, tmp_path, damaged):
    from replay.consumers.stream_reader import StreamReader

    built = Path(replay.run(_cfg(gbm_quarter_hour, tmp_path / "run"))["surface_stream"]["path"])
    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    (copy / damaged).chmod(0o644)
    data = (copy / damaged).read_bytes()
    (copy / damaged).write_bytes(data[: len(data) // 2])
    with pytest.raises(StreamMismatch, match="cannot be read.*calibration.cache=refresh"):
        StreamReader(copy)


@pytest.mark.parametrize("damaged", ["fits.parquet", "dynamics.parquet"])
def test_a_stream_damaged_in_the_cache_is_built_again(gbm_quarter_hour, cold, tmp_path,
                                                      damaged):
    """A cached stream whose file was cut short after it was published is not trusted: the
    next run (or ``volreplay calibrate``) builds it again and gets the same journal.  It was
    reported as found, and every run then failed on reading it (a cut ``dynamics.parquet``
    was not even counted: runs failed on it for good, and one deleted left the journal
    without its ``surface_dynamics`` table)."""
    cfg = _cfg(gbm_quarter_hour, tmp_path / "first", every="120s")
    first = replay.run(cfg)
    path = Path(first["surface_stream"]["path"]) / damaged
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    again = replay.run({**cfg, "out_dir": str(tmp_path / "again")})
    assert again["surface_stream"]["built"] is True
    assert again["journal_hash"] == first["journal_hash"]
    with duckdb.connect(str(tmp_path / "again" / "journal.duckdb"), read_only=True) as con:
        assert con.sql("SELECT count(*) FROM surface_dynamics").fetchall()[0][0] > 0


def test_a_stream_file_damaged_in_place_is_refused_not_read(gbm_quarter_hour, cold, tmp_path):
    """Bits flipped in the fits' parameters, the file's size and footer intact: the cached
    run read other parameters and journaled another hash than a live run's, without a word.
    The stream's pages carry checksums, verified as the replay reads them."""
    import pyarrow.parquet as pq

    from replay.errors import StoreError

    cfg = _cfg(gbm_quarter_hour, tmp_path / "first", every="120s")
    fits = Path(replay.run(cfg)["surface_stream"]["path"]) / "fits.parquet"
    meta = pq.ParquetFile(fits).metadata.row_group(0)
    col = next(meta.column(i) for i in range(meta.num_columns)
               if meta.column(i).path_in_schema.startswith("params"))
    data = bytearray(fits.read_bytes())
    for at in range(col.data_page_offset + 100, col.data_page_offset
                    + col.total_compressed_size - 100, 500):
        data[at] ^= 0x40
    fits.chmod(0o644)
    fits.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"fits.parquet is damaged .*; rebuild it with "
                                         r"calibration.cache=refresh$"):
        replay.run({**cfg, "out_dir": str(tmp_path / "again")})


def test_the_fingerprint_memo_does_not_trust_a_changed_file_identity(gbm_quarter_hour, cold,
                                                                     tmp_path, monkeypatch):
    """The memo was keyed by the file's inode, size and modification time: another store
    copied over it with those kept (``cp -p`` of a store of the same size) read as the
    first one.  Its change time, which no copy can set, is part of the key now."""
    import os

    from replay.app.surfaces.cache import store_fingerprint
    from replay.store.database import MarketStore

    db = tmp_path / "x.duckdb"
    shutil.copy2(gbm_quarter_hour, db)
    hashed = []
    real = MarketStore.fingerprint
    monkeypatch.setattr(MarketStore, "fingerprint", lambda self: hashed.append(1) or real(self))
    fp = store_fingerprint(db)
    assert store_fingerprint(db) == fp and len(hashed) == 1  # memoised
    os.chmod(db, db.stat().st_mode)  # the change time moves; what a copy keeps does not
    assert store_fingerprint(db) == fp and len(hashed) == 2


def test_parquet_store_day_partitions_share_the_stream_of_their_content(gbm_quarter_hour, cold,
                                                                        tmp_path):
    from replay.store.parquet import export_parquet

    pq_store = tmp_path / "pq"
    export_parquet(gbm_quarter_hour, pq_store, partition="day")
    live = replay.run(_cfg(gbm_quarter_hour, tmp_path / "duck", cache="off"))
    a = replay.run(_cfg(pq_store, tmp_path / "pq_a"))
    b = replay.run(_cfg(pq_store, tmp_path / "pq_b"))
    assert a["surface_stream"]["built"] and not b["surface_stream"]["built"]
    assert live["journal_hash"] == a["journal_hash"] == b["journal_hash"]


def _ensure(args) -> dict:
    db, cache = args
    import os

    os.environ["VOLREPLAY_CACHE_DIR"] = cache
    node = {"_target_": "replay.consumers.calibration.CalibrationConsumer", "model": "svi",
            "every": "120s"}
    info = ensure_stream(node, Selection(db), mode="auto")
    return {"built": info.built, "path": str(info.path)}


def test_parallel_jobs_on_a_cold_cache_build_once(gbm_quarter_hour, tmp_path):
    cache = tmp_path / "shared_cache"
    with mp.get_context("spawn").Pool(8) as pool:  # eight sweep jobs starting together
        got = pool.map(_ensure, [(str(gbm_quarter_hour), str(cache))] * 8, chunksize=1)
    assert sum(g["built"] for g in got) == 1
    assert len({g["path"] for g in got}) == 1
    folder = Path(got[0]["path"])
    assert json.loads((folder / "manifest.json").read_text())["rows"]["wakes"] > 0
    # no partial or temporary directory is left beside it
    dirs = {p.name for p in folder.parent.iterdir() if p.is_dir()}
    assert dirs - {"fingerprints"} == {folder.name}


def test_key_depends_on_each_part():
    sel = Selection("x.duckdb", start=1)
    base = stream_key("fp", {"model": "svi"}, sel)
    assert stream_key("fp2", {"model": "svi"}, sel) != base
    assert stream_key("fp", {"model": "sabr"}, sel) != base
    assert stream_key("fp", {"model": "svi"}, Selection("x.duckdb", start=2)) != base
    # where the store lies and the scan window do not change the stream
    assert stream_key("fp", {"model": "svi"}, Selection("y.duckdb", start=1, window_ns=7)) == base


def test_key_reads_a_config_as_it_is_meant():
    """An omitted key is its default, 0 and 0.0 are one value and a null is no value: a
    sweep naming the preset's own values finds the preset's stream."""
    sel = Selection("x.duckdb", start=1)
    target = "replay.consumers.calibration.CalibrationConsumer"
    base = stream_key("fp", {"_target_": target, "model": "svi", "lam": 0.0,
                             "loss": {"band": True, "min_tick_weight": 0.2}}, sel)
    same = [{"_target_": target, "model": "svi", "loss": {"band": True, "min_tick_weight": 0.2}},
            {"_target_": target, "model": "svi", "lam": 0, "epoch": None,
             "loss": {"band": True, "min_tick_weight": 0.2}},
            {"_target_": target, "model": "svi", "lam": 0.0, "check_parity": False,
             "every": "60s", "loss": {"band": True, "min_tick_weight": 0.2}},
            {"_target_": target, "model": "svi",  # a loss key at its default
             "loss": {"band": True, "min_tick_weight": 0.2, "mid_weight": 0.1}},
            {"_target_": target, "model": "svi"},  # no loss: every loss key at its default
            {"_target_": target, "model": "svi", "every": "1min"},  # one interval, two ways
            {"_target_": target, "model": "svi", "every": 60}]
    for calib in same:
        assert stream_key("fp", calib, sel) == base, calib
    assert stream_key("fp", {"_target_": target, "epoch": "1d"}, sel) == \
        stream_key("fp", {"_target_": target, "epoch": "24h"}, sel)
    assert stream_key("fp", {"_target_": target, "epoch": "none"}, sel) == \
        stream_key("fp", {"_target_": target, "epoch": None}, sel) == \
        stream_key("fp", {"_target_": target}, sel)
    for changed in ({"lam": 0.1}, {"every": "1s"}, {"every": "60q"}, {"check_parity": True},
                    {"loss": {"band": True, "min_tick_weight": 0.3}},
                    {"loss": {"band": True, "min_tick_weight": 0.2, "mid_weight": 0.05}}):
        calib = {"_target_": target, "model": "svi", "lam": 0.0,
                 "loss": {"band": True, "min_tick_weight": 0.2}, **changed}
        assert stream_key("fp", calib, sel) != base, changed
    # a target that does not import keys its config as written (the run says what is wrong)
    odd = {"_target_": "nowhere.Calibration", "model": "svi"}
    assert stream_key("fp", odd, sel) != stream_key("fp", {**odd, "lam": 0.0}, sel)
    # an OmegaConf node keys as its plain dict (calibration_config makes the one of the other)
    from omegaconf import OmegaConf

    node = {"_target_": target, "model": "svi", "loss": {"mid_weight": 0.05}}
    assert stream_key("fp", calibration_config(OmegaConf.create(node)), sel) == \
        stream_key("fp", node, sel)


def test_key_of_a_calibration_class_of_ones_own(tmp_path, monkeypatch):
    """A class that does not say how its config is meant (its own ``keyed_config``) is
    keyed as written, even when it subclasses the built-in consumer and changes a default in
    ``**kwargs``; and its source file is in the key."""
    mod = tmp_path / "my_calibration.py"
    mod.write_text("from replay.consumers.calibration import CalibrationConsumer\n\n\n"
                   "class Smooth(CalibrationConsumer):\n"
                   "    def __init__(self, **kw):\n"
                   "        kw.setdefault('lam', 0.5)\n"
                   "        super().__init__(**kw)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    sel = Selection("x.duckdb", start=1)
    mine = {"_target_": "my_calibration.Smooth", "model": "svi"}
    key = stream_key("fp", mine, sel)
    assert stream_key("fp", {**mine, "lam": 0}, sel) != key  # lam 0, not its 0.5
    assert stream_key("fp", {**mine, "epoch": None}, sel) != key  # null is not "left out" here
    mod.write_text(mod.read_text().replace("0.5", "0.25"))
    assert stream_key("fp", mine, sel) != key


def test_calibrate_command_builds_what_the_run_then_reuses(gbm_quarter_hour, cold, tmp_path,
                                                           capsys):
    from replay.app.compose import compose_checked as compose
    from replay.app.surfaces.calibrate import calibrate, main

    overrides = [f"data.db={gbm_quarter_hour}", "calibration.every=45s", "report.html=false"]
    assert main(overrides) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["built"] and printed["rows"]["wakes"] == printed["calibration"]["n_fits"]
    assert printed["parts"] == 1  # no calibration.epoch: one replay
    again = calibrate(compose(overrides))
    assert not again["built"] and again["key"] == printed["key"]
    cfg = compose(overrides)
    cfg.out_dir = str(tmp_path / "run")
    m = replay.run(cfg)
    assert m["surface_stream"]["key"] == printed["key"] and not m["surface_stream"]["built"]
    assert m["calibration"]["n_fits"] == printed["calibration"]["n_fits"]


def test_calibrate_refuses_a_selection_that_holds_no_event(gbm_quarter_hour, cold, tmp_path):
    """A day of a walk-forward that falls in a gap of the store: before, ``volreplay
    calibrate`` reported an empty stream as built, where a run of the same selection is
    refused."""
    from replay.app.compose import compose_checked as compose
    from replay.app.surfaces.calibrate import calibrate
    from replay.errors import ConfigError
    from replay.model.schema import MARKET_TABLES

    db = tmp_path / "gap.duckdb"
    shutil.copy(gbm_quarter_hour, db)
    with duckdb.connect(str(db)) as con:
        t0 = con.sql("SELECT min(ts_recv) FROM underlying_quotes").fetchall()[0][0]
        for t in MARKET_TABLES:
            if t != "instruments":
                con.execute(f"DELETE FROM {t} WHERE ts_recv BETWEEN ? AND ?",
                            [t0 + 300 * 10**9, t0 + 600 * 10**9])
    start = pd.Timestamp(t0 + 360 * 10**9, unit="ns", tz="UTC").isoformat()
    end = pd.Timestamp(t0 + 480 * 10**9, unit="ns", tz="UTC").isoformat()
    with pytest.raises(ConfigError, match="the selection holds no market events"):
        calibrate(compose([f"data.db={db}", f"data.start={start}", f"data.end={end}",
                           "calibration.every=45s"]))
