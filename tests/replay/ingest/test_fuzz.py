"""Fuzzing every ingestion adapter with random and malformed input (hypothesis).

For each format, hypothesis writes a file mixing plausible rows with corrupt ones (garbage
bytes, wrong field counts, NaN, inf, negative and huge numbers, timestamps in the wrong unit
or beyond int64, empty fields, unicode, duplicated rows) and ingests it into a fresh store.
The properties:

* the only exception allowed is an ``IngestError`` with a message (for the CSV adapters, whose
  header is always valid here, not even that);
* ``read == ingested + quarantined``, and the store agrees: quarantine rows plus market rows
  equal ``read``;
* for the line-based formats, ``read`` is the number of data lines in the file;
* no NaN reaches the store: a missing value is NULL whatever the format wrote (NaN and NULL
  differ for duplicate detection, see :func:`replay.ingest.core.nan_to_null`).

``test_nan_is_null_in_every_format`` checks the last point on one hand-written file per
format, so that it does not depend on what hypothesis happens to draw.
"""

from __future__ import annotations

import gzip
import json
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replay.errors import IngestError
from replay.ingest import ingest
from replay.model.schema import MARKET_TABLES, TABLES
from replay.store import open_store
from tests.replay.ingest import market_rows

FIX = Path(__file__).resolve().parents[2] / "fixtures"
FUZZ = settings(max_examples=40, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
T0_US = 1_709_251_200_000_000

NAMES = ["BTC-PERPETUAL", "ETH-PERPETUAL", "BTC-29MAR24", "BTC-29MAR24-70000-C",
         "BTC-29MAR24-70000-P", "BTC-1MAR24-60000-C", "BTCUSDT", "BTC_USDC-PERPETUAL"]
SPECIAL = ["", "nan", "NaN", "inf", "-inf", "-1", "0", "1e308", "-0", "abc", "1,2", "\u00e9\u4e2d",
           "99999999999999999999", "0x10", " 7", '"3"']

numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=1e-4, max_value=1e5).map(lambda x: f"{x:.6g}"),
    st.integers(-10, 10**6).map(str),
    st.sampled_from(SPECIAL),
)
micros = st.one_of(
    st.integers(T0_US, T0_US + 3_600_000_000).map(str),
    st.integers(T0_US // 1000, T0_US // 1000 + 3_600_000).map(str),  # ms by mistake
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(SPECIAL),
)
nanos = st.one_of(
    st.integers(T0_US * 1000, (T0_US + 3_600_000_000) * 1000).map(str),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(SPECIAL),
)
symbols = st.one_of(st.sampled_from(NAMES), st.text(max_size=12))
junk_line = st.one_of(
    st.binary(max_size=60),
    st.text(max_size=60).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.just(b""),
    st.just(b"\r"),
)


def _row(fields: list[st.SearchStrategy]) -> st.SearchStrategy:
    return st.tuples(*fields).map(lambda xs: ",".join(xs).encode("utf-8", "surrogatepass"))


@st.composite
def csv_files(draw, header: str, fields: list[st.SearchStrategy]) -> bytes:
    rows = draw(st.lists(st.one_of(_row(fields), _row(fields), junk_line), max_size=25))
    if rows and draw(st.booleans()):  # duplicated rows
        rows += draw(st.lists(st.sampled_from(rows), max_size=4))
    body = b"\n".join(rows)
    if rows and draw(st.booleans()):
        body += b"\n"
    data = header.encode() + b"\n" + body
    return gzip.compress(data, mtime=0) if draw(st.booleans()) else data


def nan_cells(store) -> dict[str, int]:
    """``table.column`` -> number of NaN values, for every DOUBLE column holding any."""
    out = {}
    for t in MARKET_TABLES:
        for c in TABLES[t]:
            if c.sql == "DOUBLE":
                n = store._exec(f"SELECT count(*) FROM {t} WHERE isnan({c.name})")[0][0]
                if n:
                    out[f"{t}.{c.name}"] = n
    return out


def _data_lines(data: bytes) -> int:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    body = data.split(b"\n", 1)[1] if b"\n" in data else b""
    return body.count(b"\n") + (1 if body and not body.endswith(b"\n") else 0)


def _ingest_checked(fmt: str, name: str, data: bytes, strict: bool, lines: int | None = None,
                    setup: list[tuple[str, Path]] = ()) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(data)
        # An in-memory store: the same engine and code path, without a file per example.
        with open_store(":memory:", read_only=False) as store:
            for sfmt, spath in setup:
                ingest(store, sfmt, [str(spath)])
            base_q, base_m = store.count("quarantine"), market_rows(store)
            try:
                rep = ingest(store, fmt, [str(path)])
            except IngestError as e:
                assert not strict, f"{fmt}: unexpected IngestError {e}"
                assert str(e).strip()
                # A failed load leaves nothing behind.
                assert (store.count("quarantine"), market_rows(store)) == (base_q, base_m)
                return
            assert rep.read == rep.ingested + rep.quarantined
            defined = rep.detail.get("instruments_defined", 0)
            got = store.count("quarantine") - base_q + market_rows(store) - base_m + defined
            assert got == rep.read
            assert market_rows(store) - base_m + defined == rep.ingested
            assert nan_cells(store) == {}
            if lines is not None:
                assert rep.read == lines


TARDIS = {
    "tardis-options-chain": (
        ("exchange,symbol,timestamp,local_timestamp,type,strike_price,expiration,open_interest,"
         "last_price,bid_price,bid_amount,bid_iv,ask_price,ask_amount,ask_iv,mark_price,mark_iv,"
         "underlying_index,underlying_price,delta,gamma,vega,theta,rho"),
        [st.sampled_from(["deribit", "okex-options", ""]), symbols, micros, micros,
         st.sampled_from(["call", "put", "", "x"]), numbers, micros, *[numbers] * 10,
         symbols, *[numbers] * 6]),
    "tardis-quotes": (
        "exchange,symbol,timestamp,local_timestamp,ask_amount,ask_price,bid_price,bid_amount",
        [st.sampled_from(["deribit", "binance-futures"]), symbols, micros, micros, *[numbers] * 4]),
    "tardis-trades": (
        "exchange,symbol,timestamp,local_timestamp,id,side,price,amount",
        [st.just("deribit"), symbols, micros, micros, st.sampled_from(["1", "2", "", "x,y"]),
         st.sampled_from(["buy", "sell", "unknown", "", "BUY", "??"]), numbers, numbers]),
    "tardis-derivative-ticker": (
        ("exchange,symbol,timestamp,local_timestamp,funding_timestamp,funding_rate,"
         "predicted_funding_rate,open_interest,last_price,index_price,mark_price"),
        [st.just("deribit"), symbols, micros, micros, *[numbers] * 7]),
}


def _tardis_test(fmt: str):
    header, fields = TARDIS[fmt]

    @FUZZ
    @given(data=csv_files(header, fields))
    def test(data: bytes) -> None:
        _ingest_checked(fmt, "input.csv", data, strict=True, lines=_data_lines(data))

    return test


test_fuzz_tardis_options_chain = _tardis_test("tardis-options-chain")
test_fuzz_tardis_quotes = _tardis_test("tardis-quotes")
test_fuzz_tardis_trades = _tardis_test("tardis-trades")
test_fuzz_tardis_derivative_ticker = _tardis_test("tardis-derivative-ticker")


CANONICAL = {
    "option_quotes": [nanos, nanos, symbols, *[numbers] * 10],
    "underlying_trades": [nanos, nanos, symbols, numbers, numbers,
                          st.sampled_from(["1", "-1", "0", "2", "", "x", "300"]), symbols],
    "funding": [nanos, nanos, symbols, numbers, numbers, numbers, numbers],
    "instruments": [nanos, nanos, symbols, st.sampled_from(["deribit", ""]),
                    st.sampled_from(["option", "perp", "future", "spot", "index", "swap", ""]),
                    st.sampled_from(["BTC", ""]), st.sampled_from(["USD", ""]), nanos, numbers,
                    st.sampled_from(["true", "false", "1", "0", "", "maybe"]),
                    st.sampled_from(["inverse", "linear", "", "quanto"]), numbers, numbers],
}
CANONICAL_HEADERS = {
    "option_quotes": "ts_exchange,ts_recv,instrument,bid_price,ask_price,bid_size,ask_size,"
                     "bid_iv,ask_iv,mark_price,mark_iv,underlying_price,open_interest",
    "underlying_trades": "ts_exchange,ts_recv,instrument,price,size,side,trade_id",
    "funding": "ts_exchange,ts_recv,instrument,funding_rate,interval_s,mark_price,index_price",
    "instruments": "ts_exchange,ts_recv,name,venue,kind,underlying,quote_currency,expiry_ns,"
                   "strike,is_call,settlement,contract_size,tick_size",
}


@FUZZ
@given(table=st.sampled_from(sorted(CANONICAL)), data=st.data())
def test_fuzz_canonical_csv(table: str, data) -> None:
    content = data.draw(csv_files(CANONICAL_HEADERS[table], CANONICAL[table]))
    _ingest_checked("canonical", f"{table}_fuzz.csv", content, strict=True,
                    lines=_data_lines(content),
                    setup=[("canonical", FIX / "canonical" / "instruments.csv")])


floats_or_null = st.one_of(st.none(), st.just(float("nan")),
                           st.floats(allow_nan=True, allow_infinity=True),
                           st.floats(min_value=1e-4, max_value=1e5))


@FUZZ
@given(n=st.integers(0, 20), data=st.data())
def test_fuzz_canonical_parquet(n: int, data) -> None:
    ts = data.draw(st.lists(st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1),
                                      st.integers(T0_US * 1000, T0_US * 1000 + 10**12)),
                            min_size=n, max_size=n))
    cols = {"ts_exchange": pa.array(ts, pa.int64()), "ts_recv": pa.array(ts[::-1], pa.int64()),
            "instrument": data.draw(st.lists(st.one_of(st.none(), symbols), min_size=n, max_size=n))}
    for c in ("bid_price", "ask_price", "bid_size", "mark_price", "mark_iv"):
        if data.draw(st.booleans()):
            cols[c] = pa.array(data.draw(st.lists(floats_or_null, min_size=n, max_size=n)),
                               pa.float64())
    buf = pa.BufferOutputStream()
    pq.write_table(pa.table(cols), buf)
    content = buf.getvalue().to_pybytes()
    _ingest_checked("canonical", "option_quotes_fuzz.parquet", content, strict=True, lines=n,
                    setup=[("canonical", FIX / "canonical" / "instruments.csv")])


