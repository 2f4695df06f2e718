from __future__ import annotations

from dataclasses import replace

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
    # from a replay's start: the nearest future live then (the other expired before it)
    assert inst(["future", "future", "option"]).default_underlying(after=4) == 0
    assert inst(["future", "future", "option"]).default_underlying(after=9) == 1  # none: all
    assert inst(["option"]).default_underlying() == -1


def test_the_default_underlying_is_one_defined_by_the_replays_start():
    """A perpetual defined after the start must not be the underlying from the first event on
    (until listed, its mid is NaN and the coin was priced off an option forward: every USD
    conversion, corridor and leg choice before it moved with an instrument not yet known)."""
    kinds = np.array(["option", "index", "perp"], object)
    inst = Instruments(np.array(["C", "BTC-USD", "BTC-PERPETUAL"], object), kinds,
                       np.full(3, NEVER, np.int64), np.full(3, np.nan), np.full(3, -1, np.int8),
                       np.array([""] * 3, object), np.ones(3),
                       listed_ns=np.array([0, 0, 500], np.int64))
    assert inst.default_underlying(after=100) == 1  # the index, defined at 0
    assert inst.default_underlying(after=500) == 2  # the perpetual once defined
    late = replace(inst, listed_ns=np.array([0, 700, 500], np.int64))
    assert late.default_underlying(after=100) == 2  # none defined by then: by kind, as before


def test_spot_is_one_live_coin_price():
    """``MarketView.spot``: the underlying's mid while it is live; a future underlying that has
    expired (a summary store's default, with only a stale forward left) gives way to the
    venue forward of the nearest live expiry; and every instrument converts coin at it (on a
    summary store a fill was converted at its option's own forward and the mark at another,
    a fake PnL of n p (F_option - S))."""
    from replay.engine.state import F_ASK, F_BID, F_VENUE_FWD

    day = 86_400 * 10**9
    # 0: a future expiring on day 1 (the underlying); 1, 2: options of days 2 and 30
    inst = Instruments(np.array(["BTC-1", "C2", "C30"], object),
                       np.array(["future", "option", "option"], object),
                       np.array([day, 2 * day, 30 * day], np.int64),
                       np.array([np.nan, 1e5, 1e5]), np.array([-1, 1, 1], np.int8),
                       np.array(["inverse"] * 3, object), np.ones(3))
    s = MarketState.empty(3, 0)
    f = s.fstate
    f[0, F_BID] = f[0, F_ASK] = 99_000.0
    f[1, F_VENUE_FWD], f[2, F_VENUE_FWD] = 100_000.0, 103_000.0
    before, after = MarketView(s, inst, day // 2), MarketView(s, inst, day + 1)
    assert before.spot() == 99_000.0
    assert after.spot() == 100_000.0  # not the expired future's quote
    f[0, F_BID] = f[0, F_ASK] = np.nan  # an unquoted live future: its venue forward
    assert before.spot() == 100_000.0 and after.spot() == 100_000.0
    perp = Instruments(np.array(["BTC-PERPETUAL"], object), np.array(["perp"], object),
                       np.array([NEVER], np.int64), np.array([np.nan]), np.array([-1], np.int8),
                       np.array(["inverse"], object), np.array([10.0]))
    s = MarketState.empty(1, 0)
    s.fstate[0, F_BID], s.fstate[0, F_ASK] = 98_999.5, 99_000.5
    assert MarketView(s, perp, 30 * day).spot() == 99_000.0  # a perp never expires


def test_options_outside_the_data_selection_are_never_listed():
    """A book choosing among the listed options must not pick one whose quotes the run does
    not replay (it waited for a two-sided quote for ever, and the run exited 0 with nothing
    done): ``Instruments.within`` leaves the options the selection excludes unlisted."""
    from replay.engine.state import UNLISTED
    from strategies.listed import choose_expiry, listed_options, next_listing

    day = 86_400 * 10**9
    e6, e30 = 5 * day + 8 * 3600 * 10**9, 29 * day + 8 * 3600 * 10**9  # 30 Jan 1970: monthly
    inst = Instruments(np.array(["BTC-PERPETUAL", "BTC-6JAN70-1-C", "BTC-30JAN70-1-C"], object),
                       np.array(["perp", "option", "option"], object),
                       np.array([NEVER, e6, e30], np.int64), np.array([np.nan, 1.0, 1.0]),
                       np.array([-1, 1, 1], np.int8), np.array(["inverse"] * 3, object),
                       np.ones(3), listed_ns=np.array([NEVER, NEVER, 3 * day], np.int64))
    assert choose_expiry(inst, 4 * day, "nearest_monthly") == e30
    sel = inst.within(None, [e6])
    assert sel.listed_ns.tolist() == [NEVER, NEVER, UNLISTED]
    assert choose_expiry(sel, 4 * day, "nearest_monthly") == e6
    assert next_listing(sel, 0) is None  # the excluded listing is no wake either
    assert listed_options(inst.within([0], None), 4 * day).size == 0  # only the perp
    assert inst.within(None, None) is inst


def test_spot_skips_expiries_without_a_forward():
    """A data selection leaving out the nearest expiries leaves their options unquoted: the
    coin's price comes from the nearest expiry that has a forward, however far (it looked at
    the next three only, and a run's marks, hedges and margin stopped)."""
    from replay.engine.state import F_VENUE_FWD

    day = 86_400 * 10**9
    n = 5
    inst = Instruments(np.array([f"C{i}" for i in range(n)], object),
                       np.array(["option"] * n, object),
                       np.array([(i + 1) * day for i in range(n)], np.int64),
                       np.full(n, 1e5), np.ones(n, np.int8), np.array(["inverse"] * n, object),
                       np.ones(n))
    s = MarketState.empty(n, -1)
    s.fstate[n - 1, F_VENUE_FWD] = 101_000.0
    assert MarketView(s, inst, 0).spot() == 101_000.0
    s.fstate[n - 1, F_VENUE_FWD] = np.nan
    assert np.isnan(MarketView(s, inst, 0).spot())
