from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from replay.engine.feed import STREAMS, Feed, FeedCursor
from replay.model.schema import STREAM_PRIORITY
from replay.store import open_store
from tests.replay.engine import EXPIRY, MS, T0, build_store


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("feed") / "s.duckdb"
    build_store(p, seed=1)
    return p


def _concat(batches) -> dict[str, np.ndarray]:
    bs = list(batches)
    return {k: np.concatenate([getattr(b, k) for b in bs]) for k in
            ("ts_recv", "ts_exchange", "stream", "seq", "instrument_id", "v")}


def _sql_order(path, where: str = "") -> list[tuple]:
    """The documented global order computed independently by DuckDB."""
    q = " UNION ALL ".join(
        f"SELECT ts_recv, ts_exchange, {STREAM_PRIORITY[t]} AS prio, seq, instrument_id FROM {t}"
        for t in STREAMS)
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.sql(f"SELECT * FROM ({q}) {where} ORDER BY ts_recv, ts_exchange, prio, seq"
                       ).fetchall()
    finally:
        con.close()


def _rows(d) -> list[tuple]:
    return list(zip(d["ts_recv"].tolist(), d["ts_exchange"].tolist(), d["stream"].tolist(),
                    d["seq"].tolist(), d["instrument_id"].tolist()))


def test_priority_is_documented_order():
    assert STREAMS == ("instruments", "funding", "underlying_quotes", "underlying_trades",
                       "option_quotes", "option_trades")
    assert [STREAM_PRIORITY[s] for s in STREAMS] == list(range(6))


@pytest.mark.parametrize("window_ms", [3_000, 17_000, 10**9])
def test_global_order_matches_sql_for_any_window(store_path, window_ms):
    with open_store(store_path) as st:
        got = _concat(Feed(st, window_ns=window_ms * MS, batch_rows=97))
    want = _sql_order(store_path)
    assert _rows(got) == want
    # the data really has cross-table ties, so the tie-break was exercised
    key = np.stack([got["ts_recv"], got["ts_exchange"]])
    same = (key[:, 1:] == key[:, :-1]).all(axis=0) & (got["stream"][1:] != got["stream"][:-1])
    assert same.sum() > 20


def test_tie_break_on_equal_clocks(tmp_path):
    """One event per stream, all at the same (ts_recv, ts_exchange): priority decides."""
    p = tmp_path / "tie.duckdb"
    with open_store(p, read_only=False) as st:
        ids = st.ensure_instruments(pa.table({
            "ts_exchange": [T0], "ts_recv": [T0], "name": ["BTC-PERPETUAL"], "venue": ["t"],
            "kind": ["perp"], "underlying": ["BTC"], "quote_currency": ["USD"],
            "settlement": ["inverse"], "contract_size": [10.0], "tick_size": [0.5]}))
        i = ids["BTC-PERPETUAL"]
        one = {"ts_exchange": [T0], "ts_recv": [T0], "instrument_id": pa.array([i], pa.int32())}
        # appended in the reverse of the priority order on purpose
        st.append_ordered("option_trades", pa.table({**one, "price": [1.0], "size": [1.0],
                                                     "side": pa.array([1], pa.int8())}))
        st.append_ordered("option_quotes", pa.table({**one, "bid_price": [1.0], "ask_price": [2.0]}))
        st.append_ordered("underlying_trades", pa.table({**one, "price": [1.0], "size": [1.0],
                                                         "side": pa.array([1], pa.int8())}))
        st.append_ordered("underlying_quotes", pa.table({**one, "bid_price": [1.0], "ask_price": [2.0]}))
        st.append_ordered("funding", pa.table({**one, "funding_rate": [1e-4], "interval_s": [8.0]}))
    with open_store(p) as st:
        got = _concat(Feed(st))
    assert got["stream"].tolist() == [0, 1, 2, 3, 4, 5]


