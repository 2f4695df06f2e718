"""Tardis.dev CSV datasets: ``options_chain``, ``quotes``, ``trades``, ``derivative_ticker``.

Layouts (https://docs.tardis.dev/downloadable-csv-files; columns are found by header name, so
their order does not matter; columns not listed as used are ignored):

==================  ==========================================================================
common              ``exchange,symbol,timestamp,local_timestamp``: timestamps are integer
                    microseconds UTC and become ``ts_exchange``/``ts_recv`` in ns.  When one
                    clock is empty the other is used for both.
options_chain       ``type,strike_price,expiration,open_interest,last_price,bid_price,
                    bid_amount,bid_iv,ask_price,ask_amount,ask_iv,mark_price,mark_iv,
                    underlying_index,underlying_price,delta,gamma,vega,theta,rho`` ->
                    ``option_quotes``.  IVs are percent at Deribit and are stored as fractions.
                    Instruments are defined from ``type``/``strike_price``/``expiration`` (µs),
                    falling back to the Deribit name.
quotes              ``ask_amount,ask_price,bid_price,bid_amount`` -> ``option_quotes`` for option
                    symbols, else ``underlying_quotes``.
trades              ``id,side,price,amount`` -> ``option_trades`` or ``underlying_trades``;
                    side ``buy`` +1, ``sell`` -1, ``unknown`` or empty 0, anything else is
                    unparsable.
derivative_ticker   ``funding_timestamp,funding_rate,predicted_funding_rate,open_interest,
                    last_price,index_price,mark_price`` -> ``funding`` (rate, mark, index).
                    Rows without a ``funding_rate`` (dated futures, ticker updates before the
                    first rate) are quarantined as ``skipped: without_funding_rate``.
==================  ==========================================================================

Conventions and assumptions:

* An empty bid or ask (or a price of 0 with an amount of 0 or empty, which is how some feeds
  print an empty side) means that side is absent: a one-sided book is a valid quote.
* ``interval_s`` of funding is 8 h (28 800 s): Deribit quotes its perpetual funding rate per
  8 hours (Tardis maps ``funding_8h``/``current_funding``), and Binance USD-M perpetuals fund
  every 8 hours.  Perpetuals with other intervals must be ingested in canonical form.
* Instruments are defined here only for Deribit (``exchange == "deribit"``) names that
  :func:`replay.model.instruments.parse_deribit_name` understands and whose contract spec is known:
  inverse options (1 coin per contract, tick 0.0001 coin) and the inverse BTC/ETH perpetuals
  and futures (:func:`replay.model.instruments.deribit_spec`).  Deribit amounts for inverse
  perpetuals and futures are USD notional; they are divided by the contract size so that
  sizes are in contracts.  Any other symbol is looked up in the store by name and
  quarantined as an unknown instrument if it is not there; define such instruments first
  with a canonical ``instruments`` file.  Because the store keeps the first definition of a
  name, such a file also overrides the defaults above, sizes included (the driver
  re-expresses them in its contracts, :mod:`replay.ingest.core`).
* A symbol is routed to the option tables when it looks like an option
  (``...-<strike>-C|P``), whatever the venue.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from replay.ingest.core import Chunk, Reject
from replay.ingest.tardis_csv import CsvBlock, CsvReader, parse_float, parse_int
from replay.model.instruments import ParsedName, deribit_spec, parse_deribit_name
from replay.store.database import TS_MAX, TS_MIN

FUNDING_INTERVAL_S = 8 * 3600.0
_OPTION_SHAPE = re.compile(r"-\d+(?:[.d]\d+)?-[CP]$")
_COMMON = ["exchange", "symbol", "timestamp", "local_timestamp"]
#: Microseconds beyond this overflow int64 nanoseconds; they are out of range anyway.
_MAX_US = 9_000_000_000_000_000
_OUT_OF_RANGE_NS = np.iinfo(np.int64).max


def read_options_chain(path: Path) -> Iterator[Chunk]:
    cols = ["type", "strike_price", "expiration", "open_interest", "bid_price", "bid_amount",
            "bid_iv", "ask_price", "ask_amount", "ask_iv", "mark_price", "mark_iv",
            "underlying_price"]
    return _read(path, "tardis options_chain", _COMMON + cols, _options_chain, "option_quotes")


def read_quotes(path: Path) -> Iterator[Chunk]:
    cols = ["ask_amount", "ask_price", "bid_price", "bid_amount"]
    return _read(path, "tardis quotes", _COMMON + cols, _quotes, "underlying_quotes")


def read_trades(path: Path) -> Iterator[Chunk]:
    return _read(path, "tardis trades", _COMMON + ["id", "side", "price", "amount"], _trades,
                 "underlying_trades")


def read_derivative_ticker(path: Path) -> Iterator[Chunk]:
    cols = ["funding_rate", "index_price", "mark_price"]
    return _read(path, "tardis derivative_ticker", _COMMON + cols, _derivative_ticker, "funding")


def _read(path: Path, what: str, required: list[str],
          convert: Callable[[_Rows], Chunk], target: str) -> Iterator[Chunk]:
    # The header is checked before the first chunk is requested, so that a wrong file fails
    # at once with a message instead of after the driver has started the load.
    reader = CsvReader(path, target=target)
    try:
        reader.require(required, what)
    except Exception:
        reader.__exit__()
        raise
    return _chunks(reader, convert)


def _chunks(reader: CsvReader, convert: Callable[[_Rows], Chunk]) -> Iterator[Chunk]:
    with reader:
        for blk in reader.blocks():
            yield convert(_Rows(blk))


class _Rows:
    """One block's parsed columns plus a per-row reject reason ('' while the row is usable)."""

    def __init__(self, blk: CsvBlock):
        self.blk = blk
        self.t = blk.table
        self.n = blk.table.num_rows
        self.reason = np.full(self.n, "", dtype=object)
        self.ok = np.ones(self.n, dtype=bool)  # mirrors reason == "", cheaper to test
        # Per-symbol work is done once per distinct symbol, not once per row.
        enc = pc.dictionary_encode(self.t.column("symbol")).combine_chunks()
        self.code = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        self.names: list[str] = enc.dictionary.to_pylist()
        self.deribit = pc.fill_null(pc.equal(self.t.column("exchange"), "deribit"),
                                    False).to_numpy(zero_copy_only=False)
        self.flag(self.code < 0, "missing: symbol is empty")
        self.ts_exchange, self.ts_recv = self._clocks()

    def flag(self, mask: np.ndarray, why: str) -> None:
        m = np.asarray(mask, dtype=bool) & self.ok
        if m.any():
            self.reason[m] = why
            self.ok &= ~m

    def floats(self, name: str) -> pa.Array:
        vals, bad = parse_float(self.t.column(name))
        self.flag(bad, f"unparsable: {name} is not a number")
        return vals

    def micros(self, name: str) -> pa.Array:
        vals, bad, over = parse_int(self.t.column(name))
        self.flag(bad, f"unparsable: {name} is not an integer (microseconds)")
        us = pc.fill_null(vals, 0).to_numpy(zero_copy_only=False)
        over |= np.abs(us) > _MAX_US
        ns = np.where(over, _OUT_OF_RANGE_NS, us * 1000)
        null = vals.is_null().to_numpy(zero_copy_only=False) & ~over
        return pa.array(ns, pa.int64(), mask=null)

    def _clocks(self) -> tuple[pa.Array, pa.Array]:
        ex, rc = self.micros("timestamp"), self.micros("local_timestamp")
        return pc.coalesce(ex, rc), pc.coalesce(rc, ex)

    def in_range(self) -> np.ndarray:
        """Rows still usable whose both clocks are plausible (definitions come from these)."""
        ok = self.ok.copy()
        for ts in (self.ts_exchange, self.ts_recv):
            v = pc.fill_null(ts, 0).to_numpy(zero_copy_only=False)
            ok &= (v >= TS_MIN) & (v < TS_MAX)
        return ok

    def per_symbol(self, values: np.ndarray, default) -> np.ndarray:
        """Spread one value per distinct symbol to the rows (``default`` for empty symbols)."""
        return np.append(values, default)[self.code]

    def is_option(self) -> np.ndarray:
        shaped = np.array([_OPTION_SHAPE.search(s) is not None for s in self.names], dtype=bool)
        return self.per_symbol(shaped, False)

    def first_rows(self, mask: np.ndarray) -> dict[str, int]:
        """Name -> first row index among the rows in ``mask``."""
        idx = np.flatnonzero(mask & (self.code >= 0))
        codes, first = np.unique(self.code[idx], return_index=True)
        return {self.names[c]: int(idx[f]) for c, f in zip(codes, first)}

    def chunk(self, tables: dict[str, tuple[np.ndarray, dict[str, pa.Array]]],
              instruments: pa.Table | None, target: str) -> Chunk:
        """Assemble the chunk: ``tables[name] = (row mask, columns)``; flagged rows become
        rejects, the rest go to their table with ``instrument`` and ``_loc``."""
        keep = self.ok
        rows = {}
        for name, (mask, cols) in tables.items():
            sel = pa.array(keep & mask)
            base = {"ts_exchange": self.ts_exchange, "ts_recv": self.ts_recv,
                    "instrument": self.t.column("symbol"), **cols,
                    "_loc": pa.array(self.blk.locs, pa.int64())}
            rows[name] = pa.table(base).filter(sel)
        bad = np.flatnonzero(~keep)
        rejects = list(self.blk.rejects)
        if len(bad):
            where = np.full(self.n, target, dtype=object)
            for name, (mask, _) in tables.items():
                where[np.asarray(mask, dtype=bool)] = name
            raws = self.blk.raw(self.blk.locs[bad])
            rejects += [Reject(int(self.blk.locs[i]), str(self.reason[i]), raw, str(where[i]))
                        for i, raw in zip(bad, raws)]
        return Chunk(n_read=self.blk.n_read, rows=rows, instruments=instruments,
                     rejects=rejects, raw=self.blk.raw)


