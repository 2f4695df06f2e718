from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from replay.engine.feed import Feed
from replay.engine.reference import apply as py_apply
from replay.engine.reference import load_events
from replay.engine.state import (
    C_EVENTS,
    C_NOW,
    F_FUNDING_INDEX,
    NEVER,
    Instruments,
    MarketState,
    MarketView,
    fold_batch,
)
from replay.store import open_store
from tests.replay.engine import MS, T0, build_store


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("state") / "s.duckdb"
    build_store(p, seed=2)
    return p


class _RT:  # the slice of a Runtime that the Python fold touches
    def __init__(self, state):
        self.state = state


def test_numba_fold_equals_python_fold(store_path):
    with open_store(store_path) as st:
        inst = Instruments.from_arrow(st.instruments())
        fast = MarketState.empty(len(inst), inst.default_underlying())
        feed = Feed(st, window_ns=4_000 * MS, batch_rows=333)
        for b in feed:
            fold_batch(b.ts_recv, b.ts_exchange, b.stream, b.seq, b.instrument_id, b.v, 0, len(b),
                       fast.fstate, fast.istate, fast.clock)
        slow = MarketState.empty(len(inst), inst.default_underlying())
        rt = _RT(slow)
        for ev in load_events(st, Feed(st)):
            py_apply(rt, ev)
        n = sum(st.count(t) for t in feed.tables)
    assert fast.n_events == n
    assert np.count_nonzero(fast.fstate[:, F_FUNDING_INDEX]) > 0  # several rates accrued
    assert_array_equal(fast.fstate, slow.fstate)  # NaN == NaN here
    assert_array_equal(fast.istate, slow.istate)
    assert_array_equal(fast.clock, slow.clock)


def _one_instrument_store(path):
    with open_store(path, read_only=False) as st:
        st.ensure_instruments(pa.table({
            "ts_exchange": [T0, T0], "ts_recv": [T0, T0], "name": ["BTC-PERPETUAL", "BTC-USD"],
            "venue": ["t", "t"], "kind": ["perp", "index"], "underlying": ["BTC", "BTC"],
            "quote_currency": ["USD", "USD"], "settlement": ["inverse", "linear"],
            "contract_size": [10.0, 1.0], "tick_size": [0.5, 0.01]}))
        t = np.array([T0 + 1 * MS, T0 + 2 * MS, T0 + 3 * MS])
        st.append_ordered("underlying_quotes", pa.table({
            "ts_exchange": t, "ts_recv": t, "instrument_id": pa.array([0, 0, 0], pa.int32()),
            "bid_price": pa.array([100.0, 101.0, None]), "ask_price": [101.0, 102.0, 103.0],
            "bid_size": [1.0, 2.0, None], "ask_size": [1.0, 2.0, 3.0]}))
        st.append_ordered("funding", pa.table({
            "ts_exchange": [T0 + 2 * MS], "ts_recv": [T0 + 2 * MS],
            "instrument_id": pa.array([0], pa.int32()), "funding_rate": [2e-4],
            "interval_s": [28800.0], "mark_price": [101.5]}))


def test_quote_semantics_and_views(tmp_path):
    p = tmp_path / "one.duckdb"
    _one_instrument_store(p)
    with open_store(p) as st:
        inst = Instruments.from_arrow(st.instruments())
        ids = st.instrument_ids()
        perp = ids["BTC-PERPETUAL"]
        assert inst.default_underlying() == perp
        s = MarketState.empty(len(inst), inst.default_underlying())
        for b in Feed(st):
            fold_batch(b.ts_recv, b.ts_exchange, b.stream, b.seq, b.instrument_id, b.v, 0, len(b),
                       s.fstate, s.istate, s.clock)
    assert perp == 0  # ids follow names
    assert s.clock[C_EVENTS] == 6 and s.clock[C_NOW] == T0 + 3 * MS
    view = MarketView(s, inst, T0 + 10 * MS)
    # the last quote is one-sided: no bid is a fact, the mid is undefined
    assert np.isnan(view.bid[perp]) and view.ask[perp] == 103.0
    assert np.isnan(view.underlying_mid())
    assert view.quote_age(perp) == 7 * MS
    assert view.quote_age(ids["BTC-USD"]) == np.iinfo(np.int64).max  # never quoted
    assert_allclose(view.funding_rate[perp], 2e-4, rtol=0)
    assert view.funding_ts[perp] == T0 + 2 * MS and view.trade_ts[perp] == NEVER
    with pytest.raises(ValueError):
        view.bid[perp] = 1.0  # consumers cannot write market state


def test_default_underlying_prefers_perp_then_index():
    def inst(kinds):
        n = len(kinds)
        return Instruments(np.array([""] * n, object), np.array(kinds, object),
                           np.array([5, 3, 1, 9][:n], np.int64), np.full(n, np.nan),
                           np.full(n, -1, np.int8), np.array([""] * n, object), np.ones(n))

    assert inst(["option", "index", "perp"]).default_underlying() == 2
    assert inst(["option", "spot", "index"]).default_underlying() == 2
    assert inst(["future", "future", "option"]).default_underlying() == 1  # nearest expiry
    assert inst(["option"]).default_underlying() == -1
