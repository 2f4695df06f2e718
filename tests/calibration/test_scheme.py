"""Quotes to snapshots, calibration schemes (refit, warm start, fallback, state, triggers),
and a real-data smoke test on Deribit snapshots."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from calibration.arbitrage import CALENDAR_TOL, calendar_grid
from calibration.loss import LossConfig
from calibration.models.svi import SVIParams, svi_total_variance
from calibration.pricing.black import black_price
from calibration.pricing.inverse import usd_to_coin
from calibration.quotes import build_snapshot
from calibration.scheme import CalibrationScheme, SchemeConfig, replay_snapshots
from calibration.surface import redated
from replay.ingest.deribit_summary import summary_files, summary_snapshots

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
DAY_NS = 86_400 * 10 ** 9
HALF = 0.005  # half spread in vol


def quotes(ts_ns: int, specs, half: float = HALF):
    """Calls and puts on a strike grid per expiry, priced off an SVI smile with a +-half vol
    band, as inverse (coin) premiums."""
    c = quote_columns(ts_ns, specs, half)
    return build_snapshot(ts_ns, c["exp"], c["K"], c["call"], c["bid"], c["ask"], c["fwd"],
                          mark_iv=c["mark"], min_tick=0.0)


def quote_columns(ts_ns: int, specs, half: float = HALF, noise: float = 0.0,
                  rng: np.random.Generator | None = None) -> dict:
    """The rows of :func:`quotes`, priced at ``ts_ns``: 31 strikes per expiry over
    ``|k| <= 0.5``, or over ``|k| <=`` a spec's fourth entry; with ``noise``, each vol is
    scaled by ``1 + noise * N(0, 1)`` (drawn from ``rng``)."""
    cols = {c: [] for c in ("exp", "K", "call", "bid", "ask", "fwd", "mark")}
    for days, fwd, p, *width in specs:
        exp = ts_ns + int(days * DAY_NS)
        t = days / 365.0
        K = fwd * np.exp(np.linspace(-1.0, 1.0, 31) * (width[0] if width else 0.5))
        iv = np.sqrt(svi_total_variance(np.log(K / fwd), p) / t)
        if noise:
            iv = iv * (1.0 + noise * rng.standard_normal(K.size))
        for call in (True, False):
            cols["exp"].append(np.full(K.size, exp))
            cols["K"].append(K)
            cols["call"].append(np.full(K.size, call))
            cols["bid"].append(usd_to_coin(black_price(fwd, K, t, iv - half, call), fwd))
            cols["ask"].append(usd_to_coin(black_price(fwd, K, t, iv + half, call), fwd))
            cols["fwd"].append(np.full(K.size, fwd))
            cols["mark"].append(iv)
    return {k: np.concatenate(v) for k, v in cols.items()}


def smile(t: float, vol: float, b: float = 0.3) -> SVIParams:
    """An SVI smile with ATM vol near ``vol`` at maturity ``t`` (years)."""
    return SVIParams(a=vol ** 2 * t * 0.8, b=b * t, rho=-0.3, m=0.02, sigma=0.15)


GOOD = [(30, 90_000.0, smile(30 / 365, 0.5)), (90, 91_000.0, smile(90 / 365, 0.55))]


def test_build_snapshot_recovers_the_vols_and_keeps_the_otm_side():
    snap = quotes(0, GOOD)
    assert [round(s.t * 365) for s in snap.slices] == [30, 90]
    for sl, (_days, fwd, p) in zip(snap.slices, GOOD):
        assert sl.forward == fwd and sl.forward_source == "venue"
        assert abs(sl.forward_disagreement_bps) < 1e-6  # parity agrees with the venue
        assert_allclose(sl.k, np.log(sl.strike / fwd), rtol=1e-15)
        assert np.all(sl.is_call == (sl.strike >= fwd))
        iv = np.sqrt(svi_total_variance(sl.k, p) / sl.t)
        assert_allclose(sl.bid_iv, iv - HALF, atol=1e-9)
        assert_allclose(sl.ask_iv, iv + HALF, atol=1e-9)
        assert np.all(np.abs(sl.mid_iv - iv) < 5e-4)  # IV of the mid premium, not mid of IVs
        assert sl.two_sided.all()


def test_stale_quotes_keep_their_strikes_vols():
    """Quotes priced off older forwards: each is inverted at its own forward (so it keeps the
    vol it was quoted at, sticky strike), and the expiry's forward is the freshest rows'."""
    t, vol = 30 / 365, 0.6
    K = np.array([80.0, 90.0, 95.0, 105.0, 110.0, 120.0])
    call = K >= 100.0
    fwd = np.array([97.0, 98.0, 100.0, 100.0, 99.0, 97.0])  # the wings were quoted earlier
    qts = np.array([1, 2, 5, 5, 3, 1])
    px = usd_to_coin(black_price(fwd, K, t, vol, call), fwd)
    snap = build_snapshot(0, np.full(K.size, 30 * DAY_NS), K, call, px * 0.99, px * 1.01, fwd,
                          quote_ts=qts, min_quotes=3, parity=False)
    sl = snap.slices[0]
    assert sl.forward == 100.0  # the median of all six rows would be 98.5
    assert_allclose(sl.k, np.log(K / 100.0), rtol=1e-15)
    assert_allclose(sl.mid_iv, vol, atol=2e-4)
    # read at the current forward instead, the stale wings' vols are off by a vol point or more
    stale = build_snapshot(0, np.full(K.size, 30 * DAY_NS), K, call, px * 0.99, px * 1.01,
                           np.full(K.size, 100.0), min_quotes=3, parity=False).slices[0]
    assert np.abs(stale.mid_iv - vol)[[0, 5]].min() > 0.01


def test_build_snapshot_flags_and_filters():
    ts = 0
    exp = np.array([DAY_NS // 8, 30 * DAY_NS, 30 * DAY_NS, 30 * DAY_NS] + [30 * DAY_NS] * 4)
    K = np.array([100.0, 80.0, 90.0, 120.0, 110.0, 130.0, 95.0, 105.0])
    call = K >= 100.0
    fwd = np.full(K.size, 100.0)
    t = 30 / 365
    px = usd_to_coin(black_price(100.0, K, t, 0.6, call), 100.0)
    bid = px * 0.97
    ask = px * 1.03
    bid[2] = np.nan  # one-sided
    bid[3] = 0.0001  # at the minimum tick
    snap = build_snapshot(ts, exp, K, call, bid, ask, fwd, min_quotes=3)
    assert len(snap.slices) == 1  # the 3-hour expiry is below min_t
    sl = snap.slices[0]
    order = np.argsort(K[1:])
    assert_allclose(sl.strike, K[1:][order])
    assert sl.one_sided.sum() == 1 and not sl.two_sided[sl.strike == 90.0][0]
    assert sl.min_tick[sl.strike == 120.0][0]
    # and without a venue forward the parity forward is used
    snap2 = build_snapshot(ts, np.r_[exp, exp[1:]], np.r_[K, K[1:]], np.r_[call, ~call[1:]],
                           np.r_[px * 0.999, usd_to_coin(black_price(100.0, K[1:], t, 0.6,
                                                                     ~call[1:]), 100.0) * 0.999],
                           np.r_[px * 1.001, usd_to_coin(black_price(100.0, K[1:], t, 0.6,
                                                                     ~call[1:]), 100.0) * 1.001],
                           np.full(2 * K.size - 1, np.nan), min_quotes=3)
    assert snap2.slices[0].forward_source == "parity"
    assert snap2.slices[0].forward == pytest.approx(100.0, rel=1e-4)


@pytest.mark.parametrize("model", ["svi", "essvi", "sabr"])
def test_refit_on_a_clean_snapshot(model):
    scheme = CalibrationScheme(SchemeConfig(model=model))
    r = scheme.refit(quotes(0, GOOD))
    assert not r.fell_back and r.reason == ""
    assert r.surface is r.fitted and r.surface.arbitrage_free
    assert set(r.params) == {s.expiry_ns for s in quotes(0, GOOD).slices}
    limit = {"svi": 0.2, "essvi": 1.5, "sabr": 1.5}[model]  # eSSVI/SABR are not SVI
    assert r.quality.rmse_vol_pts < limit
    if model == "svi":
        assert r.quality.inside_spread_pct == 100.0


def test_warm_and_cold_refits_agree():
    snap = quotes(0, GOOD)
    cold = CalibrationScheme(SchemeConfig(model="svi", warm_start=False))
    warm = CalibrationScheme(SchemeConfig(model="svi", warm_start=True))
    warm.refit(quotes(-DAY_NS // 24, GOOD))  # an hour earlier: gives the warm start
    a, b = cold.refit(snap), warm.refit(snap)
    for sl in snap.slices:
        assert_allclose(a.surface.total_variance(sl.k, sl.t), b.surface.total_variance(sl.k, sl.t),
                        rtol=2e-3)


def test_calendar_crossing_is_repaired_by_the_constrained_refit():
    # the longer expiry's quotes sit below the shorter's: calendar arbitrage in the data
    bad = [(30, 90_000.0, smile(30 / 365, 0.8)), (60, 91_000.0, smile(60 / 365, 0.4))]
    r = CalibrationScheme(SchemeConfig(model="svi", max_rmse_vol_pts=100.0)).refit(
        quotes(0, bad))
    assert r.violations == () and not r.fell_back
    a, b = r.surface.slices
    k = np.linspace(max(a.k_lo, b.k_lo), min(a.k_hi, b.k_hi), 501)
    assert np.all(b.total_variance(k) >= a.total_variance(k) - 1e-7)


@settings(max_examples=40, deadline=None)
@given(vol1=st.floats(0.3, 1.2), ratio=st.floats(0.3, 0.98), d1=st.integers(2, 60),
       gap=st.integers(1, 90), rho2=st.floats(-0.8, 0.8), b2=st.floats(0.05, 0.6),
       fwd_drift=st.floats(-0.02, 0.02))
def test_property_crossing_pairs_are_repaired_or_reported(vol1, ratio, d1, gap, rho2, b2,
                                                          fwd_drift):
    """Any pair of slices whose quotes cross: what is published has no calendar violation
    above the check's tolerance, or the scheme says why (never a silent crossing)."""
    d2 = d1 + gap
    first = smile(d1 / 365, vol1)
    second = SVIParams(a=(vol1 * ratio) ** 2 * d2 / 365 * 0.8, b=b2 * d2 / 365, rho=rho2,
                       m=0.0, sigma=0.2)
    specs = [(d1, 90_000.0, first), (d2, 90_000.0 * (1 + fwd_drift), second)]
    r = CalibrationScheme(SchemeConfig(model="svi", max_rmse_vol_pts=100.0)).refit(
        quotes(0, specs))
    calendar = [v for v in r.violations if v.kind == "calendar"]
    if calendar:
        assert "arbitrage violation" in r.reason and "published with its violations" in r.reason
    else:
        a, b = r.fitted.slices
        k = calendar_grid([a.k_lo, b.k_lo], [a.k_hi, b.k_hi])
        k = k[(k >= max(a.k_lo, b.k_lo)) & (k <= min(a.k_hi, b.k_hi))]
        assert np.all(b.total_variance(k) - a.total_variance(k) >= -CALENDAR_TOL)


