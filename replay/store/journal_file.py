"""Reading a run's stored journal (``journal.duckdb``, written by the engine's journal): the
version of the hash definition it was written under, the kinds whose rows it links
(:mod:`replay.store.journal_tables`), and its running hash recomputed from its tables (a
determinism audit).  The hash itself is defined in :mod:`replay.model.events`."""

from __future__ import annotations

import os
from collections.abc import Collection

import duckdb

from replay.errors import StoreError
from replay.model.events import H0, HASH_VERSION, KINDS, EventKind, canonical_bytes, chain
from replay.store.journal_tables import linked_rows_sql


def links(con: duckdb.DuckDBPyConnection, path: str | os.PathLike | None = None,
          tables: Collection[str] | None = None) -> dict[str, str]:
    """The kinds whose rows the journal open on ``con`` links, and their files; given the
    journal's ``path``, a :class:`StoreError` if a file is gone (its views cannot be read),
    of those kinds whose tables are in ``tables`` when it is given."""
    if not _has_meta(con):
        return {}
    found = dict(con.execute("SELECT substr(key, 6), value FROM journal_meta "
                             "WHERE key LIKE 'link:%'").fetchall())
    gone = sorted(f for k, f in found.items() if path is not None and not os.path.exists(f)
                  and (tables is None or k not in KINDS or KINDS[k].table in tables))
    if gone:
        raise StoreError(f"journal {path} links its calibration rows to {gone[0]}, which is "
                         "gone (a cleaned surface cache): run the backtest again, or rebuild "
                         "the stream with `volreplay calibrate` and the run's config from the "
                         "install that ran it (a stream's folder is keyed by the code "
                         "version); calibration.journal_rows=copy keeps a run's rows in its "
                         "own journal")
    return found


def recompute_hash(path: str | os.PathLike) -> str:
    """Recompute the running hash from a stored journal (a determinism audit).  A journal
    written under another version of the hash definition is refused with a
    :class:`replay.errors.StoreError` that says so (its stored hash is not comparable); one
    that records no version (written before versions were recorded) is recomputed under the
    current definition."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        records_version(con, path)
        kinds, linked = _kinds(con, path), links(con, path)
        main = con.sql("SELECT * FROM journal ORDER BY seq").fetchall()
        payload: dict[str, dict[int, dict[str, list]]] = {}
        for name in {r[2] for r in main}:
            k = kinds.get(name) or KINDS.get(name)
            if k is None:
                raise StoreError(f"journal {path} holds {name!r} events and records no "
                                 "declaration of them; import the module that declares the "
                                 "kind before recomputing its hash")
            kinds[name] = k
            fields = [f for f, _ in k.fields]
            src, order = (f"({linked_rows_sql(k, linked[name], row=True)})", "_row") \
                if name in linked else (k.table, "rowid")
            _check_rows(con, path, name, src)
            rows = con.sql(f"SELECT seq, {', '.join(fields) or '1'} FROM {src} "
                           f"WHERE seq IN (SELECT seq FROM journal WHERE kind = $k) "
                           f"ORDER BY seq, {order}", params={"k": name}).fetchall()
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
        k = kinds[kind]
        cols = payload[kind].get(seq, {f: [] for f, _ in k.fields})
        h = chain(h, canonical_bytes(seq, ts, k, cs, cq, source or "", cols))
    return h.hex()


def _check_rows(con: duckdb.DuckDBPyConnection, path: str | os.PathLike, name: str,
                src: str) -> None:
    """The hash covers each payload row through its event (``seq``), not the row's own
    ``ts``, which the analytics read: every row of kind ``name``'s table (``src``) must be
    one of an event of that kind, at that event's ``ts``."""
    orphan, moved = con.sql(
        f"SELECT count(*) FILTER (WHERE j.seq IS NULL), "
        f"count(*) FILTER (WHERE j.seq IS NOT NULL AND p.ts IS DISTINCT FROM j.ts) "
        f"FROM {src} p LEFT JOIN (SELECT seq, ts FROM journal WHERE kind = $k) j "
        f"ON p.seq = j.seq", params={"k": name}).fetchall()[0]
    if orphan or moved:
        raise StoreError(f"journal {path}: {orphan} {name} row(s) belong to no {name} event "
                         f"and {moved} sit at another time than their event's; the journal "
                         "was changed after it was written")


def _kinds(con: duckdb.DuckDBPyConnection, path: str | os.PathLike) -> dict[str, EventKind]:
    """The kinds the journal on ``con`` records (``journal_meta``'s ``kind:<name>`` rows)."""
    if not _has_meta(con):
        return {}
    rows = con.execute("SELECT key, value FROM journal_meta WHERE key LIKE 'kind:%'").fetchall()
    try:
        return {k[5:]: EventKind.from_declaration(k[5:], v) for k, v in rows}
    except (ValueError, KeyError, TypeError) as e:
        raise StoreError(f"journal {path}: a recorded event kind cannot be read ({e})") from None


def _has_meta(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the journal open on ``con`` has a ``journal_meta`` table (older ones do not)."""
    return bool(con.execute("SELECT count(*) FROM information_schema.tables "
                            "WHERE table_name = 'journal_meta'").fetchall()[0][0])


def records_version(con: duckdb.DuckDBPyConnection, path: str | os.PathLike) -> bool:
    """Whether the journal open on ``con`` records the hash definition it was written under;
    a :class:`StoreError` if that is another than :data:`HASH_VERSION` (its running hash can
    be neither audited nor continued by this version)."""
    if not _has_meta(con):
        return False
    row = con.execute("SELECT value FROM journal_meta WHERE key = 'hash_version'").fetchall()
    if row and int(row[0][0]) != HASH_VERSION:
        raise StoreError(f"journal {path} was hashed under definition {row[0][0]}; this "
                         f"version of volreplay hashes under definition {HASH_VERSION} only")
    return bool(row)
