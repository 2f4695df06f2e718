"""Surface: interpolation in T (total variance, fixed k), forwards, prices, greeks, violations."""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from calibration.models.essvi import ESSVIParams
from calibration.models.sabr import SABRParams
from calibration.models.svi import SVIParams, svi_total_variance
from calibration.pricing.black import black_price, greeks
from calibration.surface import SmileSlice, Surface

NS_YEAR = int(365 * 86400 * 1e9)


def essvi_surface() -> Surface:
    # admissible chain: theta up, wing slopes up, phi down
    ps = [ESSVIParams(0.01, -0.3, 0.1), ESSVIParams(0.03, -0.3, 0.2), ESSVIParams(0.08, -0.25, 0.3)]
    ts = [0.05, 0.2, 0.6]
    fs = [90_000.0, 90_500.0, 92_000.0]
    return Surface([SmileSlice("essvi", p, int(t * NS_YEAR), t, f, -1.0, 1.0)
                    for p, t, f in zip(ps, ts, fs)], ts_ns=0)


def test_surface_is_arbitrage_free_and_monotone_in_t():
    s = essvi_surface()
    assert s.arbitrage_free and s.violations == ()
    k = np.linspace(-1, 1, 41)
    ts = np.linspace(0.001, 1.0, 300)
    W = np.array([s.total_variance(k, t) for t in ts])
    assert np.all(np.diff(W, axis=0) >= -1e-15)


def test_interpolation_rules():
    s = essvi_surface()
    k = np.linspace(-0.5, 0.5, 11)
    a, b = s.slices[0], s.slices[1]
    # at a node: the slice itself; between nodes: linear in t
    assert_allclose(s.total_variance(k, a.t), a.total_variance(k), rtol=1e-15)
    tm = 0.25 * a.t + 0.75 * b.t
    assert_allclose(s.total_variance(k, tm),
                    0.25 * a.total_variance(k) + 0.75 * b.total_variance(k), rtol=1e-13)
    # outside: constant implied vol at fixed k
    assert_allclose(s.total_variance(k, a.t / 2), a.total_variance(k) / 2, rtol=1e-14)
    last = s.slices[-1]
    assert_allclose(s.total_variance(k, 2 * last.t), 2 * last.total_variance(k), rtol=1e-14)
    # the vectorised path (array t) and the scalar path agree
    tt = np.array([0.01, a.t, tm, 0.4, 0.9])
    kk = np.full(tt.size, 0.1)
    assert_allclose(s.total_variance(kk, tt), [s.total_variance(np.array([0.1]), x)[0] for x in tt],
                    rtol=1e-14)


def test_forward_is_log_linear_between_slices():
    s = essvi_surface()
    t = 0.1
    w = (t - 0.05) / (0.2 - 0.05)
    assert s.forward(t) == pytest.approx(np.exp((1 - w) * np.log(90_000) + w * np.log(90_500)))
    assert s.forward(0.0) == pytest.approx(90_000.0)
    assert s.forward(5.0) == pytest.approx(92_000.0)


def test_iv_price_and_greeks_come_from_black():
    s = essvi_surface()
    K = np.array([70_000.0, 90_000.0, 120_000.0])
    t = 0.3
    F = s.forward(t)
    iv = s.iv(K, t)
    assert_allclose(iv, np.sqrt(s.total_variance(np.log(K / F), t) / t), rtol=1e-15)
    call = s.price(K, t, True)
    put = s.price(K, t, False)
    assert_allclose(call, black_price(F, K, t, iv, True), rtol=1e-15)
    assert_allclose(call - put, F - K, rtol=1e-10, atol=1e-8)  # put-call parity
    assert_allclose(s.price_coin(K, t, True), call / F, rtol=1e-15)
    g = s.greeks(K, t, True)
    ref = greeks(F, K, t, iv, True)
    for name in ("delta", "gamma", "vega", "theta", "vanna", "volga"):
        assert_allclose(g[name], ref[name], rtol=1e-15)
    expiry = s.slices[1].expiry_ns
    assert_allclose(s.iv_expiry(K, expiry), s.iv(K, s.slices[1].t), rtol=1e-12)


def test_an_arbitrageable_surface_carries_its_violations():
    vogt = SVIParams(a=-0.0410, b=0.1331, rho=0.3060, m=0.3586, sigma=0.4153)
    s = Surface([SmileSlice("svi", vogt, NS_YEAR, 1.0, 100.0, -1.5, 1.5)])
    assert not s.arbitrage_free
    assert {v.kind for v in s.violations} == {"butterfly"}
    # and crossing SVI slices give calendar violations
    a = SmileSlice("svi", SVIParams(0.04, 0.1, -0.3, 0.0, 0.2), 1, 0.5, 100.0, -1.0, 1.0)
    b = SmileSlice("svi", SVIParams(0.06, 0.05, -0.3, 0.0, 0.2), 2, 1.0, 100.0, -1.0, 1.0)
    assert {v.kind for v in Surface([a, b]).violations} == {"calendar"}


