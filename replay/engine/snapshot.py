"""Snapshots: everything a run needs to continue exactly where it was.

A snapshot holds the market state arrays (which include the feed cursor: the last folded
``ts_recv`` and the last ``seq`` of every stream), the wake conditions, pending orders, the
RNG state (``bit_generator.state``), every consumer's ``state_dict()``, the venue's state (its
books: the run's one ledger), the snapshot schedule, and the journal's last seq and running
hash.

File format (``snapshots/snap-<events>-<journal seq>.snap``)::

    magic b"VRSNAP07" | payload length (uint64 LE) | blake2b-256 of payload | payload (pickle)

The magic's number changes when what a snapshot holds stops meaning the same thing (02: the
journal's running hash takes each payload by its digest; 03: the market state holds each
perpetual's funding index, and the venue's carry its index at the last accrual; 04: the PnL
marker's state holds each option's basis, and its journal an attribution column for it; 05:
the basis bucket's second-order terms; 06: the forecast board's forecast times; 07: a
calibration scheme's previous parameters with their time to expiry), so an older run is
never resumed into a hash that neither version would give.

Written to a temporary file, fsynced, renamed over the final name, and the directory fsynced,
so a reader sees either nothing or a whole file.  A file whose length or checksum does not
match (a torn write, a truncated copy) is skipped with a :class:`SnapshotWarning` and never
loaded; resume then falls back to the previous good snapshot.  A resume that finds no good
snapshot at all is a :class:`~replay.model.config.ConfigError` raised before anything is written:
starting over instead would discard the journal of the run the user meant to continue.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from replay.engine.runtime import Runtime

MAGIC = b"VRSNAP07"
_HDR = struct.Struct("<8sQ32s")


class SnapshotWarning(UserWarning):
    """A snapshot file was unusable and skipped."""


def capture(rt: Runtime) -> dict[str, Any]:
    st = rt.state
    return {
        "fstate": st.fstate.copy(), "istate": st.istate.copy(), "clock": st.clock.copy(),
        "underlying_id": st.underlying_id,
        "wakes": rt.wakes.arrays(),
        "orders": list(rt.orders), "next_order_id": rt.next_order_id,
        "rng": rt.rng.bit_generator.state,
        "consumers": {c.name: c.state_dict() for c in rt.consumers},
        "venue": rt.venue.state_dict() if hasattr(rt.venue, "state_dict") else None,
        "n_wakes": rt.n_wakes,
        "next_snap_events": rt.next_snap_events, "next_snap_ts": rt.next_snap_ts,
        "journal_seq": rt.journal.seq, "journal_hash": rt.journal.hash,
    }


def restore(rt: Runtime, p: dict[str, Any]) -> None:
    from replay.errors import ConfigError

    st = rt.state
    if p["fstate"].shape != st.fstate.shape:
        raise ConfigError("resume: the snapshot was taken on a store with different "
                          "instruments (data.db differs from the run's)")
    names = {c.name for c in rt.consumers}
    if names != set(p["consumers"]):  # e.g. book=none on resuming a run that had a book
        raise ConfigError(f"resume: the snapshot holds consumers {', '.join(sorted(p['consumers']))}"
                          f" but this config has {', '.join(sorted(names)) or 'none'}; "
                          "resume with the run's calibration, book and strategy")
    st.fstate[...], st.istate[...], st.clock[...] = p["fstate"], p["istate"], p["clock"]
    st.underlying_id = p["underlying_id"]
    rt.wakes.load(p["wakes"])
    rt.orders = list(p["orders"])
    rt.next_order_id = p["next_order_id"]
    rt.rng.bit_generator.state = p["rng"]
    for c in rt.consumers:
        c.load_state_dict(p["consumers"][c.name])
    if p.get("venue") is not None:
        rt.venue.load_state_dict(p["venue"])
    rt.n_wakes = p["n_wakes"]
    rt.next_snap_events, rt.next_snap_ts = p["next_snap_events"], p["next_snap_ts"]


def write(directory: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write one snapshot atomically; returns its path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    body = pickle.dumps(payload, protocol=5)
    n_events = int(payload["clock"][1])
    final = d / f"snap-{n_events:015d}-{payload['journal_seq'] + 1:012d}.snap"
    tmp = final.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(_HDR.pack(MAGIC, len(body), hashlib.blake2b(body, digest_size=32).digest()))
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return final


def read(path: str | os.PathLike) -> dict[str, Any]:
    """Load one snapshot; raises ValueError when it is torn or not a snapshot."""
    data = Path(path).read_bytes()
    if len(data) < _HDR.size:
        raise ValueError("shorter than the header")
    magic, n, digest = _HDR.unpack_from(data)
    if magic != MAGIC:
        raise ValueError("written by another version of volreplay"
                         if magic.startswith(b"VRSNAP") else "not a volreplay snapshot")
    body = data[_HDR.size:]
    if len(body) != n:
        raise ValueError(f"payload is {len(body)} bytes, header says {n}")
    if hashlib.blake2b(body, digest_size=32).digest() != digest:
        raise ValueError("checksum mismatch")
    return pickle.loads(body)


def candidates(where: str | os.PathLike) -> list[Path]:
    """Snapshot files to try, newest first: ``where`` is a run dir, its ``snapshots`` dir, or
    one snapshot file (then older ones beside it are the fall-backs)."""
    p = Path(where)
    if p.is_file():
        older = sorted((q for q in p.parent.glob("snap-*.snap") if q.name < p.name), reverse=True)
        return [p, *older]
    d = p / "snapshots" if (p / "snapshots").is_dir() else p
    return sorted(d.glob("snap-*.snap"), reverse=True)


def run_dir_of(where: str | os.PathLike) -> Path:
    """The run directory a ``resume=`` value names: the run dir itself, its ``snapshots``
    dir, or one snapshot file in it."""
    p = Path(where)
    if p.is_file():
        p = p.parent
    return p.parent if p.name == "snapshots" else p


def find_latest(where: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """The newest good snapshot and its path, skipping (with a warning) torn ones.

    Raises :class:`~replay.model.config.ConfigError` naming ``resume`` when there is none, so that
    a mistyped path stops the run before it writes anything."""
    from replay.errors import ConfigError

    if not Path(where).exists():
        raise ConfigError(f"resume: {where} does not exist (give the run directory of the run "
                          "to continue, its snapshots folder or one snapshot file)")
    files = candidates(where)
    for path in files:
        try:
            return path, read(path)
        except Exception as e:  # noqa: BLE001 - a torn file can fail anywhere, even unpickling
            warnings.warn(f"skipping unusable snapshot {path}: {e}", SnapshotWarning,
                          stacklevel=2)
    why = f"all {len(files)} snapshot files are unusable" if files else "it holds no snapshot"
    raise ConfigError(f"resume: no usable snapshot under {where} ({why}; a run writes them "
                      "when snapshot_every_s is set); nothing was changed")


def load_latest(where: str | os.PathLike) -> dict[str, Any]:
    """The newest good snapshot under ``where`` (see :func:`find_latest`)."""
    return find_latest(where)[1]
