"""The compiled SVI screens decide exactly what the general numpy checks decide."""

import numpy as np
import pytest

from calibration.arbitrage import check_slices
from calibration.models.calendar_rows import CALENDAR_MARGIN
from calibration.models.svi import SVIParams
from calibration.models.svi_arbitrage import (
    svi_calendar_drop,
    svi_calendar_drops,
    svi_calendar_rises,
    svi_envelope_dip,
    svi_envelope_dips,
    svi_surface_clean,
)
from calibration.surface import SmileSlice
from tests.calibration.models.test_calendar_rows import numpy_floor_rows


def _random_slices(rng, n):
    """``n`` SVI slices by increasing maturity, some with butterfly, Lee or calendar
    arbitrage (large ``b``, extreme ``rho``, a level below the previous slice's)."""
    out, a = [], 0.0
    for i in range(n):
        t = 0.02 * (i + 1) + rng.uniform(0, 0.01)
        a += rng.uniform(-0.002, 0.01)
        p = SVIParams(a=a, b=rng.uniform(0.01, 0.4 if rng.random() < 0.9 else 2.5),
                      rho=rng.uniform(-0.999, 0.999), m=rng.uniform(-0.1, 0.1),
                      sigma=rng.uniform(0.01, 0.4))
        lo = rng.uniform(-1.0, -0.2)
        out.append(SmileSlice("svi", p, i, t, 100.0, lo, lo + rng.uniform(0.3, 1.5)))
    return out


def test_the_surface_screen_flags_exactly_what_check_slices_lists():
    rng = np.random.default_rng(11)
    seen = set()
    for _ in range(600):
        sl = _random_slices(rng, int(rng.integers(1, 6)))
        with np.errstate(over="ignore"):  # g on a slice whose w nears 0 is huge: flagged
            listed = check_slices([s.view() for s in sl])
        par = np.array([s.params.to_array() for s in sl])
        clean = svi_surface_clean(par, np.array([s.k_lo for s in sl]),
                                  np.array([s.k_hi for s in sl]))
        assert clean == (not listed)
        seen.add(clean)
        seen.update(v.kind for v in listed)
    assert seen == {True, False, "butterfly", "lee", "calendar"}  # every branch was taken


def test_the_surface_screen_checks_every_earlier_quoted_expiry_as_check_slices_does():
    """A wide first domain and narrow later ones: the crossings that only the check against
    every earlier quoted expiry finds (a consecutive pair alone is clean) are found alike."""
    from calibration.arbitrage import calendar_grid, calendar_violations

    rng = np.random.default_rng(7)
    beyond_pairs = 0
    for _ in range(4000):
        sl, a = [], 0.01
        for i in range(int(rng.integers(3, 6))):
            a += rng.uniform(0.0, 0.01)
            h = rng.uniform(0.5, 1.0) if i == 0 else rng.uniform(0.1, 0.4)
            p = SVIParams(a, rng.uniform(0.005, 0.1), rng.uniform(-0.5, 0.5),
                          rng.uniform(-0.05, 0.05), rng.uniform(0.05, 0.3))
            sl.append(SmileSlice("svi", p, i, 0.02 * (i + 1), 1.0, -h, h))
        listed = check_slices([s.view() for s in sl])
        lo, hi = np.array([s.k_lo for s in sl]), np.array([s.k_hi for s in sl])
        assert svi_surface_clean(np.array([s.params.to_array() for s in sl]), lo, hi) == \
            (not listed)
        if listed and {v.kind for v in listed} == {"calendar"}:
            k = np.union1d(calendar_grid(lo, hi), np.concatenate((lo, hi)))
            pairs = np.vstack([(k >= min(x.k_lo, y.k_lo)) & (k <= max(x.k_hi, y.k_hi))
                               for x, y in zip(sl, sl[1:])])
            W = np.vstack([s.view().derivs(k)[0] for s in sl])
            beyond_pairs += not calendar_violations([s.t for s in sl], k, W, pairs=pairs)
    assert beyond_pairs >= 2


def test_the_calendar_drop_is_numpys_max_bit_for_bit():
    rng = np.random.default_rng(12)
    points = np.linspace(-2.0, 2.0, 301)
    for _ in range(200):
        a, b = _random_slices(rng, 2)
        lo, hi = max(a.k_lo, b.k_lo), min(a.k_hi, b.k_hi)
        k = points[(points >= lo) & (points <= hi)]
        want = np.max(a.total_variance(k) - b.total_variance(k)) if k.size else -np.inf
        assert svi_calendar_drop(a.params.to_array(), b.params.to_array(), lo, hi,
                                 points) == want


