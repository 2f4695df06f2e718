"""Ingestion edge cases: when an instrument is listed (never by a row quarantined for its
clock, never after rows of it that are in the store, whatever the order of the files), files
whose rows are all already stored, funding rows that cannot be used, exact decimals, and
errors that name their file."""

from __future__ import annotations

import datetime as dt
import decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from replay.errors import IngestError
from replay.ingest import ingest
from replay.ingest.core import resolve_paths
from replay.store import open_store
from tests.replay.ingest import BOOK_TICKER_LINE, plain_and_gzipped

UTC = dt.timezone.utc
INSTRUMENTS_CSV = (
    "ts_exchange,ts_recv,name,venue,kind,underlying,quote_currency,expiry_ns,strike,is_call,"
    "settlement,contract_size,tick_size\n"
    "1700000000000000000,1700000000000000000,BTC-PERPETUAL,deribit,perp,BTC,USD,,,,inverse,"
    "10,0.5\n"
    "1700000000000000000,1700000000000000000,BTC-29DEC23-40000-C,deribit,option,BTC,USD,"
    "1703836800000000000,40000,true,inverse,1,0.0001\n")


def _listed(store) -> dict[str, int]:
    return dict(store._exec("SELECT name, ts_recv FROM instruments"))


def test_a_row_quarantined_for_its_clock_does_not_date_its_instrument(store, tmp_path):
    """Binance: a first line stamped in ms, not ns, is quarantined, and the perpetual is
    listed at the next line's receipt (it was listed in 1970).  Deribit: a row of 2005 is
    quarantined, and the option and its future are listed at the 2025 row."""
    book = ('{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":%d,"s":"BTCUSDT",'
            '"b":"60000.0","B":"1","a":"60000.1","A":"2","T":%d,"E":%d}}')
    f = tmp_path / "bn.jsonl"
    f.write_text(f"1723161255088 {book % (1, 1723161255088, 1723161255088)}\n"
                 f"1723161255100000000 {book % (2, 1723161255099, 1723161255099)}\n")
    rep = ingest(store, "binance-ws", [str(f)])
    assert (rep.ingested, rep.reasons) == (1, {"timestamp out of range": 1})
    assert _listed(store) == {"BINANCE-BTCUSDT-PERP": 1723161255100000000}

    when = [dt.datetime(2005, 12, 7, 20, 30, tzinfo=UTC), dt.datetime(2025, 12, 7, 20, 30,
                                                                      tzinfo=UTC)]
    pq.write_table(pa.table({
        "harvest_time": pa.array(when, pa.timestamp("us", tz="UTC")),
        "instrument_name": ["BTC-26DEC25-90000-C"] * 2, "mark_price": [0.05, 0.05],
        "best_bid_price": [0.049, 0.049], "best_ask_price": [0.051, 0.051],
        "underlying_price": [90000.0, 90000.0]}), tmp_path / "der.parquet")
    with open_store(tmp_path / "der.duckdb", read_only=False) as der:
        rep = ingest(der, "deribit-summary", [str(tmp_path / "der.parquet")])
        assert (rep.ingested, rep.reasons) == (1, {"timestamp out of range": 1})
        t = int(when[1].timestamp()) * 10 ** 9
        assert _listed(der) == {"BTC-26DEC25-90000-C": t, "BTC-26DEC25": t}


def test_a_tardis_definition_keeps_its_nanoseconds_beside_a_row_without_clocks(store, tmp_path):
    """A block with a row lacking both clocks read its stamps as float64: the perpetual was
    listed 24 ns after its first quote."""
    f = tmp_path / "q.csv"
    f.write_text("exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,"
                 "bid_amount\n"
                 "deribit,BTC-PERPETUAL,,,10,37001,37000,20\n"
                 "deribit,BTC-PERPETUAL,1700000000000000,1700000000000001,10,37001,37000,20\n")
    ingest(store, "tardis-quotes", [str(f)])
    first = store._exec("SELECT min(ts_recv) FROM underlying_quotes")[0][0]
    assert _listed(store) == {"BTC-PERPETUAL": first} and first == 1700000000000001000


