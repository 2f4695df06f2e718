"""Arbitrage checks: Durrleman's g against a finite-difference density, calendar, Lee."""

import numpy as np
from numpy.testing import assert_allclose

from calibration.arbitrage import (
    SliceView,
    butterfly_violations,
    calendar_grid,
    calendar_points,
    calendar_violations,
    check_slices,
    durrleman_g,
    lee_violations,
)
from calibration.models.svi import SVIParams, svi_derivatives, svi_total_variance
from calibration.pricing.black import black_price

# Axel Vogt's SVI slice, the standard example with butterfly arbitrage
# (Gatheral and Jacquier 2014, "Arbitrage-free SVI volatility surfaces", Section 5.1).
VOGT = SVIParams(a=-0.0410, b=0.1331, rho=0.3060, m=0.3586, sigma=0.4153)
SAFE = SVIParams(a=0.04, b=0.1, rho=-0.3, m=0.0, sigma=0.2)


def view(p: SVIParams, t: float = 1.0, lo: float = -1.5, hi: float = 1.5) -> SliceView:
    return SliceView(t, lo, hi, lambda k: svi_derivatives(k, p),
                     (p.b * (1 - p.rho), p.b * (1 + p.rho)))


def test_g_matches_the_density_from_call_prices():
    """g(k) = p(k) * sqrt(2 pi w) exp(d2^2/2) where p is the density in k: compare the sign
    and size with d2C/dK2 computed by finite differences from Black prices."""
    F, t = 1.0, 1.0
    k = np.linspace(-0.8, 0.8, 33)
    h = 1e-4
    for p in (SAFE, VOGT):
        def call(kk, p=p):
            w = svi_total_variance(kk, p)
            return black_price(F, F * np.exp(kk), t, np.sqrt(w / t), True)
        K = np.exp(k)
        # second derivative in strike: d2C/dK2 = (C_kk - C_k) / K^2 in log-strike
        c0, cp, cm = call(k), call(k + h), call(k - h)
        c_k = (cp - cm) / (2 * h)
        c_kk = (cp - 2 * c0 + cm) / h ** 2
        density = (c_kk - c_k) / K ** 2
        w, w1, w2 = svi_derivatives(k, p)
        d2 = -k / np.sqrt(w) - np.sqrt(w) / 2
        from_g = durrleman_g(k, w, w1, w2) / np.sqrt(2 * np.pi * w) * np.exp(-d2 ** 2 / 2) / K
        assert_allclose(density, from_g, rtol=1e-4, atol=1e-6)


def test_vogt_slice_is_flagged_and_a_safe_slice_is_not():
    k = np.linspace(-1.5, 1.5, 301)
    bad = butterfly_violations(1.0, k, *svi_derivatives(k, VOGT))
    assert bad and all(v.kind == "butterfly" and v.value < 0 for v in bad)
    # Gatheral and Jacquier's figure: g dips below zero around k = 0.7
    assert 0.3 < np.median([v.k for v in bad]) < 1.2
    assert butterfly_violations(1.0, k, *svi_derivatives(k, SAFE)) == []


def test_non_positive_variance_is_a_violation():
    k = np.array([-0.1, 0.0, 0.1])
    w = np.array([0.01, 0.0, 0.01])
    v = butterfly_violations(0.5, k, w, np.zeros(3), np.zeros(3))
    assert [x.k for x in v] == [0.0]


def test_calendar_catches_crossing_slices():
    k = np.linspace(-1, 1, 41)
    short = svi_total_variance(k, SAFE)
    longer = svi_total_variance(k, SVIParams(0.05, 0.1, -0.3, 0.0, 0.2))  # parallel, higher
    crossing = svi_total_variance(k, SVIParams(0.06, 0.05, -0.3, 0.0, 0.2))  # flatter wings
    assert calendar_violations([0.5, 1.0], k, np.vstack([short, longer])) == []
    bad = calendar_violations([0.5, 1.0], k, np.vstack([short, crossing]))
    assert bad
    assert all(abs(v.k) > 0.25 and v.expiry_t == 1.0 and v.value > 0 for v in bad)
    # restricting the pair's check to |k| < 0.25 removes the wing crossings
    pairs = (np.abs(k) < 0.25)[None]
    assert calendar_violations([0.5, 1.0], k, np.vstack([short, crossing]), pairs=pairs) == []


def test_lee_bound():
    assert lee_violations(1.0, (1.9, 2.0)) == []
    v = lee_violations(1.0, (2.5, 0.4))
    assert len(v) == 1 and v[0].kind == "lee" and v[0].k == -np.inf and v[0].value == 2.5


def test_check_slices_combines_all_checks():
    assert check_slices([view(SAFE, 0.5), view(SVIParams(0.05, 0.1, -0.3, 0.0, 0.2), 1.0)]) == []
    kinds = {v.kind for v in check_slices([view(VOGT, 1.0)])}
    assert kinds == {"butterfly"}
    steep = SVIParams(0.04, 1.8, 0.3, 0.0, 0.2)  # right wing slope 2.34 > 2
    assert "lee" in {v.kind for v in check_slices([view(steep, 1.0)])}
    # order of the input does not matter: slices are sorted by t
    crossing = [view(SVIParams(0.06, 0.05, -0.3, 0.0, 0.2), 1.0), view(SAFE, 0.5)]
    assert {v.kind for v in check_slices(crossing)} == {"calendar"}


def test_calendar_checks_each_expiry_against_every_earlier_one_where_that_is_quoted():
    """The 10-day slice is quoted on |k| <= 0.8, the 20- and 30-day ones on |k| <= 0.2.  The
    20-day stays above the 10-day everywhere, the 30-day above the 20-day where either is
    quoted; but at k = 0.8, where the 10-day is quoted, the 30-day is below it.  Checked in
    consecutive pairs only, the surface passed, through the Surface's compiled screen too."""
    from calibration.surface import SmileSlice, Surface

    sl = [SmileSlice("svi", p, e, d / 365, 1.0, -h, h) for p, e, d, h in (
        (SVIParams(0.010, 0.05, 0.0, 0.0, 0.1), 1, 10, 0.8),
        (SVIParams(0.012, 0.08, 0.0, 0.0, 0.1), 2, 20, 0.2),
        (SVIParams(0.030, 0.01, 0.0, 0.0, 0.1), 3, 30, 0.2))]
    listed = check_slices([s.view() for s in sl])
    assert listed and {v.kind for v in listed} == {"calendar"}
    assert {v.expiry_t for v in listed} == {30 / 365} and max(abs(v.k) for v in listed) == 0.8
    assert not Surface(sl).arbitrage_free
    assert check_slices([s.view() for s in sl[1:]]) == []  # the last pair alone is clean


def test_calendar_points_are_the_grid_and_domain_ends_each_once():
    """The compiled ``calendar_points`` is its definition, ``np.union1d(calendar_grid,
    domain ends)``, bit for bit: shared and rounded ends (which must appear once) included."""
    rng = np.random.default_rng(7)
    for trial in range(500):
        n = int(rng.integers(1, 14))
        lo, hi = -rng.uniform(0.01, 1.5, n), rng.uniform(0.01, 1.5, n)
        if trial % 3 == 0:
            lo[0], hi[n // 2] = lo[-1], hi[0]
        if trial % 5 == 0:
            lo, hi = np.round(lo, 2), np.round(hi, 2)
        want = np.union1d(calendar_grid(lo, hi), np.concatenate((lo, hi)))
        got = calendar_points(list(lo), list(hi))
        assert got.tobytes() == want.tobytes()
    assert calendar_points([], []).size == 0
