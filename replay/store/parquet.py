"""Market stores as Parquet files read in place: ``volreplay export`` and :class:`ParquetStore`.

Why: a DuckDB file lives on one machine and admits one writer; Parquet files can sit on shared
disk or object storage and be read by any number of workers at once.  A walk-forward over
many days then runs one job per day, each reading only that day's files.

Layout written by :func:`export_parquet` (``DIR`` may later be copied to ``s3://...``)::

    DIR/manifest.json
    DIR/instruments/data.parquet                      not partitioned (every job needs it)
    DIR/option_quotes/date=2025-01-06/data.parquet    market tables: one file per UTC day of
    DIR/option_quotes/date=2025-01-07/data.parquet    ts_recv (hive style), rows in replay order
    DIR/loads/data.parquet, DIR/quarantine/..., DIR/truth_*/...   every other table, one file

One file per partition, so no ``data_10`` sorts before ``data_2``.  The manifest lists every
file in replay order with its row count, ``ts_recv`` range and sha256; readers take the file
list from it rather than from a glob, so the order is explicit, object stores need no LIST
permission, plain ``https://`` works (it cannot glob), and a time-window scan opens only the
files whose range meets the window.  DuckDB's Parquet writer is deterministic for a given
DuckDB version (checked by a test), so the same store exports to the same bytes.

:class:`ParquetStore` has the reading API of :class:`~replay.store.database.MarketStore` over an
in-memory DuckDB connection with one view per table; loading into it raises
:class:`~replay.store.database.StoreError`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from replay.errors import StoreError
from replay.model.schema import AUX_DDL, MARKET_TABLES, TABLES
from replay.store.database import MarketStore, _ident
from replay.units import file_sha256, iso

MANIFEST = "manifest.json"
FORMAT = "volreplay-parquet"
FORMAT_VERSION = 1
PARTITIONS = ("day", "none")
DAY_NS = 86_400 * 1_000_000_000
EXPORT_MEMORY_LIMIT = "512MB"
#: URL schemes DuckDB's httpfs extension reads.
REMOTE_SCHEMES = ("s3", "s3a", "s3n", "gs", "gcs", "r2", "http", "https")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(/*)(.*)$")
_INSTALL_HINT = ("install it once on a machine with network access: "
                 "python -c \"import duckdb; duckdb.sql('INSTALL httpfs')\"")


# -- locations ------------------------------------------------------------------------------
def _location(path: str | os.PathLike) -> tuple[str, bool]:
    """(root without trailing slash, is_remote).  ``file://`` becomes a local path; a URL that
    went through :class:`pathlib.Path` (``s3:/bucket``: it collapses ``//``) is repaired."""
    s = os.fspath(path)
    m = _URL.match(s)
    if not m or len(m.group(1)) == 1:  # no scheme, or a Windows drive letter
        return s.rstrip("/") or "/", False
    scheme, slashes, rest = m.group(1).lower(), m.group(2), m.group(3)
    if scheme == "file":
        return ("/" + rest if slashes else rest).rstrip("/") or "/", False
    if scheme in REMOTE_SCHEMES and slashes:
        return f"{scheme}://{rest.rstrip('/')}", True
    if slashes:
        raise StoreError(f"{s}: unsupported URL scheme {scheme!r}; use a local path, file://, "
                         + ", ".join(f"{x}://" for x in REMOTE_SCHEMES))
    return s.rstrip("/"), False


def is_parquet_location(path: str | os.PathLike) -> bool:
    """True for a URL or a local directory: both can only be Parquet stores."""
    root, remote = _location(path)
    return remote or Path(root).is_dir()


def is_parquet_store(path: str | os.PathLike) -> bool:
    """True for a URL or a local directory holding a store's manifest (a URL is not read
    here: whether it holds a store is found when it is opened)."""
    root, remote = _location(path)
    return remote or (Path(root) / MANIFEST).is_file()


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _load_httpfs(con: duckdb.DuckDBPyConnection, root: str) -> None:
    try:
        con.execute("LOAD httpfs").fetchall()
        return
    except duckdb.Error:
        pass
    try:
        con.execute("INSTALL httpfs").fetchall()
        con.execute("LOAD httpfs").fetchall()
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StoreError(f"cannot read {root}: DuckDB's httpfs extension could not be loaded "
                         f"({first}); {_INSTALL_HINT}") from None


def _read_manifest(con: duckdb.DuckDBPyConnection, root: str, remote: bool) -> dict:
    where = f"{root}/{MANIFEST}"
    if remote:
        try:
            text = con.execute("SELECT content FROM read_text(?)", [where]).fetchall()[0][0]
        except duckdb.Error as e:
            raise StoreError(f"cannot read {where}: {str(e).strip().splitlines()[0]}") from None
    else:
        if not Path(where).is_file():
            raise StoreError(f"{root} is a directory without {MANIFEST}, so not a store (a "
                             "Parquet store is written by `volreplay export`; a DuckDB store "
                             "is a file)")
        text = Path(where).read_text()
    try:
        man = json.loads(text)
    except ValueError as e:
        raise StoreError(f"{where} is not valid JSON: {e}") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise StoreError(f"{where} is not a {FORMAT} manifest")
    if int(man.get("format_version", 0)) > FORMAT_VERSION:
        raise StoreError(f"{where} has format version {man['format_version']}; this volreplay "
                         f"reads up to {FORMAT_VERSION} (upgrade volreplay)")
    tables = man.get("tables", {})
    for t in MARKET_TABLES:
        have = [c[0] for c in tables.get(t, {}).get("columns", [])]
        want = [c.name for c in TABLES[t]]
        if have != want:
            raise StoreError(f"{where}: table {t} has columns {have or 'none'}, expected {want} "
                             "(export the store again with this volreplay)")
    return man


def _source_sql(root: str, entry: Mapping[str, Any], files: list[dict] | None = None) -> str:
    """A SELECT of one table's columns over ``files`` (default: all of them, in order)."""
    files = entry["files"] if files is None else files
    cols = ", ".join(_ident(c) for c, _ in entry["columns"])
    if not files:  # typed and empty, without touching any file
        nulls = ", ".join(f"NULL::{typ} AS {_ident(c)}" for c, typ in entry["columns"])
        return f"SELECT {nulls} WHERE false"
    paths = ", ".join(_lit(f"{root}/{f['path']}") for f in files)
    return f"SELECT {cols} FROM read_parquet([{paths}], hive_partitioning = false)"


def _create_views(con: duckdb.DuckDBPyConnection, root: str, man: Mapping[str, Any],
                  schema: str | None = None) -> None:
    prefix = f"{_ident(schema)}." if schema else ""
    for t in sorted(man["tables"]):
        con.execute(f"CREATE VIEW {prefix}{_ident(t)} AS {_source_sql(root, man['tables'][t])}"
                    ).fetchall()
    for t, stmt in AUX_DDL.items():  # stores always have these (readers such as inspect rely on it)
        if t not in man["tables"]:
            con.execute(stmt.replace(f"EXISTS {t}", f"EXISTS {prefix}{t}")).fetchall()


# -- reading ---------------------------------------------------------------------------------
def _check_local_files(root: Path, man: Mapping[str, Any]) -> None:
    """Every file the manifest lists exists with its recorded size (when recorded)."""
    for table, entry in man["tables"].items():
        for f in entry.get("files") or []:
            p = root / f["path"]
            if not p.is_file():
                raise StoreError(f"Parquet store {root}: {table} file {f['path']} is missing "
                                 "(an incomplete copy?)")
            if f.get("bytes") is not None and p.stat().st_size != int(f["bytes"]):
                raise StoreError(f"Parquet store {root}: {table} file {f['path']} has "
                                 f"{p.stat().st_size} bytes, the manifest says {f['bytes']}")


class ParquetStore(MarketStore):
    """A read-only market store over Parquet files; open it with :func:`replay.open_store`.

    ``con`` is an in-memory DuckDB connection with one view per table, so SQL written for a
    DuckDB store (``SELECT ... FROM option_quotes``) runs unchanged.  :meth:`scan` reads only
    the files whose ``ts_recv`` range meets the window.
    """

    def __init__(self, path: str | os.PathLike, *, duckdb_config: dict | None = None):
        self.location, self.remote = _location(path)
        self.path = self.location if self.remote else Path(self.location)
        self.read_only = True
        self._staged: set[str] = set()
        if not self.remote and not Path(self.location).is_dir():
            raise StoreError(f"store {self.location} does not exist (write one with "
                             "`volreplay export --db STORE.duckdb --out DIR`)")
        self.con = duckdb.connect(":memory:", config=duckdb_config or {})
        try:
            if self.remote:
                _load_httpfs(self.con, self.location)
            self.manifest = _read_manifest(self.con, self.location, self.remote)
            if not self.remote:  # a half-copied export fails here, not in the middle of a run
                _check_local_files(Path(self.location), self.manifest)
            _create_views(self.con, self.location, self.manifest)
        except duckdb.Error as e:
            self.con.close()
            raise StoreError(f"cannot open Parquet store {self.location}: "
                             f"{str(e).strip().splitlines()[0]}") from None
        except BaseException:
            self.con.close()
            raise

    def fingerprint(self) -> str:
        """The manifest's ``content_sha256`` (over every file's sha256): no file is read."""
        return str(self.manifest["content_sha256"])

    def _require_writable(self) -> None:
        raise StoreError(f"Parquet store {self.location} is read-only; load into a DuckDB store "
                         "and export it again with `volreplay export`")

    def stage(self, table: str, rows: Any) -> None:
        self._require_writable()

    def count(self, table: str) -> int:
        entry = self.manifest["tables"].get(table)
        return int(entry["rows"]) if entry is not None else super().count(table)

    def time_span(self, table: str | None = None) -> tuple[int | None, int | None]:
        """From the manifest: no file is read."""
        if table and table not in MARKET_TABLES:
            return super().time_span(table)
        tabs = [table] if table else [t for t in MARKET_TABLES if t != "instruments"]
        spans = [s for t in tabs if (s := self.manifest["tables"][t].get("ts_recv"))]
        if not spans:
            return None, None
        return min(s[0] for s in spans), max(s[1] for s in spans)

    def files(self, table: str, start: int | None = None, end: int | None = None) -> list[str]:
        """Paths (relative to the store root) a scan of ``[start, end)`` reads, in order."""
        return [f["path"] for f in self._window_files(table, start, end)]

    def _window_files(self, table: str, start: int | None, end: int | None) -> list[dict]:
        out = []
        for f in self.manifest["tables"][table]["files"]:
            lo, hi = f.get("ts_recv") or (None, None)
            if lo is not None and ((end is not None and lo >= end)
                                   or (start is not None and hi < start)):
                continue
            out.append(f)
        return out

    def _scan_from(self, table: str, start: int | None, end: int | None) -> str:
        entry = self.manifest["tables"][table]
        return f"({_source_sql(self.location, entry, self._window_files(table, start, end))})"


def attach_parquet(con: duckdb.DuckDBPyConnection, path: str | os.PathLike, alias: str) -> None:
    """Views ``<alias>.<table>`` over a Parquet store on ``con`` (see ``attach_store``)."""
    root, remote = _location(path)
    if remote:
        _load_httpfs(con, root)
    man = _read_manifest(con, root, remote)
    # READ_WRITE: on a read-only connection an attached database defaults to read-only
    con.execute(f"ATTACH ':memory:' AS {_ident(alias)} (READ_WRITE)").fetchall()
    _create_views(con, root, man, schema=alias)


# -- writing ---------------------------------------------------------------------------------
def _day(d: int) -> str:
    return datetime.fromtimestamp(d * 86_400, timezone.utc).date().isoformat()


def schema_sha256() -> str:
    """A digest of the market tables' columns and types (changes when the schema does)."""
    spec = {t: [[c.name, c.sql] for c in cols] for t, cols in TABLES.items()}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def export_parquet(db: str | os.PathLike, out: str | os.PathLike, partition: str = "day") -> dict:
    """Write every table of the DuckDB store ``db`` as Parquet under the new directory ``out``
    (layout in the module docstring); returns the manifest, written last."""
    if partition not in PARTITIONS:
        raise StoreError(f"partition {partition!r}: choose one of {', '.join(PARTITIONS)}")
    if is_parquet_location(db):
        raise StoreError(f"{db} is already a Parquet store; export reads a DuckDB store file")
    if "://" in str(out):
        raise StoreError(f"--out {out}: export writes a local directory; copy it to object "
                         "storage afterwards (e.g. aws s3 sync)")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise StoreError(f"{out} exists and is not empty; export into a new directory")
    created = not out.exists()
    with MarketStore(db, read_only=True) as src:
        out.mkdir(parents=True, exist_ok=True)
        spill = out / ".spill"
        try:  # the source may sit on a read-only disk; the sort spills next to the output
            src.con.execute("SET temp_directory = ?", [str(spill)]).fetchall()
            # ORDER BY seq sorts a day at a time; cap what it holds in memory and spill the rest
            src.con.execute(f"SET memory_limit = '{EXPORT_MEMORY_LIMIT}'").fetchall()
            tables = {t: _export_table(src, t, out, partition) for t in src.tables()}
        except BaseException:
            if created:  # no half-written export that a rerun would refuse
                shutil.rmtree(out, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(spill, ignore_errors=True)
    spans = [e["ts_recv"] for t, e in tables.items()
             if t in MARKET_TABLES and t != "instruments" and e.get("ts_recv")]
    lo = min((s[0] for s in spans), default=None)
    hi = max((s[1] for s in spans), default=None)
    man = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "source": Path(db).name,
        "writer": f"duckdb {duckdb.__version__}", "partition": partition,
        "schema_sha256": schema_sha256(),
        "span": {"first_ns": lo, "last_ns": hi, "first": iso(lo), "last": iso(hi)},
        # a content address of the export: equal iff every file is byte-identical
        "content_sha256": hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest(),
        "tables": tables,
    }
    (out / MANIFEST).write_text(json.dumps(man, indent=1, sort_keys=True) + "\n")
    return man


def _export_table(src: MarketStore, table: str, out: Path, partition: str) -> dict:
    q = src._exec
    cols = q("SELECT column_name, data_type FROM information_schema.columns "
             "WHERE table_schema = 'main' AND table_name = ? ORDER BY ordinal_position", [table])
    market = table in MARKET_TABLES
    t = _ident(table)
    if market and table != "instruments" and partition == "day":
        parts = [(f"{table}/date={_day(d)}/data.parquet", n, lo, hi,
                  f"WHERE ts_recv >= {d * DAY_NS} AND ts_recv < {(d + 1) * DAY_NS}")
                 for d, n, lo, hi in q(f"SELECT ts_recv // {DAY_NS} AS d, count(*), "
                                       f"min(ts_recv), max(ts_recv) FROM {t} GROUP BY d ORDER BY d")]
    else:
        n, lo, hi = q(f"SELECT count(*), min(ts_recv), max(ts_recv) FROM {t}")[0] if market \
            else (q(f"SELECT count(*) FROM {t}")[0][0], None, None)
        parts = [(f"{table}/data.parquet", n, lo, hi, "")] if n else []
    files = []
    for rel, n, lo, hi, where in parts:
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        # seq follows replay order, so ORDER BY seq writes replay order (and, unlike relying
        # on the stored order, cannot be undone by a parallel plan)
        order = " ORDER BY seq" if market else ""
        q(f"COPY (SELECT * FROM {t} {where}{order}) TO {_lit(str(dest))} "
          "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 122880)")
        f = {"path": rel, "rows": int(n), "bytes": dest.stat().st_size, "sha256": file_sha256(dest)}
        if market:
            f["ts_recv"] = [int(lo), int(hi)]
        files.append(f)
    entry: dict[str, Any] = {"columns": [[c, typ] for c, typ in cols],
                             "rows": sum(f["rows"] for f in files), "files": files}
    if market:
        entry["ts_recv"] = [files[0]["ts_recv"][0], max(f["ts_recv"][1] for f in files)] \
            if files else None
    return entry