def _no_side(price: pa.Array, amount: pa.Array) -> tuple[pa.Array, pa.Array]:
    """A price of 0 with no amount is an empty side, not a zero price."""
    zero_price = pc.fill_null(pc.equal(price, 0.0), False)
    no_amount = pc.equal(pc.fill_null(amount, 0.0), 0.0)
    empty = pc.and_(zero_price, no_amount)
    null = pa.scalar(None, pa.float64())
    return pc.if_else(empty, null, price), pc.if_else(empty, null, amount)


def _options_chain(r: _Rows) -> Chunk:
    f = {c: r.floats(c) for c in ("strike_price", "open_interest", "bid_price", "bid_amount",
                                  "bid_iv", "ask_price", "ask_amount", "ask_iv", "mark_price",
                                  "mark_iv", "underlying_price")}
    expiry = r.micros("expiration")
    bid, bid_size = _no_side(f["bid_price"], f["bid_amount"])
    ask, ask_size = _no_side(f["ask_price"], f["ask_amount"])
    cols = {
        "bid_price": bid, "ask_price": ask, "bid_size": bid_size, "ask_size": ask_size,
        "bid_iv": pc.divide(f["bid_iv"], 100.0), "ask_iv": pc.divide(f["ask_iv"], 100.0),
        "mark_price": f["mark_price"], "mark_iv": pc.divide(f["mark_iv"], 100.0),
        "underlying_price": f["underlying_price"], "open_interest": f["open_interest"],
    }
    kind = pc.utf8_lower(pc.utf8_trim_whitespace(r.t.column("type")))
    is_call = pc.fill_null(pc.equal(kind, "call"), False).to_numpy(zero_copy_only=False)
    is_put = pc.fill_null(pc.equal(kind, "put"), False).to_numpy(zero_copy_only=False)
    strike = pc.fill_null(f["strike_price"], np.nan).to_numpy(zero_copy_only=False)
    exp = pc.fill_null(expiry, 0).to_numpy(zero_copy_only=False)
    usable = (r.in_range() & (is_call | is_put) & np.isfinite(strike) & (strike > 0)
              & (exp >= TS_MIN) & (exp < TS_MAX))
    overrides: dict[str, ParsedName] = {}
    for s, i in r.first_rows(usable).items():
        und = s.split("-", 1)[0]
        overrides[s] = ParsedName("option", und.split("_", 1)[0], int(exp[i]), float(strike[i]),
                                  bool(is_call[i]), "linear" if "_" in und else "inverse")
    defs, _ = _definitions(r, overrides)
    return r.chunk({"option_quotes": (np.ones(r.n, bool), cols)}, defs, "option_quotes")


