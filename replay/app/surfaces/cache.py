"""The surface-stream cache: calibrate once, replay many.

A run with ``calibration.cache=auto`` (the default) looks up the stream of surfaces its
calibration config publishes over its data selection; on a miss it builds it
(:func:`replay.app.surfaces.build.build_stream`) and then replays it.  ``off`` fits live;
``refresh`` rebuilds.  ``volreplay calibrate`` builds the same stream on its own (before a
sweep, or one job per day of a walk-forward).

**The key** is the sha256 of: the store's fingerprint (its content, see
``MarketStore.fingerprint``), the resolved calibration config (without ``cache``,
``build_jobs`` and ``journal_rows``, which do not change it; omitted keys count as their
defaults and each value is spelled one way where the class says how, and ``0`` and ``0.0``
are the same value: :func:`canonical_config`),
the source file of the calibration class, the data selection (start, end, instruments,
expiries, underlying) and the code version (the source of the calibration and engine code
that decides a stream, and the numpy, scipy, numba and duckdb versions).  A change to any
of them is a miss (for a calibration class of the user's own: a change to its own file, not
to the modules it imports).

**Sharing.**  Streams live under ``<cache dir>/surfaces/<key>/`` (the cache dir is
``$VOLREPLAY_CACHE_DIR``, else ``${XDG_CACHE_HOME:-~/.cache}/volreplay``).  A build holds an
exclusive ``flock`` on ``<key>.lock`` and writes into a temporary directory that it renames
into place only when complete, so parallel jobs with a cold cache build once: the others wait
on the lock and then read.  A reader trusts a directory only when its ``manifest.json``
(written last) is there and every file it counts holds that many rows (:func:`intact`; a
stream damaged after its build is built again).  The files are made read-only.

**A cache shared read-only.**  A built cache may be read by jobs that cannot write it (a
read-only mount, another user's folder): reading a whole stream writes nothing.  Such a job
takes the shared ``flock`` on a lock file it opens read-only (``flock`` needs no write
access), or, where the lock file is not there and cannot be made, takes none: no build can
be in progress without it, and the rename that publishes a stream means a whole one is all
a reader can find.  Only a build (a missing stream, or ``refresh``) needs to write; in such
a cache it stops with a :class:`~replay.errors.UserError` saying where to build instead.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import shutil
import tempfile
import time
from contextlib import suppress
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from replay.app.selection import Selection
from replay.app.surfaces.build import build_stream, cores
from replay.app.surfaces.locks import READ_ONLY, exclusive, hold, lock_file, mark_used
from replay.errors import ConfigError, UserError
from replay.model.config import BOUNDS
from replay.model.plugins import locate_class
from replay.store.journal_tables import linkable

MODES = ("auto", "off", "refresh")
#: modules whose source decides the stream a config produces
_CODE = ("calibration", "replay/consumers/calibration.py", "replay/consumers/schedule.py",
         "replay/consumers/surface_stream.py", "replay/consumers/stream_reader.py",
         "replay/app/surfaces/build.py", "replay/engine", "replay/store",
         "replay/model/schema.py", "replay/model/events.py", "replay/analytics/dynamics.py")
_VERSIONED = ("numpy", "scipy", "numba", "duckdb", "pyarrow", "pandas")
#: ``calibration.journal_rows``: a replaying run's journal links the stream's fit and quote
#: rows (:meth:`replay.engine.journal.Journal.link_rows`) or copies them
JOURNAL_ROWS = ("link", "copy")
#: keys of a calibration config that say how its stream is found, built and replayed, not
#: what it holds
BUILD_KEYS = ("cache", "build_jobs", "journal_rows")


@dataclass(frozen=True)
class StreamInfo:
    """Where a run's surface stream is, whether this run built it, and whether the run's
    journal links its rows (``calibration.journal_rows``)."""

    mode: str
    key: str
    path: Path
    built: bool
    build_seconds: float | None
    link: bool = True
    #: the stream's lock file, open with a shared ``flock`` while a run reads the stream
    #: (None in a cache shared read-only that has none: :func:`replay.app.surfaces.locks.hold`)
    held: Any = field(default=None, compare=False, repr=False)

    def release(self) -> None:
        """Let go of the stream (:func:`ensure_stream`): it may be cleaned or refreshed."""
        if self.held is not None:
            self.held.close()

    def as_metrics(self) -> dict:
        return {"cache": self.mode, "key": self.key, "built": self.built,
                "build_seconds": self.build_seconds, "path": str(self.path)}


def cache_mode(node: Any) -> str:
    """``calibration.cache`` of a calibration config node (default ``auto``)."""
    mode = str(node.get("cache", "auto") if node is not None else "auto")
    if mode not in MODES:
        raise ConfigError(f"calibration.cache: {mode!r} is not one of {', '.join(MODES)}")
    return mode


def journal_rows(node: Any) -> str:
    """``calibration.journal_rows`` of a calibration config node (default ``link``)."""
    mode = str(node.get("journal_rows", "link") if node is not None else "link")
    if mode not in JOURNAL_ROWS:
        raise ConfigError(f"calibration.journal_rows: {mode!r} is not one of "
                          f"{', '.join(JOURNAL_ROWS)}")
    return mode


def streams_dir() -> Path:
    from replay.app.bench import cache_dir

    return cache_dir() / "surfaces"


@cache
def code_version() -> str:
    """sha256 over the source that decides a stream and the numerical libraries' versions."""
    from importlib.metadata import PackageNotFoundError, version

    root = Path(__file__).resolve().parents[3]
    h = hashlib.sha256()
    for rel in _CODE:
        p = root / rel
        for f in sorted(p.rglob("*.py")) if p.is_dir() else [p]:
            h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    for name in _VERSIONED:
        try:
            h.update(f"{name}=={version(name)}\0".encode())
        except PackageNotFoundError:
            h.update(f"{name}==?\0".encode())
    return h.hexdigest()


