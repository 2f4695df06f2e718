"""Market stores: the DuckDB store (:mod:`~replay.store.database`, its write half in
:mod:`~replay.store.writing`), Parquet stores read in place (:mod:`~replay.store.parquet`) and
the one-screen summary of ``volreplay inspect`` (:mod:`~replay.store.summary`).

:func:`open_store` and :func:`attach_store` are the way in: they choose between the two kinds
of store by the path.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from replay.errors import StoreError
from replay.model.schema import MARKET_TABLES
from replay.store.database import _EXPECTED, MarketStore, _ident, check_store_file
from replay.store.parquet import (
    ParquetStore,
    attach_parquet,
    is_parquet_location,
    is_parquet_store,
)

__all__ = ["MarketStore", "ParquetStore", "attach_store", "open_store"]


def open_store(path: str | os.PathLike, read_only: bool = True) -> MarketStore:
    """Open a market store.  Read-only by default, so that parallel jobs never contend for
    DuckDB's write lock; pass ``read_only=False`` to create or append.

    ``path`` is a DuckDB file, or a Parquet store written by ``volreplay export``: its
    directory or a URL of it (``s3://``, ``gs://``, ``https://``, ``file://``), which is
    always read-only (:mod:`replay.store.parquet`).
    """
    if is_parquet_location(path):
        if not read_only:
            raise StoreError(_not_writable(path))
        return ParquetStore(path)
    return MarketStore(path, read_only=read_only)


def _not_writable(path: str | os.PathLike) -> str:
    """Why a directory or URL cannot be written to: only a DuckDB file can be."""
    if is_parquet_store(path):
        return (f"Parquet store {path} is read-only; load into a DuckDB store and export it "
                "again with `volreplay export`")
    return (f"{path} is a directory, not a store to write to: --db takes a DuckDB store's "
            f"file, created if missing (for example {Path(path) / 'market.duckdb'})")


def attach_store(con: duckdb.DuckDBPyConnection, path: str | os.PathLike, alias: str) -> None:
    """Make a store's tables readable as ``<alias>.<table>`` on another connection (e.g. a
    journal's, for SQL joining run results with market data), read-only."""
    if is_parquet_location(path):
        attach_parquet(con, path, alias)
        return
    if not Path(path).is_file():
        raise StoreError(f"store {path} does not exist")
    check_store_file(Path(path), create=False)
    quoted = str(path).replace("'", "''")
    con.execute(f"ATTACH '{quoted}' AS {_ident(alias)} (READ_ONLY)").fetchall()
    have = {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_catalog = ?",
        [alias]).fetchall()}
    missing = sorted(set(MARKET_TABLES) - have)
    if missing:
        con.execute(f"DETACH {_ident(alias)}").fetchall()
        raise StoreError(f"store {path} is a DuckDB database but not a market store (no "
                         f"table(s) {', '.join(missing)}); {_EXPECTED}")
