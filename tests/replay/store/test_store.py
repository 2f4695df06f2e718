"""Market store: replay order, unique gap-free seq across appends, dedup, read-only, scans."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from replay.errors import StoreError
from replay.store import open_store

NS = 1_000_000_000
T0 = 1_735_689_600 * NS  # 2025-01-01


def _defs(names):
    n = len(names)
    return pa.table({
        "ts_exchange": pa.array([T0] * n, pa.int64()), "ts_recv": pa.array([T0] * n, pa.int64()),
        "name": names, "venue": ["test"] * n, "kind": ["perp"] * n, "underlying": ["BTC"] * n,
        "quote_currency": ["USD"] * n, "settlement": ["inverse"] * n,
        "contract_size": [10.0] * n, "tick_size": [0.5] * n})


def _quotes(ts_recv, inst=0, bid=100.0, locs=None):
    ts = np.asarray(ts_recv, dtype=np.int64)
    n = len(ts)
    return pa.table({
        "ts_exchange": pa.array(ts - 1000), "ts_recv": pa.array(ts),
        "instrument_id": pa.array([inst] * n, pa.int32()),
        "bid_price": pa.array(bid + np.arange(n, dtype=float)),
        "ask_price": pa.array(bid + 1 + np.arange(n, dtype=float)),
        "_loc": pa.array(np.arange(n) if locs is None else locs, pa.int64())})


def _load(store, rows, source="s"):
    store.begin_load("test", source, source)
    store.add_read(rows.num_rows)
    store.stage("underlying_quotes", rows)
    return store.finish_load()


def _ordered(store, table="underlying_quotes"):
    t = store.scan(table).read_all()
    key = list(zip(t["ts_recv"].to_pylist(), t["ts_exchange"].to_pylist(), t["seq"].to_pylist()))
    return t, key


def test_appends_keep_replay_order_and_gap_free_seq(tmp_path):
    with open_store(tmp_path / "s.duckdb", read_only=False) as s:
        s.ensure_instruments(_defs(["BTC-PERPETUAL"]))
        _load(s, _quotes(T0 + np.array([5, 1, 3]) * NS), "a")          # unsorted input
        _load(s, _quotes(T0 + np.array([10, 11]) * NS, bid=200), "b")  # after: fast path
        rep = _load(s, _quotes(T0 + np.array([2, 4, 12]) * NS, bid=300), "c")  # overlap: merge
        assert (rep.read, rep.ingested, rep.quarantined) == (3, 3, 0)
        t, key = _ordered(s)
        assert key == sorted(key)
        assert t["seq"].to_pylist() == list(range(8))
        assert [x // NS - T0 // NS for x in t["ts_recv"].to_pylist()] == [1, 2, 3, 4, 5, 10, 11, 12]


def test_duplicates_quarantined_within_and_across_loads(tmp_path):
    with open_store(tmp_path / "s.duckdb", read_only=False) as s:
        s.ensure_instruments(_defs(["BTC-PERPETUAL"]))
        rows = _quotes(T0 + np.array([1, 2]) * NS)
        both = pa.concat_tables([rows, rows.set_column(
            rows.schema.get_field_index("_loc"), "_loc", pa.array([2, 3], pa.int64()))])
        rep = _load(s, both, "a")
        assert (rep.read, rep.ingested, rep.quarantined) == (4, 2, 2)
        rep = _load(s, rows, "b")
        assert (rep.read, rep.ingested, rep.quarantined) == (2, 0, 2)
        reasons = s._exec("SELECT reason, count(*) FROM quarantine GROUP BY 1 ORDER BY 1")
        assert reasons == [("duplicate: already in store", 2), ("duplicate: repeats an earlier row", 2)]
        assert s.count("underlying_quotes") == 2


def test_instruments_keep_ids_and_first_definition(tmp_path):
    with open_store(tmp_path / "s.duckdb", read_only=False) as s:
        a = s.ensure_instruments(_defs(["B", "A"]))
        b = s.ensure_instruments(_defs(["C", "A"]))
        assert a == {"A": 0, "B": 1}
        assert b == {"A": 0, "B": 1, "C": 2}


def test_scan_windows_cursor_and_instrument_filter(tmp_path):
    with open_store(tmp_path / "s.duckdb", read_only=False) as s:
        s.ensure_instruments(_defs(["X", "Y"]))
        ts = T0 + np.arange(10) * NS
        s.append_ordered("underlying_quotes", pa.concat_tables([
            _quotes(ts[:5], inst=0).drop_columns(["_loc"]),
            _quotes(ts[5:], inst=1).drop_columns(["_loc"])]))
        got = s.scan("underlying_quotes", start=ts[2], end=ts[7], cols=["seq"]).read_all()
        assert got["seq"].to_pylist() == [2, 3, 4, 5, 6]
        got = s.scan("underlying_quotes", after_seq=6).read_all()
        assert got["seq"].to_pylist() == [7, 8, 9]
        got = s.scan("underlying_quotes", instrument_ids=[1], cols=["instrument_id"]).read_all()
        assert set(got["instrument_id"].to_pylist()) == {1} and got.num_rows == 5
        with pytest.raises(StoreError, match="no column"):
            s.scan("underlying_quotes", cols=["nope"])
        with pytest.raises(StoreError, match="not in replay order"):
            s.append_ordered("underlying_quotes", _quotes([T0], inst=0).drop_columns(["_loc"]))


def test_read_only_store_refuses_writes_and_missing_path(tmp_path):
    path = tmp_path / "s.duckdb"
    open_store(path, read_only=False).close()
    with open_store(path) as s:
        with pytest.raises(StoreError, match="read-only"):
            s.ensure_instruments(_defs(["X"]))
    with pytest.raises(StoreError, match="does not exist"):
        open_store(tmp_path / "missing.duckdb")


def test_failed_load_rolls_back_everything(tmp_path):
    with open_store(tmp_path / "s.duckdb", read_only=False) as s:
        s.ensure_instruments(_defs(["X"]))
        s.begin_load("test", "a", "a")
        s.add_read(5)  # claims 5 rows but stages 2: the accounting check must refuse it
        s.stage("underlying_quotes", _quotes(T0 + np.arange(2) * NS))
        with pytest.raises(AssertionError, match="accounting"):
            s.finish_load()
        assert s.count("underlying_quotes") == 0
        assert s.count("loads") == 0