def test_models_evaluate_through_the_slice():
    t, f = 0.25, 90_000.0
    k = np.linspace(-0.3, 0.3, 7)
    svi = SVIParams(0.01, 0.05, -0.2, 0.0, 0.1)
    assert_allclose(SmileSlice("svi", svi, 1, t, f, -0.3, 0.3).total_variance(k),
                    svi_total_variance(k, svi))
    sabr = SmileSlice("sabr", SABRParams(0.5, -0.3, 1.0), 1, t, f, -0.3, 0.3)
    assert sabr.wing_slopes() is None
    assert np.all(np.isfinite(sabr.iv(k)))
    with pytest.raises(ValueError):
        SmileSlice("heston", svi, 1, t, f, -0.3, 0.3).total_variance(k)
    with pytest.raises(ValueError):
        Surface([])


def _svi_surface() -> Surface:
    ts = [0.01, 0.05, 0.2, 0.6]
    out = [SmileSlice("svi", SVIParams(0.3 * t, 0.1 * np.sqrt(t), -0.3, 0.02, 0.12),
                      int(t * NS_YEAR), t, 90_000.0, -1.0, 1.0) for t in ts]
    return Surface(out, ts_ns=0)


def test_svi_surfaces_take_the_compiled_path_with_the_slices_values():
    """At one maturity an all-SVI surface evaluates in one compiled pass: the same values as
    the slice-by-slice interpolation, to the bit (before, on, between and after the slices)."""
    surf = _svi_surface()
    rng = np.random.default_rng(4)
    k = rng.normal(0, 0.4, 23)
    for t in [0.002, 0.01, 0.03, 0.05, 0.2, 0.37, 0.6, 1.5, *rng.uniform(0.0, 1.0, 40)]:
        assert_array_equal(surf.total_variance(k, t), surf._total_variance_at(k, float(t)))
        assert_array_equal(surf.total_variance(k[3], t), surf._total_variance_at(k[3], t))


@pytest.mark.parametrize("make", [_svi_surface, essvi_surface])
def test_total_variance_rows_is_the_interpolation_row_by_row(make):
    """Rows of points at one maturity each (before the first slice, on a slice, between
    slices, after the last) against :meth:`Surface.total_variance` point by point."""
    surf = make()
    rng = np.random.default_rng(9)
    t = np.array([0.002, 0.01, 0.03, 0.2, 0.45, 1.5])
    k = rng.normal(0, 0.4, (t.size, 17))
    got = surf.total_variance_rows(k, t)
    want = surf.total_variance(k, np.broadcast_to(t[:, None], k.shape))
    assert_allclose(got, want, rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("make", [_svi_surface, essvi_surface])
def test_a_surface_from_columns_equals_the_one_from_slices(make):
    """The columns of a surface's slices, shuffled, give the same surface: the same slices (made
    on first use), maturities, forwards, violations and values, to the bit."""
    want = make()
    order = np.random.default_rng(2).permutation(len(want.slices))
    sl = [want.slices[i] for i in order]
    params = np.array([[float(x) for x in vars(s.params).values()] for s in sl])
    got = Surface.from_columns([s.model for s in sl], params,
                               *(np.array([getattr(s, f) for s in sl]) for f in (
                                   "expiry_ns", "t", "forward", "k_lo", "k_hi")),
                               want.ts_ns, want.violations)
    assert_array_equal(got.ts, want.ts)
    assert_array_equal(got.forwards, want.forwards)
    if want._all_svi:
        assert_array_equal(got.svi_params(), want.svi_params())
    k = np.linspace(-0.5, 0.5, 11)
    for t in [0.003, 0.05, 0.3, 2.0]:
        assert_array_equal(got.iv(k * 9e4 + 9e4, t), want.iv(k * 9e4 + 9e4, t))
    assert got.slices == want.slices
    assert [type(x) for s in got.slices for x in vars(s.params).values()] == \
        [float] * len(want.slices) * len(vars(want.slices[0].params))
    assert got.violations == want.violations and got.ts_ns == want.ts_ns
    with pytest.raises(ValueError):
        Surface.from_columns([], np.zeros((0, 5)), *[np.zeros(0)] * 5, 0, ())
