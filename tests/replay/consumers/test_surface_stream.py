"""A stream written in row groups during the build is the stream written at the end, the
reader serves back exactly what the live consumer produced, and joined parts keep their rows
with the wake ordinals and row ranges offset."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq

from replay.consumers.calibration import CalibrationConsumer
from replay.consumers.stream_reader import StreamReader
from replay.consumers.surface_stream import FILES, StreamRecorder, join_parts
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


def test_joined_parts_offset_wakes_and_row_ranges(gbm_quarter_hour, tmp_path):
    """join_parts of one recording taken twice, the second as if 1,000 wakes came before
    it: the second copy's ordinals and row ranges are shifted, nothing else changes."""
    rec = StreamRecorder(tmp_path / "a", group_wakes=4)  # several row groups to carry over
    # quality checks that do not refit give rows that publish nothing (surface_wake -1)
    run_replay(gbm_quarter_hour, [CalibrationConsumer(every="quality:5", check_s=15,
                                                      latency=5.0, quotes_every_s=90.0,
                                                      recorder=rec)],
               tmp_path / "run", progress=False)
    rows = rec.write()
    joined = join_parts([(tmp_path / "a", 0), (tmp_path / "a", 1000)], tmp_path / "j")
    assert joined == {k: 2 * v for k, v in rows.items()}
    a = {f: pq.read_table(tmp_path / "a" / f).to_pandas() for f in FILES}
    j = {f: pq.read_table(tmp_path / "j" / f).to_pandas() for f in FILES}
    assert pq.ParquetFile(tmp_path / "j" / "fits.parquet").num_row_groups == \
        2 * pq.ParquetFile(tmp_path / "a" / "fits.parquet").num_row_groups
    n_fits, n_quotes = rows["fits"], rows["quotes"]
    for f in FILES:
        first, second = j[f].iloc[: len(a[f])], j[f].iloc[len(a[f]):].reset_index(drop=True)
        assert first.equals(a[f]), f
        shifted = a[f].copy()
        shifted["wake"] += 1000
        if f == "wakes.parquet":
            for col, by in (("f0", n_fits), ("f1", n_fits), ("q0", n_quotes), ("q1", n_quotes)):
                shifted[col] += by
            published = shifted["surface_wake"] >= 0
            assert published.any() and not published.all()  # both kinds of row are tested
            shifted.loc[published, "surface_wake"] += 1000
        assert _comparable(second).equals(_comparable(shifted)), f


def _comparable(df):
    """Cells pandas can compare: lists as tuples, digests as hex (NaN equals NaN in
    ``DataFrame.equals``)."""
    return df.map(lambda v: v.hex() if isinstance(v, bytes)
                  else tuple(v) if isinstance(v, list | np.ndarray) else v)
