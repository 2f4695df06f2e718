"""Bench ``svi_slice``: warm and cold refits of one 30-40 strike SVI slice.

The slice is a real Deribit BTC expiry when the recordings are present (the first expiry
with 30-40 two-sided OTM quotes in the last snapshot, warm-started from the fit of the
previous snapshot, as a scheme would), otherwise a synthetic noisy 35-strike smile.  The
loss is the scheme default (spread-weighted, bid/ask-aware).  Medians over repeats after a
warm-up call (which also triggers the numba compilation).
"""

from __future__ import annotations

import time

import numpy as np

from calibration.loss import LossConfig, fit_data
from calibration.models.svi import SVIParams, fit_svi, svi_total_variance
from replay.app.bench import RECORDINGS

DATA = RECORDINGS / "deribit" / "BTC"


def _real_slices():
    from replay.ingest.deribit_summary import summary_files, summary_snapshots

    files = summary_files(DATA)
    if not files:
        return None
    snaps = list(summary_snapshots(files[-2:]))
    if len(snaps) < 2:
        return None
    cfg = LossConfig()
    for sl in snaps[-1].slices:
        d = fit_data(sl, cfg)
        if 30 <= d.n <= 40:
            prev = next((s for s in snaps[-2].slices if s.expiry_ns == sl.expiry_ns), None)
            if prev is not None:
                return fit_data(prev, cfg), d, "deribit"
    return None


def _synthetic():
    rng = np.random.default_rng(0)
    k = np.linspace(-0.6, 0.5, 35)
    t = 0.1
    iv = np.sqrt(svi_total_variance(k, SVIParams(0.003, 0.02, -0.2, 0.05, 0.1)) / t)
    from calibration.loss import FitData
    mk = lambda m: FitData(t, k, m, m - 0.004, m + 0.004, np.full(k.size, 1 / k.size),
                           np.arange(k.size))
    return mk(iv + rng.normal(0, 0.002, k.size)), mk(iv + rng.normal(0, 0.002, k.size)), "synthetic"


def _median_ms(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        ts.append(time.perf_counter_ns() - t0)
    return float(np.median(ts)) / 1e6


def run(quick: bool) -> dict:
    got = _real_slices() if DATA.is_dir() else None
    before, now, source = got if got is not None else _synthetic()
    cfg = LossConfig()

    def fit(d, prev=None):
        return fit_svi(d.k, d.mid, d.t, d.weight, d.bid, d.ask, prev=prev, band=cfg.band,
                       mid_weight=cfg.mid_weight)

    prev = fit(before).params
    repeats = 50 if quick else 400
    warm = _median_ms(lambda: fit(now, prev), repeats)
    cold = _median_ms(lambda: fit(now), repeats // 2)
    return {"warm_ms_median": round(warm, 4), "cold_ms_median": round(cold, 4),
            "strikes": int(now.n), "source": source, "goal_warm_ms": 0.03}