def test_union_layout_values(store_path):
    with open_store(store_path) as st:
        got = _concat(Feed(st, window_ns=5_000 * MS))
        oq = st.con.sql("SELECT seq, bid_price, ask_price, bid_size, ask_size, underlying_price, "
                        "mark_iv FROM option_quotes ORDER BY seq").fetchall()
        fu = st.con.sql("SELECT seq, funding_rate, interval_s FROM funding ORDER BY seq").fetchall()
    m = got["stream"] == STREAM_PRIORITY["option_quotes"]
    assert_array_equal(got["seq"][m], [r[0] for r in oq])
    want = np.array([[np.nan if x is None else x for x in r[1:]] for r in oq])
    assert_allclose(got["v"][m], want, rtol=0, atol=0)  # exact, NULL -> NaN
    assert np.isnan(got["v"][m][:, 0]).any()  # one-sided books survive as NaN
    f = got["stream"] == STREAM_PRIORITY["funding"]
    assert_allclose(got["v"][f][:, :2], np.array([r[1:] for r in fu]), rtol=0, atol=0)
    assert np.isnan(got["v"][f][:, 3]).all()


def test_time_range_and_filters(store_path):
    a, b = T0 + 10_000 * MS, T0 + 30_000 * MS
    with open_store(store_path) as st:
        ids = st.instrument_ids()
        got = _concat(Feed(st, start=a, end=b, window_ns=4_000 * MS))
        assert _rows(got) == _sql_order(store_path, f"WHERE ts_recv >= {a} AND ts_recv < {b}")
        perp = ids["BTC-PERPETUAL"]
        only = _concat(Feed(st, instrument_ids=[perp]))
        assert set(only["instrument_id"].tolist()) == {perp}
        assert _rows(only) == _sql_order(store_path, f"WHERE instrument_id = {perp}")
        near = {i for n, i in ids.items() if "12DEC25" in n}
        exp = _concat(Feed(st, expiries=[EXPIRY]))
        opt = np.isin(exp["stream"], [4, 5])
        assert set(exp["instrument_id"][opt].tolist()) <= near
        # the underlying streams stay complete under an expiry filter
        assert (exp["stream"] == 2).sum() == st.count("underlying_quotes")


