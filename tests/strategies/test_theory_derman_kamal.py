"""Derman & Kamal (1999): the P&L of an option delta-hedged N times at the true vol, with no
costs, has std ``~ sqrt(pi/4) * vega * sigma / sqrt(N)``.

Checked end to end on a GBM market (:mod:`tests.strategies.gbm_market`): a book that buys one
ATM call at mid, the ``periodic`` hedger at the true flat vol, the simulated venue with zero
fees and a zero spread, and the marker settling the option at expiry (200 one-day replays,
about 40 s).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from calibration.pricing.black import vega
from strategies.hedging.registry import Periodic
from tests.strategies.gbm_market import DAY, S0, SIGMA, T0, T_YEARS, K, hedged_pnl, paths


@pytest.mark.slow  # minutes of Monte Carlo replays: `make test-slow`
def test_hedging_error_scales_as_derman_kamal(tmp_path):
    m_paths = 100
    stores = paths(tmp_path, m_paths)
    v0 = float(vega(S0, K, T_YEARS, SIGMA, True))
    for n in (24, 96):
        pnl = [hedged_pnl(db, tmp_path / f"run{n}_{p}",
                          Periodic(period_ns=DAY // n, anchor_ns=T0, hedge="perp",
                                   delta_source="flat", flat_vol=SIGMA, min_trade=0.0,
                                   latency_ns=0, max_wake_ns=DAY))[0]
               for p, db in enumerate(stores)]
        std = float(np.std(pnl, ddof=1))
        want = math.sqrt(math.pi / 4) * v0 * SIGMA / math.sqrt(n)
        # 99.9 % confidence band of a sample std from m normal draws, widened by 10 % for the
        # asymptotic (large-N, ATM) nature of the Derman-Kamal formula
        lo = math.sqrt((m_paths - 1) / stats.chi2.ppf(0.9995, m_paths - 1))
        hi = math.sqrt((m_paths - 1) / stats.chi2.ppf(0.0005, m_paths - 1))
        assert want * lo * 0.9 <= std <= want * hi * 1.1, (n, std, want)
