"""The loss's fit data: ``fit_data`` is the numpy definition of the loss module's docstring,
to the bit, and a snapshot's fit data in one pass (``fit_batch``) is ``fit_data`` of each
slice alone, from the snapshot's own block of columns or from its slices' columns joined."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from numpy.testing import assert_allclose

from calibration.loss import LossConfig, fit_batch, fit_data
from calibration.quotes import QuoteSnapshot
from tests.calibration.test_scheme import GOOD, quotes


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


def _numpy_fit_data(sl, cfg):
    """The loss module's weights and fit data as its docstring defines them, in numpy."""
    from calibration.pricing.black import vega

    usable = sl.two_sided
    w = np.zeros(sl.k.size)
    if cfg.weighting == "spread":
        h = np.maximum(50.0 * (sl.ask_iv - sl.bid_iv), cfg.min_half_spread)
        raw = 1.0 / (h * h)
    elif cfg.weighting == "vega":
        atm = vega(sl.forward, sl.forward, sl.t, np.nanmedian(sl.mid_iv[usable]), True)
        raw = np.asarray(vega(sl.forward, sl.strike, sl.t, sl.mid_iv, True)) / float(atm)
    else:
        raw = np.ones(sl.k.size)
    raw = np.where(sl.min_tick, raw * cfg.min_tick_weight, raw)
    raw = np.where(sl.stale, raw * cfg.stale_weight, raw)
    w[usable] = np.where(np.isfinite(raw[usable]), raw[usable], 0.0)
    idx = np.flatnonzero(w > 0)
    trim = cfg.band_margin * (sl.ask_iv[idx] - sl.bid_iv[idx])
    return w, idx, w[idx] / w[idx].sum(), sl.bid_iv[idx] + trim, sl.ask_iv[idx] - trim


@pytest.mark.parametrize("weighting", ["spread", "vega", "uniform"])
def test_fit_data_is_the_numpy_definition_to_the_bit(weighting):
    from calibration.loss import fit_data, quote_weights

    rng = np.random.default_rng(5)
    base = quotes(0, GOOD).slices[0]
    n = base.n
    for case in range(100):
        cfg = LossConfig(weighting=weighting, min_tick_weight=float(rng.choice([0.0, 0.2])),
                         stale_weight=float(rng.choice([0.0, 0.5])),
                         band_margin=float(rng.uniform(0.0, 0.4)))
        bid = base.bid_iv * rng.uniform(0.9, 1.0, n)
        bid[rng.random(n) < 0.1] = np.nan
        ask = np.where(rng.random(n) < 0.05, bid, base.ask_iv)  # some zero spreads
        sl = replace(base, bid_iv=bid, ask_iv=ask, min_tick=rng.random(n) < 0.2,
                     stale=rng.random(n) < 0.2)
        w, idx, weight, lo, hi = _numpy_fit_data(sl, cfg)
        d = fit_data(sl, cfg)
        assert quote_weights(sl, cfg).tobytes() == w.tobytes(), case
        for got, want in [(d.index, idx), (d.weight, weight), (d.bid, lo), (d.ask, hi),
                          (d.k, sl.k[idx]), (d.mid, sl.mid_iv[idx])]:
            assert got.tobytes() == want.tobytes(), case


def test_loss_weights_flags_and_band():
    from calibration.loss import fit_data, loss, quote_weights, residuals

    sl = quotes(0, GOOD).slices[0]
    n = sl.n
    flagged = replace(sl, min_tick=np.arange(n) == 0, stale=np.arange(n) == 1,
                      bid_iv=np.where(np.arange(n) == 2, np.nan, sl.bid_iv))
    w = quote_weights(flagged, LossConfig(weighting="uniform", min_tick_weight=0.25,
                                          stale_weight=0.0))
    assert w[0] == 0.25 and w[1] == 0.0 and w[2] == 0.0 and np.all(w[3:] == 1.0)
    # spread weighting: 1 / half-spread^2 in vol points (here 0.5 everywhere)
    assert_allclose(quote_weights(sl, LossConfig(weighting="spread")), 4.0, rtol=1e-6)
    d = fit_data(flagged, LossConfig(weighting="uniform", band_margin=0.1))
    assert d.n == n - 2 and d.weight.sum() == pytest.approx(1.0)
    assert_allclose(d.ask - d.bid, 0.8 * (sl.ask_iv - sl.bid_iv)[d.index], rtol=1e-9)
    cfg = LossConfig(weighting="uniform", band=True, mid_weight=0.0, band_margin=0.0)
    d0 = fit_data(sl, cfg)
    assert loss(d0.mid, d0, cfg) == 0.0  # the mid is inside the band
    out = d0.ask + 0.01  # one vol point above every ask
    assert loss(out, d0, cfg) == pytest.approx(1.0, rel=1e-9)
    plain = LossConfig(weighting="uniform", band=False)
    assert_allclose(residuals(d0.mid + 0.02, d0, plain), 2.0 * np.sqrt(d0.weight), rtol=1e-9)
