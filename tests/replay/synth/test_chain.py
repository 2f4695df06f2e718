"""The synthetic option chain: its expiry families, strike grids, and strikes fixed at each
expiry's listing."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
from numpy.testing import assert_allclose

from replay.synth import EPOCH_NS
from replay.synth.chain import expiry_schedule, strike_grid
from tests.replay.synth import connect, make_store


def test_expiry_schedule_families():
    sched = expiry_schedule(EPOCH_NS, EPOCH_NS + 24 * 3600 * 10**9)
    days = [datetime.fromtimestamp(e / 1e9, UTC).date().isoformat() for e in sched]
    # Monday 2025-01-06: dailies, Friday weeklies, last-Friday monthlies and quarterlies
    for d in ("2025-01-06", "2025-01-07", "2025-01-08", "2025-01-09", "2025-01-10",
              "2025-01-17", "2025-01-24", "2025-01-31", "2025-02-28", "2025-03-28",
              "2025-06-27", "2025-09-26", "2025-12-26"):
        assert d in days, d
    assert sched[min(sched)] == EPOCH_NS  # live at the start
    listed_later = [v for v in sched.values() if v > EPOCH_NS]
    assert listed_later  # the next daily is listed during the day


def test_strike_grid_centres_and_widens_with_expiry():
    short = strike_grid(95_000.0, 1 / 365, 0.5, 24)
    long = strike_grid(95_000.0, 1.0, 0.5, 24)
    assert short.min() < 95_000 < short.max() and long.min() < 95_000 < long.max()
    assert long.max() / long.min() > 5 * (short.max() / short.min() - 1) + 1
    assert np.diff(short).min() < np.diff(long).min()


def test_an_expiry_listed_later_has_its_strikes_fixed_at_its_listing(tmp_path_factory):
    """Every daily spans three days from its listing, with the grid of a three-day expiry
    centred on the forward at its listing (they were sized from the run's start and centred
    on its spot: a daily listed on day 25 had a 2,000 step and 60k-152k); in a synthesised
    run the centre is the path's own spot then."""
    from replay.synth.chain import ChainParams, build_chain
    from replay.synth.paths import ModelParams

    p, day = ModelParams(), 86_400 * 10 ** 9
    sched = expiry_schedule(EPOCH_NS, EPOCH_NS + 30 * day)
    late = max(e for e, t in sched.items() if e - t == 3 * day)  # a daily listed on day ~26
    chain = build_chain(EPOCH_NS, EPOCH_NS + 30 * day, p, 0.6, ChainParams(),
                        {sched[late]: 150_000.0})
    first = min(e for e, t in sched.items() if e - t == 3 * day and t > EPOCH_NS)
    grids = [np.unique(chain.strike[chain.expiry_ns == e]) for e in (first, late)]
    tau = 3 / 365.0
    want = [strike_grid(f * math.exp(p.basis * tau), tau, 0.6, ChainParams().inner_strikes)
            for f in (p.s0, 150_000.0)]
    for got, expected in zip(grids, want, strict=True):
        assert_allclose(got, expected)
    # the synthesised chain: the daily listed at 08:00 centred on the path's spot then
    path, _ = make_store(tmp_path_factory, "listing", seed=4, hours=8.5)
    con = connect(path)
    t_list, lo, hi = con.execute("""SELECT any_value(ts_recv), min(strike), max(strike)
        FROM instruments WHERE kind = 'option' GROUP BY expiry_ns
        ORDER BY any_value(ts_recv) DESC LIMIT 1""").fetchone()
    spot = con.execute(f"SELECT spot FROM truth_path WHERE ts <= {t_list} ORDER BY ts DESC "
                       "LIMIT 1").fetchone()[0]
    con.close()
    assert t_list > EPOCH_NS and lo < spot < hi
    assert abs(math.log(spot / math.sqrt(lo * hi))) < 0.05  # centred on it, to the grid
