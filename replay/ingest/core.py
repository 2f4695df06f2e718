"""The ingestion driver shared by every adapter: resolve instruments, validate, quarantine, stage.

An adapter is a function ``read(path) -> Iterator[Chunk]`` that streams a file in bounded
chunks.  It only *parses*; the rules that decide whether a row is usable live here, once, so
that every format quarantines the same things for the same reasons:

* ``unparsable``: the adapter could not read the line or row at all, or a value does not fit
  its column's type (an overflow, a fraction for an integer);
* ``missing``: NULL or NaN in a required column;
* ``non-positive price`` / ``negative size``; for funding, ``non-finite rate`` and
  ``non-positive interval``;
* ``crossed book``: bid > ask;
* ``negative vol``: a negative or infinite ``mark_iv``;
* ``timestamp out of range``: outside 2010-01-01 .. 2100-01-01 (usually a unit error);
* ``unknown instrument``: a market row whose instrument has no definition;
* ``wrong instrument kind``: a market row whose instrument is not of its table's kind (an
  option's rows in the option tables, a perpetual's in ``funding``, anything but an
  option's in the underlying tables);
* ``duplicate``: found by the store when the load is merged.

Sizes: an adapter gives sizes in contracts of its own definition of the instrument (Tardis
divides Deribit's USD amounts by its contract size).  The store keeps the first definition of
a name, so where it holds another contract size the sizes are re-expressed in its contracts:
the notional does not depend on the order files were ingested in.

Row accounting: every line or row an adapter reads is counted once in ``Chunk.n_read`` and ends
either in a market table or in ``quarantine``.  Rows an adapter deliberately does not ingest
(e.g. Binance depth diffs) are quarantined with a ``skipped:`` reason, so the identity
``read == ingested + quarantined`` holds without exceptions.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from replay.errors import IngestError, StoreError
from replay.model.schema import arrow_schema, payload_columns
from replay.store.database import TS_MAX, TS_MIN, LoadReport, MarketStore
from replay.units import file_sha256


@dataclass
class Reject:
    locator: int
    reason: str
    raw: str | None
    target: str = ""


@dataclass
class Chunk:
    """What an adapter yields: parsed rows and the rows it could not parse.

    ``rows[table]`` holds canonical columns (see :mod:`replay.model.schema`) except that the
    instrument is given by ``instrument`` (its name) instead of ``instrument_id``, plus
    ``_loc`` (line or row number in the source).  ``raw(locators)`` returns the source text of
    rows, and is only called for the few rows that end in the quarantine, so that valid rows
    never pay for serialization.  ``instruments`` holds definitions found in this chunk.
    """

    n_read: int
    rows: dict[str, pa.Table] = field(default_factory=dict)
    instruments: pa.Table | None = None
    rejects: list[Reject] = field(default_factory=list)
    raw: Callable[[np.ndarray], list[str]] | None = None
    #: input rows that *are* instrument definitions (a canonical ``instruments`` file); they
    #: count as read and ingested.  Definitions an adapter derives from market rows (e.g.
    #: from Deribit names) are not input rows and leave this at 0.
    definition_rows: int = 0


Adapter = Callable[[Path], Iterator[Chunk]]

_PRICE_COLS = {
    "option_quotes": ["bid_price", "ask_price", "underlying_price"],
    "option_trades": ["price", "index_price"],
    "underlying_quotes": ["bid_price", "ask_price"],
    "underlying_trades": ["price"],
    "funding": ["mark_price", "index_price"],
}
#: Marks may be exactly zero: Deribit prints a mark of 0 for an option worth less than half a
#: tick, next to a live ask at the minimum tick.  Only a negative mark is an error.
_NONNEG_PRICE_COLS = {"option_quotes": ["mark_price"]}
#: the instrument kinds each market table's rows may name (the underlying tables: any but
#: an option)
_KINDS = {"option_quotes": ("option",), "option_trades": ("option",), "funding": ("perp",),
          "underlying_quotes": ("future", "perp", "spot", "index"),
          "underlying_trades": ("future", "perp", "spot", "index")}
_SIZE_COLS = {
    "option_quotes": ["bid_size", "ask_size", "open_interest"],
    "option_trades": ["size"],
    "underlying_quotes": ["bid_size", "ask_size"],
    "underlying_trades": ["size"],
    "funding": [],
}


def validate(table: str, rows: pa.Table) -> np.ndarray:
    """Return one reason per row ('' where the row is usable).  Vectorized over the chunk."""
    n = rows.num_rows
    reason = np.full(n, "", dtype=object)

    def flag(mask, why: str) -> None:
        m = np.asarray(mask, dtype=bool) & (reason == "")
        reason[m] = why

    for c in payload_columns(table):
        if c.name == "instrument_id" or not c.required:
            continue
        col = rows.column(c.name)
        bad = pc.is_null(col, nan_is_null=True) if pa.types.is_floating(col.type) else pc.is_null(col)
        flag(bad.to_numpy(zero_copy_only=False), f"missing: {c.name} is null or NaN")
    for name in ("ts_recv", "ts_exchange"):
        ts = rows.column(name).to_numpy(zero_copy_only=False).astype("float64")
        flag(~((ts >= TS_MIN) & (ts < TS_MAX)) & ~np.isnan(ts), f"timestamp out of range: {name}")
    for name in _PRICE_COLS.get(table, []):
        v = _floats(rows, name)
        flag(~np.isnan(v) & ~(v > 0), f"non-positive price: {name}")
        flag(np.isinf(v), f"non-positive price: {name} is infinite")
    for name in _NONNEG_PRICE_COLS.get(table, []):
        v = _floats(rows, name)
        flag(~np.isnan(v) & ~((v >= 0) & np.isfinite(v)), f"negative price: {name}")
    for name in _SIZE_COLS.get(table, []):
        v = _floats(rows, name)
        flag(~np.isnan(v) & ~((v >= 0) & np.isfinite(v)), f"negative size: {name}")
    if table == "option_quotes":
        v = _floats(rows, "mark_iv")
        flag(~np.isnan(v) & ~((v >= 0) & np.isfinite(v)), "negative vol: mark_iv")
    if table in ("option_quotes", "underlying_quotes"):
        b, a = _floats(rows, "bid_price"), _floats(rows, "ask_price")
        flag(~np.isnan(b) & ~np.isnan(a) & (b > a), "crossed book: bid > ask")
        flag(np.isnan(b) & np.isnan(a) & np.isnan(_floats(rows, "mark_price"))
             if table == "option_quotes" else np.isnan(b) & np.isnan(a),
             "missing: no bid, no ask and no mark")
    if table == "funding":
        rate, interval = _floats(rows, "funding_rate"), _floats(rows, "interval_s")
        flag(np.isinf(rate), "non-finite rate: funding_rate is infinite")
        flag(~np.isnan(interval) & ~((interval > 0) & np.isfinite(interval)),
             "non-positive interval: interval_s")
    if "side" in rows.column_names:
        s = rows.column("side").to_numpy(zero_copy_only=False).astype("float64")
        flag(~np.isin(s, [-1, 0, 1]) & ~np.isnan(s), "unparsable: side not in {-1, 0, 1}")
    return reason


def _in_stored_contracts(table: str, rows: pa.Table, names: list, own: dict[str, float],
                         specs: dict[str, tuple[int, str, float]]) -> pa.Table:
    """``rows``' sizes, given in contracts of the chunk's own definitions (``own``), in
    contracts of the store's (``specs``) where the two differ (module docstring)."""
    ratio = {nm: cs / specs[nm][2] for nm, cs in own.items()
             if nm in specs and cs and specs[nm][2] and cs != specs[nm][2]}
    cols = [c for c in _SIZE_COLS.get(table, []) if c in rows.column_names]
    if not ratio or not cols:
        return rows
    scale = pa.array([ratio.get(nm, 1.0) for nm in names], pa.float64())
    for c in cols:
        i = rows.column_names.index(c)
        rows = rows.set_column(i, c, pc.multiply(rows.column(c), scale))
    return rows