def test_fallback_to_last_good_surface():
    # no arbitrage-free surface is close to these quotes: the repaired fit misses them badly
    bad = [(30, 90_000.0, smile(30 / 365, 0.8)), (60, 91_000.0, smile(60 / 365, 0.4))]
    cfg = SchemeConfig(model="svi", max_rmse_vol_pts=3.0)
    first = CalibrationScheme(cfg)
    r0 = first.refit(quotes(0, bad))
    assert not r0.fell_back and "rmse" in r0.reason
    assert "published with its violations" in r0.reason
    scheme = CalibrationScheme(cfg)
    good = scheme.refit(quotes(0, GOOD))
    assert good.reason == ""
    r = scheme.refit(quotes(DAY_NS, bad))
    assert r.fell_back and "kept last good" in r.reason
    assert r.surface is good.surface and r.fitted is not good.surface
    assert scheme.last_good is good.surface
    publish = CalibrationScheme(replace(cfg, fallback="publish"))
    publish.refit(quotes(0, GOOD))
    assert not publish.refit(quotes(DAY_NS, bad)).fell_back


def test_a_surface_with_violations_is_never_published_silently():
    from calibration.surface import SmileSlice, Surface

    scheme = CalibrationScheme(SchemeConfig(model="svi"))
    good = scheme.refit(quotes(0, GOOD))
    vogt = SVIParams(a=-0.0410, b=0.1331, rho=0.3060, m=0.3586, sigma=0.4153)
    bad = Surface([SmileSlice("svi", vogt, 1, 1.0, 100.0, -1.5, 1.5)])
    q = good.quality
    r = scheme._publish(quotes(DAY_NS, GOOD), bad, good.used, 0, "", q)
    assert r.fell_back and r.surface is good.surface and r.violations == bad.violations
    assert "arbitrage violation" in r.reason


