"""A snapshot's fit data in one pass (``fit_batch``) is ``fit_data`` of each slice alone, to
the bit, from the snapshot's own block of columns or from its slices' columns joined
(``fit_data`` itself is checked against the numpy definition in ``test_scheme.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from calibration.loss import LossConfig, fit_batch, fit_data
from calibration.quotes import QuoteSnapshot


def _snapshots(shared_data, step: int = 25):
    from replay.ingest.deribit_summary import summary_files, summary_snapshots

    return list(summary_snapshots(summary_files(shared_data / "deribit" / "BTC")[::step]))


@pytest.mark.parametrize("weighting", ["spread", "vega", "uniform"])
def test_batch_is_fit_data_of_each_slice(shared_data, weighting):
    cfg = LossConfig(weighting=weighting, min_tick_weight=0.3, stale_weight=0.5)
    snaps = _snapshots(shared_data)
    assert len(snaps) >= 10
    for snap in snaps:
        # the snapshot's own flat block, and the slices' columns joined (no block)
        for s in (snap, QuoteSnapshot(snap.ts_ns, snap.slices)):
            b = fit_batch(s, cfg)
            assert len(b) == len(snap.slices)
            for i, sl in enumerate(snap.slices):
                want, got = fit_data(sl, cfg), b.data(i)
                assert got.t == want.t
                for f in ("k", "mid", "bid", "ask", "weight", "index"):
                    assert getattr(got, f).tobytes() == getattr(want, f).tobytes(), f
                rows = s.rows
                assert np.array_equal(b.row[b.off[i]:b.off[i + 1]] - rows.start[i], want.index)
                if want.n:
                    assert (b.k_lo[i], b.k_hi[i]) == (want.k.min(), want.k.max())


def test_flat_rows_are_the_slices_columns(shared_data):
    snap = _snapshots(shared_data, step=100)[-1]
    joined = QuoteSnapshot(snap.ts_ns, snap.slices).rows
    for rows in (snap.rows, joined):
        for i, sl in enumerate(snap.slices):
            a, b = rows.start[i], rows.stop[i]
            for f in ("k", "bid_iv", "ask_iv", "mid_iv", "mark_iv", "min_tick", "stale"):
                assert getattr(rows, f)[a:b].tobytes() == getattr(sl, f).tobytes(), f
            assert np.array_equal(rows.two_sided[a:b], sl.two_sided)
    empty = QuoteSnapshot(0, ()).rows
    assert empty.k.size == 0 and empty.start.size == 0
    b = fit_batch(QuoteSnapshot(0, ()), LossConfig())
    assert len(b) == 0 and b.off.tolist() == [0]
