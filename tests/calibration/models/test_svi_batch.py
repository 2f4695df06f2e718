"""Many SVI slices in one parallel call give, slice by slice, exactly what ``fit_svi`` gives,
whatever the thread count."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from calibration.loss import LossConfig, fit_data
from calibration.models.svi import SVIParams, fit_svi
from calibration.models.svi_batch import SVIProblem, balanced_order, fit_svi_many, fit_svi_rows
from calibration.quotes import MIN_QUOTES


def _problems(shared_data, step: int = 40) -> list[SVIProblem]:
    """Every slice of every ``step``-th real BTC snapshot, warm-started (with a Tikhonov
    term) from the same expiry's cold fit in the snapshot before where there is one."""
    from replay.ingest.deribit_summary import summary_files, summary_snapshots

    cfg = LossConfig()
    snaps = list(summary_snapshots(summary_files(shared_data / "deribit" / "BTC")[::step]))
    out, before = [], {}
    for snap in snaps:
        now = {}
        for sl in snap.slices:
            d = fit_data(sl, cfg)
            if d.n < MIN_QUOTES:
                continue
            prev = before.get(sl.expiry_ns)
            out.append(SVIProblem(d.k, d.mid, d.t, d.weight, d.bid, d.ask, prev=prev,
                                  lam=0.05 if prev is not None else 0.0,
                                  warm=len(out) % 3 != 0, n_starts=1 + len(out) % 2))
            now[sl.expiry_ns] = fit_svi(d.k, d.mid, d.t, d.weight, d.bid, d.ask,
                                        band=cfg.band, mid_weight=cfg.mid_weight).params
        before = now
    return out


def _one_by_one(problems, **kw):
    return [fit_svi(p.k, p.iv_mid, p.t, p.weights, p.iv_bid, p.iv_ask, prev=p.prev, lam=p.lam,
                    warm=p.warm, n_starts=p.n_starts, **kw) for p in problems]


@pytest.mark.parametrize("band", [True, False])
def test_batch_equals_one_by_one_on_real_slices(shared_data, band):
    problems = _problems(shared_data)
    assert len(problems) >= 40 and any(p.prev is not None for p in problems)
    many = fit_svi_many(problems, band=band, mid_weight=0.1)
    one = _one_by_one(problems, band=band, mid_weight=0.1)
    # bit for bit: parameters, objective and evaluation count
    assert [f.params.to_array().tobytes() for f in many] == \
        [f.params.to_array().tobytes() for f in one]
    assert [(f.loss, f.n_eval, f.feasible) for f in many] == \
        [(f.loss, f.n_eval, f.feasible) for f in one]


def test_thread_count_and_the_serial_kernel_do_not_change_results(shared_data):
    problems = _problems(shared_data, step=60)
    threads = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        single = fit_svi_many(problems, band=True, parallel_min=0)
    finally:
        numba.set_num_threads(threads)
    assert fit_svi_many(problems, band=True, parallel_min=0) == single
    assert fit_svi_many(problems, band=True, parallel_min=10**9) == single  # the serial twin


def test_no_problem_and_one_problem():
    k = np.linspace(-0.4, 0.3, 15)
    iv = np.full(15, 0.5)
    p = SVIProblem(k, iv, 0.1, np.ones(15), iv - 0.01, iv + 0.01,
                   prev=SVIParams(0.02, 0.05, -0.2, 0.0, 0.1), lam=0.1)
    assert fit_svi_many([]) == []
    assert fit_svi_many([p], band=True) == _one_by_one([p], band=True)


def test_balanced_order_is_a_permutation_with_even_blocks():
    sizes = np.array([5, 12, 13, 11, 23, 30, 18, 37, 30, 36, 41, 34])
    for threads in (1, 2, 3, 5, 20):
        order = balanced_order(sizes, threads)
        assert sorted(order.tolist()) == list(range(len(sizes)))
    order = balanced_order(sizes, 2)
    halves = sizes[order[:6]].sum(), sizes[order[6:]].sum()
    assert abs(halves[0] - halves[1]) <= sizes.max() // 2


def test_rows_fit_only_the_slices_asked_for(shared_data):
    problems = _problems(shared_data, step=60)[:14]
    sizes = np.array([len(p.k) for p in problems])
    off = np.concatenate(([0], np.cumsum(sizes)))

    def cat(field):
        return np.concatenate([getattr(p, field) for p in problems])

    prev = np.array([p.prev.to_array() if p.prev else np.full(5, np.nan) for p in problems])
    has = np.array([p.prev is not None for p in problems])
    todo = np.array([11, 0, 5, 3, 13, 8])
    got = fit_svi_rows(off, cat("k"), cat("iv_mid"), cat("iv_bid"), cat("iv_ask"),
                       cat("weights"), np.array([p.t for p in problems]), prev,
                       np.where(has, [p.lam for p in problems], 0.0),
                       has & np.array([p.warm for p in problems]),
                       np.array([p.n_starts for p in problems]), todo, band=True)
    assert got == _one_by_one([problems[j] for j in todo], band=True)
    assert fit_svi_rows(off, *(np.zeros(0),) * 5, np.zeros(0), np.zeros((0, 5)), np.zeros(0),
                        np.zeros(0, bool), np.zeros(0, np.int64), np.zeros(0, np.int64)) == []
