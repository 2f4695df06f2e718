"""Writing into a market store: staged loads (dedup, merge in replay order) and ordered appends.

:class:`LoadingMixin` holds the write half of :class:`replay.store.database.MarketStore`; see that
module's docstring for the load protocol.  The helpers here (errors, row accounting, schema
conforming) are shared by both halves.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa

from replay.errors import StoreError
from replay.model.schema import MARKET_TABLES, arrow_schema, columns, payload_columns

#: Columns that identify a duplicate row per table.  Quotes and funding are duplicates only if
#: every field repeats; trades with a venue trade id are duplicates when the id repeats (at
#: the same exchange time), trades without one only if every field repeats (see
#: :func:`_dedup_sql`).
_DEDUP_KEY: dict[str, list[str]] = {
    t: [c.name for c in payload_columns(t)] for t in MARKET_TABLES if t != "instruments"
}
_TRADE_TABLES = ("option_trades", "underlying_trades")
for _t in _TRADE_TABLES:
    _DEDUP_KEY[_t] = ["instrument_id", "trade_id", "ts_exchange"]

#: Plausible timestamp range: anything outside is a unit or parsing error in the source.
TS_MIN = 1_262_304_000_000_000_000  # 2010-01-01
TS_MAX = 4_102_444_800_000_000_000  # 2100-01-01


@dataclass
class LoadReport:
    """Row accounting for one ``ingest`` call: ``read == ingested + quarantined``."""

    format: str
    read: int = 0
    ingested: int = 0
    quarantined: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    #: files whose sha256 matches an earlier load: not read again
    skipped_sources: list[str] = field(default_factory=list)
    #: files without rows: not read, no load recorded
    empty_sources: list[str] = field(default_factory=list)
    detail: dict[str, int] = field(default_factory=dict)

    def as_json(self) -> str:
        out = {"read": self.read, "ingested": self.ingested, "quarantined": self.quarantined,
               "format": self.format, "quarantine_reasons": dict(sorted(self.reasons.items()))}
        notes = []
        if self.skipped_sources:
            out["skipped_sources"] = self.skipped_sources
            notes.append(f"{_files(len(self.skipped_sources))} already ingested (same sha256) "
                         "skipped")
        if self.empty_sources:
            out["empty_sources"] = self.empty_sources
            notes.append(f"{_files(len(self.empty_sources))} without rows skipped")
        if notes:  # the counts say which part of the input the note is about
            out["note"] = "; ".join(notes)
        out.update(self.detail)
        return json.dumps(out)


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"



class LoadingMixin:
    """Loads and appends; mixed into :class:`replay.store.database.MarketStore`, whose ``con``,
    ``read_only``, ``_exec`` and ``instrument_ids`` it uses."""

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
        """Whether a file with this sha256 was loaded: it ingested rows, or every row it read
        was a duplicate of one in the store (e.g. the same rows, once compressed).  A load
        that ingested nothing for another reason (the wrong format, quotes before their
        instruments) does not count: its quarantine is kept, and the file loads again once
        the cause is fixed."""
        return self._exec("""
            SELECT count(*) FROM loads l WHERE sha256 = ? AND (rows_ingested > 0 OR (
                rows_read > 0 AND rows_quarantined = (
                    SELECT count(*) FROM quarantine q
                    WHERE q.load_id = l.load_id AND q.reason LIKE 'duplicate:%')))""",
                          [sha256])[0][0] > 0

    def ensure_instruments(self, defs: pa.Table) -> dict[str, int]:
        """Insert instrument definitions whose ``name`` is new; return name -> id for all.

        ``defs`` has the instruments payload columns except ``instrument_id``.  An existing
        name keeps its id and its first definition, except its time: a definition received
        earlier than the stored one (files ingested out of time order, each dating the
        instruments it names by its own rows) moves the listing back to it, so that an
        instrument a format defines from its rows is never listed after rows of it that are
        in the store.
        """
        self._require_writable()
        known = self.instrument_ids()
        if defs.num_rows and set(defs.column("name").to_pylist()) & known.keys():
            self.con.register("_defs", defs.select(["name", "ts_recv", "ts_exchange"]))
            moved = self._exec("""
                UPDATE instruments i SET ts_recv = d.ts_recv, ts_exchange = d.ts_exchange
                FROM (SELECT name, min(ts_recv) AS ts_recv,
                             arg_min(ts_exchange, ts_recv) AS ts_exchange
                      FROM _defs GROUP BY name) d
                WHERE i.name = d.name AND d.ts_recv < i.ts_recv""")
            self.con.unregister("_defs")
            if moved and moved[0][0]:
                self._renumber("instruments")
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
            self._rollback()
            raise
        finally:
            for table in self._staged:
                self._exec(f"DROP TABLE IF EXISTS _stage_{table}")
            self._staged.clear()
        return rep

    def abort_load(self) -> None:
        try:
            self._rollback()
        finally:
            self._staged.clear()

    def _rollback(self) -> None:
        """Roll the open load back.  A transaction DuckDB has already ended (an I/O error on a
        damaged file aborts it) has nothing to roll back, and the error that ended it is the
        one to report, not this one's."""
        try:
            self._exec("ROLLBACK")
        except duckdb.TransactionException:
            pass

    def _merge_stage(self, table: str, source: str) -> int:
        stage = f"_stage_{table}"
        key, same, window = _dedup_sql(table)
        # Duplicates within this load (keep the first occurrence) and against stored rows
        # (searched among those in the load's span of the key's time column)
        self._exec(f"""
            CREATE OR REPLACE TEMP TABLE _dups AS
            SELECT s._loc, 'duplicate: repeats an earlier row' AS reason FROM (
                SELECT _loc, row_number() OVER (PARTITION BY {key} ORDER BY _loc) rn FROM {stage}
            ) s WHERE rn > 1
            UNION ALL
            SELECT _loc, 'duplicate: already in store' FROM {stage} s
            WHERE EXISTS (SELECT 1 FROM {table} t WHERE {same}
                          AND t.{window} BETWEEN (SELECT min({window}) FROM {stage})
                                             AND (SELECT max({window}) FROM {stage}))""")
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



def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise StoreError(f"invalid identifier {name!r}")
    return name


def _null_safe_eq(cols: Sequence[str]) -> str:
    return " AND ".join(f"t.{c} IS NOT DISTINCT FROM s.{c}" for c in cols)


def _dedup_sql(table: str) -> tuple[str, str, str]:
    """How a load finds the duplicates of ``table``'s rows: the ``PARTITION BY`` list within
    the load, the condition that a stored row ``t`` repeats a staged row ``s``, and the time
    column that bounds the search among stored rows (a column of the key, so that the bound
    drops no duplicate: a trade recorded twice arrives at two receive times).  A trade
    without a venue id is a duplicate only of a row equal in every field: trades at one
    exchange time without ids are distinct trades, not repeats of one (its receive time is
    left out of the comparison: a trade recorded twice arrives twice)."""
    key = _DEDUP_KEY[table]
    if table not in _TRADE_TABLES:
        return ", ".join(key), _null_safe_eq(key), "ts_recv"
    payload = [c.name for c in payload_columns(table) if c.name != "ts_recv"]
    row = "to_json(struct_pack(" + ", ".join(f"{c} := {c}" for c in payload) + "))"
    return (f"{', '.join(key)}, CASE WHEN trade_id IS NULL THEN {row} END",
            f"{_null_safe_eq(key)} AND (s.trade_id IS NOT NULL OR {_null_safe_eq(payload)})",
            "ts_exchange")


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
