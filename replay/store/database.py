"""The DuckDB market store: append in replay order, scan time windows as Arrow batches.

Every market table (see :mod:`replay.model.schema`) is kept physically in replay order
``(ts_recv, ts_exchange, seq)``, so an ordered scan is a plain scan.  Appends go through a
staging table:

1. adapters stream chunks into ``_stage_<table>`` (on disk, so memory stays bounded);
2. :meth:`MarketStore.finish_load` removes duplicates (within the load and against what the
   store already holds) into ``quarantine``;
3. rows that all come after the stored history are appended with continuing ``seq``; otherwise
   the table is rebuilt in merged order and ``seq`` is renumbered.  Either way ``seq`` stays
   unique and gap-free, and the whole load is one transaction.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from replay.errors import StoreError, error_line
from replay.model.schema import AUX_DDL, MARKET_TABLES, TABLES, columns, ddl
from replay.store.writing import (  # noqa: F401  (re-exported: the store's public names)
    TS_MAX,
    TS_MIN,
    LoadingMixin,
    LoadReport,
    _ident,
)

#: DuckDB writes this at bytes 8..12 of its database files (after the header block's 8-byte
#: checksum); no data file we take as input starts like that.
DUCKDB_MAGIC = b"DUCK"
_MAGIC_AT = slice(8, 12)
#: Names of data files.  DuckDB would happily create a database under such a name, which
#: later reads as "the Parquet/CSV file" to every other tool, so a new store may not use one.
DATA_FILE_SUFFIXES = frozenset({
    ".parquet", ".pq", ".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".arrow", ".feather",
    ".ipc", ".gz", ".zst", ".bz2", ".xz", ".zip",
})
_EXPECTED = ("expected a DuckDB store file (one written by `volreplay synth` or `volreplay "
             "ingest`, or a new path such as store.duckdb) or a Parquet store folder written by "
             "`volreplay export`")


def _file_kind(head: bytes, size: int) -> str:
    """A few words on what a file that is not a DuckDB database looks like, for the message."""
    if size == 0:
        return "an empty file"
    if head[:4] == b"PAR1":
        return "a Parquet file"
    if head[:2] == b"\x1f\x8b":
        return "a gzip file"
    if head[:4] == b"PK\x03\x04":
        return "a zip file"
    if head[:16] == b"SQLite format 3\x00":
        return "an SQLite database"
    if b"\x00" in head:
        return "a binary file of another kind"
    return "a text file (CSV, JSON or similar)"


def check_store_file(path: Path, create: bool) -> None:
    """Raise :class:`StoreError` unless ``path`` can be a DuckDB store file.

    Why here: ``duckdb.connect`` on an existing CSV or Parquet *file* does not fail, it opens
    an in-memory database, so an ingest into it reports rows that are never saved and a read
    fails later with a raw catalog error.  Accepted: ``:memory:``, an existing file whose
    header carries DuckDB's magic, and (when ``create``) a path that does not exist yet and is
    not named like a data file.
    """
    if str(path) == ":memory:":
        return
    if path.is_dir():
        raise StoreError(f"store {path} is a folder without a Parquet store manifest; {_EXPECTED}")
    if path.exists():
        if not path.is_file():
            raise StoreError(f"store {path} is not a regular file; {_EXPECTED}")
        try:
            with open(path, "rb") as f:
                head = f.read(16)
        except OSError as e:
            raise StoreError(f"cannot read store {path}: {e.strerror or e}") from None
        if head[_MAGIC_AT] != DUCKDB_MAGIC:
            kind = _file_kind(head, path.stat().st_size)
            raise StoreError(f"store {path} is {kind}, not a DuckDB database; {_EXPECTED}")
        return
    if create and path.suffix.lower() in DATA_FILE_SUFFIXES:
        raise StoreError(f"store {path}: a new DuckDB store cannot be named like a "
                         f"{path.suffix} data file; {_EXPECTED}")


class MarketStore(LoadingMixin):
    """A market store in one DuckDB file.  Open it with :func:`open_store`."""

    def __init__(self, path: str | os.PathLike, read_only: bool = True):
        self.path = Path(path)
        self.read_only = read_only
        if read_only and not self.path.exists():
            raise StoreError(f"store {self.path} does not exist (create it with `volreplay synth` "
                             "or `volreplay ingest`)")
        check_store_file(self.path, create=not read_only)
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.Error as e:  # locked, damaged or truncated: the file, not our SQL
            raise StoreError(f"cannot open store {self.path}: {error_line(e)}") from None
        tables = set(self.tables())
        missing = sorted(set(MARKET_TABLES) - tables)
        # Readers query the market tables by name (without them a DuckDB file that is not a
        # store fails later with a raw catalog error); a writer creates them, but never in
        # another database, such as a run's journal.
        if missing and (read_only or (tables and len(missing) == len(MARKET_TABLES))):
            self.con.close()
            raise StoreError(f"store {self.path} is a DuckDB database but not a market store "
                             f"(no table(s) {', '.join(missing)}); {_EXPECTED}")
        if not read_only:
            for t in MARKET_TABLES:
                self._exec(ddl(t))
            for stmt in AUX_DDL.values():
                self._exec(stmt)
        self._staged: set[str] = set()

    def _exec(self, sql: str, params=None) -> list[tuple]:
        """Run one statement and drain its result: DuckDB 2 results stream, and an undrained
        result blocks ``register`` and other work on the connection."""
        return self.con.execute(sql, params).fetchall() if params is not None else \
            self.con.execute(sql).fetchall()

    # -- context management -------------------------------------------------------------
    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> MarketStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------------
    def tables(self) -> list[str]:
        return [r[0] for r in self._exec(
            "SELECT table_name FROM information_schema.tables WHERE table_schema='main' "
            "ORDER BY table_name")]

    def count(self, table: str) -> int:
        return self._exec(f"SELECT count(*) FROM {_ident(table)}")[0][0]

    def time_span(self, table: str | None = None) -> tuple[int | None, int | None]:
        """(min, max) ``ts_recv`` of one market table or of all of them."""
        tabs = [table] if table else [t for t in MARKET_TABLES if t != "instruments"]
        q = " UNION ALL ".join(f"SELECT min(ts_recv) lo, max(ts_recv) hi FROM {t}" for t in tabs)
        return self._exec(f"SELECT min(lo), max(hi) FROM ({q})")[0]

    def instruments(self) -> pa.Table:
        return self.con.sql("SELECT * FROM instruments ORDER BY instrument_id").to_arrow_table()

    def fingerprint(self) -> str:
        """sha256 of the store's market content: per market table (instruments included) its
        row count and the sum of DuckDB's 64-bit hashes of its rows.  The sum does not depend
        on the physical row order and, unlike XOR, duplicated rows do not cancel.  About
        0.4 µs per row: callers that ask often memoise it by the file's identity."""
        parts = [self._exec(f"SELECT count(*), coalesce(sum(hash(x)::HUGEINT), 0)::VARCHAR "
                            f"FROM {self._scan_from(t, None, None)} x") for t in MARKET_TABLES]
        blob = json.dumps([[t, *r[0]] for t, r in zip(MARKET_TABLES, parts)])
        return hashlib.sha256(blob.encode()).hexdigest()

    def instrument_ids(self) -> dict[str, int]:
        return dict(self._exec("SELECT name, instrument_id FROM instruments"))

    def instrument_specs(self) -> dict[str, tuple[int, str, float]]:
        """name -> (id, kind, contract size) of every instrument."""
        return {n: (i, k, cs) for n, i, k, cs in self._exec(
            "SELECT name, instrument_id, kind, contract_size FROM instruments")}

    def scan(
        self,
        table: str,
        start: int | None = None,
        end: int | None = None,
        cols: Sequence[str] | None = None,
        after_seq: int | None = None,
        instrument_ids: Sequence[int] | None = None,
        batch_rows: int = 1 << 20,
    ) -> pa.RecordBatchReader:
        """Rows of ``table`` with ``start <= ts_recv < end`` (and ``seq > after_seq``) in
        replay order, as a streaming Arrow reader.  Filters are bound as parameters.

        Each call uses its own cursor, because an open DuckDB result owns its connection;
        several scans can therefore be consumed side by side (k-way merge).
        """
        sql, params = self._scan_sql(table, start, end, cols, after_seq, instrument_ids)
        return self.con.cursor().sql(sql, params=params or None).to_arrow_reader(batch_rows)

    def sampled_mid(self, instrument_id: int, start: int, end: int, step_ns: int,
                    max_age_ns: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Previous-tick sampling of one underlying's quote mid on the grid
        ``start + step, start + 2 step, ... <= end``: at each grid time ``g`` the mid of the
        last two-sided quote with ``ts_recv <= g`` (NaN before the first), by a DuckDB ASOF
        JOIN.  Causal by construction: a value at ``g`` uses only quotes received by ``g``.
        With ``max_age_ns``, a sample whose quote was received longer ago than that is NaN
        too: a hole in the tape is missing data, not a price that stood still."""
        src = self._scan_from("underlying_quotes", None, end + 1)
        sql = f"""
            WITH grid AS (SELECT range AS g FROM range($a, $b, $step)),
                 q AS (SELECT ts_recv, seq, (bid_price + ask_price) / 2 AS mid FROM {src}
                       WHERE instrument_id = $iid AND ts_recv <= $end
                         AND bid_price IS NOT NULL AND ask_price IS NOT NULL)
            SELECT grid.g, CASE WHEN grid.g - q.ts_recv <= $age THEN q.mid END AS mid
            FROM grid ASOF LEFT JOIN q ON grid.g >= q.ts_recv
            ORDER BY grid.g"""
        age = np.iinfo(np.int64).max if max_age_ns is None else int(max_age_ns)
        t = self.con.cursor().sql(sql, params={
            "a": int(start) + int(step_ns), "b": int(end) + 1, "step": int(step_ns),
            "iid": int(instrument_id), "end": int(end), "age": age}).to_arrow_table()
        return (t.column("g").to_numpy().astype(np.int64),
                t.column("mid").to_numpy(zero_copy_only=False).astype(np.float64))

    def _scan_from(self, table: str, start: int | None, end: int | None) -> str:
        """The FROM source of a scan; a store that can skip files for a window overrides it."""
        return table

    def _scan_sql(self, table: str, start: int | None, end: int | None,
                  cols: Sequence[str] | None, after_seq: int | None,
                  instrument_ids: Sequence[int] | None) -> tuple[str, dict]:
        if table not in TABLES:
            raise StoreError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
        wanted = list(cols) if cols else columns(table)
        bad = sorted(set(wanted) - set(columns(table)))
        if bad:
            raise StoreError(f"table {table} has no column(s) {bad}")
        where, params = [], {}
        if start is not None:
            where.append("ts_recv >= $start")
            params["start"] = int(start)
        if end is not None:
            where.append("ts_recv < $end")
            params["end"] = int(end)
        if after_seq is not None:
            where.append("seq > $after_seq")
            params["after_seq"] = int(after_seq)
        if instrument_ids is not None:
            # A membership mask indexed by the dense id, not list_contains/IN: DuckDB plans a
            # long IN list as a hash join, whose output loses the stored (replay) order.
            ids = [int(i) for i in instrument_ids if int(i) >= 0]
            mask = [False] * (max(ids) + 1 if ids else 1)
            for i in ids:
                mask[i] = True
            where.append("coalesce($mask[instrument_id + 1], false)")
            params["mask"] = mask
        sql = f"SELECT {', '.join(_ident(c) for c in wanted)} FROM {self._scan_from(table, start, end)}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return sql, params