def test_files_out_of_time_order_list_each_instrument_at_its_earliest_row(shared_data,
                                                                          tmp_path):
    """A later Deribit file ingested first listed its instruments at its own time; the
    earlier file's rows of them then came before their listing (13 instruments, 6 days)."""
    day = shared_data / "deribit" / "BTC" / "2025" / "12"
    files = [day / "13" / "BTC_2025-12-13_1608.parquet", day / "07" / "BTC_2025-12-07_2030.parquet"]
    with open_store(tmp_path / "o.duckdb", read_only=False) as s:
        ingest(s, "deribit-summary", [str(f) for f in files])
        late = s._exec("""SELECT count(*) FROM instruments i JOIN (
                              SELECT instrument_id, min(ts_recv) AS t FROM option_quotes
                              GROUP BY 1) q USING (instrument_id) WHERE i.ts_recv > q.t""")
        seq = s._exec("SELECT list(seq ORDER BY ts_recv, ts_exchange, instrument_id) "
                      "FROM instruments")[0][0]
    assert late == [(0,)] and seq == list(range(len(seq)))  # replay order kept


def test_a_file_whose_rows_are_all_stored_counts_as_ingested(store, tmp_path):
    """The same rows, once compressed: every row is a duplicate, which is not an error, and
    the file is skipped the next time (it was read again at every ingest, its quarantine
    growing)."""
    plain, packed = plain_and_gzipped(tmp_path, BOOK_TICKER_LINE)
    ingest(store, "binance-ws", [str(plain)])
    rep = ingest(store, "binance-ws", [str(packed)])
    assert (rep.read, rep.ingested, rep.reasons) == (1, 0, {"duplicate": 1})
    again = ingest(store, "binance-ws", [str(packed)])
    assert again.read == 0 and again.skipped_sources == [str(packed)]
    assert store.count("quarantine") == 1


def test_a_canonical_folder_defines_its_instruments_before_their_rows(store, tmp_path):
    """``funding.csv`` sorts before ``instruments.csv``: its rows were quarantined as of an
    unknown instrument."""
    folder = tmp_path / "canon"
    folder.mkdir()
    (folder / "instruments.csv").write_text(INSTRUMENTS_CSV)
    (folder / "funding.csv").write_text(
        "ts_exchange,ts_recv,instrument,funding_rate,interval_s,mark_price,index_price\n"
        "1700000000000000001,1700000000000000001,BTC-PERPETUAL,0.0001,28800,37000,37000\n")
    assert [p.name for p in resolve_paths([str(folder)])] == ["instruments.csv", "funding.csv"]
    rep = ingest(store, "canonical", [str(folder)])
    assert (rep.read, rep.ingested, rep.quarantined) == (3, 3, 0)


def test_funding_rows_with_an_unusable_rate_or_interval_are_quarantined(store, tmp_path):
    (tmp_path / "instruments.csv").write_text(INSTRUMENTS_CSV)
    (tmp_path / "funding.csv").write_text(
        "ts_exchange,ts_recv,instrument,funding_rate,interval_s,mark_price,index_price\n"
        "1700000000000000001,1700000000000000001,BTC-PERPETUAL,0.0001,0,37000,37000\n"
        "1700000000000000002,1700000000000000002,BTC-PERPETUAL,0.0001,-28800,37000,37000\n"
        "1700000000000000003,1700000000000000003,BTC-PERPETUAL,inf,28800,37000,37000\n"
        "1700000000000000004,1700000000000000004,BTC-PERPETUAL,0.0001,28800,37000,37000\n")
    rep = ingest(store, "canonical", [str(tmp_path / "instruments.csv"),
                                      str(tmp_path / "funding.csv")])
    assert rep.reasons == {"non-positive interval": 2, "non-finite rate": 1}
    assert store.count("funding") == 1