def build_jobs(node: Any) -> int:
    """``calibration.build_jobs``: processes that build a stream's epochs at once (0, the
    default: one per core; only with ``calibration.epoch``)."""
    jobs = node.get("build_jobs", 0) if node is not None else 0
    # checked here too: a calibration plugin of the user's own is not checked up front
    BOUNDS["calibration.build_jobs"].check("calibration.build_jobs", jobs)
    return int(jobs) or cores()


def calibration_config(node: Any) -> dict:
    """The calibration config as it decides the stream: resolved, without the
    :data:`BUILD_KEYS`."""
    from omegaconf import OmegaConf

    d = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    for k in BUILD_KEYS:
        d.pop(k, None)
    return d


def canonical_config(calib: dict, cls: type | None) -> dict:
    """``calib`` (plain containers) as its stream is keyed: as its class ``cls`` says it
    means it, where the class says so itself (a ``keyed_config(given)`` classmethod of its
    own, as the built-in consumer has: the keys left out filled in, one spelling of each
    value; any other class is keyed as written), and whole-number floats written as
    integers, so that ``lam=0``, ``lam=0.0`` and no ``lam`` at all find the same stream."""
    keyed = cls.keyed_config(calib) if cls is not None and "keyed_config" in vars(cls) \
        else calib
    return _canonical(keyed)


def _target_class(calib: dict) -> type | None:
    """The class ``calib``'s ``_target_`` names, or None (the run that uses it says why)."""
    target = calib.get("_target_")
    try:
        return locate_class("calibration._target_", str(target)) if target else None
    except ConfigError:
        return None


