"""deribit-summary adapter on the real recordings: schema drift, one-sided books, accounting."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
from numpy.testing import assert_allclose

from replay.ingest import ingest
from replay.model.instruments import expiry_ns
from replay.store import open_store


def test_drifted_schemas_and_accounting(shared_data, tmp_path):
    day = shared_data / "deribit" / "BTC" / "2025" / "12" / "07"
    files = [str(day / f) for f in ("BTC_2025-12-07_2030.parquet",   # strike/expiry columns
                                    "BTC_2025-12-07_2032.parquet",   # no strike, no bid/ask
                                    "BTC_2025-12-07_2034.parquet")]  # bid_iv/greeks added
    with open_store(tmp_path / "d.duckdb", read_only=False) as s:
        rep = ingest(s, "deribit-summary", files)
        n_src = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        assert rep.read == n_src == rep.ingested + rep.quarantined
        inst = s.instruments().to_pandas().set_index("name")
        row = inst.loc["BTC-26DEC25-90000-C"]
        assert row.strike == 90000.0 and bool(row.is_call) and row.settlement == "inverse"
        assert row.expiry_ns == expiry_ns(26, 12, 2025)
        q = s._exec("SELECT count(*) FILTER (WHERE bid_price IS NULL AND ask_price IS NOT NULL),"
                    " max(mark_iv), count(*) FILTER (WHERE bid_price IS NULL AND ask_price IS NULL)"
                    " FROM option_quotes")[0]
        assert q[0] > 0, "one-sided books are valid quotes"
        assert q[1] < 5, "mark_iv is stored as a fraction, not percent"
    # a file without bid and ask columns is ingested, and inspect says how much of the store
    # has nothing to calibrate on
    from replay.store.summary import inspect_store, summarize

    quotes = summarize(str(tmp_path / "d.duckdb"))["tables"]["option_quotes"]
    assert quotes["rows_without_bid_or_ask"] == q[2] > 0
    assert f"option quotes with neither bid nor ask: {q[2]:,} of {quotes['rows']:,}" in \
        inspect_store(str(tmp_path / "d.duckdb"))


def test_values_match_source_row(shared_data, tmp_path):
    f = shared_data / "deribit" / "BTC" / "2025" / "12" / "13" / "BTC_2025-12-13_1608.parquet"
    src = pq.read_table(f).to_pandas().set_index("instrument_name")
    with open_store(tmp_path / "d.duckdb", read_only=False) as s:
        ingest(s, "deribit-summary", [str(f)])
        got = s.con.sql("SELECT i.name, q.bid_price, q.ask_price, q.mark_iv, q.underlying_price "
                        "FROM option_quotes q JOIN instruments i USING (instrument_id)").df()
    got = got.set_index("name").loc[src.index]
    assert_allclose(got.mark_iv, src.mark_iv / 100, rtol=1e-15)
    assert_allclose(got.underlying_price, src.underlying_price, rtol=0)
    assert_allclose(got.bid_price.fillna(-1), src.best_bid_price.fillna(-1), rtol=0)


def test_bad_rows_are_quarantined_with_reason(tmp_path):
    t = pa.table({
        "harvest_time": pa.array([1_765_000_000_000_000] * 5, pa.timestamp("us", tz="UTC")),
        "instrument_name": ["BTC-26DEC25-90000-C", "garbage", "BTC-26DEC25-90000-P",
                            "BTC-26DEC25-95000-C", "BTC-26DEC25-90000-C"],
        "best_bid_price": [0.01, 0.01, 0.05, -0.01, 0.01],
        "best_ask_price": [0.02, 0.02, 0.04, 0.02, 0.02],
        "mark_price": [0.015, 0.015, 0.045, 0.01, 0.015],
        "underlying_price": [90000.0] * 5,
    })
    pq.write_table(t, tmp_path / "bad.parquet")
    with open_store(tmp_path / "d.duckdb", read_only=False) as s:
        rep = ingest(s, "deribit-summary", [str(tmp_path / "bad.parquet")])
        assert (rep.read, rep.ingested, rep.quarantined) == (5, 1, 4)
        reasons = dict(s._exec("SELECT locator, reason FROM quarantine"))
        assert reasons["1"].startswith("unparsable")
        assert reasons["2"].startswith("crossed book")
        assert reasons["3"].startswith("non-positive price")
        assert reasons["4"].startswith("duplicate")
        raw = s._exec("SELECT raw FROM quarantine WHERE locator = '1'")[0][0]
        assert json.loads(raw)["instrument_name"] == "garbage"


def test_cli_prints_accounting_json_and_detects_reingest(shared_data, tmp_path):
    f = str(shared_data / "deribit" / "BTC" / "2025" / "12" / "10" / "BTC_2025-12-10_0105.parquet")
    cmd = [sys.executable, "-m", "replay", "ingest", "deribit-summary", f, "--db", str(tmp_path / "x.duckdb")]
    first = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    assert first["read"] == first["ingested"] + first["quarantined"] > 0
    again = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    assert again["read"] == 0 and again["skipped_sources"] == [f]


def test_each_expirys_future_gets_its_own_contract_spec(tmp_path):
    """The future defined for each option expiry took BTC's spec whatever the coin: an ETH
    future was 10 USD a contract (Deribit's is 1), and a USDC-linear option's future was
    inverse.  Now ETH's is its own, and a future whose contract is not known is not defined
    (as the Tardis adapter leaves it to an instruments file)."""
    import datetime as dt

    ts = dt.datetime(2025, 12, 10, 12, 0, tzinfo=dt.timezone.utc)
    pq.write_table(pa.table({
        "harvest_time": pa.array([ts, ts, ts], pa.timestamp("us", tz="UTC")),
        "instrument_name": ["ETH-26DEC25-3000-C", "SOL_USDC-26DEC25-150-C",
                            "BTC-26DEC25-90000-C"],
        "underlying_price": [3100.0, 140.0, 90500.0], "mark_price": [0.05, 4.2, 0.03],
        "best_bid_price": [0.049, 4.0, 0.029], "best_ask_price": [0.051, 4.4, 0.031]}),
        tmp_path / "summary.parquet")
    with open_store(tmp_path / "d.duckdb", read_only=False) as s:
        rep = ingest(s, "deribit-summary", [str(tmp_path / "summary.parquet")])
        assert (rep.read, rep.ingested) == (3, 3)
        futures = {r[0]: r[1:] for r in s.con.sql(
            "SELECT name, settlement, contract_size, tick_size FROM instruments "
            "WHERE kind = 'future'").fetchall()}
    assert futures == {"ETH-26DEC25": ("inverse", 1.0, 0.25),
                       "BTC-26DEC25": ("inverse", 10.0, 2.5)}