def _floats(rows: pa.Table, name: str) -> np.ndarray:
    if name not in rows.column_names:
        return np.full(rows.num_rows, np.nan)
    col = rows.column(name)
    return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False).astype("float64")


def _cast_to_schema(table: str, rows: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """Cast parsed columns to the canonical types; missing optional columns become null.

    Returns the table and a reason per row (``""`` for none): a value the canonical type
    cannot hold exactly (an overflow, a fraction for an integer, text that is no number) is
    nulled and its row given the reason, to be quarantined, never wrapped or truncated into a
    value that may pass validation (``side`` 257 as an int8 is 1)."""
    reason = np.full(rows.num_rows, "", dtype=object)
    arrays, names = [], []
    for f in arrow_schema(table):
        if f.name in rows.column_names:
            arr, bad = _cast_column(rows.column(f.name), f.type)
            if bad is not None:
                reason[bad & (reason == "")] = f"unparsable: {f.name} does not fit {f.type}"
            arrays.append(arr)
        else:
            arrays.append(pa.nulls(rows.num_rows, f.type))
        names.append(f.name)
    return pa.table(arrays, names=names), reason


def _cast_column(col: pa.ChunkedArray, typ: pa.DataType) -> tuple[pa.Array, np.ndarray | None]:
    """``col`` cast to ``typ`` and the rows whose values it cannot hold (None: none).  The
    adapters type their columns, so the safe cast is the rule; value by value only when it
    fails, NaN read as null (the float spelling of a missing value)."""
    try:
        return pc.cast(col, typ), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    out, bad = [], np.zeros(len(col), dtype=bool)
    for i, v in enumerate(col.to_pylist()):
        if v is None or (isinstance(v, float) and v != v):
            out.append(None)
            continue
        try:
            out.append(pa.scalar(v, col.type).cast(typ).as_py())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            out.append(None)
            bad[i] = True
    return pa.array(out, typ), bad


def ingest_files(store: MarketStore, fmt: str, adapter: Adapter, paths: list[Path],
                 progress: Callable[[str], None] | None = None) -> LoadReport:
    """Ingest each file as its own load (one transaction, skipped if already loaded).

    A file without rows (zero bytes, nothing after decompression, a header only) is listed in
    ``empty_sources`` and leaves no load behind: recorded, its sha256 would make every later
    empty file, of any format, look "already ingested".
    """
    total = LoadReport(format=fmt)
    say = progress or (lambda _m: None)
    for path in paths:
        if not path.is_file():
            raise IngestError(f"no such file: {path}")
        if path.stat().st_size == 0:  # before the adapter, so every format says the same
            total.empty_sources.append(str(path))
            say(f"{path}: empty file (no rows), skipped")
            continue
        sha = file_sha256(path)
        if store.source_loaded(sha):
            total.skipped_sources.append(str(path))
            say(f"{path}: already ingested (same sha256), skipped")
            continue
        store.begin_load(fmt, str(path), sha)
        try:
            detail: dict[str, int] = {}
            n_read = 0
            for chunk in adapter(path):
                n_read += chunk.n_read
                _ingest_chunk(store, str(path), chunk, detail)
            rep = store.finish_load(detail) if n_read else None
        except IngestError as e:
            store.abort_load()
            # say which file, once (the adapters' own messages mostly name it already)
            raise e if str(path) in str(e) else IngestError(f"{path}: {e}") from e
        except StoreError:
            store.abort_load()
            raise
        except Exception as e:  # a parser bug or an unreadable container: say which file
            store.abort_load()
            raise IngestError(f"{path}: {type(e).__name__}: {e}") from e
        if rep is None:
            store.abort_load()
            total.empty_sources.append(str(path))
            say(f"{path}: no rows, skipped")
            continue
        total.read += rep.read
        total.ingested += rep.ingested
        total.quarantined += rep.quarantined
        for k, v in rep.reasons.items():
            total.reasons[k] = total.reasons.get(k, 0) + v
        for k, v in rep.detail.items():
            total.detail[k] = total.detail.get(k, 0) + v
        say(f"{path}: read {rep.read} ingested {rep.ingested} quarantined {rep.quarantined}")
    return total


def nan_to_null(rows: pa.Table) -> pa.Table:
    """``rows`` with NaN in floating columns replaced by NULL.

    The store has one "no value", NULL.  Duplicate detection compares rows with ``IS NOT
    DISTINCT FROM``, for which NaN and NULL differ, so a NaN left in place would let the same
    quote in twice (once from a file that wrote NULL, once from one that wrote NaN) and leave
    both spellings side by side.  Applied by the driver to everything an adapter hands over,
    so no adapter has to remember it.
    """
    for i, f in enumerate(rows.schema):
        if not pa.types.is_floating(f.type):
            continue
        col = rows.column(i)
        nan = pc.is_nan(col)
        if pc.any(nan).as_py():
            rows = rows.set_column(i, f, pc.if_else(nan, pa.scalar(None, f.type), col))
    return rows


def _ingest_chunk(store: MarketStore, source: str, chunk: Chunk, detail: dict[str, int]) -> None:
    store.add_read(chunk.n_read)
    for r in chunk.rejects:
        if r.reason.startswith("skipped:"):
            key = "skipped_" + r.reason.split(":", 1)[1].strip().split()[0]
            detail[key] = detail.get(key, 0) + 1
    if chunk.rejects:
        store.quarantine(source, [r.locator for r in chunk.rejects], [r.reason for r in chunk.rejects],
                         [r.raw for r in chunk.rejects], [r.target for r in chunk.rejects])
    specs: dict[str, tuple[int, str, float]] = {}
    kind_of = np.zeros(0, dtype=object)  # by instrument id; its last entry "" for id -1
    own: dict[str, float] = {}  # the chunk's own contract sizes
    if chunk.instruments is not None and chunk.instruments.num_rows:
        store.ensure_instruments(nan_to_null(chunk.instruments))
        if "contract_size" in chunk.instruments.column_names:
            own = dict(zip(chunk.instruments.column("name").to_pylist(),
                           chunk.instruments.column("contract_size").to_pylist()))
    if chunk.definition_rows:
        store.add_ingested(chunk.definition_rows)
        detail["instruments_defined"] = detail.get("instruments_defined", 0) + chunk.definition_rows
    for table, rows in chunk.rows.items():
        if rows.num_rows == 0:
            continue
        if not specs:  # the ids, kinds and contract sizes in one query a chunk
            specs = store.instrument_specs()
            ids = {nm: s[0] for nm, s in specs.items()}
            kind_of = np.full(max(ids.values(), default=-1) + 2, "", dtype=object)
            for i, kind, _ in specs.values():
                kind_of[i] = kind
        names = rows.column("instrument").to_pylist()
        inst = np.array([ids.get(nm, -1) if nm is not None else -1 for nm in names], dtype=np.int64)
        locs = rows.column("_loc").to_numpy(zero_copy_only=False)
        body = rows.drop_columns(["instrument", "_loc"]).append_column(
            "instrument_id", pa.array(np.where(inst < 0, 0, inst).astype(np.int32)))
        body, unfit = _cast_to_schema(table, body)
        body = _in_stored_contracts(table, body, names, own, specs)
        body = nan_to_null(body)
        reason = np.where(unfit != "", unfit, validate(table, body))
        reason[(inst < 0) & (reason == "")] = "unknown instrument: no definition for this name"
        kind = kind_of[inst]  # an array lookup, not one per row in Python
        wrong = (inst >= 0) & (reason == "") & ~np.isin(kind, _KINDS[table])
        reason[wrong] = [f"wrong instrument kind: {k} in {table}" for k in kind[wrong]]
        bad = reason != ""
        if bad.any():
            idx = np.flatnonzero(bad)
            raws = (chunk.raw(locs[idx]) if chunk.raw is not None
                    else [json.dumps(r, default=str) for r in rows.take(pa.array(idx)).to_pylist()])
            store.quarantine(source, locs[idx].tolist(), reason[idx].tolist(), raws, table)
        good = pa.array(~bad)
        body = body.filter(good).append_column("_loc", pa.array(locs[~bad], pa.int64()))
        store.stage(table, body)


def resolve_paths(srcs: list[str]) -> list[Path]:
    """Expand directories (recursively, sorted) so that a whole folder can be ingested;
    instrument definition files (``instruments*``) come first."""
    out: list[Path] = []
    for s in srcs:
        p = Path(os.path.expanduser(s))
        if p.is_dir():
            out += sorted(q for q in p.rglob("*") if q.is_file() and not q.name.startswith("."))
        elif p.exists():
            out.append(p)
        else:
            raise IngestError(f"no such file or directory: {s}")
    if not out:
        raise IngestError("no input files")
    # definitions before the rows that name them (a canonical folder's funding.csv sorts
    # before its instruments.csv); the order is otherwise kept
    return sorted(out, key=lambda q: not q.name.startswith("instruments"))
