"""Previous-tick sampling of the underlying: the value at a grid time uses only quotes received
by then (the forecasts' look-ahead guarantee at the store level)."""

from __future__ import annotations

import shutil

import duckdb
import numpy as np

from replay.store import open_store


def test_sampling_is_previous_tick_and_causal(gbm_quarter_hour, tmp_path):
    with open_store(gbm_quarter_hour) as st:
        lo, hi = st.time_span("underlying_quotes")
        iid = st.instrument_ids()["BTC-USD"]
        grid, mid = st.sampled_mid(iid, lo, hi, 10**9)
        q = st.con.sql(f"SELECT ts_recv, (bid_price + ask_price) / 2 AS m FROM underlying_quotes "
                       f"WHERE instrument_id = {iid} ORDER BY ts_recv, seq").fetchnumpy()
    assert grid.size == (hi - lo) // 10**9 and np.isfinite(mid[5:]).all()
    # at each grid time: the last quote received at or before it
    j = np.searchsorted(q["ts_recv"], grid, side="right") - 1
    np.testing.assert_array_equal(mid[j >= 0], q["m"][j[j >= 0]])
    # perturb every quote after a cut: samples up to the cut are unchanged
    cut = int(grid[grid.size // 2])
    db = tmp_path / "perturbed.duckdb"
    shutil.copy(gbm_quarter_hour, db)
    with duckdb.connect(str(db)) as con:
        con.execute(f"UPDATE underlying_quotes SET bid_price = bid_price * 1.1, "
                    f"ask_price = ask_price * 1.1 WHERE ts_recv > {cut}").fetchall()
    with open_store(db) as st:
        _, mid2 = st.sampled_mid(iid, lo, hi, 10**9)
    seen = grid <= cut
    np.testing.assert_array_equal(mid2[seen], mid[seen])
    assert (mid2[~seen] != mid[~seen]).all()


def test_a_hole_in_the_tape_samples_as_missing(gbm_quarter_hour, tmp_path):
    """With ``max_age_ns`` a sample whose last quote is older than that is NaN (a hole is
    missing data, not a price standing still); every other sample is the same."""
    db = tmp_path / "holed.duckdb"
    shutil.copy(gbm_quarter_hour, db)
    with open_store(gbm_quarter_hour) as st:
        lo, hi = st.time_span("underlying_quotes")
        iid = st.instrument_ids()["BTC-USD"]
    a, b = lo + 300 * 10**9, lo + 500 * 10**9
    with duckdb.connect(str(db)) as con:
        con.execute(f"DELETE FROM underlying_quotes WHERE ts_recv > {a} AND ts_recv <= {b}"
                    ).fetchall()
    with open_store(db) as st:
        grid, held = st.sampled_mid(iid, lo, hi, 10**9)
        _, aged = st.sampled_mid(iid, lo, hi, 10**9, max_age_ns=5 * 10**9)
        last = st.con.sql(f"SELECT max(ts_recv) FROM underlying_quotes WHERE instrument_id = "
                          f"{iid} AND ts_recv <= {a}").fetchall()[0][0]
    hole = (grid > last + 5 * 10**9) & (grid <= b)
    assert hole.sum() >= 190 and np.isnan(aged[hole]).all()
    np.testing.assert_array_equal(aged[~hole & np.isfinite(held)],
                                  held[~hole & np.isfinite(held)])
    assert np.isfinite(held[hole]).all()  # without a limit the last price stands in
