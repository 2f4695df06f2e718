from __future__ import annotations

import gzip
from pathlib import Path

from replay.model.schema import MARKET_TABLES


def market_rows(store) -> int:
    """Rows in the market tables (definitions excluded)."""
    return sum(store.count(t) for t in MARKET_TABLES if t != "instruments")


#: one Binance bookTicker line (receive stamp in ns, then the stream's JSON)
BOOK_TICKER_LINE = (
    '1723161255100000000 {"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":2,'
    '"s":"BTCUSDT","b":"60000.0","B":"1","a":"60000.1","A":"3","T":1723161255099,'
    '"E":1723161255099}}\n')


def plain_and_gzipped(folder: Path, text: str) -> tuple[Path, Path]:
    """``text`` written as ``a.jsonl`` and again, compressed, as ``a.jsonl.gz``: the same
    rows in two files of different sha256."""
    plain, packed = folder / "a.jsonl", folder / "a.jsonl.gz"
    plain.write_text(text)
    with gzip.open(packed, "wt") as fh:
        fh.write(text)
    return plain, packed