def _class_source(cls: type | None) -> str | None:
    """sha256 of the source file of the calibration class ``cls``: :func:`code_version`
    covers this package's code, not a calibration class of the user's own."""
    try:
        path = inspect.getsourcefile(cls) if cls is not None else None
    except TypeError:  # a class without a source file
        path = None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def stream_key(fingerprint: str, calib: dict, sel: Selection) -> str:
    """The key of the stream of the calibration config ``calib`` (plain containers, as
    :func:`calibration_config` gives it) over ``sel`` (the module docstring)."""
    cls = _target_class(calib)
    sel_d = {k: v for k, v in asdict(sel).items() if k not in ("db", "window_ns")}
    blob = json.dumps({"store": fingerprint, "calibration": canonical_config(calib, cls),
                       "class_source": _class_source(cls), "selection": sel_d,
                       "code": code_version()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def store_fingerprint(db: str | Path) -> str:
    """The store's content fingerprint, memoised for a local DuckDB file by its identity
    (path, inode, size, modification and change times, and those of its write-ahead log),
    since hashing its rows takes about a second per few million.  The change time is the
    kernel's, which no copy can set: another store copied over the file with its size and
    modification time kept (``cp -p``) read as the first one."""
    from replay.store import open_store

    p = Path(str(db))
    memo = None
    if p.is_file():
        ident = [str(p.resolve())]
        for f in (p, Path(f"{p}.wal")):
            if f.exists():
                st = f.stat()
                ident += [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        memo = streams_dir() / "fingerprints" / hashlib.sha256(
            json.dumps(ident).encode()).hexdigest()
        try:
            return memo.read_text().strip()
        except OSError:  # not memoised yet (or unreadable): hash the rows
            pass
    with open_store(db) as store:
        fp = store.fingerprint()
    if memo is not None:
        _memoise(memo, fp)
    return fp


def _memoise(memo: Path, fp: str) -> None:
    """Write ``fp`` to ``memo`` in one rename (a concurrent reader sees all of it or none).
    The memo only saves time: in a cache this process cannot write (shared read-only) the
    fingerprint is simply computed each run."""
    tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(fp)
        tmp.replace(memo)
    except OSError as e:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        _note_unmemoised(str(memo.parent), e.strerror or str(e))


@cache
def _note_unmemoised(folder: str, why: str) -> None:
    """One note per folder and process, not one per run of a job that runs several."""
    logging.getLogger(__name__).info("the store's fingerprint is not memoised: %s cannot be "
                                     "written (%s)", folder, why)


def ensure_stream(node: Any, sel: Selection, mode: str | None = None,
                  log: Any = None) -> StreamInfo | None:
    """The stream for a calibration config over a selection: found, or built now, and held
    (its lock file's shared ``flock``) until :meth:`StreamInfo.release` or until the info is
    dropped: a build or refresh of it waits, and ``volreplay cache clean`` leaves it, while a
    run reads it.  ``mode`` defaults to the node's ``calibration.cache``; ``off`` returns
    None.  In a cache this process cannot write, a whole stream is read as in any other, and
    one that must be built (missing, damaged, or ``refresh``) is a :class:`UserError`
    (:func:`unwritable`)."""
    mode = cache_mode(node) if mode is None else mode
    jobs, link = build_jobs(node), journal_rows(node) == "link"
    if mode not in MODES:
        raise ConfigError(f"calibration.cache: {mode!r} is not one of {', '.join(MODES)}")
    if mode == "off":
        return None
    calib = calibration_config(node)
    root = streams_dir()
    try:
        if not root.is_dir():  # a cache shared read-only is there already: nothing to make
            root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        from replay.app.bench import CACHE_ENV

        raise UserError(f"the surface cache {root} cannot be made: {e.strerror or e} "
                        f"(point {CACHE_ENV} at a folder)") from None
    key = stream_key(store_fingerprint(sel.db), calib, sel)
    folder = root / key

    lock, build = lock_file(root, key), mode == "refresh"
    info = StreamInfo(mode, key, folder, False, None)
    while True:  # held and whole, or built (under the build's lock) and then held
        if not build:
            held = hold(lock)
            if intact(folder):
                break
            if held is not None:
                held.close()
        try:
            building = exclusive(lock)
        except OSError as e:
            if e.errno not in READ_ONLY:
                raise
            raise unwritable(root, key, mode, e) from None
        with building:
            if build or not intact(folder):  # else it was built while we waited
                info = _build(calib, sel, key, folder, jobs, mode, log)
            build = False
    mark_used(root, key)
    if link and not linkable(folder):
        if log is not None:
            log.info("calibration.journal_rows=link: the cache's path %s holds a glob "
                     "character, so the journal copies the stream's rows", folder)
        link = False
    return replace(info, link=link, held=held)


def unwritable(root: Path, key: str, mode: str, e: OSError) -> UserError:
    """The error of a run that must build stream ``key`` in a cache it may only read (a
    cache shared read-only, the module docstring): where to build it instead."""
    from replay.app.bench import CACHE_ENV

    why = (f"calibration.cache=refresh cannot rebuild the surface stream {key[:12]}" if
           mode == "refresh" else f"the surface stream {key[:12]} is not built")
    return UserError(f"{why}: the surface cache {root} cannot be written "
                     f"({e.strerror or e}); build it where the cache can be written "
                     f"(volreplay calibrate, with this run's data and calibration overrides), "
                     f"or set {CACHE_ENV} to a folder this job can write, or "
                     "calibration.cache=off to fit live")


def _build(calib: dict, sel: Selection, key: str, folder: Path, jobs: int, mode: str,
           log: Any) -> StreamInfo:
    """Build stream ``key`` into a temporary folder and publish it at ``folder`` (under
    its lock)."""
    if log is not None:
        log.info("building the surface stream %s (calibration.cache=%s)", key[:12], mode)
    t0 = time.perf_counter()
    try:  # a lock file left writable in a folder that is not
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=folder.parent))
    except OSError as e:
        if e.errno not in READ_ONLY:
            raise
        raise unwritable(folder.parent, key, mode, e) from None
    try:
        manifest = build_stream(calib, sel, tmp, key, code_version(), jobs)
        _publish_dir(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    seconds = time.perf_counter() - t0
    if log is not None:
        log.info("surface stream built in %.1f s: %s wakes, %s fit rows", seconds,
                 f"{manifest['rows']['wakes']:,}", f"{manifest['rows']['fits']:,}")
    return StreamInfo(mode, key, folder, True, seconds)


def _publish_dir(tmp: Path, folder: Path) -> None:
    """Make ``tmp`` the stream at ``folder``: read-only files, then one rename."""
    for f in tmp.iterdir():
        f.chmod(0o444)
    tmp.chmod(folder.parent.stat().st_mode & 0o777)  # mkdtemp's 0700: the cache's own access
    if folder.exists():  # refresh: move the old one aside first (rename cannot replace a dir)
        retire(folder)
    tmp.rename(folder)


def retire(folder: Path) -> None:
    """Take a stream out of its key's place in one rename (to ``.<key>.old-<pid>``), then
    delete it: a run never finds half a stream.  What a failed delete leaves is an
    interrupted build's leftover (:mod:`replay.app.surfaces.inventory`)."""
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    folder.rename(old)
    shutil.rmtree(old, ignore_errors=True)  # read-only files in a writable folder: unlinkable


def intact(folder: Path) -> bool:
    """Whether ``folder`` holds a whole stream: its manifest, and each file the manifest
    counts rows of readable with that many rows (the Parquet footers only).  Streams are
    published read-only in one rename, so a damaged one was damaged after it was built (by
    hand, or by the disk); it is then built again, as if it were missing."""
    import pyarrow.parquet as pq

    try:
        rows = read_manifest(folder)["rows"]
        return all(pq.ParquetFile(folder / f"{name}.parquet").metadata.num_rows == n
                   for name, n in rows.items())
    except (OSError, ValueError, KeyError, TypeError):  # pyarrow's ArrowInvalid is a ValueError
        return False


def read_manifest(folder: Path) -> dict:
    return json.loads((Path(folder) / "manifest.json").read_text())