def _quotes(r: _Rows) -> Chunk:
    f = {c: r.floats(c) for c in ("ask_amount", "ask_price", "bid_price", "bid_amount")}
    defs, contract = _definitions(r)
    bid, bid_size = _no_side(f["bid_price"], f["bid_amount"])
    ask, ask_size = _no_side(f["ask_price"], f["ask_amount"])
    opt = r.is_option()
    oq = {"bid_price": bid, "ask_price": ask, "bid_size": bid_size, "ask_size": ask_size}
    uq = {"bid_price": bid, "ask_price": ask,
          "bid_size": pc.divide(bid_size, contract), "ask_size": pc.divide(ask_size, contract)}
    return r.chunk({"option_quotes": (opt, oq), "underlying_quotes": (~opt, uq)}, defs,
                   "underlying_quotes")


_SIDES = {"buy": 1, "sell": -1, "unknown": 0, None: 0}


def _trades(r: _Rows) -> Chunk:
    price, amount = r.floats("price"), r.floats("amount")
    enc = pc.dictionary_encode(pc.utf8_lower(pc.utf8_trim_whitespace(r.t.column("side"))))
    enc = enc.combine_chunks()
    per_value = np.array([_SIDES.get(x, 9) for x in enc.dictionary.to_pylist()] + [0], np.int8)
    side = per_value[pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False)]
    r.flag(side == 9, "unparsable: side is not buy, sell or unknown")
    side[side == 9] = 0
    defs, contract = _definitions(r)
    opt = r.is_option()
    common = {"price": price, "side": pa.array(side, pa.int8()), "trade_id": r.t.column("id")}
    return r.chunk({"option_trades": (opt, {**common, "size": amount}),
                    "underlying_trades": (~opt, {**common, "size": pc.divide(amount, contract)})},
                   defs, "underlying_trades")


