"""The journal: an append-only log of every derived event, with typed payload tables and a
running hash.

Layout of a run's ``journal.duckdb``
------------------------------------
* ``journal(seq, ts, kind, cause_stream, cause_seq, source)``: one row per derived event.
  ``cause_stream``/``cause_seq`` name the last market event folded when it was decided (stream
  code of :data:`replay.model.schema.STREAM_PRIORITY` and that table's ``seq``; -1/-1 before any).
* one payload table per event kind, ``(seq, ts, <declared fields>)``.  An event has one payload
  row (``fills``) or several (``calibration_quotes``: one row per quote of a fit).

The kinds (declared with :func:`replay.model.events.register_kind`), their canonical bytes and
the running hash are defined in :mod:`replay.model.events`.  Appends are buffered and written
as Arrow batches; :func:`recompute_hash` recomputes the hash from the stored tables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from replay.model.events import (
    H0,
    HEAD,
    KINDS,
    EventKind,
    canonical_bytes,
    chain,
    columns_of,
    length_prefixed,
    payload_bytes,
)


class Journal:
    """Buffered writer of ``journal.duckdb`` with the running hash.

    Rows are written to the database every ``flush_rows`` buffered rows, in a transaction that
    commits once it holds ``commit_rows`` rows, and at every :meth:`flush` (snapshots, the end).
    A resumed run cuts the journal back to its snapshot, so what a crash loses between commits
    is never needed; the large transactions let DuckDB write the tables' row groups to the file
    directly instead of into the write-ahead log and again at the checkpoint (on a cached
    synthetic day: 0.25 s instead of 1.6 s)."""

    def __init__(self, path: str | os.PathLike, flush_rows: int = 65536,
                 commit_rows: int = 1 << 20, memory_limit: str = "64MB"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(self.path))
        # DuckDB keeps the blocks it writes cached up to its memory limit (80 % of RAM by
        # default), so the writer's memory grew with the journal (93 MB after the large bench
        # store's 96 hours); an append needs one flush of rows at a time.
        self.con.execute("SET memory_limit = ?", [memory_limit]).fetchall()
        # The default 16 MB WAL threshold made about one commit in three a checkpoint that
        # rewrote the tables' last row groups: the checkpoint runs once, at close.
        self.con.execute("SET checkpoint_threshold = '1GB'").fetchall()
        self.flush_rows, self.commit_rows = flush_rows, commit_rows
        self._uncommitted = 0  # rows written in the open transaction (0: none open)
        self.seq = -1  # last appended seq
        self.hash = H0
        self._main: list[tuple] = []
        self._buf: dict[str, dict[str, list]] = {}
        self._blocks: dict[str, list[tuple[int, int, pa.Table, int, int]]] = {}
        self._prefixes: dict[tuple[str, str], bytes] = {}
        self._buffered = 0
        self._tables: set[str] = set()
        self._ensure_tables()

    def _ensure_tables(self) -> None:
        self.con.execute("CREATE TABLE IF NOT EXISTS journal (seq BIGINT, ts BIGINT, kind VARCHAR,"
                         " cause_stream TINYINT, cause_seq BIGINT, source VARCHAR)").fetchall()
        for k in list(KINDS.values()):
            self.con.execute(k.ddl()).fetchall()
            self._tables.add(k.table)

    @property
    def hash_hex(self) -> str:
        return self.hash.hex()

    def append(self, kind: str, ts: int, cause: tuple[int, int], source: str = "",
               rows: Mapping[str, object] | None = None, payload: bytes | None = None) -> int:
        """Append one event.  ``rows`` maps each declared field to a scalar (one payload row)
        or to equal-length sequences (several rows).  ``payload``, when given, is the
        event's :func:`payload_bytes`, computed once by a caller that appends the same payload
        often.  Returns the event's seq."""
        k = KINDS.get(kind)
        if k is None:
            raise KeyError(f"unknown journal event kind {kind!r}; declare it with register_kind")
        n, cols = columns_of(k, dict(rows or {}))
        return self.append_columns(k, ts, cause, source, n, cols,
                                   payload if payload is not None else payload_bytes(k, cols))

    def append_columns(self, k: EventKind, ts: int, cause: tuple[int, int], source: str,
                       n: int, cols: Mapping[str, list], payload: bytes) -> int:
        """:meth:`append` of ``n`` rows already checked by :func:`columns_of`, with their
        payload bytes: a caller that appends the same rows often checks them once."""
        seq = self._chain(k, int(ts), cause, source, payload)
        buf = self._buf.setdefault(k.name, {"seq": [], "ts": [], **{f: [] for f, _ in k.fields}})
        buf["seq"] += [seq] * n
        buf["ts"] += [int(ts)] * n
        for f, _ in k.fields:
            buf[f] += cols[f]
        self._count(n)
        return seq

    def append_block(self, kind: str, ts: int, cause: tuple[int, int], source: str,
                     payload: bytes, table: pa.Table, i0: int, i1: int) -> int:
        """Append one event whose payload rows are rows ``[i0, i1)`` of ``table`` (which has
        every declared field, with the declared types) and whose :func:`payload_bytes` are
        ``payload``: replaying recorded events costs no per-row Python."""
        k = KINDS.get(kind)
        if k is None:
            raise KeyError(f"unknown journal event kind {kind!r}; declare it with register_kind")
        seq = self._chain(k, int(ts), cause, source, payload)
        self._blocks.setdefault(k.name, []).append((seq, int(ts), table, i0, i1))
        self._count(i1 - i0)
        return seq

    def _chain(self, k: EventKind, ts: int, cause: tuple[int, int], source: str,
               payload: bytes) -> int:
        self.seq += 1
        seq = self.seq
        cs, cq = int(cause[0]), int(cause[1])
        prefix = self._prefixes.get((k.name, source))
        if prefix is None:
            prefix = length_prefixed(k.name) + length_prefixed(source)
            self._prefixes[(k.name, source)] = prefix
        self.hash = chain(self.hash, HEAD.pack(seq, ts, cs, cq) + prefix + payload)
        self._main.append((seq, ts, k.name, cs, cq, source))
        return seq

    def _count(self, n: int) -> None:
        self._buffered += n + 1
        if self._buffered >= self.flush_rows:
            self._write()
            if self._uncommitted >= self.commit_rows:
                self._commit()

    def flush(self) -> None:
        """Write the buffered rows and commit."""
        self._write()
        self._commit()

    def _commit(self) -> None:
        if self._uncommitted:
            self.con.execute("COMMIT").fetchall()
            self._uncommitted = 0

    def _write(self) -> None:
        """Write the buffered rows (one Arrow insert per table) in the open transaction."""
        if not self._main:
            return
        if not self._uncommitted:
            self.con.execute("BEGIN TRANSACTION").fetchall()
        self._uncommitted += self._buffered
        main = pa.table({"seq": pa.array([r[0] for r in self._main], pa.int64()),
                         "ts": pa.array([r[1] for r in self._main], pa.int64()),
                         "kind": pa.array([r[2] for r in self._main], pa.string()),
                         "cause_stream": pa.array([r[3] for r in self._main], pa.int8()),
                         "cause_seq": pa.array([r[4] for r in self._main], pa.int64()),
                         "source": pa.array([r[5] for r in self._main], pa.string())})
        self._insert("journal", main)
        for name in {**self._buf, **self._blocks}:
            k = KINDS[name]
            if k.table not in self._tables:  # a kind declared after the journal was opened
                self.con.execute(k.ddl()).fetchall()
                self._tables.add(k.table)
            if name in self._buf:
                self._insert(k.table, pa.table(self._buf[name], schema=k.schema()))
            for data in _block_tables(k, self._blocks.get(name, [])):
                self._insert(k.table, data)
        self._main, self._buf, self._blocks, self._buffered = [], {}, {}, 0

    def _insert(self, table: str, data: pa.Table) -> None:
        self.con.register("_jbuf", data)
        self.con.execute(f"INSERT INTO {table} SELECT * FROM _jbuf").fetchall()
        self.con.unregister("_jbuf")

    def truncate_after(self, seq: int, running_hash: bytes) -> None:
        """Drop every event after ``seq`` (resume from a snapshot taken at that seq)."""
        self.flush()
        n = self.con.execute("SELECT count(*) FROM journal WHERE seq <= ?", [seq]).fetchall()[0][0]
        if n != seq + 1:
            raise RuntimeError(f"journal {self.path} holds {n} events up to seq {seq}; "
                               "it does not belong to this snapshot")
        self.con.execute("BEGIN TRANSACTION").fetchall()
        self._ensure_tables()
        for t in ["journal", *(k.table for k in KINDS.values())]:
            self.con.execute(f"DELETE FROM {t} WHERE seq > ?", [seq]).fetchall()
        self.con.execute("COMMIT").fetchall()
        self.seq, self.hash = seq, running_hash

    def close(self) -> None:
        self.flush()
        self.con.close()


