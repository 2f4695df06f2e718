"""numpy's pairwise sum, compiled: equal to ``numpy.sum`` to the bit."""

import numpy as np
import pytest

from calibration.sums import pairwise_sum


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 15, 16, 17, 127, 128, 129, 130, 255, 256, 1000,
                               8191, 8193, 100_003])
def test_equals_numpy_sum_to_the_bit(n):
    rng = np.random.default_rng(n)
    for _ in range(20):
        x = rng.standard_normal(n) * 10.0 ** rng.uniform(-8, 8, n)
        assert pairwise_sum(x, 0, n) == np.sum(x)
        if n > 4:  # a window of a larger array, as the compiled passes read a slice's rows
            assert pairwise_sum(x, 2, n - 4) == np.sum(x[2:n - 2])


def test_random_lengths_and_special_values():
    rng = np.random.default_rng(7)
    for _ in range(3000):
        n = int(rng.integers(0, 400))
        x = rng.standard_normal(n) * 10.0 ** rng.uniform(-300, 300, n)
        assert pairwise_sum(x, 0, n) == np.sum(x)
    assert str(pairwise_sum(np.array([-0.0, -0.0]), 0, 2)) == str(np.sum([-0.0, -0.0]))
    assert np.isnan(pairwise_sum(np.array([1.0, np.nan] * 9), 0, 18))
    assert pairwise_sum(np.array([np.inf] * 10), 0, 10) == np.inf
