"""A stream written in row groups during the build is the stream written at the end, and the
reader serves back exactly what the live consumer produced."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from replay.consumers.calibration import CalibrationConsumer
from replay.consumers.stream_reader import StreamReader
from replay.consumers.surface_stream import FILES, StreamRecorder
from replay.engine.loop import run_replay


def test_row_groups_during_the_build_give_the_same_files(gbm_quarter_hour, tmp_path):
    grouped, whole = StreamRecorder(tmp_path / "grouped", group_wakes=3), StreamRecorder()
    for i, rec in enumerate((grouped, whole)):
        run_replay(gbm_quarter_hour, [CalibrationConsumer(every="45s", recorder=rec)],
                   tmp_path / f"run{i}", progress=False)
    assert grouped.write() == whole.write(tmp_path / "whole")
    for f in FILES:
        a, b = pq.read_table(tmp_path / "grouped" / f), pq.read_table(tmp_path / "whole" / f)
        assert pq.ParquetFile(tmp_path / "grouped" / f).num_row_groups > 1 or a.num_rows < 4
        # fit_ms is wall clock: the only figure two builds may disagree on (it is not hashed,
        # so the payload bytes agree)
        keep = [c for c in a.column_names if c not in ("fit_ms", "q_fit_ms")]
        assert a.select(keep).equals(b.select(keep))


def test_the_reader_rebuilds_the_published_surfaces(gbm_quarter_hour, tmp_path):
    rec = StreamRecorder(tmp_path / "s", group_wakes=4)  # the reader crosses row groups
    live = CalibrationConsumer(every="60s", recorder=rec)
    seen = {}
    orig = live._publish

    def keep(surface, ts, spot):  # the surfaces the live consumer published, by fit time
        seen[ts] = surface
        orig(surface, ts, spot)

    live._publish = keep
    run_replay(gbm_quarter_hour, [live], tmp_path / "run", progress=False)
    rec.write()
    rd = StreamReader(tmp_path / "s")
    assert len(seen) == len(rd) > 5
    for i in range(len(rd)):
        got = rd.surface(int(rd.surface_wake[i]))
        want = seen[int(rd.ts[i])]
        assert got.to_state() == want.to_state()
        k = np.linspace(-0.3, 0.3, 7)
        for a, b in zip(got.slices, want.slices):
            np.testing.assert_array_equal(a.total_variance(k), b.total_variance(k))


def test_a_replay_across_row_groups_has_the_live_journal(gbm_quarter_hour, tmp_path):
    from strategies.board import SurfaceBoard

    rec = StreamRecorder(tmp_path / "s", group_wakes=4)
    live = run_replay(gbm_quarter_hour, [CalibrationConsumer(every="30s", recorder=rec,
                                                             board=SurfaceBoard())],
                      tmp_path / "live", progress=False)
    rec.write()
    assert pq.ParquetFile(tmp_path / "s" / "fits.parquet").num_row_groups > 3
    cached = CalibrationConsumer(every="30s", board=SurfaceBoard(),
                                 stream=StreamReader(tmp_path / "s"))
    again = run_replay(gbm_quarter_hour, [cached], tmp_path / "cached", progress=False)
    assert again.journal_hash == live.journal_hash