def test_a_decimal_parquet_price_is_the_csv_price_to_the_bit(store, tmp_path):
    """The same quote as CSV text and as a Parquet decimal is one row: the decimal cast gave
    0.011000000000000001, so the copy was not seen as a duplicate."""
    (tmp_path / "instruments.csv").write_text(INSTRUMENTS_CSV)
    (tmp_path / "option_quotes_a.csv").write_text(
        "ts_exchange,ts_recv,instrument,bid_price,ask_price\n"
        "1700000000000000001,1700000000000000001,BTC-29DEC23-40000-C,0.0110,0.0125\n")
    d = pa.decimal128(10, 4)
    pq.write_table(pa.table({
        "ts_exchange": [1700000000000000001], "ts_recv": [1700000000000000001],
        "instrument": ["BTC-29DEC23-40000-C"],
        "bid_price": pa.array([decimal.Decimal("0.0110")], d),
        "ask_price": pa.array([decimal.Decimal("0.0125")], d)}), tmp_path / "option_quotes_b.parquet")
    rep = ingest(store, "canonical", [str(tmp_path / f) for f in (
        "instruments.csv", "option_quotes_a.csv", "option_quotes_b.parquet")])
    assert rep.reasons == {"duplicate": 1}
    assert store._exec("SELECT bid_price, ask_price FROM option_quotes") == [(0.011, 0.0125)]


def test_a_type_error_names_its_file(store, tmp_path):
    pq.write_table(pa.table({"harvest_time": ["2025-12-07"], "instrument_name": ["BTC-X"]}),
                   tmp_path / "b.parquet")
    with pytest.raises(IngestError, match="b.parquet: harvest_time has type string"):
        ingest(store, "deribit-summary", [str(tmp_path / "b.parquet")])


def test_a_stray_carriage_return_is_not_a_line_break(store, tmp_path):
    """Three lines, the second with a "\\r" inside its JSON: read 3 (it was 4, and the
    later lines' locators one off)."""
    ok = ('{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":%d,"s":"BTCUSDT",'
          '"b":"60000.0","B":"1","a":"%s","A":"3","T":%d,"E":%d}}')
    f = tmp_path / "cr.jsonl"
    f.write_bytes((f"1723161255100000000 {ok % (2, '60000.1', 1723161255099, 1723161255099)}\n"
                   '1723161255200000000 {"stream":"btcusdt@bookTicker",\r"data":{}}\n'
                   f"1723161255300000000 {ok % (3, '59000.1', 1723161255299, 1723161255299)}\n"
                   ).encode())
    rep = ingest(store, "binance-ws", [str(f)])
    assert rep.read == 3
    q = dict(store._exec("SELECT locator, split_part(reason, ':', 1) FROM quarantine"))
    assert q == {"2": "unparsable", "3": "crossed book"}


def test_a_nan_in_an_integer_column_written_as_floats_is_missing(store, tmp_path):
    """pandas writes an integer column's nulls as NaN: a NaN ``ts_exchange`` is quarantined
    as ``missing``, like a null (it was ``unparsable: not a valid bigint``)."""
    (tmp_path / "instruments.csv").write_text(INSTRUMENTS_CSV)
    pq.write_table(pa.table({
        "ts_exchange": [1.7e18, float("nan")], "ts_recv": [1.7e18, 1.7e18],
        "instrument": ["BTC-29DEC23-40000-C"] * 2, "bid_price": [0.01, 0.01],
        "ask_price": [0.02, 0.02]}), tmp_path / "option_quotes.parquet")
    rep = ingest(store, "canonical", [str(tmp_path / "instruments.csv"),
                                      str(tmp_path / "option_quotes.parquet")])
    assert rep.reasons == {"missing": 1}
    assert store._exec("SELECT reason FROM quarantine") == [("missing: ts_exchange is null or NaN",)]
