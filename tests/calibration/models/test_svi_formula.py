"""The compiled reads of stacked SVI slices against numpy's (calibration.models.svi_formula)."""

import numpy as np
from numpy.testing import assert_allclose, assert_array_equal

from calibration.models.svi_formula import SVIParams, _interp_one
from calibration.surface import SmileSlice, Surface

NS_YEAR = 365 * 86400 * 10**9


def test_interp_one_is_numpys_interp_to_the_bit():
    """Knots, points between them, both ends and beyond: numpy.interp's digits (a NaN gives
    NaN)."""
    rng = np.random.default_rng(1)
    for n in (1, 2, 5, 12):
        xp = np.sort(rng.uniform(0.0, 2.0, n))
        fp = np.log(rng.uniform(5e4, 1e5, n))
        x = np.concatenate((xp, rng.uniform(-0.5, 2.5, 200), [xp[0] - 1e-12, xp[-1] + 1e-12]))
        got = np.array([_interp_one(v, xp, fp) for v in x])
        assert_array_equal(got, np.interp(x, xp, fp))
        assert np.isnan(_interp_one(np.nan, xp, fp))


def _random_svi_surface(rng: np.random.Generator, n: int) -> Surface:
    ts = np.sort(rng.uniform(0.002, 1.5, n))
    return Surface([SmileSlice("svi", SVIParams(float(0.04 * t + rng.uniform(0, 0.01)),
                                                float(rng.uniform(0.02, 0.2) * np.sqrt(t)),
                                                float(rng.uniform(-0.8, 0.2)),
                                                float(rng.normal(0, 0.05)),
                                                float(rng.uniform(0.05, 0.3))),
                               int(t * NS_YEAR), float(t), float(9e4 * np.exp(0.05 * t)),
                               -1.0, 1.0) for t in ts], ts_ns=0)


def test_compiled_iv_is_the_numpy_composition():
    """``Surface.iv`` of an all-SVI surface (one compiled pass) against its reference twin
    ``iv_numpy`` (numpy's forward interpolation, logs and total variance): before, on, between
    and after the slices, past expiry and NaN, broadcast and 0-d.  Tolerance 1e-14 relative:
    numpy may evaluate ``exp`` and ``log`` with its vectorised routines, an ulp or two from the
    compiled ones; NaNs in the same places."""
    rng = np.random.default_rng(7)
    for n in (1, 3, 12):
        surf = _random_svi_surface(rng, n)
        strike = 9e4 * np.exp(rng.normal(0, 0.4, 60))
        t = np.concatenate((surf.ts, rng.uniform(-0.01, 2.0, 50), [0.0, np.nan]))
        k, tt = np.meshgrid(strike, t)
        assert_allclose(surf.iv(k, tt), surf.iv_numpy(k, tt), rtol=1e-14, atol=0.0)
        for ti in (float(surf.ts[0]) / 2, float(surf.ts[-1]), 3.0):
            assert_allclose(surf.iv(strike, ti), surf.iv_numpy(strike, ti), rtol=1e-14)
            one = surf.iv(float(strike[0]), ti)
            assert isinstance(one, np.float64)
            assert_allclose(one, surf.iv_numpy(float(strike[0]), ti), rtol=1e-14)
        assert np.isnan(surf.iv(strike[:3], np.nan)).all()


def test_expiry_reads_are_the_surface_reads_they_stand_for():
    """``Surface.at_expiries`` (one compiled pass on an all-SVI surface) against its numpy
    twin and against the reads it replaces: ``t_of`` to the bit (the same integer difference
    and division), ``forward_expiry`` to an ulp of ``exp``, ``iv_expiry`` and ``vol_and_skew``
    at ``K = F`` to 1e-14 relative (``exp``/``log`` ulps; a skew, a difference over 2e-3, to
    1e-10 absolute).  Expiries before, on, between and after the slices."""
    rng = np.random.default_rng(3)
    for n in (1, 4, 12):
        surf = _random_svi_surface(rng, n)
        expiry = np.concatenate((np.array([s.expiry_ns for s in surf.slices]),
                                 rng.integers(1, 2 * NS_YEAR, 30)))
        strike = 9e4 * np.exp(rng.normal(0, 0.3, expiry.size))
        got = surf.at_expiries(strike, expiry)
        twin = surf.at_expiries_numpy(strike, expiry)
        t, f = surf.t_of(expiry), surf.forward_expiry(expiry)
        assert_array_equal(got[:, 0], t)
        assert_allclose(got[:, 1], f, rtol=4e-16)
        assert_allclose(got[:, [1, 2, 3]], twin[:, [1, 2, 3]], rtol=1e-14)
        assert_allclose(got[:, 4], twin[:, 4], rtol=1e-10, atol=1e-10)
        assert_allclose(got[:, 2], surf.iv_expiry(strike, expiry), rtol=1e-14)
        atm, skew = surf.vol_and_skew(f, t)
        assert_allclose(got[:, 3], atm, rtol=1e-14)
        assert_allclose(got[:, 4], skew, rtol=1e-10, atol=1e-10)


def test_other_surfaces_read_expiries_by_numpy():
    """A surface with a non-SVI slice reads ``at_expiries`` by its numpy twin, whose ATM vol
    and skew are ``vol_and_skew``'s own digits."""
    from calibration.models.essvi import ESSVIParams

    surf = Surface([SmileSlice("essvi", ESSVIParams(0.04 * t, -0.3, 0.3), int(t * NS_YEAR), t,
                               9e4, -1.0, 1.0) for t in (0.1, 0.5)], ts_ns=0)
    expiry = np.array([int(0.1 * NS_YEAR), int(0.3 * NS_YEAR)])
    got = surf.at_expiries(np.array([8e4, 1e5]), expiry)
    atm, skew = surf.vol_and_skew(got[:, 1], got[:, 0])
    assert_array_equal(got[:, 3], atm)
    assert_array_equal(got[:, 4], skew)
    assert_array_equal(got[:, 2], surf.iv_expiry(np.array([8e4, 1e5]), expiry))
