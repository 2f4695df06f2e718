"""Quality metrics on small hand-computed cases, and their aggregation."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from calibration.models.svi import SVIParams
from calibration.quality import (
    FitQuality,
    OOSError,
    aggregate,
    calibration_quote_rows,
    fit_quality,
    oos_errors,
    outside_band_pct,
)
from calibration.quotes import QuoteSlice, QuoteSnapshot
from calibration.surface import SmileSlice, Surface
from tests.calibration.svi_chain import DAY_NS, T0_NS, svi_chain

T = 0.25
F = 100.0


def flat_surface(vol: float) -> Surface:
    """b = 0 makes raw SVI flat: w = a = vol^2 t."""
    return Surface([SmileSlice("svi", SVIParams(vol ** 2 * T, 0.0, 0.0, 0.0, 0.1), 10, T, F,
                                -1.0, 1.0)], ts_ns=0)


def quote_slice(bid, ask, mid, mark) -> QuoteSlice:
    n = len(bid)
    strike = np.linspace(90.0, 110.0, n)
    return QuoteSlice(expiry_ns=10, t=T, forward=F, strike=strike, k=np.log(strike / F),
                      is_call=strike >= F, bid_iv=np.array(bid, float), ask_iv=np.array(ask, float),
                      mid_iv=np.array(mid, float), mark_iv=np.array(mark, float),
                      min_tick=np.zeros(n, bool), stale=np.zeros(n, bool),
                      instrument=tuple(f"X-{i}" for i in range(n)))


def snapshot() -> QuoteSnapshot:
    # fit is 0.50 everywhere; quotes: inside, inside, above, below
    sl = quote_slice(bid=[0.49, 0.495, 0.51, 0.47], ask=[0.51, 0.52, 0.53, 0.48],
                     mid=[0.50, 0.5075, 0.52, 0.475], mark=[0.50, 0.51, 0.52, np.nan])
    return QuoteSnapshot(0, (sl,))


def test_fit_quality_by_hand():
    q = fit_quality(flat_surface(0.5), snapshot(), [np.arange(4)], fit_ms=1.5)
    err = np.array([0.0, -0.75, -2.0, 2.5])  # vol points, fit - mid
    assert q.rmse_vol_pts == pytest.approx(np.sqrt(np.mean(err ** 2)), rel=1e-12)
    assert q.inside_spread_pct == pytest.approx(50.0)
    assert q.mark_n == 3
    assert q.vs_venue_mark_iv_mae_vol_pts == pytest.approx((0 + 1 + 2) / 3, rel=1e-12)
    assert q.param_jitter is None and q.arb_violations == 0 and q.fit_ms == 1.5
    # only the quotes used count
    q2 = fit_quality(flat_surface(0.5), snapshot(), [np.array([0, 1])], fit_ms=1.0)
    assert q2.inside_spread_pct == 100.0 and q2.n_quotes == 2


def test_jitter_is_the_rms_move_of_the_smile():
    q = fit_quality(flat_surface(0.5), snapshot(), [np.arange(4)], 1.0,
                    previous=flat_surface(0.49))
    assert q.param_jitter == pytest.approx(1.0, rel=1e-12)


def test_out_of_sample_and_band_share():
    o = oos_errors(flat_surface(0.5), snapshot())
    assert o.n == 4
    assert o.sq_sum == pytest.approx(0 + 0.75 ** 2 + 2 ** 2 + 2.5 ** 2, rel=1e-12)
    assert o.rmse_vol_pts == pytest.approx(np.sqrt(o.sq_sum / 4))
    assert outside_band_pct(flat_surface(0.5), snapshot()) == pytest.approx(50.0)


def test_aggregate_pools_quotes_and_takes_medians():
    a = FitQuality(n_quotes=2, rmse_vol_pts=1.0, inside_spread_pct=50.0, mark_abs_sum=2.0,
                   mark_n=2, param_jitter=None, arb_violations=0, fit_ms=2.0)
    b = FitQuality(n_quotes=6, rmse_vol_pts=2.0, inside_spread_pct=100.0, mark_abs_sum=3.0,
                   mark_n=4, param_jitter=0.3, arb_violations=1, fit_ms=4.0)
    m = aggregate([a, b], [OOSError(8.0, 2), OOSError(10.0, 8)])
    assert set(m) == {"n_fits", "rmse_vol_pts", "inside_spread_pct", "oos_rmse_vol_pts",
                      "param_jitter", "arb_violations", "fit_ms_median",
                      "vs_venue_mark_iv_mae_vol_pts"}
    assert m["n_fits"] == 2
    assert m["rmse_vol_pts"] == pytest.approx(np.sqrt((2 * 1 + 6 * 4) / 8))
    assert m["inside_spread_pct"] == pytest.approx(100 * (1 + 6) / 8)
    assert m["oos_rmse_vol_pts"] == pytest.approx(np.sqrt(18 / 10))
    assert m["param_jitter"] == pytest.approx(0.3)
    assert m["arb_violations"] == 1
    assert m["fit_ms_median"] == pytest.approx(3.0)
    assert m["vs_venue_mark_iv_mae_vol_pts"] == pytest.approx(5 / 6)
    empty = aggregate([])
    assert empty["n_fits"] == 0 and empty["rmse_vol_pts"] is None


def test_calibration_quote_rows():
    rows = calibration_quote_rows(flat_surface(0.5), snapshot(), [np.array([1, 3])])
    assert list(rows) == ["ts", "instrument", "expiry", "strike", "forward", "bid_iv", "ask_iv",
                          "mid_iv", "fit_iv", "venue_mark_iv"]
    assert list(rows["instrument"]) == ["X-1", "X-3"]
    assert_allclose(rows["fit_iv"], [0.5, 0.5], rtol=1e-14)
    assert_allclose(rows["mid_iv"], [0.5075, 0.475])
    assert np.isnan(rows["venue_mark_iv"][1])


def test_fit_quality_is_the_numpy_definition_to_the_bit(shared_data):
    """On real BTC fits: every figure as the module docstring defines it in numpy (its sums
    are numpy's pairwise sums), with the previous fit's surface for the jitter."""
    from calibration.quality import _surface_iv
    from calibration.scheme import CalibrationScheme, SchemeConfig
    from replay.ingest.deribit_summary import summary_files, summary_snapshots

    snaps = list(summary_snapshots(summary_files(shared_data / "deribit" / "BTC")[::60]))
    scheme = CalibrationScheme(SchemeConfig())
    previous = None
    for snap in snaps:
        r = scheme.refit(snap)
        parts = [(sl, idx) for sl, idx in zip(snap.slices, r.used) if idx.size]
        k, mid, bid, ask, mk = (np.concatenate([getattr(sl, f)[idx] for sl, idx in parts])
                                for f in ("k", "mid_iv", "bid_iv", "ask_iv", "mark_iv"))
        t = np.concatenate([np.full(idx.size, sl.t) for sl, idx in parts])
        fit = _surface_iv(r.fitted, k, t)
        q = fit_quality(r.fitted, snap, r.used, 1.0, previous)
        ok = np.isfinite(mk)
        assert q.rmse_vol_pts == float(np.sqrt(np.sum((100 * (fit - mid)) ** 2) / fit.size))
        assert q.inside_spread_pct == 100.0 * int(np.sum((fit >= bid) & (fit <= ask))) / fit.size
        assert q.mark_abs_sum == float(np.sum(np.abs(100 * (fit[ok] - mk[ok]))))
        assert q.mark_n == int(ok.sum())
        if previous is None:
            assert q.param_jitter is None
        else:
            both = np.concatenate([np.full(idx.size, sl.expiry_ns in
                                           {s.expiry_ns for s in previous.slices})
                                   for sl, idx in parts])
            # the previous fit read at each expiry's maturity as it fitted it
            then = np.concatenate([np.full(idx.size, float(previous.t_of(sl.expiry_ns)))
                                   for sl, idx in parts])
            d = 100 * (fit[both] - _surface_iv(previous, k[both], then[both]))
            assert q.param_jitter == float(np.sqrt(np.sum(d * d) / d.size))
        previous = r.fitted


def test_an_unchanged_smile_refitted_later_neither_jitters_nor_misses_out_of_sample():
    """Twelve hours on, nothing requoted: every expiry is carried over, the same smile.  An
    earlier surface read at the time left now blends each expiry with a shorter one's, and
    read 0.81 vol points of jitter, the same out-of-sample, and a third of the quotes outside
    their band."""
    from calibration.scheme import CalibrationScheme, SchemeConfig

    scheme = CalibrationScheme(SchemeConfig())
    first = scheme.refit(svi_chain(T0_NS))
    later = svi_chain(T0_NS + DAY_NS // 2)
    second = scheme.refit(later)
    assert len(second.carried) == 3
    assert second.quality.param_jitter < 1e-12
    assert_allclose(oos_errors(first.fitted, later).rmse_vol_pts,
                    oos_errors(first.fitted, svi_chain(T0_NS)).rmse_vol_pts, rtol=1e-12)
    assert outside_band_pct(first.fitted, later) == 0.0


def test_the_quality_trigger_counts_the_quotes_updated_since_the_fit():
    """Six of the 75 out-of-the-money quotes (the 30-day expiry's nearest the money)
    requoted 3 vol points up: all six leave the band, 8 % of every quote, so ``quality:10``
    counted over every quote did not fire."""
    from calibration.scheme import CalibrationScheme, SchemeConfig

    scheme = CalibrationScheme(SchemeConfig(quality_trigger_pct=10.0))
    scheme.refit(svi_chain(T0_NS))
    moved = {i: 0.03 for i in (112, 113, 114, 134, 135, 136)}  # 30-day OTM, nearest k = 0
    later = svi_chain(T0_NS + 10 ** 9, moved)
    assert outside_band_pct(scheme.last_fitted, later) < 10.0
    assert scheme.should_refit(later)
    assert not scheme.should_refit(svi_chain(T0_NS + 10 ** 9))
