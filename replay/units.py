"""Units every layer shares: time is int64 nanoseconds since the epoch, UTC."""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone

NS = 1_000_000_000  # nanoseconds per second


def iso(ns: int | None, timespec: str = "milliseconds") -> str | None:
    """``ns`` since the epoch as ISO 8601 UTC (``2025-01-06T00:00:00.000+00:00``), None for
    None; ``timespec`` as :meth:`datetime.isoformat` takes it."""
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / NS, tz=timezone.utc).isoformat(timespec=timespec)


def iso_z(ns: int) -> str:
    """``ns`` as ``2025-01-06T00:00:00Z`` (to the second), for log and error lines."""
    return datetime.fromtimestamp(ns / NS, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
