"""The lock files of the surface-stream cache (:mod:`replay.app.surfaces.cache`): a build of
stream ``<key>`` holds an exclusive ``flock`` on ``<key>.lock`` beside it, and a run reading
it a shared one, so a build or refresh waits for the runs reading the stream and a run waits
for a build in progress.

A cache may be shared read-only (a read-only mount, another user's folder): a reader there
opens the lock file read-only, as ``flock`` needs no write access, or takes no lock when the
file is not there and cannot be made (:func:`hold`).
"""

from __future__ import annotations

import errno
import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

#: what opening a file for writing raises in a folder this process may only read
READ_ONLY = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


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


def hold(path: Path) -> IO | None:
    """``path`` open with its shared ``flock``, after any build that holds it exclusively;
    closing the file lets go.  In a cache this process may only read, ``path`` is opened
    read-only (on NFS a shared lock needs a file open for reading, which this is); if it is
    not there either, None: no build can hold it, and a reader trusts only a whole stream,
    which a build publishes in one rename, so the stream needs no lock to be read safely."""
    try:
        f = open(path, "a+")  # noqa: SIM115 - held past this call, closed by StreamInfo.release
    except OSError as e:
        if e.errno not in READ_ONLY:
            raise
        try:
            f = open(path, "rb")  # noqa: SIM115 - as above
        except FileNotFoundError:
            return None
    fcntl.flock(f, fcntl.LOCK_SH)
    return f


def exclusive(path: Path, wait: bool = True) -> IO | None:
    """``path`` open (made if missing) with its exclusive ``flock``, the one a build holds,
    after any other build and every reader (with ``wait=False`` only if no one holds it, else
    None); closing the file lets go.  Raises the :class:`OSError` of the open in a cache this
    process may only read (errno in :data:`READ_ONLY`), for the caller to say where to build
    instead."""
    f = open(path, "a+")  # noqa: SIM115 - returned, closed by the caller
    try:
        fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        f.close()
        return None
    except BaseException:
        f.close()
        raise
    return f


@contextmanager
def locked(path: Path, wait: bool = True) -> Iterator[bool]:
    """Hold ``path``'s exclusive ``flock`` (:func:`exclusive`) while the block runs: waiting
    for a build in progress (never failing on it), or with ``wait=False`` only if no one holds
    it.  Yields whether it is held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    f = exclusive(path, wait)
    if f is None:
        yield False
        return
    with f:
        yield True
