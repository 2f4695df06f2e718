"""Time to expiry, put-call parity forwards, and the choice between parity and venue forward."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from calibration import black_price, choose_forward, parity_forward, time_to_expiry
from calibration.pricing.forwards import ForwardEstimate

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data"
NS = 1_000_000_000


def test_time_to_expiry_act365_to_0800():
    expiry = np.datetime64("2025-12-26T08:00:00", "ns").astype(np.int64)
    ts = np.datetime64("2025-12-25T08:00:00", "ns").astype(np.int64)
    assert_allclose(time_to_expiry(ts, expiry), 1 / 365, rtol=1e-15)
    # one nanosecond is kept; after expiry the value is negative
    assert time_to_expiry(expiry - 1, expiry) > 0
    assert time_to_expiry(expiry + 3600 * NS, expiry) < 0
    hours = time_to_expiry(np.array([ts, expiry - 3600 * NS]), expiry)
    assert_allclose(hours, [1 / 365, 1 / 8760], rtol=1e-15)


def _chain(forward: float, inverse: bool, seed: int, noise: float = 0.3):
    rng = np.random.default_rng(seed)
    k = np.arange(50_000.0, 150_001.0, 2_500.0)
    t = 45 / 365
    m = np.log(k / forward)
    vol = 0.5 + 0.3 * m * m - 0.1 * m
    call = black_price(forward, k, t, vol, True)
    put = black_price(forward, k, t, vol, False)
    if inverse:
        call, put = call / forward, put / forward
        tick = 1e-4
    else:
        tick = 5.0
    half = np.maximum(tick, 0.03 * call), np.maximum(tick, 0.03 * put)
    mids = [x + noise * h * rng.uniform(-1, 1, k.size) for x, h in zip((call, put), half)]
    cb, ca = mids[0] - half[0], mids[0] + half[0]
    pb, pa = mids[1] - half[1], mids[1] + half[1]
    return k, cb, ca, pb, pa


@pytest.mark.parametrize("inverse", [True, False])
def test_parity_recovers_forward_from_noisy_quotes(inverse):
    fwd = 91_234.0
    k, cb, ca, pb, pa = _chain(fwd, inverse, seed=1)
    est = parity_forward(k, cb, ca, pb, pa, inverse=inverse)
    assert est.method == "huber-bisquare"
    assert est.n_pairs == k.size - int(np.sum((cb <= 0) | (pb <= 0)))
    # noise is 30% of the half-spread; near the money the half-spread is ~1e-3 coin (~100 USD
    # per pair), and ~30 pairs average it down to a few USD
    assert abs(est.forward / fwd - 1) < 5e-4
    assert est.residual_std > 0


@pytest.mark.parametrize("inverse", [True, False])
def test_parity_ignores_one_sided_strikes_and_resists_an_outlier(inverse):
    fwd = 88_000.0
    k, cb, ca, pb, pa = _chain(fwd, inverse, seed=2, noise=0.0)
    cb[::4] = np.nan  # no call bid
    pa[1::5] = np.nan  # no put ask
    pb[2::7] = 0.0  # zero bid: one-sided
    usable = (cb > 0) & (pb > 0) & np.isfinite(pa)
    i = int(np.flatnonzero(usable & (np.abs(k - fwd) < 10_000))[0])
    shift = 40 * (ca[i] - cb[i])  # an off-market pair, far outside its own spread
    cb[i] += shift
    ca[i] += shift
    est = parity_forward(k, cb, ca, pb, pa, inverse=inverse)
    assert est.n_pairs == int(np.sum(usable))
    assert abs(est.forward / fwd - 1) < 1e-4
    # without the robust weights the outlier would pull the estimate much further
    plain = parity_forward(k[usable & (np.arange(k.size) != i)], cb[usable & (np.arange(k.size) != i)],
                           ca[usable & (np.arange(k.size) != i)], pb[usable & (np.arange(k.size) != i)],
                           pa[usable & (np.arange(k.size) != i)], inverse=inverse)
    assert abs(est.forward / plain.forward - 1) < 1e-4


def test_parity_exact_without_noise():
    fwd = 100_000.0
    k, cb, ca, pb, pa = _chain(fwd, True, seed=3, noise=0.0)
    assert_allclose(parity_forward(k, cb, ca, pb, pa).forward, fwd, rtol=1e-10)


def test_insufficient_pairs():
    est = parity_forward([90_000.0, 95_000.0], [0.05, np.nan], [0.06, 0.02], [0.01, 0.04],
                         [0.012, 0.05])
    assert est.n_pairs == 1
    assert math.isnan(est.forward) and est.method == "insufficient"
    assert parity_forward([], [], [], [], []).method == "insufficient"


def test_choose_forward():
    est = ForwardEstimate(forward=90_090.0, n_pairs=10, residual_std=5.0, method="huber")
    fwd, source, bps = choose_forward(est, 90_000.0)
    assert (fwd, source) == (90_000.0, "venue")
    assert_allclose(bps, 10.0, rtol=1e-9)
    fwd, source, bps = choose_forward(est, None)
    assert (fwd, source) == (90_090.0, "parity") and math.isnan(bps)
    fwd, source, bps = choose_forward(est, math.nan)
    assert source == "parity"
    none = ForwardEstimate(math.nan, 0, math.nan, "insufficient")
    fwd, source, bps = choose_forward(none, 0.0)
    assert source == "none" and math.isnan(fwd) and math.isnan(bps)
    fwd, source, bps = choose_forward(none, 91_000.0)
    assert (fwd, source) == (91_000.0, "venue") and math.isnan(bps)


def _snapshot_chains(path: Path) -> dict | None:
    duckdb = pytest.importorskip("duckdb")
    rel = duckdb.sql(f"SELECT * FROM read_parquet('{path.as_posix()}')")
    if "best_bid_price" not in rel.columns:  # early files of the recording lack the book
        return None
    rows = rel.select("instrument_name, underlying_price, best_bid_price, best_ask_price"
                      ).fetchall()
    chains: dict[str, dict] = {}
    for name, und, bid, ask in rows:
        _, expiry, strike, cp = name.split("-")
        ch = chains.setdefault(expiry, {"und": [], "C": {}, "P": {}})
        ch["und"].append(und)
        ch[cp][float(strike)] = (bid, ask)
    return chains


def _column(quotes: dict, strikes: list, j: int) -> np.ndarray:
    return np.array([np.nan if quotes[k][j] is None else quotes[k][j] for k in strikes],
                    dtype=float)


@pytest.mark.skipif(not (DATA / "deribit" / "BTC").is_dir(),
                    reason="real Deribit data not found at ../shared/data/deribit/BTC")
def test_parity_forward_matches_deribit_underlying_price():
    files = sorted((DATA / "deribit" / "BTC").rglob("*.parquet"))
    # every 60th snapshot from the end: ~5 hours apart, across the whole recording
    snapshots = [(p, _snapshot_chains(p)) for p in files[-1::-60]]
    snapshots = [(p, c) for p, c in snapshots if c is not None]
    checked = 0
    for path, chains in snapshots:
        for expiry, ch in chains.items():
            strikes = sorted(set(ch["C"]) & set(ch["P"]))
            if len(strikes) < 2:
                continue

            cols = [_column(ch[side], strikes, j) for side in ("C", "P") for j in (0, 1)]
            est = parity_forward(np.array(strikes), *cols, inverse=True)
            if est.n_pairs < 8:  # illiquid expiry: parity is not meaningful
                continue
            venue = float(np.median(ch["und"]))
            _, source, bps = choose_forward(est, venue)
            assert source == "venue"
            # coin premiums with tick 1e-4 (~9 USD) and wide wings: tens of bps at most
            assert abs(bps) < 30, (path.name, expiry, bps, est)
            checked += 1
    assert checked >= 10
