"""A run journal's tables as pandas DataFrames (:mod:`replay.engine.journal` writes them), for
the analytics and reports."""

from __future__ import annotations

import os

import duckdb

from replay.store.journal_file import links


def read_tables(path: str | os.PathLike, tables: list[str],
                con: duckdb.DuckDBPyConnection | None = None) -> dict:
    """Journal tables as pandas DataFrames, one connection for all: payload tables in seq
    order, tables written after the run (``surface_dynamics``) as stored; a table the run did
    not write comes back empty.  ``con``: a connection to the journal at ``path`` already
    open (the metrics' own, :func:`replay.analytics.execution.connect`), read through and
    left open."""
    import pandas as pd

    if con is None:
        with duckdb.connect(str(path), read_only=True) as own:
            return read_tables(path, tables, own)
    links(con, path, tables)  # a linked table asked for whose file is gone: one error
    cols: dict[str, set] = {}
    # the journal's own tables, not those of a database attached beside it
    for t, c in con.execute("SELECT table_name, column_name FROM information_schema.columns "
                            "WHERE table_catalog = current_database()").fetchall():
        cols.setdefault(t, set()).add(c)
    return {t: con.execute(f"SELECT * FROM {t}"
                           + (" ORDER BY seq" if "seq" in cols[t] else "")).df()
            if t in cols else pd.DataFrame() for t in tables}


def read_table(path: str | os.PathLike, table: str):
    """One journal payload table (see :func:`read_tables`)."""
    return read_tables(path, [table])[table]
