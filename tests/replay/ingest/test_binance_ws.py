"""binance-ws adapter: both clocks kept, depth diffs accounted for, aggressor side."""

from __future__ import annotations

import gzip

from replay.ingest import ingest
from replay.store import open_store


def test_perp_file_both_clocks_and_accounting(shared_data, tmp_path):
    f = shared_data / "binance" / "btcusdt_perp_20240808.jsonl.gz"
    with gzip.open(f, "rt") as fh:
        lines = sum(1 for _ in fh)
    with open_store(tmp_path / "b.duckdb", read_only=False) as s:
        rep = ingest(s, "binance-ws", [str(f)])
        assert rep.read == lines == rep.ingested + rep.quarantined
        assert rep.detail["skipped_depth"] == rep.quarantined > 0
        n_q = s.count("underlying_quotes")
        n_t = s.count("underlying_trades")
        assert n_q > 60_000 and n_t > 20_000 and n_q + n_t == rep.ingested
        # Exchange stamps are ms, receive stamps ns: both present and distinct.
        differ = s._exec("SELECT count(*) FILTER (WHERE ts_recv <> ts_exchange), "
                         "count(*) FILTER (WHERE ts_exchange % 1000000 <> 0) FROM underlying_quotes")[0]
        assert differ[0] == n_q and differ[1] == 0
        assert s.instrument_ids() == {"BINANCE-BTCUSDT-PERP": 0}


def test_lines_parse_and_bad_lines_quarantine(tmp_path):
    lines = [
        '1723161255088169167 {"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":1,"s":"BTCUSDT",'
        '"b":"61800.20","B":"2.507","a":"61800.30","A":"2.510","T":1723161256313,"E":1723161256314}}',
        '1723161255088176367 {"stream":"btcusdt@trade","data":{"e":"trade","E":1723161256322,"T":1723161256321,'
        '"s":"BTCUSDT","t":5266583935,"p":"61800.30","q":"0.006","X":"MARKET","m":true}}',
        "not a line",
        '1723161255088176368 {"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","s":"BTCUSDT",'
        '"b":"61801","B":"1","a":"61800","A":"1","T":1723161256313}}',
    ]
    p = tmp_path / "x.jsonl"
    p.write_text("\n".join(lines) + "\n")
    with open_store(tmp_path / "b.duckdb", read_only=False) as s:
        rep = ingest(s, "binance-ws", [str(p)])
        assert (rep.read, rep.ingested, rep.quarantined) == (4, 2, 2)
        q = s._exec("SELECT ts_exchange, ts_recv, bid_size FROM underlying_quotes")[0]
        assert q == (1723161256313 * 10**6, 1723161255088169167, 2.507)  # T preferred over E
        assert s._exec("SELECT side, trade_id FROM underlying_trades")[0] == (-1, "5266583935")
        reasons = dict(s._exec("SELECT locator, reason FROM quarantine"))
        assert reasons["3"].startswith("unparsable") and reasons["4"].startswith("crossed book")
        assert s._exec("SELECT raw FROM quarantine WHERE locator = '3'")[0][0] == "not a line"