@FUZZ
@given(n=st.integers(0, 20), data=st.data())
def test_fuzz_deribit_summary(n: int, data) -> None:
    names = data.draw(st.lists(st.one_of(st.none(), st.sampled_from(NAMES), st.text(max_size=10)),
                               min_size=n, max_size=n))
    ts = data.draw(st.lists(st.one_of(st.none(), st.integers(T0_US, T0_US + 10**10),
                                      st.integers(-(2**62), 2**62)), min_size=n, max_size=n))
    cols = {"harvest_time": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "instrument_name": pa.array(names, pa.string())}
    # Schema drift: any subset of the optional columns.
    for c in ("best_bid_price", "best_ask_price", "mark_price", "underlying_price", "mark_iv",
              "bid_iv", "open_interest"):
        if data.draw(st.booleans()):
            cols[c] = pa.array(data.draw(st.lists(floats_or_null, min_size=n, max_size=n)),
                               pa.float64())
    buf = pa.BufferOutputStream()
    pq.write_table(pa.table(cols), buf)
    _ingest_checked("deribit-summary", "BTC_2024-03-01_0000.parquet",
                    buf.getvalue().to_pybytes(), strict=False, lines=n)


@st.composite
def ws_line(draw) -> bytes:
    kind = draw(st.sampled_from(["bookTicker", "trade", "depth@0ms", "other"]))
    num = st.one_of(st.floats(min_value=1, max_value=1e5).map(lambda x: f"{x:.2f}"),
                    st.sampled_from(["0", "-1", "nan", "abc", ""]), st.just("NaN"),
                    st.floats(allow_nan=False, allow_infinity=False))
    ms = st.one_of(st.integers(T0_US // 1000, T0_US // 1000 + 10**7), st.integers(-(2**64), 2**64),
                   st.sampled_from(["x", None, 1.5]))
    d: dict = {"s": draw(st.sampled_from(["BTCUSDT", "ETHUSDT", ""]))}
    if kind == "bookTicker":
        d.update(b=draw(num), a=draw(num), B=draw(num), A=draw(num))
        if draw(st.booleans()):
            d.update(e="bookTicker", E=draw(ms), T=draw(ms))
    elif kind == "trade":
        d.update(p=draw(num), q=draw(num), t=draw(st.integers(0, 10**6)), E=draw(ms), T=draw(ms),
                 m=draw(st.sampled_from([True, False, "yes", None])))
        if draw(st.booleans()):
            d["X"] = "MARKET"
    elif kind.startswith("depth"):
        d.update(b=[[draw(num), draw(num)]], a=[])
    if draw(st.booleans()):
        del d[draw(st.sampled_from(sorted(d)))]
    recv = draw(st.one_of(st.integers(T0_US * 1000, T0_US * 1000 + 10**12).map(str),
                          st.integers(-(2**70), 2**70).map(str), st.sampled_from(["", "x"])))
    msg = json.dumps({"stream": f"btcusdt@{kind}", "data": d})
    return f"{recv} {msg}".encode()


@st.composite
def ws_book_line(draw) -> bytes:
    """A well-formed perp bookTicker whose prices and sizes may be NaN or missing: most
    ``ws_line`` draws are rejected before they reach the store, these mostly are not."""
    side = st.one_of(st.floats(min_value=1, max_value=1e5).map(lambda x: f"{x:.2f}"),
                     st.sampled_from(["nan", "NaN"]), st.just(float("nan")))
    t_ms = draw(st.integers(T0_US // 1000, T0_US // 1000 + 10**7))
    d = {"e": "bookTicker", "s": "BTCUSDT", "b": draw(side), "B": draw(side), "a": draw(side),
         "A": draw(side), "T": t_ms, "E": t_ms + 1}
    msg = json.dumps({"stream": "btcusdt@bookTicker", "data": d})  # a float NaN prints as NaN
    return f"{t_ms * 1_000_000 + draw(st.integers(0, 10**9))} {msg}".encode()


@FUZZ
@given(data=st.data())
def test_fuzz_binance_ws(data) -> None:
    lines = data.draw(st.lists(st.one_of(ws_line(), ws_line(), ws_book_line(), junk_line),
                               max_size=25))
    if lines and data.draw(st.booleans()):
        lines += data.draw(st.lists(st.sampled_from(lines), max_size=4))
    content = b"\n".join(lines) + b"\n"
    if data.draw(st.booleans()):
        content = gzip.compress(content, mtime=0)
    _ingest_checked("binance-ws", "btcusdt_fuzz.jsonl", content, strict=False)


def test_fuzz_inputs_cover_every_format() -> None:
    """Every registered format has a fuzz test above and a NaN case below."""
    from replay.ingest import FORMATS

    covered = set(TARDIS) | {"canonical", "deribit-summary", "binance-ws"}
    assert covered == set(FORMATS)
    assert {fmt for fmt, *_ in NAN_CASES} == set(FORMATS)


# -- NaN, format by format ----------------------------------------------------------------
T0_NS = T0_US * 1000


def _parquet(cols: dict[str, pa.Array]) -> bytes:
    buf = pa.BufferOutputStream()
    pq.write_table(pa.table(cols), buf)
    return buf.getvalue().to_pybytes()


def _ws(recv_ns: int, stream: str, data: str) -> str:
    return f'{recv_ns} {{"stream":"btcusdt@{stream}","data":{data}}}'


_TARDIS_ROW = "deribit,BTC-PERPETUAL,1709251200000000,1709251200020000"
#: (format, file name, content, table, column): the file has one usable row whose ``column``
#: is NaN in the source (written as NaN, not as an empty field), and possibly rows where a
#: required column is NaN.  After ingesting, ``table.column`` must hold a NULL and no NaN.
NAN_CASES = [
    ("tardis-options-chain", "chain.csv",
     (TARDIS["tardis-options-chain"][0] + "\n"
      "deribit,BTC-29MAR24-70000-C,1709251200100000,1709251200150000,call,70000,"
      "1711699200000000,120.5,0.031,NaN,nan,nan,0.0315,8.5,63.4,0.031,62.75,BTC-29MAR24,"
      "62500.5,0.31,0.00003,60.1,-90.2,10.1\n").encode(),
     "option_quotes", "bid_price"),
    ("tardis-quotes", "quotes.csv",
     (TARDIS["tardis-quotes"][0] + f"\n{_TARDIS_ROW},35000,62000.5,nan,NaN\n").encode(),
     "underlying_quotes", "bid_price"),
    ("tardis-trades", "trades.csv",
     (TARDIS["tardis-trades"][0] + f"\n{_TARDIS_ROW},T1,buy,nan,100\n"
      f"{_TARDIS_ROW[:-1]}1,T2,sell,62000,100\n").encode(),
     "underlying_trades", "price"),
    ("tardis-derivative-ticker", "ticker.csv",
     (TARDIS["tardis-derivative-ticker"][0]
      + f"\n{_TARDIS_ROW},1709280000000000,0.00012,0.0001,1200000000,62000,NaN,62001.3\n"
      ).encode(),
     "funding", "index_price"),
    ("canonical", "option_quotes_nan.csv",
     (CANONICAL_HEADERS["option_quotes"] + f"\n{T0_NS},{T0_NS + 5},BTC-29MAR24-70000-C,"
      "nan,0.0315,NaN,8.5,,,0.031,0.6275,62500.5,120\n").encode(),
     "option_quotes", "bid_price"),
    ("canonical", "option_quotes_nan.parquet",
     _parquet({"ts_exchange": pa.array([T0_NS], pa.int64()),
               "ts_recv": pa.array([T0_NS + 5], pa.int64()),
               "instrument": ["BTC-29MAR24-70000-C"],
               "bid_price": pa.array([float("nan")]), "ask_price": [0.0315],
               "mark_iv": pa.array([float("nan")])}),
     "option_quotes", "bid_price"),
    ("deribit-summary", "BTC_2024-03-01_0000.parquet",
     _parquet({"harvest_time": pa.array([T0_US], pa.timestamp("us", tz="UTC")),
               "instrument_name": ["BTC-29MAR24-70000-C"],
               "best_bid_price": pa.array([float("nan")]), "best_ask_price": [0.0315],
               "mark_price": [0.031], "mark_iv": pa.array([float("nan")]),
               "underlying_price": [62500.5]}),
     "option_quotes", "bid_price"),
    ("binance-ws", "btcusdt.jsonl",
     (_ws(T0_NS, "bookTicker", '{"e":"bookTicker","s":"BTCUSDT","b":"nan","B":"NaN",'
                                '"a":"61800.30","A":"2.5","T":1709251200001,"E":1709251200002}')
      + "\n" + _ws(T0_NS + 1, "trade", '{"e":"trade","E":1709251200003,"T":1709251200003,'
                                        '"s":"BTCUSDT","t":7,"p":"nan","q":"0.1","X":"MARKET",'
                                        '"m":true}') + "\n").encode(),
     "underlying_quotes", "bid_price"),
]


@pytest.mark.parametrize(("fmt", "name", "content", "table", "column"), NAN_CASES,
                         ids=[f"{c[0]}:{c[1]}" for c in NAN_CASES])
def test_nan_is_null_in_every_format(tmp_path, fmt, name, content, table, column) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with open_store(tmp_path / "s.duckdb", read_only=False) as store:
        ingest(store, "canonical", [str(FIX / "canonical" / "instruments.csv")])
        rep = ingest(store, fmt, [str(path)])
        assert rep.read == rep.ingested + rep.quarantined
        assert rep.ingested >= 1, rep.as_json()
        assert nan_cells(store) == {}
        nulls = store._exec(f"SELECT count(*) FROM {table} WHERE {column} IS NULL")[0][0]
        required = next(c.required for c in TABLES[table] if c.name == column)
        if required:  # a NaN where a value is required is a missing value: quarantined
            assert nulls == 0
            assert rep.reasons.get("missing", 0) >= 1, rep.as_json()
        else:
            assert nulls == 1
