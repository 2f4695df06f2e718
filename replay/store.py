"""The DuckDB market store: append in replay order, scan time windows as Arrow batches.

Every market table (see :mod:`replay.schema`) is kept physically in replay order
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
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from replay.schema import (
    AUX_DDL,
    MARKET_TABLES,
    TABLES,
    arrow_schema,
    columns,
    ddl,
    payload_columns,
)

#: Columns that identify a duplicate row per table.  Quotes and funding are duplicates only if
#: every field repeats; trades with a venue trade id are duplicates when the id repeats.
_DEDUP_KEY: dict[str, list[str]] = {
    t: [c.name for c in payload_columns(t)] for t in MARKET_TABLES if t != "instruments"
}
_DEDUP_KEY["option_trades"] = ["instrument_id", "trade_id", "ts_exchange"]
_DEDUP_KEY["underlying_trades"] = ["instrument_id", "trade_id", "ts_exchange"]

#: Plausible timestamp range: anything outside is a unit or parsing error in the source.
TS_MIN = 1_262_304_000_000_000_000  # 2010-01-01
TS_MAX = 4_102_444_800_000_000_000  # 2100-01-01


class StoreError(RuntimeError):
    """A user-facing store problem (bad path, locked file, wrong mode)."""


@dataclass
class LoadReport:
    """Row accounting for one ``ingest`` call: ``read == ingested + quarantined``."""

    format: str
    read: int = 0
    ingested: int = 0
    quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    skipped_sources: list[str] = field(default_factory=list)
    detail: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> str:
        out = {"read": self.read, "ingested": self.ingested, "quarantined": self.quarantined,
               "format": self.format, "quarantine_reasons": dict(sorted(self.reasons.items()))}
        if self.skipped_sources:
            out["skipped_sources"] = self.skipped_sources
            out["note"] = "already ingested (same sha256); nothing was added"
        out.update(self.detail)
        return json.dumps(out)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class MarketStore:
    """A market store in one DuckDB file.  Open it with :func:`open_store`."""

    def __init__(self, path: str | os.PathLike, read_only: bool = True):
        self.path = Path(path)
        self.read_only = read_only
        if read_only and not self.path.exists():
            raise StoreError(f"store {self.path} does not exist (create it with `volreplay synth` "
                             "or `volreplay ingest`)")
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as e:
            raise StoreError(f"cannot open store {self.path}: {e}") from None
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

    def instrument_ids(self) -> dict[str, int]:
        return dict(self._exec("SELECT name, instrument_id FROM instruments"))

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
            where.append("list_contains($ids, instrument_id)")
            params["ids"] = [int(i) for i in instrument_ids]
        sql = f"SELECT {', '.join(_ident(c) for c in wanted)} FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return self.con.cursor().sql(sql, params=params or None).to_arrow_reader(batch_rows)

    # -- writing ------------------------------------------------------------------------
    def _require_writable(self) -> None:
        if self.read_only:
            raise StoreError(f"store {self.path} is open read-only")

    def begin_load(self, fmt: str, source: str, sha256: str | None) -> int:
        """Start a load (one transaction, committed by :meth:`finish_load`)."""
        self._require_writable()
        self._exec("BEGIN TRANSACTION")
        self._load_id = self._exec("SELECT coalesce(max(load_id), 0) + 1 FROM loads")[0][0]
        self._load_meta = (fmt, source, sha256)
        self._report = LoadReport(format=fmt)
        return self._load_id

    def source_loaded(self, sha256: str) -> bool:
        return self._exec("SELECT count(*) FROM loads WHERE sha256 = ?", [sha256])[0][0] > 0

    def ensure_instruments(self, defs: pa.Table) -> dict[str, int]:
        """Insert instrument definitions whose ``name`` is new; return name -> id for all.

        ``defs`` has the instruments payload columns except ``instrument_id``.  An existing
        name keeps its id and its first definition.
        """
        self._require_writable()
        known = self.instrument_ids()
        if defs.num_rows and not set(defs.column("name").to_pylist()) <= known.keys():
            need = [c.name for c in payload_columns("instruments") if c.name != "instrument_id"]
            defs = _conform(defs.select([n for n in need if n in defs.column_names]),
                            arrow_schema("instruments"), drop=("instrument_id",))
            self.con.register("_defs", defs)
            self._exec(f"""
                INSERT INTO instruments
                SELECT {', '.join(_new_instrument_cols())}
                FROM (SELECT *, row_number() OVER (PARTITION BY name ORDER BY ts_recv, ts_exchange) rn
                      FROM _defs WHERE name NOT IN (SELECT name FROM instruments)) d
                WHERE rn = 1
                ORDER BY ts_recv, ts_exchange, name""")
            self.con.unregister("_defs")
            self._renumber("instruments")
            known = self.instrument_ids()
        return known

    def stage(self, table: str, rows: pa.Table) -> None:
        """Stream a chunk of canonical rows into the load's staging table.

        ``rows`` carries the payload columns plus ``_loc``, the row's locator in its source
        (line or row number), which orders ties and names the row in the quarantine.
        """
        if rows.num_rows == 0:
            return
        locs = rows.column("_loc").cast(pa.int64())
        rows = _conform(rows, arrow_schema(table)).append_column("_loc", locs)
        stage = f"_stage_{table}"
        self.con.register("_chunk", rows)
        if table not in self._staged:
            self._exec(f"CREATE TEMP TABLE {stage} AS SELECT * FROM _chunk")
            self._staged.add(table)
        else:
            self._exec(f"INSERT INTO {stage} SELECT * FROM _chunk")
        self.con.unregister("_chunk")

    def quarantine(self, source: str, locators: Sequence, reasons: Sequence[str],
                   raws: Sequence[str | None], targets: Sequence[str] | str = "") -> None:
        """Record unusable rows with their source, locator (line or row), reason and raw text."""
        if not len(locators):
            return
        n = len(locators)
        t = pa.table({
            "load_id": pa.array([self._load_id] * n, pa.int64()),
            "source": pa.array([source] * n, pa.string()),
            "locator": pa.array([str(x) for x in locators], pa.string()),
            "target": pa.array([targets] * n if isinstance(targets, str) else list(targets),
                               pa.string()),
            "reason": pa.array(list(reasons), pa.string()),
            "raw": pa.array([r if r is None or isinstance(r, str) else str(r) for r in raws], pa.string()),
        })
        self.con.register("_q", t)
        self._exec("INSERT INTO quarantine SELECT * FROM _q")
        self.con.unregister("_q")
        for r in reasons:
            key = r.split(":", 1)[0]
            self._report.reasons[key] = self._report.reasons.get(key, 0) + 1
        self._report.quarantined += n

    def add_read(self, n: int) -> None:
        self._report.read += n

    def add_ingested(self, n: int) -> None:
        """Rows ingested outside the staged market tables (instrument definition rows)."""
        self._report.ingested += n

    def finish_load(self, detail: dict | None = None) -> LoadReport:
        """Deduplicate, merge staged rows in replay order, record the load, commit."""
        rep = self._report
        fmt, source, sha = self._load_meta
        try:
            for table in sorted(self._staged):
                rep.ingested += self._merge_stage(table, source)
            if detail:
                rep.detail.update(detail)
            self._exec(
                "INSERT INTO loads VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [self._load_id, fmt, source, sha, rep.read, rep.ingested, rep.quarantined,
                 json.dumps(rep.detail)])
            if rep.read != rep.ingested + rep.quarantined:
                raise AssertionError(f"row accounting broken: read {rep.read} != ingested "
                                     f"{rep.ingested} + quarantined {rep.quarantined}")
            self._exec("COMMIT")
        except BaseException:
            self._exec("ROLLBACK")
            raise
        finally:
            for table in self._staged:
                self._exec(f"DROP TABLE IF EXISTS _stage_{table}")
            self._staged.clear()
        return rep

    def abort_load(self) -> None:
        try:
            self._exec("ROLLBACK")
        finally:
            self._staged.clear()

    def _merge_stage(self, table: str, source: str) -> int:
        stage = f"_stage_{table}"
        key = ", ".join(_DEDUP_KEY[table])
        # Duplicates within this load (keep the first occurrence) and against stored rows.
        self._exec(f"""
            CREATE OR REPLACE TEMP TABLE _dups AS
            SELECT s._loc, 'duplicate: repeats an earlier row' AS reason FROM (
                SELECT _loc, row_number() OVER (PARTITION BY {key} ORDER BY _loc) rn FROM {stage}
            ) s WHERE rn > 1
            UNION ALL
            SELECT _loc, 'duplicate: already in store' FROM {stage} s
            WHERE EXISTS (SELECT 1 FROM {table} t WHERE {_null_safe_eq(_DEDUP_KEY[table])}
                          AND t.ts_recv BETWEEN (SELECT min(ts_recv) FROM {stage})
                                            AND (SELECT max(ts_recv) FROM {stage}))""")
        ndup = self._exec("SELECT count(DISTINCT _loc) FROM _dups")[0][0]
        if ndup:
            payload = [c.name for c in payload_columns(table)]
            cols = ", ".join(f"'{c}', s.{c}" for c in payload)
            self._exec(f"""
                INSERT INTO quarantine
                SELECT {self._load_id}, ?, s._loc::VARCHAR, ?, min(d.reason),
                       to_json(struct_pack({', '.join(f'{c} := s.{c}' for c in payload)}))::VARCHAR
                FROM {stage} s JOIN _dups d USING (_loc) GROUP BY ALL""", [source, table])
            reasons = self._exec(
                "SELECT reason, count(*) FROM (SELECT _loc, min(reason) reason FROM _dups GROUP BY _loc) "
                "GROUP BY reason")
            for _r, n in reasons:
                self._report.reasons["duplicate"] = self._report.reasons.get("duplicate", 0) + n
            self._report.quarantined += ndup
            self._exec(f"DELETE FROM {stage} WHERE _loc IN (SELECT _loc FROM _dups)")
        n_new = self._exec(f"SELECT count(*) FROM {stage}")[0][0]
        if n_new == 0:
            return 0
        cols = columns(table)
        payload = ", ".join(c for c in cols if c != "seq")
        last = self._exec(
            f"SELECT ts_recv, ts_exchange, seq FROM {table} ORDER BY seq DESC LIMIT 1")
        last = last[0] if last else None
        first_new = self._exec(
            f"SELECT min(ts_recv) FROM {stage}")[0][0]
        select_cols = ", ".join("seq" if c == "seq" else c for c in cols)
        if last is None or first_new > last[0]:
            base = -1 if last is None else last[2]
            self._exec(f"""
                INSERT INTO {table}
                SELECT {select_cols} FROM (
                    SELECT {payload}, {base} + row_number() OVER (ORDER BY ts_recv, ts_exchange, _loc) AS seq
                    FROM {stage}) ORDER BY seq""")
        else:
            # Overlap with stored history: rebuild in merged order and renumber.
            self._exec(f"""
                CREATE TEMP TABLE _merged AS
                SELECT {payload}, 0 AS _src, seq AS _ord FROM {table}
                UNION ALL SELECT {payload}, 1, _loc FROM {stage}""")
            self._exec(f"DELETE FROM {table}")
            self._exec(f"""
                INSERT INTO {table}
                SELECT {select_cols} FROM (
                    SELECT {payload},
                           row_number() OVER (ORDER BY ts_recv, ts_exchange, _src, _ord) - 1 AS seq
                    FROM _merged) ORDER BY seq""")
            self._exec("DROP TABLE _merged")
        return n_new

    def append_ordered(self, table: str, rows: pa.Table) -> int:
        """Fast path for generators that already produce rows in replay order after the
        stored history (the synthetic market): assign ``seq`` and insert, no staging.

        Raises :class:`StoreError` when ``rows`` are out of order or overlap stored rows,
        because silently accepting them would break the ordered-scan guarantee.
        """
        self._require_writable()
        if rows.num_rows == 0:
            return 0
        rows = _conform(rows, arrow_schema(table))
        ts = rows.column("ts_recv").to_numpy()
        tx = rows.column("ts_exchange").to_numpy()
        order_ok = ((ts[1:] > ts[:-1]) | ((ts[1:] == ts[:-1]) & (tx[1:] >= tx[:-1]))).all()
        last = self._exec(f"SELECT max(ts_recv), max(seq) FROM {_ident(table)}")[0]
        if not order_ok or (last[0] is not None and ts[0] <= last[0]):
            raise StoreError(f"append_ordered({table}): rows are not in replay order after the "
                             "stored history; use an ingest load, which merges")
        base = -1 if last[1] is None else last[1]
        rows = rows.append_column("seq", pa.array(np.arange(base + 1, base + 1 + rows.num_rows)))
        self.con.register("_ord", rows)
        self._exec(f"INSERT INTO {table} SELECT {', '.join(columns(table))} FROM _ord")
        self.con.unregister("_ord")
        return rows.num_rows

    def _renumber(self, table: str) -> None:
        """Renumber ``seq`` of a small table in replay order (instruments only)."""
        cols = columns(table)
        payload = ", ".join(c for c in cols if c != "seq")
        self._exec(f"""
            CREATE OR REPLACE TEMP TABLE _re AS SELECT {', '.join(cols)} FROM (
                SELECT {payload}, row_number() OVER (ORDER BY ts_recv, ts_exchange, instrument_id) - 1 AS seq
                FROM {table}) ORDER BY seq""")
        self._exec(f"DELETE FROM {table}")
        self._exec(f"INSERT INTO {table} SELECT * FROM _re")
        self._exec("DROP TABLE _re")

    # -- free-form helpers --------------------------------------------------------------
    def write_aux(self, name: str, table: pa.Table, replace: bool = True) -> None:
        """Write a side table (e.g. the synthetic market's ``truth``)."""
        self._require_writable()
        self.con.register("_aux", table)
        verb = "CREATE OR REPLACE TABLE" if replace else "CREATE TABLE IF NOT EXISTS"
        self._exec(f"{verb} {_ident(name)} AS SELECT * FROM _aux")
        self.con.unregister("_aux")


def open_store(path: str | os.PathLike, read_only: bool = True) -> MarketStore:
    """Open a market store.  Read-only by default, so that parallel jobs never contend for
    DuckDB's write lock; pass ``read_only=False`` to create or append."""
    return MarketStore(path, read_only=read_only)


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise StoreError(f"invalid identifier {name!r}")
    return name


def _null_safe_eq(cols: Sequence[str]) -> str:
    return " AND ".join(f"t.{c} IS NOT DISTINCT FROM s.{c}" for c in cols)


def _new_instrument_cols() -> list[str]:
    out = []
    for c in columns("instruments"):
        if c == "seq":
            out.append("0")
        elif c == "instrument_id":
            out.append("(SELECT coalesce(max(instrument_id), -1) FROM instruments) "
                       "+ row_number() OVER (ORDER BY ts_recv, ts_exchange, name)")
        else:
            out.append(c)
    return out


def _conform(rows: pa.Table, schema: pa.Schema, drop: tuple[str, ...] = ()) -> pa.Table:
    """Cast/complete ``rows`` to ``schema``: missing optional columns become nulls."""
    fields = [f for f in schema if f.name not in drop]
    arrays = []
    for f in fields:
        if f.name in rows.column_names:
            arrays.append(rows.column(f.name).cast(f.type))
        elif f.nullable:
            arrays.append(pa.nulls(rows.num_rows, f.type))
        else:
            raise StoreError(f"missing required column {f.name!r}")
    return pa.table(arrays, names=[f.name for f in fields])