def _derivative_ticker(r: _Rows) -> Chunk:
    rate = r.floats("funding_rate")
    cols = {"funding_rate": rate, "interval_s": pa.array(np.full(r.n, FUNDING_INTERVAL_S)),
            "mark_price": r.floats("mark_price"), "index_price": r.floats("index_price")}
    empty = pc.is_null(r.t.column("funding_rate")).to_numpy(zero_copy_only=False)
    r.flag(empty, "skipped: without_funding_rate (dated futures, or no rate published yet)")
    defs, _ = _definitions(r)
    return r.chunk({"funding": (np.ones(r.n, bool), cols)}, defs, "funding")


def _definitions(r: _Rows, overrides: dict[str, ParsedName] | None = None
                 ) -> tuple[pa.Table | None, pa.Array]:
    """Deribit definitions for this block's symbols, plus each row's size divisor (the contract
    size of inverse perpetuals/futures, whose amounts are USD; 1 otherwise)."""
    overrides = overrides or {}
    # int64 whatever the nulls (to_numpy gives float64 with them, rounding the stamps)
    ex = pc.fill_null(r.ts_exchange, 0).to_numpy(zero_copy_only=False)
    rc = pc.fill_null(r.ts_recv, 0).to_numpy(zero_copy_only=False)
    recs = []
    divisor = np.ones(len(r.names))
    code_of = {nm: k for k, nm in enumerate(r.names)}
    for name, i in r.first_rows(r.in_range() & r.deribit).items():
        p = overrides.get(name) or parse_deribit_name(name)
        spec = deribit_spec(p) if p is not None else None
        if spec is None:
            continue
        if p.kind != "option":
            divisor[code_of[name]] = spec[0]
        recs.append((int(ex[i]), int(rc[i]), name, p, spec))
    contract = pa.array(np.where(r.deribit, r.per_symbol(divisor, 1.0), 1.0))
    if not recs:
        return None, contract
    defs = pa.table({
        "ts_exchange": pa.array([x[0] for x in recs], pa.int64()),
        "ts_recv": pa.array([x[1] for x in recs], pa.int64()),
        "name": [x[2] for x in recs],
        "venue": ["deribit"] * len(recs),
        "kind": [x[3].kind for x in recs],
        "underlying": [x[3].underlying for x in recs],
        "quote_currency": ["USD"] * len(recs),
        "expiry_ns": pa.array([x[3].expiry_ns for x in recs], pa.int64()),
        "strike": pa.array([x[3].strike for x in recs], pa.float64()),
        "is_call": pa.array([x[3].is_call for x in recs], pa.bool_()),
        "settlement": [x[3].settlement for x in recs],
        "contract_size": pa.array([x[4][0] for x in recs], pa.float64()),
        "tick_size": pa.array([x[4][1] for x in recs], pa.float64()),
    })
    return defs, contract
