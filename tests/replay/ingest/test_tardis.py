"""Tardis.dev CSV adapters on small hand-written fixtures (tests/fixtures/tardis).

Every fixture line is annotated here with what must become of it, so the expected counts are
derived from the files, not from the code under test.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from replay.errors import IngestError
from replay.ingest import ingest, tardis_csv
from tests.replay.ingest import market_rows

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "tardis"
US = 1_000

# Expected outcome per fixture: (format, file, read, ingested, quarantine reasons by key).
CASES = [
    # lines 2-4, 12, 13 ingested (two-sided, ask-only, mark-only, defined from the
    # type/strike/expiration columns, zero bid with zero amount = no bid); 5 crossed, 6 short
    # line, 7 negative ask, 8 timestamp "abc", 9 okex symbol never defined, 10 timestamps in ms,
    # 11 repeats line 2.
    ("tardis-options-chain", "deribit_options_chain_2024-03-01.csv.gz", 12, 5,
     {"crossed book": 1, "unparsable": 2, "non-positive price": 1, "unknown instrument": 1,
      "timestamp out of range": 1, "duplicate": 1}),
    # 2-5 and 12 ingested (perp, ask-less perp, option, future, ETH perp); 6 binance symbol
    # unknown, 7 NaN bid and ask, 8 bytes that are not UTF-8, 9 empty line, 10 bid "abc",
    # 11 crossed.
    ("tardis-quotes", "deribit_quotes_2024-03-01.csv", 11, 5,
     {"unknown instrument": 1, "missing": 1, "unparsable": 3, "crossed book": 1}),
    # 2-4 and 10 ingested (10 has no local_timestamp: one clock for both); 5 side "sideways",
    # 6 zero price, 7 negative amount, 8 repeats trade T1, 9 no timestamps, 11 extra field.
    ("tardis-trades", "deribit_trades_2024-03-01.csv.gz", 10, 4,
     {"unparsable": 2, "non-positive price": 1, "negative size": 1, "duplicate": 1, "missing": 1}),
    # 2-3 ingested; 4 future without funding rate (skipped), 5 rate "x1", 6 negative mark,
    # 7 binance symbol unknown, 8 timestamp overflowing int64.
    ("tardis-derivative-ticker", "deribit_derivative_ticker_2024-03-01.csv", 7, 2,
     {"skipped": 1, "unparsable": 1, "non-positive price": 1, "unknown instrument": 1,
      "timestamp out of range": 1}),
]


@pytest.mark.parametrize("fmt,name,read,ingested,reasons", CASES)
def test_fixture_accounting(store, fmt, name, read, ingested, reasons):
    rep = ingest(store, fmt, [str(FIX / name)])
    assert (rep.read, rep.ingested, rep.quarantined) == (read, ingested, read - ingested)
    assert rep.reasons == reasons
    assert store.count("quarantine") + market_rows(store) == read


@pytest.mark.parametrize("fmt,name,read,ingested,reasons", CASES)
def test_small_blocks_give_the_same_result(store, monkeypatch, fmt, name, read, ingested, reasons):
    """Blocks of a few lines exercise line carry-over and locators across block borders."""
    monkeypatch.setattr(tardis_csv, "BLOCK_BYTES", 150)
    rep = ingest(store, fmt, [str(FIX / name)])
    assert (rep.read, rep.ingested, rep.reasons) == (read, ingested, reasons)
    locs = sorted(int(x) for (x,) in store.con.sql("SELECT locator FROM quarantine").fetchall())
    assert len(set(locs)) == len(locs) and min(locs) >= 2 and max(locs) <= read + 1


def test_options_chain_values(store):
    ingest(store, "tardis-options-chain", [str(FIX / "deribit_options_chain_2024-03-01.csv.gz")])
    q = store.con.sql("""
        SELECT i.name, q.ts_exchange, q.ts_recv, q.bid_price, q.ask_price, q.bid_size, q.ask_size,
               q.bid_iv, q.ask_iv, q.mark_price, q.mark_iv, q.underlying_price, q.open_interest
        FROM option_quotes q JOIN instruments i USING (instrument_id) ORDER BY q.seq""").fetchall()
    by = {r[0]: r for r in q}
    c = by["BTC-29MAR24-70000-C"]
    assert (c[1], c[2]) == (1709251200100000 * US, 1709251200150000 * US)
    # IVs are percent in the file and fractions in the store.
    assert_allclose(c[3:13], [0.0305, 0.0315, 12.0, 8.5, 0.621, 0.634, 0.031, 0.6275, 62500.5,
                              120.5], rtol=1e-12)
    p = by["BTC-29MAR24-50000-P"]
    assert p[3] is None and p[5] is None and p[7] is None  # ask-only book
    m = by["BTC-29MAR24-80000-C"]
    assert m[3] is None and m[5] is None and m[4] == 0.008  # "0" bid with "0" amount = no bid
    inst = {r[0]: r[1:] for r in store.con.sql(
        "SELECT name, kind, strike, is_call, expiry_ns, settlement, contract_size FROM instruments"
    ).fetchall()}
    exp = 1711699200000000 * US  # 2024-03-29 08:00 UTC
    assert inst["BTC-29MAR24-70000-C"] == ("option", 70000.0, True, exp, "inverse", 1.0)
    # Not a Deribit name: defined from type/strike_price/expiration.
    assert inst["BTC-TESTNAME-1"] == ("option", 60000.0, False, exp, "inverse", 1.0)


def test_quotes_and_trades_routing_and_units(store):
    ingest(store, "tardis-quotes", [str(FIX / "deribit_quotes_2024-03-01.csv")])
    ingest(store, "tardis-trades", [str(FIX / "deribit_trades_2024-03-01.csv.gz")])
    uq = store.con.sql("""SELECT i.name, bid_price, ask_price, bid_size, ask_size
        FROM underlying_quotes q JOIN instruments i USING (instrument_id) ORDER BY q.seq""").fetchall()
    assert [r[0] for r in uq] == ["BTC-PERPETUAL", "BTC-PERPETUAL", "BTC-29MAR24", "ETH-PERPETUAL"]
    # Deribit inverse amounts are USD; sizes are contracts of 10 USD (BTC) or 1 USD (ETH).
    assert_allclose(uq[0][1:], [62000.0, 62000.5, 12000.0, 3500.0])
    assert uq[1][2] is None and uq[1][4] is None
    assert_allclose(uq[3][3:], [7000.0, 5000.0])
    assert store.count("option_quotes") == 1
    tr = store.con.sql("""SELECT i.name, t.ts_exchange, t.ts_recv, price, size, side, trade_id
        FROM underlying_trades t JOIN instruments i USING (instrument_id) ORDER BY t.seq""").fetchall()
    assert [(r[5], r[6]) for r in tr] == [(1, "T1"), (-1, "T2"), (1, "T8")]
    assert_allclose([r[4] for r in tr], [100.0, 2.0, 1.0])
    assert tr[2][1] == tr[2][2] == 1709251210000000 * US  # missing local clock
    ot = store.con.sql("SELECT side, size, price FROM option_trades").fetchall()
    assert ot == [(0, 1.5, 0.031)]


def test_derivative_ticker_funding(store):
    rep = ingest(store, "tardis-derivative-ticker",
                 [str(FIX / "deribit_derivative_ticker_2024-03-01.csv")])
    assert rep.detail == {"skipped_without_funding_rate": 1}
    f = store.con.sql("SELECT funding_rate, interval_s, mark_price, index_price FROM funding "
                      "ORDER BY seq").fetchall()
    assert_allclose(np.array(f), [[0.00012, 28800.0, 62001.3, 61990.1],
                                  [0.00013, 28800.0, 62008.0, 61995.2]])


def test_same_file_twice_is_skipped(store):
    path = str(FIX / "deribit_quotes_2024-03-01.csv")
    ingest(store, "tardis-quotes", [path])
    before = (store.count("underlying_quotes"), store.count("quarantine"))
    rep = ingest(store, "tardis-quotes", [path])
    assert rep.skipped_sources == [path]
    assert (rep.read, rep.ingested, rep.quarantined) == (0, 0, 0)
    assert "already ingested" in rep.as_json()
    assert (store.count("underlying_quotes"), store.count("quarantine")) == before


def test_overlapping_file_merges_in_replay_order(store):
    ingest(store, "tardis-quotes", [str(FIX / "deribit_quotes_2024-03-01.csv")])
    rep = ingest(store, "tardis-quotes", [str(FIX / "deribit_quotes_2024-03-01_late.csv")])
    assert (rep.read, rep.ingested, rep.quarantined) == (4, 4, 0)
    t = store.scan("underlying_quotes").read_all()
    assert t.num_rows == 8
    seq = t.column("seq").to_numpy()
    assert_array_equal(seq, np.arange(8))
    key = list(zip(t.column("ts_recv").to_pylist(), t.column("ts_exchange").to_pylist()))
    assert key == sorted(key)
    # The late file's first row (09:59:59.91) now leads the table.
    assert key[0] == (1709251199910000 * US, 1709251199900000 * US)


def test_plain_and_gzip_read_alike(store, tmp_path):
    plain = tmp_path / "trades.csv"
    with gzip.open(FIX / "deribit_trades_2024-03-01.csv.gz", "rb") as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst)
    rep = ingest(store, "tardis-trades", [str(plain)])
    assert (rep.read, rep.ingested) == (10, 4)


def test_crlf_line_endings(store, tmp_path):
    text = (FIX / "deribit_derivative_ticker_2024-03-01.csv").read_bytes().replace(b"\n", b"\r\n")
    p = tmp_path / "ticker_crlf.csv"
    p.write_bytes(text)
    rep = ingest(store, "tardis-derivative-ticker", [str(p)])
    assert (rep.read, rep.ingested) == (7, 2)


def test_wrong_layout_names_missing_columns(store, tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("exchange,symbol,timestamp,local_timestamp,price\nderibit,BTC-PERPETUAL,1,2,3\n")
    with pytest.raises(IngestError, match=r"lacks column\(s\) \['id', 'side', 'amount'\]"):
        ingest(store, "tardis-trades", [str(p)])
    assert store.count("loads") == 0


def test_empty_file_is_noted_and_a_missing_header_is_an_error(store, tmp_path):
    p = tmp_path / "empty.csv"
    p.write_bytes(b"")
    rep = ingest(store, "tardis-quotes", [str(p)])
    assert rep.empty_sources == [str(p)] and store.count("loads") == 0
    p.write_bytes(b"\nderibit,BTC-PERPETUAL,1,2,3,4,5,6\n")
    with pytest.raises(IngestError, match="expected a CSV header"):
        ingest(store, "tardis-quotes", [str(p)])


def test_raw_line_kept_in_quarantine(store):
    ingest(store, "tardis-trades", [str(FIX / "deribit_trades_2024-03-01.csv.gz")])
    raw = store.con.sql("SELECT raw FROM quarantine WHERE locator = '5'").fetchall()
    line = "deribit,BTC-PERPETUAL,1709251200300000,1709251200330000,T4,sideways,62000.0,10"
    assert raw == [(line,)]


def test_reading_streams_in_blocks(monkeypatch):
    from replay.ingest.tardis import read_quotes

    monkeypatch.setattr(tardis_csv, "BLOCK_BYTES", 200)
    chunks = list(read_quotes(FIX / "deribit_quotes_2024-03-01.csv"))
    assert len(chunks) > 3
    assert sum(c.n_read for c in chunks) == 11


def test_rows_repeated_in_another_file_are_duplicates(store, tmp_path):
    src = (FIX / "deribit_derivative_ticker_2024-03-01.csv").read_text().splitlines()
    first = tmp_path / "a.csv"
    first.write_text("\n".join(src[:3]) + "\n")
    second = tmp_path / "b.csv"  # one new row after the two already stored
    new = src[2].replace("1709251260000000,1709251260040000", "1709251290000000,1709251290040000")
    second.write_text("\n".join(src[:3] + [new]) + "\n")
    ingest(store, "tardis-derivative-ticker", [str(first)])
    rep = ingest(store, "tardis-derivative-ticker", [str(second)])
    assert (rep.read, rep.ingested, rep.reasons) == (3, 1, {"duplicate": 2})
    assert store.count("funding") == 3


def test_value_parsers():
    import pyarrow as pa

    vals, bad = tardis_csv.parse_float(pa.array(["1.5", None, "nan", "-inf", "x", "1e3", " 2"]))
    assert vals.to_pylist()[:2] == [1.5, None] and vals[2].as_py() is None  # NaN -> null
    assert vals[3].as_py() == float("-inf") and vals[5].as_py() == 1000.0
    assert_array_equal(bad, [False, False, False, False, True, False, True])
    ints, bad, over = tardis_csv.parse_int(pa.array(["12", "99999999999999999999", "1.0", None]))
    assert ints.to_pylist()[0] == 12 and ints[3].as_py() is None
    assert_array_equal(bad, [False, False, True, False])
    assert_array_equal(over, [False, True, False, False])


def test_truncated_gzip_fails_cleanly_and_leaves_nothing(store, tmp_path):
    lines = (FIX / "deribit_quotes_2024-03-01_late.csv").read_bytes().splitlines(keepends=True)
    data = gzip.compress(lines[0] + b"".join(lines[1:]) * 2000, mtime=0)
    p = tmp_path / "cut.csv.gz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(IngestError, match="cut.csv.gz"):
        ingest(store, "tardis-quotes", [str(p)])
    assert store.count("quarantine") == store.count("underlying_quotes") == store.count("loads") == 0


def test_sizes_are_in_contracts_of_the_stored_definition(store, tmp_path):
    """An instruments file defining BTC-PERPETUAL at 1 USD a contract, ingested first, is the
    store's definition; Tardis's USD amounts were still divided by its own 10 USD, so the
    notional of a trade depended on the order the files were ingested in (1,000 USD read as
    100 USD)."""
    (tmp_path / "instruments.csv").write_text(
        "ts_recv,ts_exchange,name,venue,kind,underlying,quote_currency,expiry_ns,strike,"
        "is_call,settlement,contract_size,tick_size\n"
        "1709251100000000000,1709251100000000000,BTC-PERPETUAL,deribit,perp,BTC,USD,,,,"
        "inverse,1.0,0.5\n")
    ingest(store, "canonical", [str(tmp_path / "instruments.csv")])
    ingest(store, "tardis-trades", [str(FIX / "deribit_trades_2024-03-01.csv.gz")])
    tr = store.con.sql("""SELECT trade_id, size * contract_size FROM underlying_trades
        t JOIN instruments i USING (instrument_id) ORDER BY t.seq""").fetchall()
    assert tr[:2] == [("T1", 1000.0), ("T2", 20.0)]  # USD notionals, as in the file
