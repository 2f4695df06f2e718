"""Canonical market-store schema: one source of truth for the DDL, the docs and the adapters.

Conventions that hold for every table
-------------------------------------
* Timestamps are int64 nanoseconds since the Unix epoch, UTC.
* ``ts_exchange`` is when the venue stamped the event; ``ts_recv`` is when the desk would
  have seen it.  Where a source has only one clock, both are equal.
* ``seq`` is a per-table, gap-free int64 assigned by the store: rows are stored in replay order
  ``(ts_recv, ts_exchange, seq)`` so that a plain scan needs no sort.
* Prices are stored as the venue quotes them.  For **inverse** (coin-margined) options the
  premium is in coin (BTC for BTC options): ``premium_coin = black76_undiscounted_usd / F``.
  Linear instruments quote in the quote currency (USD/USDT).  Underlying prices are always in
  the quote currency (USD).
* Sizes are in contracts; one contract is ``instruments.contract_size`` units of the underlying
  (1 BTC for Deribit BTC options, 10 USD notional for the Deribit perpetual).
* Implied vols are decimal fractions (0.55 means 55 %), never percent.
* Aggressor ``side`` is +1 when the buyer lifted the offer, -1 when the seller hit the bid,
  0 when unknown.

The global replay order across tables is ``(ts_recv, ts_exchange, stream priority, seq)`` with
the priorities in :data:`STREAM_PRIORITY`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa


@dataclass(frozen=True)
class Column:
    name: str
    sql: str  # DuckDB type
    doc: str
    required: bool = True  # NOT NULL in canonical input


_TS = [
    Column("ts_exchange", "BIGINT", "venue timestamp, ns UTC"),
    Column("ts_recv", "BIGINT", "receive timestamp (what the desk sees), ns UTC"),
    Column("seq", "BIGINT", "per-table replay sequence, assigned by the store"),
]

TABLES: dict[str, list[Column]] = {
    "instruments": [
        *_TS,
        Column("instrument_id", "INTEGER", "dense id, index into engine state arrays"),
        Column("name", "VARCHAR", "venue instrument name, e.g. BTC-26DEC25-90000-C"),
        Column("venue", "VARCHAR", "venue code, e.g. deribit, binance, synth"),
        Column("kind", "VARCHAR", "option | future | perp | spot | index"),
        Column("underlying", "VARCHAR", "underlying asset, e.g. BTC"),
        Column("quote_currency", "VARCHAR", "currency of underlying prices, e.g. USD"),
        Column("expiry_ns", "BIGINT", "expiry (08:00 UTC on Deribit), ns UTC; NULL for perp/spot/index", False),
        Column("strike", "DOUBLE", "strike in quote currency; NULL unless option", False),
        Column("is_call", "BOOLEAN", "true call, false put; NULL unless option", False),
        Column("settlement", "VARCHAR", "inverse (premium/PnL in coin) | linear (in quote currency)"),
        Column("contract_size", "DOUBLE", "units of underlying per contract (inverse perp: USD per contract)"),
        Column("tick_size", "DOUBLE", "minimum price increment, in the instrument's price currency"),
    ],
    "option_quotes": [
        *_TS,
        Column("instrument_id", "INTEGER", "instruments.instrument_id"),
        Column("bid_price", "DOUBLE", "best bid premium (coin if inverse); NULL when no bid", False),
        Column("ask_price", "DOUBLE", "best ask premium (coin if inverse); NULL when no ask", False),
        Column("bid_size", "DOUBLE", "contracts at best bid; NULL when unknown", False),
        Column("ask_size", "DOUBLE", "contracts at best ask; NULL when unknown", False),
        Column("bid_iv", "DOUBLE", "venue bid implied vol, fraction", False),
        Column("ask_iv", "DOUBLE", "venue ask implied vol, fraction", False),
        Column("mark_price", "DOUBLE", "venue mark premium (coin if inverse)", False),
        Column("mark_iv", "DOUBLE", "venue mark implied vol, fraction", False),
        Column("underlying_price", "DOUBLE", "venue forward/underlying for this expiry, USD", False),
        Column("open_interest", "DOUBLE", "open interest, contracts", False),
    ],
    "option_trades": [
        *_TS,
        Column("instrument_id", "INTEGER", "instruments.instrument_id"),
        Column("price", "DOUBLE", "trade premium (coin if inverse)"),
        Column("size", "DOUBLE", "contracts"),
        Column("side", "TINYINT", "aggressor: +1 buy, -1 sell, 0 unknown"),
        Column("trade_id", "VARCHAR", "venue trade id", False),
        Column("iv", "DOUBLE", "venue trade implied vol, fraction", False),
        Column("index_price", "DOUBLE", "index at trade time, USD", False),
    ],
    "underlying_quotes": [
        *_TS,
        Column("instrument_id", "INTEGER", "instruments.instrument_id (perp, future, spot or index)"),
        Column("bid_price", "DOUBLE", "best bid, USD; NULL when no bid", False),
        Column("ask_price", "DOUBLE", "best ask, USD; NULL when no ask", False),
        Column("bid_size", "DOUBLE", "contracts at best bid", False),
        Column("ask_size", "DOUBLE", "contracts at best ask", False),
    ],
    "underlying_trades": [
        *_TS,
        Column("instrument_id", "INTEGER", "instruments.instrument_id"),
        Column("price", "DOUBLE", "trade price, USD"),
        Column("size", "DOUBLE", "contracts"),
        Column("side", "TINYINT", "aggressor: +1 buy, -1 sell, 0 unknown"),
        Column("trade_id", "VARCHAR", "venue trade id", False),
    ],
    "funding": [
        *_TS,
        Column("instrument_id", "INTEGER", "instruments.instrument_id of the perpetual"),
        Column("funding_rate", "DOUBLE", "rate per funding interval, fraction (longs pay when > 0)"),
        Column("interval_s", "DOUBLE", "length of the funding interval the rate applies to, seconds"),
        Column("mark_price", "DOUBLE", "perp mark price, USD", False),
        Column("index_price", "DOUBLE", "index price, USD", False),
    ],
}

MARKET_TABLES: tuple[str, ...] = tuple(TABLES)

#: Tie-break between streams at equal (ts_recv, ts_exchange).  Definitions come first so that
#: any event can resolve its instrument; funding before prices so that accruals use the rate
#: in force; underlying before options so that an option quote sees the forward it was priced
#: off; quotes before trades because a trade prints against the book that was displayed.
STREAM_PRIORITY: dict[str, int] = {
    "instruments": 0,
    "funding": 1,
    "underlying_quotes": 2,
    "underlying_trades": 3,
    "option_quotes": 4,
    "option_trades": 5,
}

#: Bookkeeping tables (not replayed).
AUX_DDL: dict[str, str] = {
    "quarantine": """
        CREATE TABLE IF NOT EXISTS quarantine (
            load_id BIGINT, source VARCHAR, locator VARCHAR, target VARCHAR,
            reason VARCHAR, raw VARCHAR)""",
    "loads": """
        CREATE TABLE IF NOT EXISTS loads (
            load_id BIGINT, format VARCHAR, source VARCHAR, sha256 VARCHAR,
            rows_read BIGINT, rows_ingested BIGINT, rows_quarantined BIGINT, detail VARCHAR)""",
}

KINDS = ("option", "future", "perp", "spot", "index")
SETTLEMENTS = ("inverse", "linear")


def columns(table: str) -> list[str]:
    return [c.name for c in TABLES[table]]


def payload_columns(table: str) -> list[Column]:
    """Columns an adapter provides (everything but ``seq``, which the store assigns)."""
    return [c for c in TABLES[table] if c.name != "seq"]


def ddl(table: str) -> str:
    cols = ", ".join(f"{c.name} {c.sql}" for c in TABLES[table])
    return f"CREATE TABLE IF NOT EXISTS {table} ({cols})"


_ARROW = {
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "TINYINT": pa.int8(),
    "DOUBLE": pa.float64(),
    "VARCHAR": pa.string(),
    "BOOLEAN": pa.bool_(),
}


def arrow_schema(table: str, with_seq: bool = False) -> pa.Schema:
    cols = TABLES[table] if with_seq else payload_columns(table)
    return pa.schema([pa.field(c.name, _ARROW[c.sql], nullable=not c.required) for c in cols])


def markdown_docs() -> str:
    """The column reference as Markdown (rendered into datasets/README.md)."""
    out = []
    for table, cols in TABLES.items():
        out.append(f"### `{table}`\n\n| column | type | meaning |\n|---|---|---|")
        out += [f"| `{c.name}` | {c.sql} | {c.doc} |" for c in cols]
        out.append("")
    return "\n".join(out)
