import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from replay.venue.latency import LatencyModel, VenueLatencies

MS = 1_000_000


def test_constant_latency_adds_base() -> None:
    m = LatencyModel(base_ns=25 * MS)
    assert m.arrival_ts(1_000) == 1_000 + 25 * MS
    assert_array_equal(m.arrival_ts_many(np.array([0, 5])), [25 * MS, 5 + 25 * MS])


def test_uniform_jitter_is_seeded_bounded_and_matches_scalar_draws() -> None:
    m = LatencyModel(base_ns=10 * MS, jitter_ns=4 * MS, jitter="uniform")
    a = m.arrival_ts_many(np.zeros(5000, dtype=np.int64), np.random.default_rng(7))
    b = m.arrival_ts_many(np.zeros(5000, dtype=np.int64), np.random.default_rng(7))
    assert_array_equal(a, b)
    assert a.min() >= 10 * MS and a.max() <= 14 * MS
    # uniform on [0, 4ms]: mean 2 ms; the std of the mean is 4ms/sqrt(12*5000) ~ 0.016 ms
    assert_allclose(a.mean() - 10 * MS, 2 * MS, atol=5 * 0.017 * MS)
    rng = np.random.default_rng(7)
    scalar = [m.arrival_ts(0, rng) for _ in range(5)]
    assert_array_equal(scalar, a[:5])


def test_exponential_jitter_mean() -> None:
    m = LatencyModel(base_ns=0, jitter_ns=2 * MS, jitter="exponential")
    a = m.arrival_ts_many(np.zeros(20000, dtype=np.int64), np.random.default_rng(3))
    assert a.min() >= 0
    # exponential: std = mean, so the mean's std over 20000 draws is 2ms/141 ~ 0.014 ms
    assert_allclose(a.mean(), 2 * MS, atol=5 * 0.0142 * MS)


def test_jitter_needs_rng_and_rejects_bad_config() -> None:
    with pytest.raises(ValueError):
        LatencyModel(base_ns=1, jitter_ns=1, jitter="uniform").arrival_ts(0)
    with pytest.raises(ValueError):
        LatencyModel(base_ns=-1)
    with pytest.raises(ValueError):
        LatencyModel(jitter="gaussian")


def test_per_venue_models() -> None:
    lat = VenueLatencies({"deribit": LatencyModel(5 * MS), "binance": LatencyModel(2 * MS)},
                         default=LatencyModel(1 * MS))
    assert lat.arrival_ts("deribit", 0) == 5 * MS
    assert lat.arrival_ts("binance", 0) == 2 * MS
    assert lat.arrival_ts("synth", 0) == 1 * MS
