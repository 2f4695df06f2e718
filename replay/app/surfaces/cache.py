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
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from replay.app.selection import Selection
from replay.app.surfaces.build import build_stream, cores
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


def lock_file(root: Path, key: str) -> Path:
    """The file whose ``flock`` a build of stream ``key`` holds; its modification time is
    when a run last read or built the stream (:func:`mark_used`)."""
    return root / f"{key}.lock"


def mark_used(root: Path, key: str) -> None:
    """Record that a run reads (or built) stream ``key`` now, for ``volreplay cache clean
    --unused-days``."""
    try:
        lock_file(root, key).touch()
    except OSError:  # a cache shared read-only: its streams are simply never marked
        pass


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
    (path, inode, size, modification time, and those of its write-ahead log), since hashing
    its rows takes about a second per few million."""
    from replay.store import open_store

    p = Path(str(db))
    memo = None
    if p.is_file():
        ident = [str(p.resolve())]
        for f in (p, Path(f"{p}.wal")):
            if f.exists():
                st = f.stat()
                ident += [st.st_ino, st.st_size, st.st_mtime_ns]
        memo = streams_dir() / "fingerprints" / hashlib.sha256(
            json.dumps(ident).encode()).hexdigest()
        if memo.exists():
            return memo.read_text().strip()
    with open_store(db) as store:
        fp = store.fingerprint()
    if memo is not None:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f".{memo.name}.{os.getpid()}")
        tmp.write_text(fp)
        tmp.replace(memo)
    return fp


def _hold(path: Path) -> Any:
    """``path`` open with its shared ``flock`` (:func:`ensure_stream`), after any build that
    holds it exclusively; closing the file lets go."""
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")  # noqa: SIM115 - held past this call, closed by StreamInfo.release
    fcntl.flock(f, fcntl.LOCK_SH)
    return f


@contextmanager
def locked(path: Path, wait: bool = True) -> Iterator[bool]:
    """Hold ``path``'s exclusive ``flock``, the one a stream's build holds: waiting for a
    build in progress (never failing on it), or with ``wait=False`` only if no one holds it.
    Yields whether it is held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_stream(node: Any, sel: Selection, mode: str | None = None,
                  log: Any = None) -> StreamInfo | None:
    """The stream for a calibration config over a selection: found, or built now, and held
    (its lock file's shared ``flock``) until :meth:`StreamInfo.release` or until the info is
    dropped: a build or refresh of it waits, and ``volreplay cache clean`` leaves it, while a
    run reads it.  ``mode`` defaults to the node's ``calibration.cache``; ``off`` returns
    None."""
    mode = cache_mode(node) if mode is None else mode
    jobs, link = build_jobs(node), journal_rows(node) == "link"
    if mode not in MODES:
        raise ConfigError(f"calibration.cache: {mode!r} is not one of {', '.join(MODES)}")
    if mode == "off":
        return None
    calib = calibration_config(node)
    root = streams_dir()
    try:
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
            held = _hold(lock)
            if intact(folder):
                break
            held.close()
        with locked(lock):
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


def _build(calib: dict, sel: Selection, key: str, folder: Path, jobs: int, mode: str,
           log: Any) -> StreamInfo:
    """Build stream ``key`` into a temporary folder and publish it at ``folder`` (under
    its lock)."""
    if log is not None:
        log.info("building the surface stream %s (calibration.cache=%s)", key[:12], mode)
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=folder.parent))
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
