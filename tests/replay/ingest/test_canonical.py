"""The canonical adapter: our own schema as CSV (plain/gzip) or Parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from replay.errors import IngestError
from replay.ingest import ingest
from replay.ingest.canonical import table_for, write_canonical_csv
from tests.replay.ingest import market_rows

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "canonical"
T0 = 1_709_251_200_000_000_000  # 2024-03-01 00:00 UTC, ns


def load_fixture_instruments(store) -> None:
    ingest(store, "canonical", [str(FIX / "instruments.csv")])


def test_instruments_file(store):
    rep = ingest(store, "canonical", [str(FIX / "instruments.csv")])
    # Lines 2-5 define instruments; 6 option without expiry, 7 kind "swap", 8 repeats
    # BTC-PERPETUAL, 9 contract size 0, 10 a field short.  Definitions count as ingested.
    assert (rep.read, rep.ingested, rep.quarantined) == (9, 4, 5)
    assert rep.detail["instruments_defined"] == 4
    assert rep.reasons == {"missing": 1, "unparsable": 2, "duplicate": 1, "non-positive": 1}
    inst = {r[0]: r[1:] for r in store.con.sql(
        "SELECT name, kind, expiry_ns, strike, is_call, settlement, contract_size, tick_size "
        "FROM instruments").fetchall()}
    assert set(inst) == {"BTC-PERPETUAL", "BTC-29MAR24-70000-C", "BTC-29MAR24-70000-P", "BTCUSDT"}
    assert inst["BTC-29MAR24-70000-P"] == ("option", 1711699200000000000, 70000.0, False,
                                           "inverse", 1.0, 0.0001)
    assert inst["BTCUSDT"] == ("perp", None, None, None, "linear", 1.0, 0.1)


def test_option_quotes_gz(store):
    load_fixture_instruments(store)
    rep = ingest(store, "canonical", [str(FIX / "option_quotes_2024-03-01.csv.gz")])
    # Lines 2-3 ingested (3 is bid-less); 4 crossed, 5 unknown strike, 6 size "not-a-number",
    # 7 short line, 8 infinite ask, 9 timestamp in the wrong unit, 10 repeats line 2.
    assert (rep.read, rep.ingested, rep.quarantined) == (9, 2, 7)
    assert rep.reasons == {"crossed book": 1, "unknown instrument": 1, "unparsable": 2,
                           "non-positive price": 1, "timestamp out of range": 1, "duplicate": 1}
    rows = store.scan("option_quotes").read_all().to_pylist()
    assert rows[0]["bid_iv"] == 0.621 and rows[0]["open_interest"] == 120.5
    assert rows[1]["bid_price"] is None and rows[1]["ask_size"] == 4.0
    assert store.count("quarantine") - 5 + market_rows(store) == rep.read


def test_underlying_trades_csv(store):
    load_fixture_instruments(store)
    rep = ingest(store, "canonical", [str(FIX / "underlying_trades.csv")])
    assert (rep.read, rep.ingested, rep.reasons) == (5, 3, {"unparsable": 1, "non-positive price": 1})
    t = store.con.sql("SELECT side, trade_id, size FROM underlying_trades ORDER BY seq").fetchall()
    assert t == [(1, "T1", 100.0), (-1, "9001", 0.5), (0, None, 2.0)]


def test_parquet_funding_with_timestamp_type(store, tmp_path):
    load_fixture_instruments(store)
    ts = pa.array(np.array([T0, T0 + 60_000_000_000, T0 + 120_000_000_000], "datetime64[ns]"))
    p = tmp_path / "funding_btc.parquet"
    pq.write_table(pa.table({
        "ts_exchange": ts, "ts_recv": ts,
        "instrument": ["BTC-PERPETUAL", "BTC-PERPETUAL", "BTC-PERPETUAL"],
        "funding_rate": [0.0001, float("nan"), 0.0002],
        "interval_s": [28800.0, 28800.0, 28800.0],
        "mark_price": [62000.0, 62001.0, None],
    }), p, row_group_size=2)
    rep = ingest(store, "canonical", [str(p)])
    assert (rep.read, rep.ingested, rep.reasons) == (3, 2, {"missing": 1})
    f = store.scan("funding").read_all()
    assert_array_equal(f.column("ts_recv").to_numpy(), [T0, T0 + 120_000_000_000])
    assert_allclose(f.column("funding_rate").to_numpy(), [0.0001, 0.0002], rtol=0)
    assert f.column("index_price").null_count == 2  # optional column left out
    q = store.con.sql("SELECT locator, raw FROM quarantine WHERE target = 'funding'").fetchall()
    assert q[0][0] == "1" and "BTC-PERPETUAL" in q[0][1]


def test_parquet_strings_are_parsed_like_csv(store, tmp_path):
    load_fixture_instruments(store)
    p = tmp_path / "underlying_quotes.parquet"
    pq.write_table(pa.table({
        "ts_exchange": [str(T0), "x"], "ts_recv": [str(T0), str(T0)],
        "instrument": ["BTCUSDT", "BTCUSDT"], "bid_price": ["62000", "62000"],
        "ask_price": ["62000.1", "62000.1"]}), p)
    rep = ingest(store, "canonical", [str(p)])
    assert (rep.read, rep.ingested, rep.reasons) == (2, 1, {"unparsable": 1})


def test_table_from_file_name():
    assert table_for(Path("option_quotes_2024.csv.gz")) == "option_quotes"
    assert table_for(Path("/x/Underlying_Trades.part1.parquet")) == "underlying_trades"
    with pytest.raises(IngestError, match="name must start with one of instruments"):
        table_for(Path("quotes.csv"))


def test_missing_and_unknown_columns_are_named(store, tmp_path):
    p = tmp_path / "option_trades.csv"
    p.write_text("ts_exchange,instrument,price,side\n1,a,2,1\n")
    with pytest.raises(IngestError, match=r"lacks required column\(s\) \['ts_recv', 'size'\]"):
        ingest(store, "canonical", [str(p)])
    p2 = tmp_path / "option_trades_2.csv"
    p2.write_text("ts_exchange,ts_recv,instrument,price,size,side,colour\n1,1,a,2,1,1,red\n")
    with pytest.raises(IngestError, match=r"unknown column\(s\) \['colour'\]"):
        ingest(store, "canonical", [str(p2)])
    assert store.count("loads") == 0


def test_synthetic_writer_round_trip(store, tmp_path):
    paths = write_canonical_csv(tmp_path / "syn", rows=5_000, seed=3, batch_rows=1_500)
    assert [p.name for p in paths] == ["instruments.csv", "option_quotes.csv"]
    rep = ingest(store, "canonical", [str(p) for p in paths])
    # 200 definition rows + 5000 quotes, all ingested
    assert (rep.read, rep.ingested, rep.quarantined) == (5_200, 5_200, 0)
    assert store.count("instruments") == 200 == rep.detail["instruments_defined"]
    t = store.scan("option_quotes", cols=["ts_recv", "ts_exchange", "seq"]).read_all()
    key = list(zip(t.column("ts_recv").to_pylist(), t.column("ts_exchange").to_pylist()))
    assert key == sorted(key)
    assert_array_equal(t.column("seq").to_numpy(), np.arange(5_000))
    # Same seed, same bytes: the benchmark input is reproducible.
    again = write_canonical_csv(tmp_path / "syn2", rows=5_000, seed=3, batch_rows=1_500)
    assert again[1].read_bytes() == paths[1].read_bytes()


def test_an_integer_column_written_as_floats_keeps_its_nulls(store, tmp_path):
    """pandas writes an integer column with nulls as float64: the perpetual's missing
    ``expiry_ns`` stays missing (it became 0 and the row was quarantined as out of range)."""
    import pandas as pd

    rows = pd.read_csv(FIX / "instruments.csv").iloc[:3]
    assert rows["expiry_ns"].dtype == np.float64 and rows["expiry_ns"].isna().sum() == 1
    p = tmp_path / "instruments.parquet"
    rows.to_parquet(p)
    rep = ingest(store, "canonical", [str(p)])
    assert (rep.read, rep.ingested, rep.quarantined) == (3, 3, 0)
    assert store.con.sql("SELECT expiry_ns FROM instruments WHERE name = 'BTC-PERPETUAL'"
                         ).fetchall() == [(None,)]


def test_trades_without_ids_are_duplicates_only_of_equal_rows(store, tmp_path):
    """Three different trades at one exchange instant without venue ids are three trades
    (two were quarantined as duplicates); the same three loaded again, received later, are
    duplicates; a trade with an id repeats when its id does, whatever it was received at."""
    load_fixture_instruments(store)
    head = "ts_exchange,ts_recv,instrument,price,size,side,trade_id\n"
    rows = [f"{T0},{T0 + 5},BTC-PERPETUAL,{62000 + i},{1 + i},{1 - 2 * (i % 2)}," for i in range(3)]
    rows.append(f"{T0 + 9},{T0 + 10},BTC-PERPETUAL,62010,1,1,T7")
    first = tmp_path / "underlying_trades_a.csv"
    first.write_text(head + "\n".join(rows) + "\n")
    rep = ingest(store, "canonical", [str(first)])
    assert (rep.read, rep.ingested, rep.quarantined) == (4, 4, 0)
    later = [r.replace(f",{T0 + 5},", f",{T0 + 4_000_000},").replace(
        f",{T0 + 10},", f",{T0 + 4_000_000},") for r in rows]
    again = tmp_path / "underlying_trades_b.csv"
    again.write_text(head + "\n".join(later) + "\n")
    rep = ingest(store, "canonical", [str(again)])
    assert (rep.read, rep.ingested, rep.quarantined) == (4, 0, 4)
    assert rep.reasons == {"duplicate": 4}
    assert store.con.sql("SELECT count(*) FROM underlying_trades").fetchall() == [(4,)]


def test_a_value_its_column_cannot_hold_is_quarantined_not_wrapped(store, tmp_path):
    """The driver casts what an adapter parsed to the store's types.  Before, it cast unsafely:
    a ``side`` of 257 from an adapter that left the range check to it became the int8 1 (a
    buy) and was ingested; a fraction for an integer was truncated.  Now such a row is
    quarantined, naming the column, and the rest of the file is ingested."""
    from replay.ingest.core import Chunk, ingest_files

    load_fixture_instruments(store)

    def adapter(path: Path):
        n = 4
        yield Chunk(n_read=n, rows={"underlying_trades": pa.table({
            "ts_exchange": pa.array([T0 + i for i in range(n)], pa.int64()),
            "ts_recv": pa.array([T0 + i for i in range(n)], pa.int64()),
            "instrument": ["BTC-PERPETUAL"] * n,
            "price": [60_000.0] * n, "size": [1.0] * n,
            "side": pa.array([1, 257, -1, 0], pa.int64()),
            "trade_id": ["a", "b", "c", "d"],
            "_loc": pa.array(range(1, n + 1), pa.int64())})})

    src = tmp_path / "trades.bin"
    src.write_bytes(b"four trades")
    rep = ingest_files(store, "test", adapter, [src])
    assert (rep.read, rep.ingested, rep.quarantined) == (4, 3, 1)
    assert rep.reasons == {"unparsable": 1}
    assert store.con.sql("SELECT side FROM underlying_trades ORDER BY seq").fetchall() == \
        [(1,), (-1,), (0,)]
    assert store.con.sql("SELECT reason FROM quarantine WHERE load_id = "
                         "(SELECT max(load_id) FROM loads)").fetchall() == \
        [("unparsable: side does not fit int8",)]


def test_rows_of_an_instrument_of_another_kind_and_negative_vols_are_quarantined(store,
                                                                                  tmp_path):
    """A perpetual's trade in ``option_trades``, an option's rate in ``funding`` and an
    option's quote in ``underlying_quotes`` were ingested against instruments of the wrong
    kind; a ``mark_iv`` of -0.5 was ingested."""
    from replay.ingest.core import Chunk, ingest_files

    load_fixture_instruments(store)
    opt, ts = "BTC-29MAR24-70000-C", pa.array([T0, T0 + 1], pa.int64())

    def adapter(path: Path):
        yield Chunk(n_read=8, rows={
            "option_trades": pa.table({
                "ts_exchange": ts, "ts_recv": ts, "instrument": ["BTC-PERPETUAL", opt],
                "price": [0.05, 0.05], "size": [1.0, 1.0], "side": pa.array([1, 1], pa.int8()),
                "trade_id": ["a", "b"], "_loc": pa.array([1, 2], pa.int64())}),
            "funding": pa.table({
                "ts_exchange": ts, "ts_recv": ts, "instrument": [opt, "BTC-PERPETUAL"],
                "funding_rate": [1e-4, 1e-4], "interval_s": [28800.0, 28800.0],
                "_loc": pa.array([3, 4], pa.int64())}),
            "underlying_quotes": pa.table({
                "ts_exchange": ts, "ts_recv": ts, "instrument": [opt, "BTC-PERPETUAL"],
                "bid_price": [60_000.0, 60_000.0], "ask_price": [60_001.0, 60_001.0],
                "_loc": pa.array([5, 6], pa.int64())}),
            "option_quotes": pa.table({
                "ts_exchange": ts, "ts_recv": ts, "instrument": [opt, opt],
                "bid_price": [0.05, 0.05], "ask_price": [0.06, 0.06], "mark_iv": [-0.5, 0.5],
                "_loc": pa.array([7, 8], pa.int64())})})

    src = tmp_path / "rows.bin"
    src.write_bytes(b"eight rows")
    rep = ingest_files(store, "test", adapter, [src])
    assert (rep.read, rep.ingested, rep.quarantined) == (8, 4, 4)
    assert store.con.sql("SELECT reason FROM quarantine WHERE load_id = (SELECT max(load_id) "
                         "FROM loads) ORDER BY locator").fetchall() == [
        ("wrong instrument kind: perp in option_trades",),
        ("wrong instrument kind: option in funding",),
        ("wrong instrument kind: option in underlying_quotes",),
        ("negative vol: mark_iv",)]