def _block_tables(k: EventKind, blocks: list[tuple[int, int, pa.Table, int, int]]):
    """The payload rows of :meth:`Journal.append_block` events as one Arrow table.  Blocks
    that continue one another in their source table (a replayed stream's consecutive events)
    are one zero-copy slice; the slices are concatenated."""
    fields = [f for f, _ in k.fields]
    seq = np.array([b[0] for b in blocks], np.int64)
    ts = np.array([b[1] for b in blocks], np.int64)
    lens = np.array([b[4] - b[3] for b in blocks], np.int64)
    parts, start = [], 0
    for j in range(1, len(blocks) + 1):
        run_ends = j == len(blocks) or blocks[j][2] is not blocks[start][2] \
            or blocks[j][3] != blocks[j - 1][4]
        if run_ends:
            table, i0, i1 = blocks[start][2], blocks[start][3], blocks[j - 1][4]
            if i1 > i0:
                parts.append(table.slice(i0, i1 - i0).select(fields))
            start = j
    if not parts:
        return
    rows = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    yield pa.table([pa.array(np.repeat(seq, lens)), pa.array(np.repeat(ts, lens)),
                    *rows.columns], schema=k.schema())


def recompute_hash(path: str | os.PathLike) -> str:
    """Recompute the running hash from a stored journal (a determinism audit)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        main = con.sql("SELECT * FROM journal ORDER BY seq").fetchall()
        payload: dict[str, dict[int, dict[str, list]]] = {}
        for name in {r[2] for r in main}:
            k = KINDS[name]
            fields = [f for f, _ in k.fields]
            rows = con.sql(f"SELECT seq, {', '.join(fields) or '1'} FROM {k.table} "
                           f"WHERE seq IN (SELECT seq FROM journal WHERE kind = $k) "
                           f"ORDER BY seq, rowid", params={"k": name}).fetchall()
            per: dict[int, dict[str, list]] = {}
            for r in rows:
                d = per.setdefault(r[0], {f: [] for f in fields})
                for f, x in zip(fields, r[1:]):
                    d[f].append(float("nan") if x is None and dict(k.fields)[f] == "float" else x)
            payload[name] = per
    finally:
        con.close()
    h = H0
    for seq, ts, kind, cs, cq, source in main:
        k = KINDS[kind]
        cols = payload[kind].get(seq, {f: [] for f, _ in k.fields})
        h = chain(h, canonical_bytes(seq, ts, k, cs, cq, source or "", cols))
    return h.hex()


def read_tables(path: str | os.PathLike, tables: list[str]) -> dict:
    """Journal tables as pandas DataFrames, one connection for all: payload tables in seq
    order, tables written after the run (``surface_dynamics``) as stored; a table the run did
    not write comes back empty."""
    import pandas as pd

    with duckdb.connect(str(path), read_only=True) as con:
        cols: dict[str, set] = {}
        for t, c in con.execute("SELECT table_name, column_name "
                                "FROM information_schema.columns").fetchall():
            cols.setdefault(t, set()).add(c)
        return {t: con.execute(f"SELECT * FROM {t}"
                               + (" ORDER BY seq" if "seq" in cols[t] else "")).df()
                if t in cols else pd.DataFrame() for t in tables}


def read_table(path: str | os.PathLike, table: str):
    """One journal payload table (see :func:`read_tables`)."""
    return read_tables(path, [table])[table]