def test_a_calendar_violation_sends_both_expiries_of_its_pair_to_the_cold_retry():
    """A short expiry's wing over a longer one's quotes is reported at the longer expiry,
    but the short one is at fault: the retry refits both, not the longer one alone."""
    from calibration.surface import Surface

    scheme = CalibrationScheme(SchemeConfig(model="svi"))
    snap = quotes(0, GOOD + [(120, 92_000.0, smile(120 / 365, 0.6))])
    r = scheme.refit(snap)
    short, mid, _ = r.fitted.slices
    steep = replace(mid, params=SVIParams(mid.params.a, 5 * mid.params.b, mid.params.rho,
                                          mid.params.m, mid.params.sigma))
    bad = Surface([short, steep, r.fitted.slices[2]])
    assert {round(v.expiry_t * 365) for v in bad.violations if v.kind == "calendar"} == {120}
    assert scheme._failing(snap, bad, r.quality) == {1, 2}


def test_state_dict_round_trip_gives_identical_refits():
    a = CalibrationScheme(SchemeConfig(model="svi", lam=1.0))
    a.refit(quotes(0, GOOD))
    b = CalibrationScheme(SchemeConfig())
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))  # plain JSON-able state
    assert b.config == a.config
    nxt = quotes(DAY_NS // 24, [(d - 1 / 24, f * 1.001, p) for d, f, p in GOOD])
    ra, rb = a.refit(nxt), b.refit(nxt)
    assert ra.params == rb.params


def _quoted_at(c: dict, quoted: np.ndarray, now: int):
    """The snapshot at ``now`` of rows ``c`` last updated at ``quoted`` (per row)."""
    return build_snapshot(now, c["exp"], c["K"], c["call"], c["bid"], c["ask"], c["fwd"],
                          mark_iv=c["mark"], min_tick=0.0, quote_ts=quoted)


@pytest.mark.parametrize("model", ["svi", "essvi", "sabr"])
def test_an_expiry_whose_quotes_did_not_change_is_carried_over(model):
    three = [*GOOD, (180, 92_000.0, smile(180 / 365, 0.6))]
    c = quote_columns(0, three)
    quoted = np.zeros(c["K"].size, dtype=np.int64)
    scheme = CalibrationScheme(SchemeConfig(model=model, lam=0.5))
    first = scheme.refit(_quoted_at(c, quoted, 0))
    assert first.carried == frozenset()
    r = scheme.refit(_quoted_at(c, quoted, 10 ** 9))
    if model == "sabr":  # a SABR smile is not one of total variance alone: always refitted
        assert r.carried == frozenset()
        return
    # a second later, nothing updated: every SVI slice is the one fitted before, re-dated to
    # its time to expiry now (the same vols at every k), not refitted; an eSSVI slice's
    # calendar constraints come from the one before it, re-dated too, so only the first is
    # carried
    e = sorted(first.params)
    assert r.carried == (set(e) if model == "svi" else {e[0]})
    k = np.linspace(-0.4, 0.4, 9)
    for a, b in zip(first.fitted.slices, r.fitted.slices, strict=True):
        assert b.t < a.t
        if b.expiry_ns in r.carried:
            assert b == redated(a, b.t)
            assert_allclose(b.iv(k), a.iv(k), rtol=1e-13)
    assert [s.t for s in r.fitted.slices] == list(r.fitted.t_of(
        np.array([s.expiry_ns for s in r.fitted.slices])))
    # the middle expiry's quotes are updated (a second later, 1 % dearer: the same prices
    # alone move its vols too little for a warm eSSVI fit to leave its start), the others are
    # carried; eSSVI's last expiry is refitted too, because its calendar constraint comes
    # from the middle one
    mid = c["exp"] == np.unique(c["exp"])[1]
    quoted = np.where(mid, 2 * 10 ** 9, quoted)
    c = {**c, **{side: np.where(mid, 1.01 * c[side], c[side]) for side in ("bid", "ask")}}
    state = json.loads(json.dumps(scheme.state_dict()))
    r2 = scheme.refit(_quoted_at(c, quoted, 2 * 10 ** 9))
    assert r2.carried == ({e[0]} if model == "essvi" else {e[0], e[2]})
    assert r2.params[e[1]] != first.params[e[1]]
    # a scheme resumed from the state carries exactly the same
    resumed = CalibrationScheme(SchemeConfig(model=model))
    resumed.load_state_dict(state)
    r3 = resumed.refit(_quoted_at(c, quoted, 2 * 10 ** 9))
    assert r3.carried == r2.carried and r3.params == r2.params


def test_a_carried_expiry_keeps_its_quotes_vols_hours_later():
    """Twelve hours on, no quote updated: the carried expiries are re-dated, so the surface
    at each expiry still prices its quotes as fitted (left at its old time to expiry, the
    4-day expiry's smile sat between the 2- and 4-day slices, off its quotes by more than
    half a vol point)."""
    c = quote_columns(0, [(2, 90_000.0, smile(2 / 365, 0.5)), (4, 90_000.0, smile(4 / 365, 0.6)),
                          (8, 90_000.0, smile(8 / 365, 0.6))])
    quoted = np.zeros(c["K"].size, dtype=np.int64)
    scheme = CalibrationScheme(SchemeConfig(model="svi"))
    scheme.refit(_quoted_at(c, quoted, 0))
    now = DAY_NS // 2
    snap = _quoted_at(c, quoted, now)
    r = scheme.refit(snap)
    assert r.carried == set(r.params)
    for sl in snap.slices:
        two = np.flatnonzero(sl.two_sided)
        fit = r.fitted.iv(sl.strike[two], float(r.fitted.t_of(sl.expiry_ns)))
        assert np.max(np.abs(fit - sl.mid_iv[two])) * 100 < 0.05, sl.expiry_ns


def test_replayed_snapshots_score_only_the_quotes_updated_since_the_fit():
    """Out of sample means quotes the fit did not see: a snapshot a minute later whose
    quotes were all quoted before the fit has none, so no out-of-sample score (it was the
    in-sample error); one whose quotes moved is scored."""
    c = quote_columns(0, GOOD)
    quoted = np.zeros(c["K"].size, dtype=np.int64)
    cfg = SchemeConfig(model="svi", every_ns=3600 * 10 ** 9)
    same = [_quoted_at(c, quoted, 0), _quoted_at(c, quoted, 60 * 10 ** 9)]
    metrics, _ = replay_snapshots(same, cfg)
    assert metrics["oos_rmse_vol_pts"] is None
    moved = {**c, **{side: 1.01 * c[side] for side in ("bid", "ask")}}
    later = _quoted_at(moved, np.full(quoted.size, 60 * 10 ** 9), 60 * 10 ** 9)
    metrics, _ = replay_snapshots([same[0], later], cfg)
    assert metrics["oos_rmse_vol_pts"] > 0


def test_refit_triggers():
    cfg = SchemeConfig(model="svi", every_ns=3600 * 10 ** 9)
    s = CalibrationScheme(cfg)
    assert s.should_refit(quotes(0, GOOD))  # nothing fitted yet
    s.refit(quotes(0, GOOD))
    assert not s.should_refit(quotes(1800 * 10 ** 9, GOOD))
    assert s.should_refit(quotes(3600 * 10 ** 9, GOOD))
    q = CalibrationScheme(SchemeConfig(model="svi", quality_trigger_pct=20.0))
    q.refit(quotes(0, GOOD))
    assert not q.should_refit(quotes(60 * 10 ** 9, GOOD))
    moved = [(d, f, replace(p, a=p.a * 1.3)) for d, f, p in GOOD]
    assert q.should_refit(quotes(60 * 10 ** 9, moved))
    n = CalibrationScheme(SchemeConfig(model="svi", every_quotes=100))
    n.refit(quotes(0, GOOD))
    n.note_quotes(99)
    assert not n.should_refit(quotes(1, GOOD))
    n.note_quotes(1)
    assert n.should_refit(quotes(1, GOOD))


def test_config_validation_and_from_dict():
    with pytest.raises(ValueError):
        SchemeConfig(model="heston")
    with pytest.raises(ValueError):
        SchemeConfig(fallback="ignore")
    with pytest.raises(ValueError):
        LossConfig(weighting="gamma")
    c = SchemeConfig.from_dict({"model": "essvi", "lam": 2.0, "loss": {"weighting": "vega"},
                                "unknown_key": 1})
    assert c.model == "essvi" and c.lam == 2.0 and c.loss.weighting == "vega"
    assert SchemeConfig.from_dict({"every": "5m"}).every_ns == 300 * 10 ** 9
    assert SchemeConfig.from_dict({"every": 1.5}).every_ns == 1_500_000_000
    assert SchemeConfig.from_dict({"every": "250ms"}).every_ns == 250_000_000
    assert SchemeConfig.from_dict({"every": "100q"}).every_quotes == 100
    assert SchemeConfig.from_dict({"every": "quality:7.5"}).quality_trigger_pct == 7.5
    with pytest.raises(ValueError):
        SchemeConfig.from_dict({"every": "soon"})


def test_real_summary_snapshots_smoke():
    root = DATA / "deribit" / "BTC"
    if not root.is_dir():
        pytest.skip(f"real Deribit data not found at {root.resolve()} (../shared/data is "
                    "only present on the project's data machine)")
    snaps = list(summary_snapshots(summary_files(root)[-2:]))
    assert len(snaps) == 2
    assert all(len(s.slices) >= 8 and s.n_two_sided > 200 for s in snaps)
    for model in ("svi", "essvi"):
        m, _ = replay_snapshots(snaps, SchemeConfig(model=model))
        assert m["n_fits"] == 2 and m["arb_violations"] == 0
        assert m["oos_rmse_vol_pts"] is not None
        assert m["vs_venue_mark_iv_mae_vol_pts"] < 1.5
        if model == "svi":
            assert m["inside_spread_pct"] > 85.0
