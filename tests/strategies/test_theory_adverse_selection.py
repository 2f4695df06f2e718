"""Adverse selection against theory: the market maker's option-fill markouts on a synthetic
GBM market must match the informed flow injected into it, and be zero without it.

The synthetic market (:mod:`replay.synth.flow`) makes a share ``q`` of option trades
*informed*: the trader knows the sign of the log return ``r`` of the index over the next
``h`` = ``horizon_s`` seconds and takes the matching delta.  The market maker takes the
other side at the traded price, and :mod:`replay.analytics.execution` measures each fill's markout
against the mid at the fill, ``side * (mid(t + h) - mid(t))`` (coin per contract here).

Prediction.  An inverse option's coin premium ``V = C / S`` moves by
``dV = (delta - V) dS / S = delta_pa r`` to first order (premium-adjusted delta, Deribit's
convention; :mod:`calibration.pricing.inverse`).  An informed trade has ``sign(side * delta_pa) =
sign(r)``, so our markout is ``-|delta_pa| |r|``; an uninformed one has a random side and
zero mean.  Under GBM ``E|r| = sigma sqrt(h) sqrt(2 / pi)`` (drift ``-sigma^2 h / 2`` is
negligible over minutes), hence

    E[markout] = -q * mean(|delta_pa|) * sigma * sqrt(h) * sqrt(2 / pi).

Tolerance.  Fills are independent draws given the instruments picked, so the standard error
of the mean markout is ``std / sqrt(n)``; we accept the prediction within 3.29 standard
errors (a two-sided 99.9 % interval).  The prediction neglects the staleness of option
quotes (a book refreshes every ~1 s at the money here, against h = 120 s: a bias of about
1-2 % of the effect, well inside that interval at this sample size).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibration.pricing.black import delta as black_delta
from calibration.pricing.iv import implied_vol
from replay.analytics import execution as analytics
from replay.engine.loop import run_replay
from replay.model.config import VenueConfig
from replay.store import open_store
from replay.synth import SynthConfig, synthesize
from replay.synth.chain import ChainParams
from replay.synth.flow import FlowParams
from replay.synth.paths import ModelParams
from replay.venue.simulator import SimulatedVenue, specs_from_store
from strategies.books import MarketMakerBook

SIGMA = 0.5
BASIS = ModelParams().basis
HORIZON_S = 120.0
YEAR_S = 365.0 * 86400.0
Z_999 = 3.29


def markouts(tmp_path, informed: float) -> tuple[np.ndarray, np.ndarray]:
    """(markout vs mid at fill over HORIZON_S in coin per contract, |premium-adjusted delta|)
    of every option fill of a market maker on a 2-hour GBM market with ``informed`` flow."""
    db = tmp_path / f"informed_{informed}.duckdb"
    synthesize(db, SynthConfig(
        hours=2.0, seed=11, model="gbm", params=ModelParams(sigma=SIGMA),
        chain=ChainParams(quote_rate_atm=1.0, quote_rate_wing=0.05),
        flow=FlowParams(option_trade_rate=2.0, informed_fraction=informed,
                        horizon_s=HORIZON_S)))
    with open_store(db) as st:
        specs = specs_from_store(st.instruments())
    venue = SimulatedVenue(VenueConfig(latency_ms=0.0, price_band=1.0), specs)
    # the near-the-money options whose books refresh often (see the module docstring)
    mm = MarketMakerBook(size_cap=1.0, min_days=0.5, min_abs_delta=0.15, max_abs_delta=0.85,
                         delta_source="flat", flat_vol=SIGMA)
    res = run_replay(db, [mm], tmp_path / f"run_{informed}", venue=venue, progress=False)
    with analytics.connect(res.journal_path, db) as con:
        f = analytics.fills_table(con, [HORIZON_S]).df()
    assert (f.leg == "option").all() and len(f) == mm.n_taken > 5000
    mid = f.arrival_mid.to_numpy()
    m = (f.markout_mid_120s.to_numpy() * mid / 1e4)
    k = np.array([specs[i].strike for i in f.instrument_id])
    call = np.array([specs[i].is_call for i in f.instrument_id])
    t = np.array([(specs[i].expiry_ns - ts) / 1e9 / YEAR_S for i, ts in zip(f.instrument_id, f.ts)])
    fwd = f.usd_per_coin.to_numpy() * np.exp(BASIS * t)  # the synthetic curve's true forward
    vol = implied_vol(mid * fwd, fwd, k, t, call)
    dpa = np.abs(black_delta(fwd, k, t, vol, call) - mid)
    ok = np.isfinite(m) & np.isfinite(dpa)  # markouts past the end of the data are NULL
    assert ok.mean() > 0.97
    return m[ok], dpa[ok]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("adverse")
    return {q: markouts(tmp, q) for q in (0.0, 0.6)}


@pytest.mark.parametrize("informed", [0.0, 0.6])
def test_option_markouts_match_the_injected_informed_flow(runs, informed):
    m, dpa = runs[informed]
    predicted = -informed * dpa.mean() * SIGMA * math.sqrt(HORIZON_S / YEAR_S) \
        * math.sqrt(2.0 / math.pi)
    se = m.std(ddof=1) / math.sqrt(m.size)
    assert abs(m.mean() - predicted) < Z_999 * se, (m.mean(), predicted, se)
    if informed:  # the effect is resolved, not lost in the noise
        assert abs(predicted) > 20 * se
