"""The implied-vol memo answers exactly what a full inversion answers, and inverts only the
rows whose inputs changed."""

import numpy as np
from numpy.testing import assert_array_equal

from calibration.pricing.black import black_price
from calibration.pricing.iv import implied_vol
from calibration.pricing.iv_memo import IVMemo


def _book(rng, n):
    f = np.full(n, 100.0)
    k = rng.uniform(50.0, 150.0, n)
    t = rng.uniform(0.01, 1.0, n)
    call = rng.random(n) < 0.5
    price = black_price(f, k, t, rng.uniform(0.2, 1.5, n), call)
    price[rng.random(n) < 0.1] = np.nan  # a missing side
    return price, f, k, t, call


def test_memo_equals_a_full_inversion_through_partial_updates():
    rng = np.random.default_rng(3)
    n = 400
    price, f, k, t, call = _book(rng, n)
    ids = np.arange(n) * 7 + 5  # sparse keys, as instrument ids are
    memo = IVMemo()
    inverted = 0
    for step in range(30):
        live = np.sort(rng.choice(n, size=rng.integers(1, n), replace=False))  # some expire
        if step:
            upd = rng.random(n) < 0.05  # a few quotes change: price, forward or time
            price = np.where(upd, price * rng.uniform(0.95, 1.05, n), price)
            t = np.where(rng.random(n) < 0.01, t * 0.99, t)
        before = memo.inverted
        got = memo(ids[live], price[live], f[live], k[live], t[live], call[live])
        assert_array_equal(got, implied_vol(price[live], f[live], k[live], t[live],
                                            call[live]))  # bit for bit, NaN where NaN
        inverted += memo.inverted - before
    assert inverted < 30 * n / 4  # most rows came from the memo


def test_memo_inverts_only_changed_rows():
    rng = np.random.default_rng(4)
    price, f, k, t, call = _book(rng, 50)
    memo = IVMemo()
    key = np.arange(50)
    memo(key, price, f, k, t, call)
    assert memo.inverted == 50
    memo(key, price, f, k, t, call)
    assert memo.inverted == 50  # nothing changed, NaN prices included
    price[[3, 9]] *= 1.01
    f = f.copy()
    f[20] = 101.0
    memo(key[::-1], price[::-1], f[::-1], k[::-1], t[::-1], call[::-1])  # order is free
    assert memo.inverted == 53
