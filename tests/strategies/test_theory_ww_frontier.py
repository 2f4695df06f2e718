"""With proportional costs, Whalley-Wilmott's no-transaction band reaches a lower cost than
periodic rehedging for the same hedging-error dispersion (Whalley & Wilmott 1997; the
comparison as in Zakamouline 2006, sec. 5).

Both hedge the same 30 GBM paths (common random numbers) with a 10 bps taker fee on the
perpetual.  For each periodic frequency whose error std falls inside the WW frontier's range,
the WW cost interpolated (log-log) at that std must be lower than the periodic cost.
"""

from __future__ import annotations

import numpy as np
import pytest

from strategies.hedging.registry import Periodic, WhalleyWilmott
from tests.strategies.gbm_market import DAY, SIGMA, T0, hedged_pnl, paths

COST_BPS = 10.0
COMMON = dict(hedge="perp", delta_source="flat", flat_vol=SIGMA, min_trade=0.0, latency_ns=0)


def _frontier_point(stores, tmp_path, tag, make) -> tuple[float, float]:
    """(mean cost, std of the hedging error excluding costs) over the paths, USD."""
    res = np.array([hedged_pnl(db, tmp_path / f"{tag}_{p}", make(), COST_BPS)
                    for p, db in enumerate(stores)])
    total, fees = res[:, 0], res[:, 1]
    return float(-fees.mean()), float(np.std(total - fees, ddof=1))


@pytest.mark.slow  # minutes of Monte Carlo replays: `make test-slow`
def test_whalley_wilmott_beats_periodic_on_the_cost_error_frontier(tmp_path):
    stores = paths(tmp_path, 30)
    ww = [_frontier_point(stores, tmp_path, f"ww{g}", lambda g=g: WhalleyWilmott(
        risk_aversion=g, cost=COST_BPS * 1e-4, max_wake_ns=DAY // 24, **COMMON))
        for g in (0.001, 0.01, 0.1, 1.0)]
    per = [_frontier_point(stores, tmp_path, f"per{n}", lambda n=n: Periodic(
        period_ns=DAY // n, anchor_ns=T0, max_wake_ns=DAY, **COMMON)) for n in (24, 48, 96)]
    ww_cost, ww_std = np.array(ww).T
    order = np.argsort(ww_std)
    compared = 0
    for cost, std in per:
        if not ww_std.min() <= std <= ww_std.max():
            continue
        at = np.exp(np.interp(np.log(std), np.log(ww_std[order]), np.log(ww_cost[order])))
        assert at < cost, f"WW cost {at:.1f} >= periodic {cost:.1f} at error std {std:.1f}"
        compared += 1
    assert compared >= 2, f"frontiers do not overlap: ww {ww}, periodic {per}"
