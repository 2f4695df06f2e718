"""Re-ingesting a copy, and files without rows.

* A copy of a file that spells its missing bids NaN instead of NULL (a pandas round trip does
  that) holds the same quotes: it must add no rows, and the store must hold no NaN.
* An empty file is treated the same in every format: listed in ``empty_sources``, no load
  recorded, so that one empty file never makes the next one look "already ingested".
* The "already ingested" note is about the skipped files only.
* A file none of whose rows could be ingested (the wrong format) is not "already ingested":
  loaded again in its own format, it loads.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from replay.ingest import FORMATS, ingest
from replay.store import open_store
from tests.replay.ingest import market_rows
from tests.replay.ingest.test_fuzz import CANONICAL_HEADERS, TARDIS, nan_cells

FIX = Path(__file__).resolve().parents[2] / "fixtures"
T0_US = 1_709_251_200_000_000


def _nan_for_null(t: pa.Table, columns: list[str]) -> pa.Table:
    """The same rows with every NULL of ``columns`` written as NaN."""
    for c in columns:
        i = t.schema.get_field_index(c)
        col = t.column(i)
        t = t.set_column(i, c, pc.fill_null(col, float("nan")))
    return t


def _summary(n: int) -> pa.Table:
    """Deribit summary rows, every other one without a bid (NULL)."""
    bids = [None if i % 2 else 0.03 + 0.001 * i for i in range(n)]
    return pa.table({
        "harvest_time": pa.array([T0_US + 300_000_000 * (i // 2) for i in range(n)],
                                 pa.timestamp("us", tz="UTC")),
        "instrument_name": [("BTC-29MAR24-70000-C", "BTC-29MAR24-70000-P")[i % 2]
                            for i in range(n)],
        "best_bid_price": pa.array(bids, pa.float64()),
        "best_ask_price": [0.05 + 0.001 * i for i in range(n)],
        "mark_price": [0.04 + 0.001 * i for i in range(n)],
        "mark_iv": pa.array([None if i % 3 == 0 else 60.0 for i in range(n)], pa.float64()),
        "underlying_price": [62000.0 + i for i in range(n)],
    })


@pytest.mark.parametrize("nan_first", [False, True], ids=["null_then_nan", "nan_then_null"])
def test_copy_with_nan_bids_adds_no_rows(tmp_path, nan_first):
    orig = _summary(8)
    copy = _nan_for_null(orig, ["best_bid_price", "mark_iv"])
    assert pc.sum(pc.is_nan(copy.column("best_bid_price"))).as_py() == 4
    a, b = tmp_path / "BTC_2024-03-01_0000.parquet", tmp_path / "copy" / "BTC_2024-03-01_0000.parquet"
    b.parent.mkdir()
    pq.write_table(copy if nan_first else orig, a)
    pq.write_table(orig if nan_first else copy, b)
    with open_store(tmp_path / "s.duckdb", read_only=False) as s:
        first = ingest(s, "deribit-summary", [str(a)])
        assert (first.read, first.ingested, first.quarantined) == (8, 8, 0)
        second = ingest(s, "deribit-summary", [str(b)])
        assert second.read == 8 and second.ingested == 0 and second.quarantined == 8
        assert second.reasons == {"duplicate": 8}
        assert s.count("option_quotes") == 8
        assert nan_cells(s) == {}
        assert s._exec("SELECT count(*) FROM option_quotes WHERE bid_price IS NULL")[0][0] == 4


def test_copy_of_a_real_file_with_nan_bids_adds_no_rows(shared_data, tmp_path):
    src = shared_data / "deribit" / "BTC" / "2025" / "12" / "10" / "BTC_2025-12-10_0105.parquet"
    orig = pq.read_table(src)
    null_bids = orig.column("best_bid_price").null_count
    assert null_bids > 0  # the recording has one-sided books; the test needs them
    copy = tmp_path / "copy" / src.name
    copy.parent.mkdir()
    pq.write_table(_nan_for_null(orig, ["best_bid_price", "best_ask_price"]), copy)
    with open_store(tmp_path / "s.duckdb", read_only=False) as s:
        first = ingest(s, "deribit-summary", [str(src)])
        n = s.count("option_quotes")
        second = ingest(s, "deribit-summary", [str(copy)])
        assert second.read == first.read and second.ingested == 0
        assert second.read == second.quarantined
        assert s.count("option_quotes") == n
        assert nan_cells(s) == {}


def test_binance_copy_with_nan_bid_adds_no_rows(tmp_path):
    line = ('1709251200000000000 {"stream":"btcusdt@bookTicker","data":{"e":"bookTicker",'
            '"s":"BTCUSDT","b":"nan","B":"nan","a":"61800.3","A":"2.5","T":1709251200001,'
            '"E":1709251200002}}\n')
    plain, gz = tmp_path / "a.jsonl", tmp_path / "a.jsonl.gz"
    plain.write_text(line)
    gz.write_bytes(gzip.compress(line.encode(), mtime=0))  # other bytes, same messages
    with open_store(tmp_path / "s.duckdb", read_only=False) as s:
        assert ingest(s, "binance-ws", [str(plain)]).ingested == 1
        again = ingest(s, "binance-ws", [str(gz)])
        assert (again.read, again.ingested, again.quarantined) == (1, 0, 1)
        assert nan_cells(s) == {}
        row = s._exec("SELECT bid_price, bid_size, ask_price FROM underlying_quotes")
        assert row == [(None, None, 61800.3)]


# -- empty files -----------------------------------------------------------------------------
def _name(fmt: str, stem: str) -> str:
    return {"canonical": f"option_quotes_{stem}.csv",
            "deribit-summary": f"BTC_{stem}.parquet"}.get(fmt, f"{stem}.csv")


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_empty_files_are_noted_alike_in_every_format(tmp_path, fmt):
    one, two = tmp_path / _name(fmt, "one"), tmp_path / _name(fmt, "two")
    one.write_bytes(b"")
    two.write_bytes(b"")
    with open_store(tmp_path / "s.duckdb", read_only=False) as s:
        said: list[str] = []
        rep = ingest(s, fmt, [str(one), str(two)], progress=said.append)
        assert rep.empty_sources == [str(one), str(two)]
        assert rep.skipped_sources == []
        assert (rep.read, rep.ingested, rep.quarantined) == (0, 0, 0)
        assert s.count("loads") == 0
        assert said == [f"{one}: empty file (no rows), skipped", f"{two}: empty file (no rows), skipped"]
        out = json.loads(rep.as_json())
        assert out["empty_sources"] == [str(one), str(two)]
        assert out["note"] == "2 files without rows skipped"
        assert "already ingested" not in rep.as_json()


def test_an_empty_file_of_one_format_does_not_hide_the_next(tmp_path):
    """Before the fix binance-ws recorded a load for an empty file, whose sha256 (that of no
    bytes) then made every later empty file, of any format, "already ingested"."""
    ws, csv = tmp_path / "a.jsonl", tmp_path / "b.csv"
    ws.write_bytes(b"")
    csv.write_bytes(b"")
    with open_store(tmp_path / "s.duckdb", read_only=False) as s:
        assert ingest(s, "binance-ws", [str(ws)]).empty_sources == [str(ws)]
        rep = ingest(s, "tardis-quotes", [str(csv)])
        assert rep.empty_sources == [str(csv)] and rep.skipped_sources == []


def _no_rows(fmt: str) -> bytes:
    """A file that is not zero bytes but holds no rows, in ``fmt``."""
    if fmt in TARDIS:
        return gzip.compress(b"", mtime=0)  # nothing after decompression
    if fmt == "canonical":
        return (CANONICAL_HEADERS["option_quotes"] + "\n").encode()  # a header only
    if fmt == "deribit-summary":
        buf = pa.BufferOutputStream()
        pq.write_table(_summary(0), buf)
        return buf.getvalue().to_pybytes()
    return gzip.compress(b"", mtime=0)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_files_without_rows_leave_no_load(tmp_path, fmt):
    p = tmp_path / _name(fmt, "norows")
    p.write_bytes(_no_rows(fmt))
    assert p.stat().st_size > 0
    with open_store(tmp_path / "s.duckdb", read_only=False) as s:
        for _ in range(2):  # the second time too: nothing was recorded to match
            rep = ingest(s, fmt, [str(p)])
            assert rep.empty_sources == [str(p)] and rep.skipped_sources == []
            assert rep.read == 0
        assert s.count("loads") == 0 and market_rows(s) == 0


# -- the "already ingested" note -------------------------------------------------------------
def test_note_names_only_the_skipped_files(tmp_path):
    quotes = FIX / "tardis" / "deribit_quotes_2024-03-01.csv"
    late = FIX / "tardis" / "deribit_quotes_2024-03-01_late.csv"
    with open_store(tmp_path / "s.duckdb", read_only=False) as s:
        ingest(s, "tardis-quotes", [str(quotes)])
        said: list[str] = []
        rep = ingest(s, "tardis-quotes", [str(quotes), str(late)], progress=said.append)
        out = json.loads(rep.as_json())
        assert rep.ingested > 0 and rep.read == rep.ingested + rep.quarantined
        assert out["skipped_sources"] == [str(quotes)]
        assert out["note"] == "1 file already ingested (same sha256) skipped"
        assert "nothing was added" not in rep.as_json()
        skipped = [m for m in said if "already ingested" in m]
        assert skipped == [f"{quotes}: already ingested (same sha256), skipped"]
        assert [m for m in said if m.startswith(str(late))] == [
            f"{late}: read {rep.read} ingested {rep.ingested} quarantined {rep.quarantined}"]
        fresh = ingest(s, "tardis-trades", [str(FIX / "tardis" / "deribit_trades_2024-03-01.csv.gz")])
        assert "note" not in json.loads(fresh.as_json())


def test_accounting_holds_across_skipped_empty_and_loaded_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    quotes = FIX / "tardis" / "deribit_quotes_2024-03-01.csv"
    with open_store(tmp_path / "s.duckdb", read_only=False) as s:
        first = ingest(s, "tardis-quotes", [str(empty), str(quotes)])
        rows = np.array(s._exec("SELECT rows_read, rows_ingested, rows_quarantined FROM loads"))
        assert rows.shape == (1, 3)  # the empty file recorded nothing
        assert first.read == rows[0, 0] == rows[0, 1] + rows[0, 2]
        assert first.read == market_rows(s) + s.count("quarantine")


def test_a_file_loaded_in_the_wrong_format_loads_in_the_right_one(tmp_path):
    """Every row of a Deribit summary file read as a Binance capture is quarantined; that load
    is kept with its quarantine but does not make the file "already ingested" (it did, and the
    right format then loaded nothing)."""
    f = tmp_path / "summary.parquet"
    pq.write_table(_summary(8), f)
    with open_store(tmp_path / "s.duckdb", read_only=False) as store:
        wrong = json.loads(ingest(store, "binance-ws", [f]).as_json())
        assert wrong["ingested"] == 0 and wrong["quarantined"] == wrong["read"] > 0
        right = json.loads(ingest(store, "deribit-summary", [f]).as_json())
        assert right["read"] == right["ingested"] == 8
        again = json.loads(ingest(store, "deribit-summary", [f]).as_json())
        assert again["read"] == 0 and again["skipped_sources"] == [str(f)]
