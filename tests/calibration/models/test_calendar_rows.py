"""Calendar rows: the floor and ceiling of a slice refit, and what they buy on real surfaces
(no calendar arbitrage wherever either of two consecutive expiries is quoted)."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from calibration.arbitrage import CALENDAR_TOL, calendar_points
from calibration.models.calendar_rows import (
    CALENDAR_MARGIN,
    calendar_ceiling,
    calendar_floor,
    ceiling_rows,
    floor_rows,
    row_points,
)
from calibration.models.svi import SVIParams, svi_total_variance
from calibration.quotes import build_snapshot
from calibration.scheme import CalibrationScheme, SchemeConfig, replay_snapshots
from calibration.surface import SmileSlice
from replay.ingest.deribit_summary import summary_files, summary_snapshots
from tests.calibration.test_scheme import DATA, DAY_NS, quote_columns


def _slice(t: float, p: SVIParams, lo: float, hi: float) -> SmileSlice:
    return SmileSlice("svi", p, 0, t, 100.0, lo, hi)


# The rows' definitions in numpy, which the compiled builders must give bit for bit.

def _points(lo, hi, k_check):
    return k_check[(k_check >= lo) & (k_check <= hi)]


def _lifted(w, steps, margin):
    return w * (1.0 + (2 * steps - 1) * margin) + (2 * steps - 1) * 0.5 * CALENDAR_TOL


def numpy_floor_rows(earlier, k_check, margin=CALENDAR_MARGIN):
    """On the last expiry's domain its lifted total variance; beyond it, where an earlier
    expiry is quoted, the highest of theirs, lifted once more per expiry in between."""
    before = earlier[-1]
    k = _points(before.k_lo, before.k_hi, k_check)
    w = _lifted(before.total_variance(k), 1, margin)
    lo, hi = min(s.k_lo for s in earlier), max(s.k_hi for s in earlier)
    if lo >= before.k_lo and hi <= before.k_hi:
        return k, w
    ko = _points(lo, hi, k_check)
    ko = ko[(ko < before.k_lo) | (ko > before.k_hi)]
    wo = np.full(len(ko), -np.inf)
    for steps, s in enumerate(reversed(earlier[:-1]), start=2):
        quoted = (ko >= s.k_lo) & (ko <= s.k_hi)
        wo[quoted] = np.maximum(wo[quoted], _lifted(s.total_variance(ko[quoted]), steps, margin))
    some = np.isfinite(wo)
    return np.concatenate([k, ko[some]]), np.concatenate([w, wo[some]])


def test_the_compiled_rows_are_the_numpy_definitions_bit_for_bit():
    rng = np.random.default_rng(21)
    beyond = 0
    for _ in range(400):
        sl = [_slice(0.02 * (i + 1), SVIParams(rng.uniform(-0.01, 0.05), rng.uniform(0.01, 0.3),
                                               rng.uniform(-0.9, 0.9), rng.uniform(-0.2, 0.2),
                                               rng.uniform(0.01, 0.5)),
                     -rng.uniform(0.01, 1.5), rng.uniform(0.01, 1.5))
              for i in range(int(rng.integers(1, 6)))]
        k_check = calendar_points([s.k_lo for s in sl], [s.k_hi for s in sl])
        lo, hi = min(s.k_lo for s in sl), max(s.k_hi for s in sl)
        np.testing.assert_array_equal(row_points(lo, hi, k_check), _points(lo, hi, k_check))
        got, want = floor_rows(sl, k_check), numpy_floor_rows(sl, k_check)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
        beyond += got[0].size > _points(sl[-1].k_lo, sl[-1].k_hi, k_check).size
        ck, cw = ceiling_rows(sl[-1], lo, hi, k_check)
        np.testing.assert_array_equal(ck, _points(lo, hi, k_check))
        np.testing.assert_array_equal(cw, sl[-1].total_variance(ck) * (1 - CALENDAR_MARGIN)
                                      - 0.5 * CALENDAR_TOL)
    assert beyond > 50  # floors beyond the last expiry's domain were built too


def test_rows_bound_each_slice_by_its_neighbour_with_a_margin():
    short = _slice(0.02, SVIParams(0.001, 0.05, -0.3, 0.0, 0.1), -0.2, 0.15)
    longer = _slice(0.1, SVIParams(0.004, 0.04, -0.3, 0.0, 0.2), -0.8, 0.6)
    k_check = calendar_points([short.k_lo, longer.k_lo], [short.k_hi, longer.k_hi])
    fk, fw = floor_rows([short], k_check)
    assert fk[0] == short.k_lo and fk[-1] == short.k_hi  # where the shorter one is quoted
    assert np.all(fw > short.total_variance(fk))
    ck, cw = ceiling_rows(longer, -0.8, 0.6, k_check)
    assert ck[0] == -0.8 and ck[-1] == 0.6
    assert np.all(cw < longer.total_variance(ck))
    assert set(k_check[(k_check >= -0.8) & (k_check <= 0.6)]) <= set(ck)  # the check's points
    # the short expiry's wings (slope 0.065) outgrow the longer one's (0.052) beyond its
    # quotes: a ceiling; the longer one is above the short one's quotes: no floor
    assert calendar_floor([short], longer, k_check) is None
    assert np.max(short.total_variance(ck) - longer.total_variance(ck)) > 0
    assert calendar_ceiling(short, longer, k_check) is not None
    assert calendar_ceiling(short, short, k_check) is None


def test_a_floor_holds_on_every_earlier_expirys_quotes_with_room_for_those_between():
    """Beyond the range of the expiry just before, the floor is the highest of the earlier
    expiries quoted there, lifted once more per expiry in between (here one: 3 margins and 1.5
    tolerances against 1 and 0.5 for the next expiry)."""
    wide = _slice(0.08, SVIParams(0.01, 0.03, -0.3, 0.0, 0.1), -0.4, 0.4)
    narrow = _slice(0.085, SVIParams(0.0102, 0.0306, -0.3, 0.0, 0.1), -0.08, 0.08)
    k_check = calendar_points([-0.4, -0.08], [0.4, 0.08])
    fk, fw = floor_rows([wide, narrow], k_check)
    inside = np.abs(fk) <= 0.08
    assert fk.min() == -0.4 and fk.max() == 0.4 and inside.any() and (~inside).any()
    assert set(k_check) <= set(fk)
    assert_allclose(fw[inside], narrow.total_variance(fk[inside]) * (1 + CALENDAR_MARGIN)
                    + 0.5 * CALENDAR_TOL, rtol=1e-15)
    assert_allclose(fw[~inside], wide.total_variance(fk[~inside]) * (1 + 3 * CALENDAR_MARGIN)
                    + 1.5 * CALENDAR_TOL, rtol=1e-15)
    assert_allclose(floor_rows([narrow], k_check)[0], fk[inside], rtol=0)
    # a later expiry above the narrow one but under the wide one's far quotes needs the floor
    later = _slice(0.09, SVIParams(0.012, 0.02, -0.3, 0.0, 0.1), -0.4, 0.4)
    assert np.all(later.total_variance(fk[inside]) > fw[inside])
    assert np.any(later.total_variance(fk[~inside]) < fw[~inside])
    assert calendar_floor([narrow], later, k_check) is None
    assert calendar_floor([wide, narrow], later, k_check) is not None


def test_an_expiry_quoted_near_the_money_between_two_close_ones_fits_between_them():
    """Expiries at 30, 31 and 33 days of one shape, scaled 1 : 1.02 : 1.06 (calendar-free), the
    middle one quoted on ``|k| <= 0.08`` and the others on ``|k| <= 0.4``, vols with 2 % noise.
    Before the floors held on every earlier expiry's quotes (the next expiry could dip under
    the first where the middle one is not quoted, leaving no room between them) and before
    the ceiling refit could start from the neighbours (a wild fit of the thin middle expiry has
    no slice near it that meets its rows), 6 of these 60 surfaces kept calendar arbitrage."""
    rng = np.random.default_rng(5)
    bad = 0
    for _ in range(60):
        rho, m, sigma = rng.uniform(-0.5, 0.0), rng.uniform(-0.03, 0.03), rng.uniform(0.05, 0.2)
        specs = [(days, 90_000.0, SVIParams(0.01 * s, 0.03 * s, rho, m, sigma), width)
                 for days, s, width in ((30, 1.0, 0.4), (31, 1.02, 0.08), (33, 1.06, 0.4))]
        c = quote_columns(0, specs, noise=0.02, rng=np.random.default_rng(rng.integers(1 << 30)))
        snap = build_snapshot(0, c["exp"], c["K"], c["call"], c["bid"], c["ask"], c["fwd"],
                              mark_iv=c["mark"], min_tick=0.0)
        r = CalibrationScheme(SchemeConfig(model="svi", max_rmse_vol_pts=100.0)).refit(snap)
        bad += any(v.kind == "calendar" for v in r.violations)
    assert bad == 0


SHORT = SVIParams(0.0038, 0.15, -0.3, 0.02, 0.15)  # steep, quoted near the money only


def _steep_short_snapshot(longer: SVIParams):
    c = quote_columns(0, [(7, 90_000.0, SHORT), (60, 90_000.0, longer)])
    keep = (c["exp"] > 7 * DAY_NS) | (np.abs(np.log(c["K"] / c["fwd"])) <= 0.15)
    c = {name: col[keep] for name, col in c.items()}
    return build_snapshot(0, c["exp"], c["K"], c["call"], c["bid"], c["ask"], c["fwd"],
                          mark_iv=c["mark"], min_tick=0.0)


def test_a_short_expirys_steep_wing_is_brought_under_the_next_expirys_quotes():
    """The short expiry is quoted near the money only, with a smile steep enough that its
    extrapolated wings cross the longer expiry's far quotes.  Before the backward pass the
    published surface crossed there (the check looked only where both were quoted)."""
    longer = SVIParams(0.033, 0.05, -0.3, 0.02, 0.15)
    k = np.linspace(-0.5, 0.5, 2001)
    near = np.abs(k) <= 0.15
    assert np.all(svi_total_variance(k[near], SHORT) < svi_total_variance(k[near], longer))
    assert svi_total_variance(0.5, SHORT) > svi_total_variance(0.5, longer)  # in the wings
    r = CalibrationScheme(SchemeConfig(model="svi")).refit(_steep_short_snapshot(longer))
    a, b = r.surface.slices
    assert a.k_hi - a.k_lo < 0.31 < b.k_hi - b.k_lo
    assert r.violations == () and not r.fell_back
    assert np.max(a.total_variance(k) - b.total_variance(k)) <= CALENDAR_TOL
    assert r.quality.rmse_vol_pts < 2.0  # the price of the ceiling: 1.3 vol points


def test_a_slice_held_under_its_neighbour_is_refitted_when_the_neighbour_moves_away():
    """The short expiry's quotes do not change, the longer one's rise well above its wings:
    the short one is refitted to its own quotes.  Before, its unchanged inputs carried over
    the slice held under the old ceiling, and its quotes' misfit with it."""
    scheme = CalibrationScheme(SchemeConfig(model="svi"))
    held = scheme.refit(_steep_short_snapshot(SVIParams(0.033, 0.05, -0.3, 0.02, 0.15)))
    free = scheme.refit(_steep_short_snapshot(SVIParams(0.06, 0.05, -0.3, 0.02, 0.15)))
    assert free.violations == () and not free.carried
    # the price of the old ceiling, 1.30 vol points, is gone (0.16); before, 1.30 again
    assert held.quality.rmse_vol_pts > 1.0 > 0.2 > free.quality.rmse_vol_pts


def test_real_surfaces_are_calendar_free_wherever_either_expiry_is_quoted():
    """Forty real BTC snapshots, warm SVI at the defaults: every consecutive pair of expiries
    of every published surface, on a fine grid of the range where either is quoted.  Before
    the calendar ceilings (and floors on the shorter expiry's whole domain) 87 of the 2,796
    pairs of the recordings' 261 surfaces crossed there."""
    root = DATA / "deribit" / "BTC"
    if not root.is_dir():
        pytest.skip(f"real Deribit data not found at {root.resolve()}")
    snaps = list(summary_snapshots(summary_files(root)[:40]))
    m, results = replay_snapshots(snaps, SchemeConfig(model="svi", warm_start=True))
    assert m["fallbacks"] == 0 and m["arb_violations"] == 0
    pairs = crossed = 0
    for r in results:
        sl = sorted(r.surface.slices, key=lambda s: s.t)
        for a, b in zip(sl, sl[1:]):
            k = np.linspace(min(a.k_lo, b.k_lo), max(a.k_hi, b.k_hi), 1001)
            pairs += 1
            crossed += bool(np.max(a.total_variance(k) - b.total_variance(k)) > CALENDAR_TOL)
    assert pairs > 200 and crossed == 0
