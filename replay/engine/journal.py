"""The journal: an append-only log of every derived event, with typed payload tables and a
running hash.

Layout of a run's ``journal.duckdb``
------------------------------------
* ``journal(seq, ts, kind, cause_stream, cause_seq, source)``: one row per derived event.
  ``cause_stream``/``cause_seq`` name the last market event folded when it was decided (stream
  code of :data:`replay.model.schema.STREAM_PRIORITY` and that table's ``seq``; -1/-1 before any).
* one payload table per event kind, ``(seq, ts, <declared fields>)``.  An event has one payload
  row (``fills``) or several (``calibration_quotes``: one row per quote of a fit).  A kind
  whose rows are linked (:meth:`Journal.link_rows`) has a view instead, over ``journal_links``.
* ``journal_meta(key, value)``: ``hash_version``, the version of the hash definition
  (:data:`replay.model.events.HASH_VERSION`) the journal was written under, ``kind:<name>``,
  each kind's declaration (:meth:`replay.model.events.EventKind.declaration`), ``link:<name>``.

The kinds (declared with :func:`replay.model.events.register_kind`), their canonical bytes and
the running hash are defined in :mod:`replay.model.events`.  Appends are buffered and written
as Arrow batches; :func:`replay.store.journal_file.recompute_hash` recomputes the hash from
the stored tables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from replay.model.events import (
    HASH_VERSION,
    HEAD,
    KINDS,
    EventKind,
    columns_of,
    kind_of,
    payload_digest,
)
from replay.model.hash_chain import EventRuns
from replay.store import journal_tables as tables_of
from replay.store.journal_file import links, records_version
from replay.store.ordered_writer import OrderedWriter
from replay.store.row_groups import RowRange

#: the ``journal`` block of metrics.json (:meth:`Journal.costs`, docs/outputs.md)
COST_KEYS = ("rows", "writer_seconds", "wait_seconds")


class Journal:
    """Buffered writer of ``journal.duckdb`` with the running hash.

    Rows are written to the database every ``flush_rows`` buffered rows (the kinds with the
    fewest may wait for a later write, never past a commit), in a transaction that commits
    once it holds ``commit_rows`` rows, and at every :meth:`flush` (snapshots, the end).
    A resumed run cuts the journal back to its snapshot, so what a crash loses between commits
    is never needed; the large transactions let DuckDB write the tables' row groups to the file
    directly instead of into the write-ahead log and again at the checkpoint (on a cached
    synthetic day: 0.25 s instead of 1.6 s).  The inserts run on a writer thread
    (:class:`~replay.store.ordered_writer.OrderedWriter`), up to :attr:`IN_FLIGHT` writes
    queued while the caller goes on; :meth:`flush` and :meth:`sync` wait for them, and
    :meth:`costs` says what they cost.  The running hash is chained there too, each write's
    events in one compiled call before their rows are inserted
    (:class:`~replay.model.hash_chain.EventRuns`): an append costs the caller a list append,
    and :attr:`hash` chains what is pending and waits.

    A journal opened with ``path=None`` keeps the running hash and the seqs and stores
    nothing: the replay of a surface-stream build, whose journal nobody reads, then spends no
    time on rows (its hash is still recorded)."""

    #: writes queued for the writer thread before the caller waits (a run's first write, the
    #: copy of its stream's surface dynamics, takes the writer tenths of a second)
    IN_FLIGHT = 4

    def __init__(self, path: str | os.PathLike | None, flush_rows: int = 65536,
                 commit_rows: int = 1 << 20, memory_limit: str = "64MB"):
        self.path = None if path is None else Path(path)
        self.flush_rows, self.commit_rows = flush_rows, commit_rows
        self._uncommitted = 0  # rows written in the open transaction (0: none open)
        self.seq = -1  # last appended seq
        # the events' journal rows (``pair`` indexing _pairs) and the running hash over them
        self._events = EventRuns()
        self._pairs: dict[tuple[str, str], int] = {}  # (kind, source): its code
        self._codes: dict[tuple, np.ndarray] = {}  # append_many's kinds: their codes
        self._buf: dict[str, dict[str, list]] = {}
        # per kind, payload rows added by add_rows: (seq, ts, table or columns)
        self._parts: dict[str, list[tuple[np.ndarray, np.ndarray, Any]]] = {}
        self._links: dict[str, str] = {}  # kind: the file whose rows it links
        self._link_parts: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
        self._buffered = 0
        self._tables: set[str] = set()
        self.rows_written = 0  # rows handed to the writer thread, every table's
        self._writer: OrderedWriter | None = None
        self.con: duckdb.DuckDBPyConnection | None = None
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(self.path))
        # DuckDB keeps the blocks it writes cached up to its memory limit (80 % of RAM by
        # default), so the writer's memory grew with the journal (93 MB after the large bench
        # store's 96 hours); an append needs one flush of rows at a time.
        self.con.execute("SET memory_limit = ?", [memory_limit]).fetchall()
        # The default 16 MB WAL threshold made about one commit in three a checkpoint that
        # rewrote the tables' last row groups: the checkpoint runs once, at close.
        self.con.execute("SET checkpoint_threshold = '1GB'").fetchall()
        # Appends are small batches in one session: a second thread only coordinates (a
        # cached day's fit rows insert in 0.54 s on one thread, 0.74 s on two).
        self.con.execute("SET threads = 1").fetchall()
        # the inserts run on one writer thread, one write at a time, in order
        self._writer = OrderedWriter("journal", self.IN_FLIGHT)
        try:
            self._ensure_tables()
        except BaseException:
            self._writer.shutdown()
            self.con.close()
            raise

    def _ensure_tables(self) -> None:
        self.con.execute("CREATE TABLE IF NOT EXISTS journal (seq BIGINT, ts BIGINT, kind VARCHAR,"
                         " cause_stream TINYINT, cause_seq BIGINT, source VARCHAR)").fetchall()
        self.con.execute("CREATE TABLE IF NOT EXISTS journal_meta (key VARCHAR PRIMARY KEY, "
                         "value VARCHAR)").fetchall()
        if not records_version(self.con, self.path):
            self.con.execute("INSERT INTO journal_meta VALUES ('hash_version', ?)",
                             [str(HASH_VERSION)]).fetchall()
        self.con.execute(tables_of.LINKS_DDL).fetchall()
        for k in list(KINDS.values()):
            self._create(k)

    def _create(self, k: EventKind) -> None:
        """Kind ``k``'s payload table, and its declaration in ``journal_meta``
        (``kind:<name>``)."""
        self._execute(k.ddl())
        self._execute("INSERT OR IGNORE INTO journal_meta VALUES (?, ?)",
                      [f"kind:{k.name}", k.declaration()])
        self._tables.add(k.table)

    @property
    def hash(self) -> bytes:
        """The running hash after the last appended event (:mod:`replay.model.events`)."""
        pending = self._events.take_unchained()
        if pending:  # chained in order on the writer thread, after the writes before it
            if self._writer is None:
                self._events.chain(pending, list(self._pairs))
            else:
                self._writer.submit(self._events.chain, pending, list(self._pairs))
        self.sync()
        return self._events.hash

    @property
    def hash_hex(self) -> str:
        return self.hash.hex()

    def append(self, kind: str, ts: int, cause: tuple[int, int], source: str = "",
               rows: Mapping[str, object] | None = None, digest: bytes | None = None) -> int:
        """Append one event.  ``rows`` maps each declared field to a scalar (one payload row)
        or to equal-length sequences (several rows).  ``digest``, when given, is the event's
        :func:`payload_digest`, computed once by a caller that appends the same payload
        often.  Returns the event's seq."""
        k = kind_of(kind)
        n, cols = columns_of(k, dict(rows or {}))
        return self.append_columns(k, ts, cause, source, n, cols,
                                   digest if digest is not None else payload_digest(k, cols))

    def append_columns(self, k: EventKind, ts: int, cause: tuple[int, int], source: str,
                       n: int, cols: Mapping[str, list], digest: bytes) -> int:
        """:meth:`append` of ``n`` rows already checked by :func:`columns_of`, with their
        payload digest: a caller that appends the same rows often checks them once."""
        seq = self._add_event(k, int(ts), cause, source, digest)
        buf = self._buf.get(k.name)
        if buf is None:
            buf = self._buf[k.name] = {"seq": [], "ts": [], **{f: [] for f, _ in k.fields}}
        buf["seq"] += [seq] * n
        buf["ts"] += [int(ts)] * n
        for f, _ in k.fields:
            buf[f] += cols[f]
        self._count(n)
        return seq

    def append_block(self, kind: str, ts: int, cause: tuple[int, int], source: str,
                     digest: bytes, table: pa.Table, i0: int, i1: int) -> int:
        """Append one event whose payload rows are rows ``[i0, i1)`` of ``table`` (which has
        every declared field, with the declared types) and whose :func:`payload_digest` is
        ``digest``: replaying recorded events costs no per-row Python."""
        k = kind_of(kind)
        seq = self._add_event(k, int(ts), cause, source, digest)
        n = i1 - i0
        self.add_rows(k, np.full(n, seq, np.int64), np.full(n, int(ts), np.int64),
                      table.slice(i0, n))
        return seq

    def append_many(self, kinds: Sequence[tuple[str, str]], code: np.ndarray, ts: np.ndarray,
                    cause_stream: np.ndarray, cause_seq: np.ndarray, digests: bytes) -> np.ndarray:
        """Append a run of recorded events, chained in order, and return their seqs; their
        payload rows follow with :meth:`add_rows`.  Event ``j`` is of the (kind, source)
        ``kinds[code[j]]``, at ``ts[j]`` with cause ``(cause_stream[j], cause_seq[j])``, and
        ``digests[32 j : 32 j + 32]`` is its :func:`payload_digest`."""
        key = tuple(kinds)
        pairs = self._codes.get(key)
        if pairs is None:  # a splicing caller passes the same kinds each time
            pairs = self._codes[key] = np.array(
                [self._pair(kind_of(k).name, src) for k, src in kinds], np.int64)
        seqs = np.arange(self.seq + 1, self.seq + 1 + len(ts), dtype=np.int64)
        self._events.add_run((seqs, ts, pairs[code], cause_stream, cause_seq), digests)
        self.seq += len(ts)
        self._buffered += len(seqs)
        return seqs

    def add_rows(self, kind: str | EventKind, seq: np.ndarray, ts: np.ndarray,
                 rows: pa.Table | RowRange | Mapping[str, object]) -> None:
        """Payload rows of events already appended (:meth:`append_many`): ``seq`` and ``ts``
        per row, and ``rows`` with every declared field (a table's other columns are
        dropped); a :class:`~replay.store.row_groups.RowRange` is read when the rows are
        written, joined with the ranges next to it."""
        k = kind_of(kind)
        self._parts.setdefault(k.name, []).append((seq, ts, rows))
        self._count(len(seq))

    def link_rows(self, kind: str, parquet: str | os.PathLike, seq: np.ndarray, ts: np.ndarray,
                  wake: np.ndarray) -> None:
        """Payload rows of events already appended, by reference: event ``seq[j]`` (at
        ``ts[j]``) has the rows of ``parquet`` whose ``wake`` is ``wake[j]``, and the kind's
        table is a view of that file (:mod:`replay.store.journal_tables`, "Linked rows"): every
        event of the kind must then be linked."""
        k, path = kind_of(kind), os.fspath(parquet)
        if k.name not in self._links:
            if not tables_of.linkable(path):
                raise ValueError(f"{path}: DuckDB would read this path as a glob; copy its rows")
            if self.con is not None:  # the view reads the real path
                self._writer.submit(tables_of.link_view, self.con, k, str(Path(path).resolve()))
        if self._links.setdefault(k.name, path) != path:
            raise ValueError(f"{k.name} rows are linked to {self._links[k.name]}, not {path}")
        self._link_parts.append((k.name, seq, ts, wake))
        self._count(len(seq))

    def _add_event(self, k: EventKind, ts: int, cause: tuple[int, int], source: str,
                   digest: bytes) -> int:
        seq, cs, cq = self.seq + 1, int(cause[0]), int(cause[1])
        HEAD.pack(seq, ts, cs, cq)  # what cannot be packed (chained later) takes no seq
        self._events.add(seq, ts, self._pair(k.name, source), cs, cq, digest)
        self.seq = seq
        self._buffered += 1
        return seq

    def _count(self, n: int) -> None:
        """``n`` payload rows were buffered: write them (and commit) when enough are."""
        self._buffered += n
        if self._buffered >= self.flush_rows:
            commit = self._uncommitted + self._buffered >= self.commit_rows
            self._write(every_kind=commit)
            if commit:
                self._commit()

    def flush(self) -> None:
        """Write the buffered rows, commit, and wait until that is done."""
        self._write()
        self._commit()
        self.sync()

    def sync(self) -> None:
        """Wait for the writes handed to the writer thread (raising what one raised)."""
        if self._writer is not None:
            self._writer.sync()

    def costs(self) -> dict[str, float | int]:
        """What storing the rows has cost so far (all of it once closed): ``rows`` handed to
        the writer thread, ``writer_seconds`` it spent on them (the checkpoint at close
        included) and ``wait_seconds`` the caller spent waiting for it."""
        w = self._writer
        writer, wait = (w.writer_ns / 1e9, w.wait_ns / 1e9) if w else (0.0, 0.0)
        return dict(zip(COST_KEYS, (self.rows_written, writer, wait)))

    def copy_table(self, table: str, parquet: str | os.PathLike) -> None:
        """(Re)create ``table`` as a copy of a Parquet file, on the writer thread: a table
        that is not an event kind's (a run's derived table known in advance), written while
        the caller goes on."""
        if table in {"journal", "journal_meta"} | {k.table for k in KINDS.values()}:
            raise ValueError(f"{table} is a journal table, not a copied one")
        if self.con is None:
            return
        self._writer.submit(self._execute,
                            f'CREATE OR REPLACE TABLE "{table}" AS SELECT * FROM read_parquet($f)',
                            {"f": str(parquet)})

    def _commit(self) -> None:
        if self._uncommitted:
            self._writer.submit(self._execute, "COMMIT")
            self._uncommitted = 0

    def _execute(self, sql: str, params: dict | None = None) -> None:
        self.con.execute(sql, params).fetchall()

    def _write(self, every_kind: bool = True) -> None:
        """Hand the buffered rows, one Arrow table per table, to the writer thread, which
        inserts them in the open transaction.  Unless ``every_kind``, the kinds with the fewest
        rows buffered (up to half a flush in all) wait for a later write: an INSERT costs the
        writer milliseconds whatever its size, and a run's few hundred decisions, orders or
        marks would otherwise take one at every write.  A commit writes every kind first."""
        if self.con is None:  # nothing is stored: chain the events, drop their rows
            self._events.chain(self._events.take()[1], list(self._pairs))
            self._buf, self._parts, self._link_parts, self._buffered = {}, {}, [], 0
            return
        held_buf: dict[str, dict[str, list]] = {}
        held_parts: dict[str, list] = {}
        held = 0
        if not every_kind:
            sizes = sorted([(len(c["seq"]), n, False) for n, c in self._buf.items()]
                           + [(sum(len(p[0]) for p in ps), n, True)
                              for n, ps in self._parts.items()])
            for n_rows, name, part in sizes:
                if held + n_rows >= self.flush_rows // 2:
                    break
                held += n_rows
                if part:
                    held_parts[name] = self._parts.pop(name)
                else:
                    held_buf[name] = self._buf.pop(name)
        if self._buffered - held <= 0:
            return
        begin = not self._uncommitted
        self._uncommitted += self._buffered - held
        tables: list[tuple[EventKind | str, pa.Table]] = []
        if self._link_parts:
            tables.append((tables_of.LINKS_TABLE, tables_of.links_table(self._link_parts)))
        for name, cols in self._buf.items():
            tables.append((KINDS[name], pa.table(cols, schema=KINDS[name].schema())))
        for name, parts in self._parts.items():
            tables.append((KINDS[name], tables_of.payload_table(KINDS[name], parts)))
        # the events' rows (payload rows may follow their events: Journal.add_rows) and their
        # chaining are done on the writer thread
        runs, unchained = self._events.take()
        self._buf, self._parts, self._link_parts = held_buf, held_parts, []
        self._buffered = held
        self.rows_written += sum(len(r[0]) for r in runs) + sum(t.num_rows for _, t in tables)
        self._writer.submit(self._insert, begin, tables, unchained, runs, list(self._pairs))

    def _pair(self, kind: str, source: str) -> int:
        return self._pairs.setdefault((kind, source), len(self._pairs))

    def _insert(self, begin: bool, tables: list[tuple[EventKind | str, pa.Table]],
                unchained: list, runs: list[tuple[np.ndarray, ...]],
                pairs: list[tuple[str, str]]) -> None:
        """On the writer thread: chain the ``unchained`` runs, then insert the ``journal``
        rows of ``runs`` and ``tables``, each into a kind's payload table or into the journal's
        own table it names."""
        self._events.chain(unchained, pairs)
        if runs:
            tables = [("journal", tables_of.journal_rows(runs, pairs)), *tables]
        if begin:
            self._execute("BEGIN TRANSACTION")
        for k, data in tables:
            # a kind declared after the journal was opened gets its table now
            if not isinstance(k, str) and k.table not in self._tables:
                self._create(k)
            self.con.register("_jbuf", data)
            self._execute(f"INSERT INTO {k if isinstance(k, str) else k.table} "
                          "SELECT * FROM _jbuf")
            self.con.unregister("_jbuf")

    def truncate_after(self, seq: int, running_hash: bytes) -> None:
        """Drop every event after ``seq`` (resume from a snapshot taken at that seq)."""
        if self.con is None:
            raise ValueError("a journal that stores no rows cannot be cut back")
        self.flush()
        n = self.con.execute("SELECT count(*) FROM journal WHERE seq <= ?", [seq]).fetchall()[0][0]
        if n != seq + 1:
            raise RuntimeError(f"journal {self.path} holds {n} events up to seq {seq}; "
                               "it does not belong to this snapshot")
        linked = links(self.con, self.path)  # a file gone: the error names the fix
        self.con.execute("BEGIN TRANSACTION").fetchall()
        self._ensure_tables()
        for t in ["journal", tables_of.LINKS_TABLE,
                  *(k.table for k in KINDS.values() if k.name not in linked)]:
            self.con.execute(f"DELETE FROM {t} WHERE seq > ?", [seq]).fetchall()
        for name, parquet in linked.items():  # the resumed run stores them
            tables_of.materialize(self.con, KINDS[name], parquet)
        self.con.execute("COMMIT").fetchall()
        self.seq, self._events.hash = seq, running_hash

    def close(self) -> None:
        if self.con is None:
            return
        try:
            self.flush()
        finally:  # a failed write still lets go of the thread and the database file
            self._writer.shutdown()
            self._writer.by_caller(self.con.close)  # the checkpoint: the caller waits for it
