"""``canonical``: Parquet or CSV files in volreplay's own schema, so that users can bring anything.

Which table a file holds
    The file name decides: it must start with the table name, e.g. ``instruments.csv``,
    ``option_quotes_2024-03-01.csv.gz``, ``underlying_trades.part3.parquet``.  Tables:
    ``instruments``, ``option_quotes``, ``option_trades``, ``underlying_quotes``,
    ``underlying_trades``, ``funding``.

Container
    Parquet when the file starts with ``PAR1`` (streamed by record batches), otherwise CSV,
    plain or gzip (streamed in blocks of lines, see :mod:`replay.ingest.tardis_csv`; no quoting,
    so fields cannot contain commas).  The extension does not matter.

Columns
    Exactly the columns of :mod:`replay.model.schema` for that table, in any order, except that
    market tables name the instrument by ``instrument`` (its name) instead of
    ``instrument_id``.  Required columns must be present (a clear error names the missing
    ones); optional columns may be left out.  ``seq`` and ``instrument_id`` are accepted and
    ignored (the store assigns both); any other column is an error, because a misspelt
    optional column would otherwise be dropped silently.  Units are the store's: timestamps
    int64 ns UTC (Parquet timestamp columns of any unit are converted), IVs as fractions,
    ``side`` -1/0/+1, ``is_call`` true/false (or 1/0).  Empty CSV fields and NaN are NULL.

Market rows name instruments that must already be defined (in the store or by an
``instruments`` file ingested before); others are quarantined as unknown instruments.

Row accounting for ``instruments`` files: every row is read; valid definitions count as
ingested (reported as ``instruments_defined``; an already defined name keeps its first
definition) and malformed rows or names repeated within the file are quarantined.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from replay.errors import IngestError
from replay.ingest.core import Chunk, Reject
from replay.ingest.tardis_csv import CsvReader, parse_float, parse_int
from replay.model.schema import KINDS, SETTLEMENTS, TABLES, Column
from replay.store.database import TS_MAX, TS_MIN

BATCH_ROWS = 65_536
_OUT_OF_RANGE = np.iinfo(np.int64).max
_UNIT_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_ARROW_TYPES = {"VARCHAR": pa.string(), "DOUBLE": pa.float64(), "BIGINT": pa.int64(),
                "INTEGER": pa.int64(), "TINYINT": pa.int64(), "BOOLEAN": pa.bool_()}
_TRUE = {"true": True, "t": True, "1": True, "false": False, "f": False, "0": False}


def table_for(path: Path) -> str:
    """The target table of a canonical file, from its name (see the module docstring)."""
    name = Path(path).name.lower()
    for t in sorted(TABLES, key=len, reverse=True):
        if name.startswith(t):
            return t
    raise IngestError(
        f"{path}: cannot tell which table this canonical file holds; its name must start with "
        f"one of {', '.join(TABLES)} (e.g. option_quotes_2024-03-01.csv.gz)")


def input_columns(table: str) -> list[Column]:
    """The columns a canonical file of ``table`` may carry (``instrument`` replaces the id)."""
    out = []
    for c in TABLES[table]:
        if c.name in ("seq", "instrument_id"):
            continue
        out.append(c)
    if table != "instruments":
        out.insert(2, Column("instrument", "VARCHAR", "instrument name"))
    return out


def read(path: Path) -> Iterator[Chunk]:
    table = table_for(path)
    with open(path, "rb") as f:
        is_parquet = f.read(4) == b"PAR1"
    if is_parquet:
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as e:
            raise IngestError(f"{path}: starts like Parquet but cannot be read ({e})") from None
        _check_columns(path, table, pf.schema_arrow.names)
        return _parquet_chunks(pf, table)
    reader = CsvReader(path, target=table)
    if reader.empty:
        reader.__exit__()
        return iter(())
    try:
        _check_columns(path, table, reader.header)
    except IngestError:
        reader.__exit__()
        raise
    return _csv_chunks(reader, table)


def _check_columns(path: Path, table: str, names: list[str]) -> None:
    cols = input_columns(table)
    missing = [c.name for c in cols if c.required and c.name not in names]
    if missing:
        raise IngestError(f"{path}: canonical {table} file lacks required column(s) {missing}")
    known = {c.name for c in cols} | {"seq", "instrument_id"}
    extra = [n for n in names if n not in known]
    if extra:
        raise IngestError(f"{path}: unknown column(s) {extra} for canonical {table}; allowed: "
                          f"{', '.join(c.name for c in cols)}")


def _csv_chunks(reader: CsvReader, table: str) -> Iterator[Chunk]:
    seen: set[str] = set()
    with reader:
        for blk in reader.blocks():
            yield _convert(table, blk.table, blk.locs, blk.n_read, list(blk.rejects), blk.raw, seen)


def _parquet_chunks(pf: pq.ParquetFile, table: str) -> Iterator[Chunk]:
    seen: set[str] = set()
    row0 = 0
    for batch in pf.iter_batches(batch_size=BATCH_ROWS):
        t = pa.Table.from_batches([batch])
        locs = np.arange(row0, row0 + t.num_rows, dtype=np.int64)
        yield _convert(table, t, locs, t.num_rows, [], _json_raw(t, row0), seen)
        row0 += t.num_rows


def _json_raw(t: pa.Table, row0: int):
    def raw(at: np.ndarray) -> list[str]:
        idx = pa.array(np.asarray(at, dtype=np.int64) - row0)
        return [json.dumps(r, default=str, sort_keys=True) for r in t.take(idx).to_pylist()]
    return raw


def _convert(table: str, t: pa.Table, locs: np.ndarray, n_read: int, rejects: list[Reject],
             raw, seen: set[str]) -> Chunk:
    n = t.num_rows
    reason = np.full(n, "", dtype=object)

    def flag(mask, why: str) -> None:
        m = np.asarray(mask, dtype=bool) & (reason == "")
        reason[m] = why

    cols: dict[str, pa.Array] = {}
    for c in input_columns(table):
        if c.name in t.column_names:
            cols[c.name] = _typed(t.column(c.name), c, flag)
    if "side" in cols:
        s = pc.fill_null(cols["side"], 0).to_numpy(zero_copy_only=False)
        flag(~np.isin(s, [-1, 0, 1]), "unparsable: side not in {-1, 0, 1}")
        cols["side"] = pc.cast(pc.if_else(pa.array(np.isin(s, [-1, 0, 1])), cols["side"], 0), pa.int8())
    if table == "instruments":
        _check_definitions(cols, flag)
        _flag_repeats(cols["name"].to_pylist(), reason, seen)
    keep = reason == ""
    bad = np.flatnonzero(~keep)
    if len(bad):
        rejects += [Reject(int(locs[i]), str(reason[i]), r, table)
                    for i, r in zip(bad, raw(locs[bad]))]
    body = pa.table({**cols, "_loc": pa.array(locs, pa.int64())}).filter(pa.array(keep))
    if table == "instruments":
        defs = body.drop_columns(["_loc"])
        return Chunk(n_read=n_read, instruments=defs if defs.num_rows else None,
                     rejects=rejects, raw=raw, definition_rows=defs.num_rows)
    return Chunk(n_read=n_read, rows={table: body}, rejects=rejects, raw=raw)


def _typed(col: pa.ChunkedArray, c: Column, flag) -> pa.Array:
    """Convert one input column (CSV strings or typed Parquet) to the schema type of ``c``;
    values that cannot be converted are flagged ``unparsable``."""
    col = col.combine_chunks()
    typ = col.type
    why = f"unparsable: {c.name} is not a valid {c.sql.lower()}"
    if pa.types.is_dictionary(typ):
        col = col.cast(typ.value_type)
        typ = col.type
    if pa.types.is_null(typ):  # an all-null Parquet column
        return pa.nulls(len(col), _ARROW_TYPES[c.sql])
    is_str = pa.types.is_string(typ) or pa.types.is_large_string(typ)
    if c.sql == "VARCHAR":
        if is_str or pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_boolean(typ):
            return pc.cast(col, pa.string())
    elif c.sql == "DOUBLE":
        if is_str:
            vals, bad = parse_float(col)
            flag(bad, why)
            return vals
        if pa.types.is_decimal(typ):
            # through the decimal's text, which parses correctly rounded (a direct cast is
            # not: 0.011 came out 0.011000000000000001, and the row was not a duplicate of
            # the same quote from a CSV)
            vals, _ = parse_float(pc.cast(col, pa.string()))
            return vals
        if pa.types.is_floating(typ) or pa.types.is_integer(typ):
            vals = pc.cast(col, pa.float64(), safe=False)
            return pc.if_else(pc.is_nan(vals), pa.scalar(None, pa.float64()), vals)
    elif c.sql in ("BIGINT", "INTEGER", "TINYINT"):
        if is_str:
            vals, bad, over = parse_int(col)
            flag(bad, why)
            return _clip(vals, over)
        if pa.types.is_timestamp(typ):
            vals = pc.cast(col, pa.int64())
            k = _UNIT_NS[typ.unit]
            v = pc.fill_null(vals, 0).to_numpy(zero_copy_only=False)
            over = np.abs(v) > _OUT_OF_RANGE // k
            return _clip(pa.array(np.where(over, 0, v) * k, mask=vals.is_null().to_numpy(
                zero_copy_only=False)), over)
        if pa.types.is_integer(typ):
            if pa.types.is_unsigned_integer(typ):
                over = pc.fill_null(pc.greater(col.cast(pa.uint64()), _OUT_OF_RANGE), False)
                vals = pc.cast(pc.if_else(over, 0, col.cast(pa.uint64())), pa.int64())
                return _clip(vals, over.to_numpy(zero_copy_only=False))
            return pc.cast(col, pa.int64())
        if pa.types.is_floating(typ):
            v = pc.fill_null(col, 0.0).to_numpy(zero_copy_only=False).astype("float64")
            # NaN is a missing value here (pandas writes an integer column's nulls as NaN)
            null = col.is_null().to_numpy(zero_copy_only=False) | np.isnan(v)
            ok = np.isfinite(v) & (v == np.round(v))
            flag(~ok & ~null, why)
            over = ok & (np.abs(v) >= 9.2e18)
            iv = np.where(ok & ~over, v, 0).astype(np.int64)
            # a null stays null, and validation reports it as missing
            return _clip(pa.array(iv, mask=(~ok & ~over) | null), over)
    elif c.sql == "BOOLEAN":
        if pa.types.is_boolean(typ):
            return col
        if pa.types.is_integer(typ):
            return pc.not_equal(col, 0)
        if is_str:
            low = [None if x is None else _TRUE.get(x.strip().lower(), "bad") for x in col.to_pylist()]
            flag(np.array([x == "bad" for x in low], dtype=bool), why)
            return pa.array([None if x == "bad" else x for x in low], pa.bool_())
    raise IngestError(f"column {c.name!r} has type {typ}, expected {c.sql.lower()} "
                      "(or text holding one)")


def _clip(vals: pa.Array, over: np.ndarray) -> pa.Array:
    """Well-formed integers too large for int64 become a value no range check accepts."""
    if not over.any():
        return vals
    return pc.if_else(pa.array(over), pa.scalar(_OUT_OF_RANGE, pa.int64()), vals)


def _check_definitions(cols: dict[str, pa.Array], flag) -> None:
    """Rules for instrument definitions (the driver validates only market rows)."""
    n = len(cols["name"])

    def null(name: str) -> np.ndarray:
        if name not in cols:
            return np.ones(n, dtype=bool)
        return pc.is_null(cols[name], nan_is_null=True).to_numpy(zero_copy_only=False)

    def num(name: str) -> np.ndarray:
        if name not in cols:
            return np.full(n, np.nan)
        return pc.cast(cols[name], pa.float64(), safe=False).to_numpy(zero_copy_only=False).astype("float64")

    for name in ("name", "venue", "kind", "underlying", "quote_currency", "settlement",
                 "contract_size", "tick_size", "ts_exchange", "ts_recv"):
        flag(null(name), f"missing: {name} is null or NaN")
    for name in ("ts_exchange", "ts_recv"):
        v = num(name)
        flag(~((v >= TS_MIN) & (v < TS_MAX)), f"timestamp out of range: {name}")
    kind = cols["kind"].to_pylist()
    flag(np.array([k not in KINDS for k in kind], dtype=bool),
         f"unparsable: kind must be one of {', '.join(KINDS)}")
    flag(np.array([s not in SETTLEMENTS for s in cols["settlement"].to_pylist()], dtype=bool),
         f"unparsable: settlement must be one of {', '.join(SETTLEMENTS)}")
    for name in ("contract_size", "tick_size"):
        v = num(name)
        flag(~(np.isfinite(v) & (v > 0)), f"non-positive: {name} must be > 0")
    option = np.array([k == "option" for k in kind], dtype=bool)
    flag(option & (null("expiry_ns") | null("strike") | null("is_call")),
         "missing: an option needs expiry_ns, strike and is_call")
    strike = num("strike")
    flag(option & ~(np.isfinite(strike) & (strike > 0)), "non-positive: strike must be > 0")
    exp = num("expiry_ns")
    flag(~np.isnan(exp) & ~((exp >= TS_MIN) & (exp < TS_MAX)), "timestamp out of range: expiry_ns")


def _flag_repeats(names: list, reason: np.ndarray, seen: set[str]) -> None:
    """A name already defined by an earlier valid row of this file is a duplicate row."""
    for i, nm in enumerate(names):
        if reason[i] != "" or nm is None:
            continue
        if nm in seen:
            reason[i] = "duplicate: name defined earlier in this file"
        else:
            seen.add(nm)


def write_canonical_csv(directory: Path, rows: int, seed: int = 0,
                        batch_rows: int = 1_000_000) -> list[Path]:
    """Write a synthetic canonical data set for benchmarks: ``instruments.csv`` (200 Deribit
    BTC options) and ``option_quotes.csv`` with ``rows`` quotes at 1 ms steps from
    2024-03-01, in batches so that memory stays bounded.  Returns the paths in ingest order.

    The numbers are random but plausible (positive, uncrossed); they are load-test input,
    not a market model (see :mod:`replay.synth` for that).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    t0 = 1_709_251_200_000_000_000
    expiries = [("29MAR24", 1_711_699_200_000_000_000), ("26APR24", 1_714_118_400_000_000_000),
                ("31MAY24", 1_717_142_400_000_000_000), ("28JUN24", 1_719_561_600_000_000_000)]
    strikes = np.arange(50_000, 75_000, 1_000)
    inst = [(f"BTC-{code}-{k}-{cp}", exp, float(k), cp == "C")
            for code, exp in expiries for k in strikes for cp in "CP"]
    defs = pa.table({
        "ts_exchange": pa.array([t0] * len(inst), pa.int64()),
        "ts_recv": pa.array([t0] * len(inst), pa.int64()),
        "name": [x[0] for x in inst], "venue": ["deribit"] * len(inst),
        "kind": ["option"] * len(inst), "underlying": ["BTC"] * len(inst),
        "quote_currency": ["USD"] * len(inst),
        "expiry_ns": pa.array([x[1] for x in inst], pa.int64()),
        "strike": [x[2] for x in inst], "is_call": [x[3] for x in inst],
        "settlement": ["inverse"] * len(inst), "contract_size": [1.0] * len(inst),
        "tick_size": [0.0001] * len(inst),
    })
    p_inst = directory / "instruments.csv"
    _write_csv(p_inst, [defs])
    names = pa.array([x[0] for x in inst], pa.string())

    def batches() -> Iterator[pa.Table]:
        for start in range(0, rows, batch_rows):
            m = min(batch_rows, rows - start)
            ts = t0 + (np.arange(start, start + m, dtype=np.int64) + 1) * 1_000_000
            mid = np.round(rng.uniform(0.001, 0.2, m), 4)
            half = np.maximum(np.round(mid * rng.uniform(0.02, 0.2, m), 4), 0.0001)
            iv = rng.uniform(0.4, 0.9, m)
            yield pa.table({
                "ts_exchange": ts, "ts_recv": ts + rng.integers(1_000, 50_000, m),
                "instrument": names.take(pa.array(rng.integers(0, len(inst), m))),
                "bid_price": mid - half, "ask_price": mid + half,
                "bid_size": rng.integers(1, 50, m).astype(float),
                "ask_size": rng.integers(1, 50, m).astype(float),
                "bid_iv": iv - 0.01, "ask_iv": iv + 0.01, "mark_price": mid, "mark_iv": iv,
                "underlying_price": np.round(62_000 + rng.normal(0, 200, m), 2),
                "open_interest": rng.integers(0, 500, m).astype(float),
            })

    p_q = directory / "option_quotes.csv"
    _write_csv(p_q, batches())
    return [p_inst, p_q]


def _write_csv(path: Path, tables) -> None:
    with open(path, "wb") as f:
        header = False
        for t in tables:
            if not header:
                f.write((",".join(t.column_names) + "\n").encode())
                header = True
            pacsv.write_csv(t, f, pacsv.WriteOptions(include_header=False, quoting_style="none"))
