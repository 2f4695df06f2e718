"""What the surface-stream cache holds, and removing what is no longer wanted.

Streams are content-addressed (:mod:`replay.app.surfaces.cache`): another store, calibration
config, data selection or code version makes another stream and leaves the old one unread, at
about 130 MB per day of data at a 1 s cadence.  :func:`cached_streams` lists them (``volreplay
cache list``); :func:`clean` (``volreplay cache clean``) removes those built by another code
version (``stale``: this install never reads them again), those no run has read for some days,
or all of them.

A run that reads a stream, or builds it, marks it used (the modification time of its
``<key>.lock``).  A stream whose lock is held (a build or refresh in progress, or a run
reading it: :func:`~replay.app.surfaces.cache.ensure_stream`) is left alone; one that is
removed is first renamed out of its key's place under its lock, so a run never finds half a
stream, and one that starts while its stream is removed builds it again.  What a run leaves
after it, a journal whose rows link a removed stream, cannot read those rows any more
(``docs/outputs.md``).  The lock files themselves stay: removing one while another process
waits on it would let two builds run.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from replay.app.surfaces.cache import code_version, read_manifest, retire, streams_dir
from replay.app.surfaces.locks import lock_file, locked
from replay.errors import UserError
from replay.units import NS, iso_z

DAY_S = 86400.0


@dataclass(frozen=True)
class CachedStream:
    """One complete stream in the cache."""

    key: str
    path: Path
    bytes: int
    last_used: float  #: seconds since the epoch: its lock's modification time
    current: bool  #: built by this install's code version, so runs can read it
    manifest: dict

    def as_row(self) -> dict:
        """The stream as one line of ``volreplay cache list``."""
        m, calib = self.manifest, self.manifest.get("calibration", {})
        return {"key": self.key, "size_mb": round(self.bytes / 2 ** 20, 1),
                "last_used": iso_z(round(self.last_used * NS)), "current": self.current,
                "db": m.get("selection", {}).get("db"), "model": calib.get("model"),
                "every": calib.get("every"), "epoch": calib.get("epoch"),
                "wakes": m.get("rows", {}).get("wakes"), "parts": m.get("parts", 1)}


def cached_streams(root: Path | None = None) -> list[CachedStream]:
    """The complete streams under ``root`` (default: the cache's), most recently used first."""
    root = streams_dir() if root is None else Path(root)
    code = code_version()
    out = []
    for folder in _stream_folders(root):
        try:
            manifest = read_manifest(folder)
        except (OSError, ValueError):  # damaged by hand: no run can read it, so it is stale
            manifest = {}
        lock = lock_file(root, folder.name)
        try:
            used = (lock if lock.exists() else folder / "manifest.json").stat().st_mtime
            size = _size(folder)
        except FileNotFoundError:  # removed while listed (a clean or refresh elsewhere)
            continue
        out.append(CachedStream(folder.name, folder, size, used,
                                manifest.get("code") == code, manifest))
    return sorted(out, key=lambda s: s.last_used, reverse=True)


def summary(streams: list[CachedStream], root: Path | None = None) -> dict:
    """The last line of ``volreplay cache list``: the folder, how many streams, their size
    and how many are stale."""
    return {"folder": str(streams_dir() if root is None else root), "streams": len(streams),
            "size_mb": round(sum(s.bytes for s in streams) / 2 ** 20, 1),
            "stale": sum(not s.current for s in streams)}


def clean(*, stale: bool = False, unused_days: float | None = None, everything: bool = False,
          dry_run: bool = False, root: Path | None = None) -> dict:
    """Remove the streams that are ``stale`` (another code version's), unused for
    ``unused_days`` or more, or all of them (``everything``), and what interrupted builds
    left behind; ``dry_run`` only says what would go.  Returns the summary ``volreplay cache
    clean`` prints: streams removed (their keys), MB freed, streams kept, streams skipped
    because a build holds their lock, leftovers removed."""
    if not (stale or everything or unused_days is not None):
        raise UserError("cache clean: say what to remove: --stale, --unused-days N or --all")
    if unused_days is not None and not unused_days >= 0:
        raise UserError(f"cache clean: --unused-days must be a number of days >= 0, "
                        f"not {unused_days}")
    root = streams_dir() if root is None else Path(root)
    now = time.time()
    removed, kept, busy, freed = [], 0, 0, 0
    for s in cached_streams(root):
        if not (everything or (stale and not s.current) or (
                unused_days is not None and now - s.last_used >= unused_days * DAY_S)):
            kept += 1
            continue
        try:
            with _lock_if_free(lock_file(root, s.key), create=not dry_run) as free:
                if not free:
                    busy += 1
                    continue
                if not dry_run:
                    retire(s.path)
        except PermissionError as e:  # a cache shared read-only: say so, in one line
            raise UserError(f"cache clean: cannot remove streams from {root}: "
                            f"{e.strerror}") from e
        removed.append(s.key)
        freed += s.bytes
    leftovers = _clean_leftovers(root, dry_run)
    return {"folder": str(root), "removed": len(removed), "freed_mb": round(freed / 2 ** 20, 1),
            "kept": kept, "busy": busy, "leftovers": leftovers, "dry_run": dry_run,
            "keys": removed}


def _stream_folders(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for p in sorted(root.iterdir()):
        if p.is_dir() and not p.name.startswith(".") and (p / "manifest.json").exists():
            yield p


def _clean_leftovers(root: Path, dry_run: bool) -> int:
    """Remove the temporary folders of builds and refreshes that were interrupted (their
    names start with a dot and their key, or its first 12 characters); those whose key's lock
    is held belong to a build in progress and stay."""
    n = 0
    if not root.is_dir():
        return n
    for p in sorted(root.iterdir()):
        if not (p.is_dir() and p.name.startswith(".")):
            continue
        stem = p.name[1:].split(".old-")[0].split("-")[0]
        locks = sorted(root.glob(f"{stem}*.lock"))
        if len(locks) != 1:  # not ours, or its key is ambiguous: leave it
            continue
        with _lock_if_free(locks[0], create=not dry_run) as free:
            if free:
                if not dry_run:
                    shutil.rmtree(p, ignore_errors=True)
                n += 1
    return n


@contextmanager
def _lock_if_free(path: Path, create: bool = True) -> Iterator[bool]:
    """:func:`~replay.app.surfaces.cache.locked` without waiting; a missing lock file is
    free, and is created only if ``create`` (a dry run changes nothing)."""
    if not create and not path.exists():
        yield True
        return
    with locked(path, wait=False) as free:
        yield free


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
