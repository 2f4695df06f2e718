"""Stream builds with ``calibration.epoch``: the epochs built in parallel processes and joined
give the stream (every table, row for row) and the journal hash of a serial build and of a
live run; the epoch resets the calibration; a resumed live run crosses a boundary as an
uninterrupted one does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import replay
from replay.app.selection import Selection
from replay.app.surfaces.build import _build_parts, part_starts
from replay.app.surfaces.cache import build_jobs
from replay.errors import BuildError, ConfigError
from replay.units import NS

EPOCH = "5min"  # the 15-minute store holds three epochs


def _cfg(db: Path, out: Path, **calibration) -> dict:
    return {
        "data": {"db": str(db)}, "out_dir": str(out), "seed": 3, "report": {"html": False},
        "calibration": {"_target_": "replay.consumers.calibration.CalibrationConsumer",
                        "model": "svi", "every": "5s", "epoch": EPOCH, "quotes_every_s": 30.0,
                        **calibration},
        "book": {"_target_": "strategies.books.FixedBook", "structure": "straddle",
                 "size": 5.0},
        "strategy": {"_target_": "strategies.hedging.registry.DeltaBand", "band": 0.05,
                     "lot": 0.1},
    }


def _stream(metrics: dict) -> tuple[Path, dict]:
    path = Path(metrics["surface_stream"]["path"])
    return path, json.loads((path / "manifest.json").read_text())


def _tables(path: Path) -> dict:
    """The stream's tables without the fits' wall-clock times (a build's own), NaN as null
    (Arrow's equality finds NaN unequal to itself, null equal to null)."""
    out = {}
    for name in ("wakes", "fits", "quotes"):
        t = pq.read_table(path / f"{name}.parquet")
        t = t.drop_columns([c for c in ("fit_ms", "q_fit_ms") if c in t.column_names])
        for i, f in enumerate(t.schema):
            if pa.types.is_floating(f.type):
                t = t.set_column(i, f.name, pc.if_else(pc.is_nan(t[f.name]), None, t[f.name]))
        out[name] = t
    return out


@pytest.mark.parametrize("calib", [
    {"model": "svi", "latency": 2.0},
    {"model": "essvi", "every": "10s"},
    {"model": "svi", "every": "quality:5", "check_s": 10.0},
])
def test_epochs_built_in_parallel_are_the_serial_and_live_stream(gbm_quarter_hour, tmp_path,
                                                                calib):
    live = replay.run(_cfg(gbm_quarter_hour, tmp_path / "live", cache="off", **calib))
    serial = replay.run(_cfg(gbm_quarter_hour, tmp_path / "serial", cache="refresh",
                             build_jobs=1, **calib))
    path, man_s = _stream(serial)
    serial_tables = _tables(path)  # read now: the next build replaces it (the same key)
    parts = replay.run(_cfg(gbm_quarter_hour, tmp_path / "parts", cache="refresh",
                            build_jobs=3, **calib))
    assert serial["surface_stream"]["key"] == parts["surface_stream"]["key"]  # jobs: not a key
    assert live["journal_hash"] == serial["journal_hash"] == parts["journal_hash"]
    assert live["pnl"] == parts["pnl"]
    man_p = _stream(parts)[1]
    assert (man_s["parts"], man_p["parts"]) == (1, 3)
    assert man_s["calibration_journal_hash"] == man_p["calibration_journal_hash"]
    assert man_s["rows"] == man_p["rows"] and man_s["events"] == man_p["events"]
    assert man_s["dynamics"] == man_p["dynamics"]
    timeless = [{k: v for k, v in m["calibration_metrics"].items() if k != "fit_ms_median"}
                for m in (man_s, man_p)]
    assert timeless[0] == timeless[1]
    part_tables = _tables(path)
    for name, t in serial_tables.items():
        assert t.equals(part_tables[name]), name
    # the wakes of the later parts were renumbered: ordinals rise through the whole stream
    wake = serial_tables["wakes"]["wake"].to_pylist()
    assert wake == sorted(set(wake)) and len(wake) > 10


def test_a_selection_whose_data_ends_early_is_cut_where_its_replay_ends(gbm_quarter_hour,
                                                                        tmp_path):
    """The parts follow the span of the selected instruments, not of the store: a part that
    ran on to its epoch's end would record wakes the serial replay never has."""
    db = tmp_path / "cut.duckdb"
    shutil.copy(gbm_quarter_hour, db)
    with duckdb.connect(str(db)) as con:
        (t0,) = con.execute("SELECT min(ts_recv) FROM option_quotes").fetchone()
        ids = ("SELECT instrument_id FROM instruments WHERE kind = 'perp' OR expiry_ns = "
               "(SELECT min(expiry_ns) FROM instruments WHERE kind = 'option')")
        for t in ("funding", "underlying_quotes", "underlying_trades", "option_quotes",
                  "option_trades"):
            con.execute(f"DELETE FROM {t} WHERE ts_recv >= {t0 + 420 * NS} "
                        f"AND instrument_id IN ({ids})")
        names = [r[0] for r in con.execute(f"SELECT name FROM instruments WHERE instrument_id "
                                           f"IN ({ids}) ORDER BY instrument_id").fetchall()]
    def cfg(out: str, **calibration) -> dict:
        c = _cfg(db, tmp_path / out, **calibration)
        return {**c, "book": None, "strategy": None,
                "data": {"db": str(db), "instruments": names}}
    live = replay.run(cfg("live", cache="off"))
    serial = replay.run(cfg("serial", cache="refresh", build_jobs=1))
    serial_tables = _tables(_stream(serial)[0])
    parts = replay.run(cfg("parts", cache="refresh", build_jobs=3))
    assert live["journal_hash"] == serial["journal_hash"] == parts["journal_hash"]
    assert _stream(parts)[1]["parts"] == 2  # the data ends in the second epoch
    for name, t in _tables(_stream(parts)[0]).items():
        assert t.equals(serial_tables[name]), name


def test_parts_import_a_calibration_class_of_ones_own(gbm_quarter_hour, tmp_path,
                                                     monkeypatch):
    """A part runs in a fresh interpreter: it finds a user's class where the caller found it
    (a folder on the caller's import path, such as its working directory), and builds what
    one process builds."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "my_epochs.py").write_text(
        "from replay.consumers.calibration import CalibrationConsumer\n\n\n"
        "class Mine(CalibrationConsumer):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path / "mine"))
    monkeypatch.setenv("VOLREPLAY_CACHE_DIR", str(tmp_path / "cache"))
    calib = {"_target_": "my_epochs.Mine"}
    serial = replay.run(_cfg(gbm_quarter_hour, tmp_path / "serial", cache="refresh",
                             build_jobs=1, **calib))
    parts = replay.run(_cfg(gbm_quarter_hour, tmp_path / "parts", cache="refresh",
                            build_jobs=3, **calib))
    assert _stream(parts)[1]["parts"] == 3
    assert parts["journal_hash"] == serial["journal_hash"]


def test_a_failing_part_stops_the_build_with_its_log(gbm_quarter_hour, tmp_path):
    calib = {"_target_": "replay.consumers.calibration.CalibrationConsumer", "model": "svi",
             "every": "5s", "epoch": EPOCH}
    sel = Selection(str(tmp_path / "missing.duckdb"))  # every part fails to open it
    # whichever part fails first is reported
    with pytest.raises(BuildError, match=r"part [01] \(from .+\) exited with code 1; "
                                         r"its log ends:\n(.|\n)*does not exist"):
        _build_parts(calib, sel, tmp_path, [300 * NS])
    assert not list(tmp_path.glob("part*/*.parquet"))


def test_an_epoch_starts_the_calibration_afresh(gbm_quarter_hour, tmp_path):
    with_epochs = replay.run(_cfg(gbm_quarter_hour, tmp_path / "e", cache="refresh",
                                  build_jobs=1))
    without = replay.run(_cfg(gbm_quarter_hour, tmp_path / "n", cache="refresh", epoch=None))
    assert with_epochs["journal_hash"] != without["journal_hash"]
    wakes = {label: _tables(_stream(m)[0])["wakes"].to_pandas()
             for label, m in (("epochs", with_epochs), ("none", without))}
    boundary = wakes["epochs"]["ts"] % (300 * NS) == 0
    first = wakes["epochs"][boundary & (wakes["epochs"]["ts"] > wakes["epochs"]["ts"].min())]
    assert len(first) == 2
    # nothing published to score out of sample at an epoch's first wake; and identical
    # streams up to the first boundary
    assert first["oos_n"].isna().all()
    before = wakes["epochs"]["ts"] < first["ts"].min()
    assert wakes["epochs"][before].equals(wakes["none"][wakes["none"]["ts"] < first["ts"].min()])
    none_at = wakes["none"].set_index("ts").loc[first["ts"], "oos_n"]
    assert none_at.notna().all()


def test_a_resumed_live_run_crosses_the_epoch_as_an_uninterrupted_one(gbm_quarter_hour,
                                                                      tmp_path):
    cfg = {**_cfg(gbm_quarter_hour, tmp_path / "full", cache="off"), "snapshot_every_s": 120}
    full = replay.run(cfg)
    run = tmp_path / "cut"
    shutil.copytree(tmp_path / "full", run)
    for f in sorted((run / "snapshots").glob("*.snap"))[2:]:  # keep 2 and 4 minutes
        f.unlink()
    (run / "metrics.json").unlink()
    resumed = replay.run({**cfg, "out_dir": str(run), "resume": str(run)})
    assert resumed["journal_hash"] == full["journal_hash"]


def test_part_starts_group_whole_epochs():
    h = 3600 * NS
    assert part_starts(1, 24 * h - 1, 6 * h, 2) == [12 * h]
    assert part_starts(1, 24 * h - 1, 6 * h, 3) == [6 * h, 18 * h]  # 1 + 2 + 1 epochs
    assert part_starts(1, 24 * h - 1, 6 * h, 16) == [6 * h, 12 * h, 18 * h]
    assert part_starts(1, 24 * h - 1, 24 * h, 4) == []  # one epoch: one part
    assert part_starts(0, 24 * h, 6 * h, 1) == []


@pytest.mark.parametrize("jobs,message", [(-1, "build_jobs"), (1.5, "build_jobs"),
                                          (True, "build_jobs")])
def test_bad_build_jobs_name_the_key(jobs, message):
    with pytest.raises(ConfigError, match=message):
        build_jobs({"build_jobs": jobs})
    assert build_jobs({"build_jobs": 3}) == 3 and build_jobs({}) >= 1
