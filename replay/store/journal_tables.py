"""The tables a run's journal (:mod:`replay.engine.journal`) writes besides its event log:
each kind's payload table made from the rows added to it, and the rows it links instead.

**Linked rows.**  A run that replays a cached surface stream may keep the payload rows of the
stream's kinds (``surface_fit``, ``calibration_quotes``) where they already are, in the
stream's read-only Parquet files, instead of copying them: ``journal_links(kind, seq, ts,
wake)`` then names, per event, the ``wake`` whose rows of the file are its payload rows, in
file order; ``journal_meta``'s ``link:<kind>`` gives the file, and the kind's table is a view
of them (:func:`linked_rows_sql`) with the rows and types a copy would hold.  A journal cut
back to resume a run stores its linked rows from then on (:func:`materialize`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from replay.model.events import TYPES, EventKind
from replay.store.row_groups import RowRange

#: the table of a journal's linked rows (module docstring)
LINKS_TABLE = "journal_links"
LINKS_DDL = (f"CREATE TABLE IF NOT EXISTS {LINKS_TABLE} (kind VARCHAR, seq BIGINT, ts BIGINT, "
             "wake BIGINT)")


def linked_rows_sql(k: EventKind, parquet: str, row: bool = False) -> str:
    """The ``SELECT`` of kind ``k``'s payload table ``(seq, ts, <fields>)`` from the rows of
    ``parquet`` it links (module docstring), in seq then file order; with ``row``, instead of
    that order, each row's index in the file (``_row``) for the caller to order by."""
    fields = ", ".join(f'CAST(f."{f}" AS {TYPES[t][0]}) AS "{f}"' for f, t in k.fields)
    path = "'" + parquet.replace("'", "''") + "'"
    return (f"SELECT l.seq, l.ts, {fields}{', f.file_row_number AS _row' if row else ''} "
            f"FROM {LINKS_TABLE} AS l JOIN read_parquet({path}, file_row_number = true) AS f "
            f"ON f.wake = l.wake WHERE l.kind = '{k.name}'"
            + ("" if row else " ORDER BY l.seq, f.file_row_number"))


def linkable(path: str | os.PathLike) -> bool:
    """Whether a journal can link the files under ``path`` (:func:`linked_rows_sql`): not
    when it holds a character that DuckDB's ``read_parquet`` reads as a glob (``*``, ``?``,
    ``[``), where a view would read every file the pattern matches."""
    return not any(c in os.fspath(Path(path).resolve()) for c in "*?[")


def journal_rows(runs: list[tuple[np.ndarray, ...]], pairs: list[tuple[str, str]]
                 ) -> pa.Table:
    """Runs of ``journal`` rows (each five arrays: seq, ts, pair code, cause stream, cause seq)
    as one table; ``pairs``: the (kind, source) of each pair code, in code order."""
    seq, ts, pair, cs, cq = (np.concatenate([r[i] for r in runs]) for i in range(5))
    pair = pa.array(pair)
    kinds, sources = zip(*pairs)
    return pa.table([seq, ts, pa.array(kinds).take(pair), cs.astype(np.int8), cq,
                     pa.array(sources).take(pair)],
                    names=["seq", "ts", "kind", "cause_stream", "cause_seq", "source"])


def links_table(parts: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]) -> pa.Table:
    """``journal_links`` rows of linked events, given as ``(kind, seq, ts, wake)`` per run of
    them."""
    kinds, seq, ts, wake = zip(*parts)
    return pa.table({"kind": np.repeat(kinds, [len(s) for s in seq]),
                     "seq": np.concatenate(seq).astype(np.int64, copy=False),
                     "ts": np.concatenate(ts).astype(np.int64, copy=False),
                     "wake": np.concatenate(wake).astype(np.int64, copy=False)})


def link_view(con: duckdb.DuckDBPyConnection, k: EventKind, parquet: str) -> None:
    """Make kind ``k``'s table the view of the rows of ``parquet`` it links, and record the
    file in ``journal_meta``; its table, if it is one, must be empty."""
    kind = con.execute("SELECT table_type FROM information_schema.tables WHERE "
                       "table_name = ?", [k.table]).fetchall()
    if kind and kind[0][0] != "VIEW":
        if con.execute(f"SELECT count(*) FROM {k.table}").fetchall()[0][0]:
            raise ValueError(f"journal table {k.table} holds rows, so its events cannot be "
                             "linked")
        con.execute(f"DROP TABLE {k.table}").fetchall()
    con.execute(f"CREATE OR REPLACE VIEW {k.table} AS {linked_rows_sql(k, parquet)}").fetchall()
    con.execute("INSERT OR REPLACE INTO journal_meta VALUES (?, ?)",
                [f"link:{k.name}", parquet]).fetchall()


def materialize(con: duckdb.DuckDBPyConnection, k: EventKind, parquet: str) -> None:
    """Make kind ``k``'s view of the rows of ``parquet`` it links (:func:`link_view`) a table
    holding those rows, in the same order and types, and forget its links: the journal of a
    resumed run stores them (a run resumed with another ``calibration.cache`` fits live, and
    one whose stream was rebuilt elsewhere must not read the new file for its old events)."""
    con.execute(f"DROP VIEW IF EXISTS {k.table}").fetchall()
    con.execute(k.ddl()).fetchall()
    con.execute(f"INSERT INTO {k.table} {linked_rows_sql(k, parquet)}").fetchall()
    con.execute(f"DELETE FROM {LINKS_TABLE} WHERE kind = ?", [k.name]).fetchall()
    con.execute("DELETE FROM journal_meta WHERE key = ?", [f"link:{k.name}"]).fetchall()


def payload_table(k: EventKind, parts: list[tuple[np.ndarray, np.ndarray, Any]]) -> pa.Table:
    """The rows of :meth:`Journal.add_rows` calls as one table of ``k``'s payload table."""
    fields = pa.schema(list(k.schema())[2:])  # after seq and ts
    rows: list = []
    for _, _, r in parts:
        last = rows[-1] if rows else None
        if isinstance(r, RowRange) and isinstance(last, RowRange) and r.follows(last):
            rows[-1] = last._replace(end=r.end)  # adjacent ranges of one file: one read
        elif isinstance(r, Mapping) and isinstance(last, list):
            last.append(r)  # adjacent columns: one table (a replay splices a few rows at a time)
        else:
            rows.append([r] if isinstance(r, Mapping) else r)
    table = pa.concat_tables(
        r.table().select(fields.names) if isinstance(r, RowRange)
        else r.select(fields.names) if isinstance(r, pa.Table)
        else pa.table({f: [x for c in r for x in c[f]] for f in fields.names}, schema=fields)
        for r in rows)
    if table.num_rows < 2048 * table.column(0).num_chunks:
        table = table.combine_chunks()  # DuckDB scans many small chunks slowly
    return pa.table([np.concatenate([p[0] for p in parts]).astype(np.int64, copy=False),
                     np.concatenate([p[1] for p in parts]).astype(np.int64, copy=False),
                     *table.columns], schema=k.schema())