@pytest.mark.parametrize("fn, seed, first, span", [
    # each slice under the one before, on the domain of the one before
    (svi_calendar_drops, 13, 0, lambda lo, hi, i: (lo[i - 1], hi[i - 1])),
    # each slice over the one after, on the hull of the two domains
    (svi_calendar_rises, 14, -1,
     lambda lo, hi, i: (min(lo[i - 1], lo[i]), max(hi[i - 1], hi[i]))),
])
def test_the_calendar_passes_of_a_surface_are_each_pairs_drop(fn, seed, first, span):
    rng = np.random.default_rng(seed)
    extra = np.linspace(-2.0, 2.0, 301)
    for _ in range(50):
        sl = _random_slices(rng, 6)
        par = np.array([s.params.to_array() for s in sl])
        lo, hi = np.array([s.k_lo for s in sl]), np.array([s.k_hi for s in sl])
        got = fn(par, lo, hi, extra)
        assert got[first] == -np.inf
        pairs = got[1:] if first == 0 else got[:-1]
        for i, g in zip(range(1, len(sl)), pairs):
            want = svi_calendar_drop(par[i - 1], par[i], *span(lo, hi, i), extra)
            assert g == want or (np.isnan(g) and np.isnan(want))


def _numpy_dip(earlier, after, extra) -> float:
    """How far ``after`` dips under the floor rows beyond the range of the expiry just before
    it (those rows are exactly the ones outside that range)."""
    k, w = numpy_floor_rows(earlier, extra)
    beyond = (k < earlier[-1].k_lo) | (k > earlier[-1].k_hi)
    return np.max(w[beyond] - after.total_variance(k[beyond])) if beyond.any() else -np.inf


def _stack(sl):
    return (np.array([s.params.to_array() for s in sl]), np.array([s.k_lo for s in sl]),
            np.array([s.k_hi for s in sl]))


def test_the_envelope_dip_is_numpys_max_under_the_floor_bit_for_bit():
    rng = np.random.default_rng(15)
    extra = np.linspace(-2.0, 2.0, 301)
    seen = set()
    for _ in range(200):
        sl = _random_slices(rng, int(rng.integers(2, 6)))
        got = svi_envelope_dip(*_stack(sl[:-1]), sl[-1].params.to_array(), extra,
                               CALENDAR_MARGIN)
        assert got == _numpy_dip(sl[:-1], sl[-1], extra)
        seen.add(np.sign(got))
    assert seen == {-1.0, 1.0}  # dips and clear both met


def test_the_envelope_pass_of_a_surface_is_each_slices_dip_bit_for_bit():
    rng = np.random.default_rng(16)
    extra = np.linspace(-2.0, 2.0, 301)
    seen = set()
    for _ in range(50):
        sl = _random_slices(rng, 6)
        got = svi_envelope_dips(*_stack(sl), extra, CALENDAR_MARGIN)
        assert got[0] == -np.inf
        for i in range(1, len(sl)):
            want = _numpy_dip(sl[:i], sl[i], extra)
            assert got[i] == want
            seen.add(np.sign(want))
    assert seen == {-1.0, 1.0}


def test_a_crossing_at_a_slice_s_outermost_quote_is_found_between_grid_points():
    """Two short expiries quoted on [-0.09, 0.0827] under a long one quoted on [-1.55, 1.39]:
    the common grid's steps (0.012) straddle the short ones' last quote, where the first
    rises 2e-6 (20 times the tolerance) above the second and nowhere else.  Every domain's
    ends are calendar points, so both checks find it; on the even steps alone neither did
    (two real SABR surfaces of the Deribit summaries were published so)."""
    edge = 0.0827
    a_b = 0.002
    before = SVIParams(a_b + 1e-5 + 2e-6 - 1e-4 * np.sqrt(edge**2 + 1), 1e-4, 0.0, 0.0, 1.0)
    after = SVIParams(a_b, 0.1, 0.0, edge, 1e-4)  # a steep V at the edge: below elsewhere
    long = SVIParams(0.05, 0.1, 0.0, 0.0, 0.3)
    sl = [SmileSlice("svi", before, 1, 0.0066, 100.0, -0.09, edge),
          SmileSlice("svi", after, 2, 0.0093, 100.0, -0.09, edge),
          SmileSlice("svi", long, 3, 0.1, 100.0, -1.552, 1.392)]
    (v,) = check_slices([s.view() for s in sl])
    assert (v.kind, v.k) == ("calendar", edge) and 1.9e-6 < v.value < 2.1e-6
    par = np.array([s.params.to_array() for s in sl])
    assert not svi_surface_clean(par, np.array([s.k_lo for s in sl]),
                                 np.array([s.k_hi for s in sl]))