def test_cursor_resumes_exactly_after_any_event(store_path):
    with open_store(store_path) as st:
        full = _concat(Feed(st, window_ns=6_000 * MS))
        n = len(full["seq"])
        for k in (0, 1, 57, n // 2, n - 2):
            # the cursor after folding event k: its ts_recv and the last seq of each stream
            last = {s: -1 for s in STREAMS}
            for s, q in zip(full["stream"][: k + 1], full["seq"][: k + 1]):
                last[STREAMS[s]] = int(q)
            cur = FeedCursor(int(full["ts_recv"][k]), tuple(last.items()))
            rest = _concat(Feed(st, window_ns=6_000 * MS, cursor=cur))
            assert_array_equal(rest["seq"], full["seq"][k + 1:])
            assert_array_equal(rest["stream"], full["stream"][k + 1:])


def test_a_resumed_feed_remembers_where_its_replay_began(store_path):
    """The instant a run's opening universe is taken at (``Instruments.opened_at``): a feed
    resumed at a cursor starts reading there, but its replay began where the first run's did,
    so that instruments listed in between keep their listing times."""
    with open_store(store_path) as st:
        first = Feed(st, window_ns=6_000 * MS)
        later = first.start + 20_000 * MS
        resumed = Feed(st, window_ns=6_000 * MS, cursor=FeedCursor(later))
        assert first.opened == first.start
        assert (resumed.start, resumed.opened) == (later, first.start)
        chosen = Feed(st, start=T0 + 5_000 * MS, window_ns=6_000 * MS, cursor=FeedCursor(later))
        assert (chosen.start, chosen.opened) == (later, T0 + 5_000 * MS)


def test_prefetch_matches_plain(store_path):
    with open_store(store_path) as st:
        plain = _concat(Feed(st, window_ns=3_000 * MS))
        fast = _concat(b for b in Feed(st, window_ns=2_000 * MS, batch_rows=50).prefetched())
    assert _rows(fast) == _rows(plain)


@pytest.mark.parametrize("window_ms", [1, 50, 3_000])
def test_read_ahead_never_overwrites_the_batch_being_folded(store_path, window_ms):
    """With reused buffers, the read-ahead thread writes each window into a ring of arenas;
    the batch a consumer holds stays as it was received until it asks for the next, however
    far ahead the thread runs and however many empty windows it reads on the way (windows
    of 1 ms: nearly every window with data is followed by an empty one)."""
    import time

    with open_store(store_path) as st:
        plain = _concat(Feed(st, window_ns=window_ms * MS))
        feed = Feed(st, window_ns=window_ms * MS, reuse_buffers=True)
        seen, changed = [], 0
        for b in feed.prefetched():
            copy = _concat([b])
            time.sleep(0.002)  # the consumer folds; the thread runs ahead
            changed += any(not np.array_equal(copy[k], v, equal_nan=True)
                           for k, v in _concat([b]).items())
            seen.append(copy)
    assert changed == 0
    got = {k: np.concatenate([c[k] for c in seen]) for k in plain}
    assert _rows(got) == _rows(plain)
    assert_array_equal(got["v"], plain["v"])


def test_empty_stretches_are_skipped(tmp_path):
    """Two bursts an hour apart with 1 ms windows: the gap costs one look-up, not 3.6M."""
    p = tmp_path / "gap.duckdb"
    with open_store(p, read_only=False) as st:
        st.ensure_instruments(pa.table({
            "ts_exchange": [T0], "ts_recv": [T0], "name": ["BTC-PERPETUAL"], "venue": ["t"],
            "kind": ["perp"], "underlying": ["BTC"], "quote_currency": ["USD"],
            "settlement": ["inverse"], "contract_size": [10.0], "tick_size": [0.5]}))
        t = np.array([T0, T0 + 3_600_000 * MS, T0 + 3_600_000 * MS + 5 * MS])
        st.append_ordered("underlying_quotes", pa.table({
            "ts_exchange": t, "ts_recv": t, "instrument_id": pa.array([0, 0, 0], pa.int32()),
            "bid_price": [1.0, 2.0, 3.0], "ask_price": [2.0, 3.0, 4.0]}))
    with open_store(p) as st:
        f = Feed(st, window_ns=1 * MS)
        calls = []
        orig = f._read_window
        f._read_window = lambda *a: calls.append(a) or orig(*a)
        got = _concat(f)
    assert got["ts_recv"].tolist() == [T0, T0, *t[1:].tolist()]  # definition + quote tie at T0
    assert len(calls) <= 6


def test_memory_is_bounded_by_the_window(store_path):
    with open_store(store_path) as st:
        sizes = [len(b) for b in Feed(st, window_ns=2_000 * MS).windows()]
        total = sum(st.count(t) for t in STREAMS)
    assert sum(sizes) == total
    assert max(sizes) < total / 10


def test_a_table_whose_times_go_back_in_seq_order_is_refused(tmp_path):
    """A damaged file (bytes flipped in a Parquet store's day file, which DuckDB reads without
    an error) put a decreasing ``ts_recv`` under increasing seqs; before, the merge took it,
    and a replay with a live calibration spun on its timers without end."""
    from replay.engine.loop import run_replay
    from replay.errors import StoreError

    db = tmp_path / "s.duckdb"
    build_store(db, seed=2)
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE underlying_quotes SET ts_recv = ts_recv - 5000000000 "
                    "WHERE seq = (SELECT max(seq) // 2 FROM underlying_quotes)")
    with pytest.raises(StoreError, match="seq or ts_recv decreases"):
        run_replay(db, [], tmp_path / "run", progress=False)
