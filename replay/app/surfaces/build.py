"""Building a surface stream: one calibration-only replay, or its epochs in parallel.

A build replays the selection with only the calibration consumer and a
:class:`~replay.consumers.surface_stream.StreamRecorder` attached (:func:`build_stream`).

With ``calibration.epoch`` the calibration forgets its fits at each epoch boundary
(:mod:`replay.consumers.calibration`), so the stream is the concatenation of independent
parts, and ``calibration.build_jobs`` processes build them at once.  Each part's process
replays the market from the selection's start, with a consumer that sleeps until the part
begins (a fit reads quotes set before it; the market replay alone runs at millions of events
per second), and stops at the part's end.  The parts are joined
(:func:`replay.consumers.surface_stream.join_parts`), and the joined stream is replayed once,
calibration only, as a cached run replays it: that gives its manifest the calibration metrics
and journal hash that a serial build records, and checks that the replay takes in every row
of it, none recorded past its replay position
(:class:`~replay.consumers.surface_stream.StreamMismatch` otherwise).  Tests compare the
joined stream with a serial build's, table for table.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from replay.app.selection import Selection
from replay.units import iso_z

log = logging.getLogger(__name__)

#: the stream's surface dynamics (``replay.analytics.dynamics``), beside its files
DYNAMICS_FILE = "dynamics.parquet"


def make_consumer(calib: dict, **kwargs: Any):
    """The calibration consumer of a resolved calibration config (``kwargs``: a recorder, or
    a stream to replay)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    return instantiate(OmegaConf.create(calib), **kwargs, _convert_="all")


def replay_selection(consumer: Any, sel: Selection, scratch: str | Path,
                     end: int | None = None) -> Any:
    """A calibration-only replay of the selection (to ``end``, if given, instead of its own),
    storing no journal; returns the :class:`~replay.engine.loop.ReplayResult`."""
    from replay.app import FEED_READ_AHEAD
    from replay.engine.loop import ProgressLog, run_replay

    return run_replay(sel.db, [consumer], scratch, start=sel.start,
                      end=sel.end if end is None else end, window_ns=sel.window_ns,
                      underlying_id=sel.underlying_id,
                      instrument_ids=list(sel.instrument_ids) if sel.instrument_ids else None,
                      expiries=list(sel.expiries) if sel.expiries else None,
                      # a day's build takes minutes: a bar on a terminal, log lines else
                      progress=None if sys.stderr.isatty() else ProgressLog(),
                      prefetch=FEED_READ_AHEAD, keep_journal=False)


def part_starts(lo: int, hi: int, epoch_ns: int, jobs: int) -> list[int]:
    """Where the parts after the first begin, for a replay over ``[lo, hi]``: the epoch
    boundaries in ``(lo, hi]`` grouped into at most ``jobs`` runs of consecutive epochs, of
    about equal counts.

    >>> h = 3600 * 10 ** 9
    >>> [s // h for s in part_starts(1, 24 * h - 1, 6 * h, 2)]
    [12]
    >>> [s // h for s in part_starts(1, 24 * h - 1, 6 * h, 8)]
    [6, 12, 18]
    """
    bounds = list(range((lo // epoch_ns + 1) * epoch_ns, hi + 1, epoch_ns))
    n = len(bounds) + 1
    parts = max(1, min(jobs, n))
    return [bounds[round(i * n / parts) - 1] for i in range(1, parts)]


def _selection_part_starts(sel: Selection, epoch_ns: int | None, jobs: int) -> list[int]:
    """:func:`part_starts` over the span the selection's replay covers: the feed's, with the
    selection's instrument and expiry filters (a part must not end after the data its
    instruments have: a replay fires its wake timers up to its end)."""
    from replay.engine.feed import Feed
    from replay.store import open_store

    if epoch_ns is None or jobs < 2:
        return []
    with open_store(sel.db) as store:
        feed = Feed(store, start=sel.start, end=sel.end, instrument_ids=sel.instrument_ids,
                    expiries=sel.expiries)
        lo, end = feed.start, feed.end
    return [] if lo is None or end is None else part_starts(lo, end - 1, epoch_ns, jobs)


def build_stream(calib: dict, sel: Selection, folder: Path, key: str = "", code: str = "",
                 jobs: int = 1) -> dict:
    """Build the stream of a resolved calibration config (without its build keys) over a
    selection into ``folder``; returns the manifest (also written, last, as manifest.json),
    which records the cache ``key`` and ``code`` version it was built for."""
    from replay.analytics.dynamics import recorded_dynamics
    from replay.consumers.stream_reader import StreamReader
    from replay.consumers.surface_stream import StreamMismatch, StreamRecorder, join_parts

    t0 = time.perf_counter()
    starts = _selection_part_starts(sel, make_consumer(calib).epoch_ns, jobs)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        if starts:
            log.info("building the stream in %d processes, parts from %s", len(starts) + 1,
                     ", ".join(iso_z(t) for t in starts))
            rows = join_parts(_build_parts(calib, sel, Path(scratch), starts), folder)
            consumer = make_consumer(calib, stream=StreamReader(folder))
            res = replay_selection(consumer, sel, scratch)
            if not consumer.replayed_whole:
                raise StreamMismatch(f"the joined parts of the surface stream {folder} are "
                                     "not all replayed by the selection; a build bug")
        else:
            recorder = StreamRecorder(folder)
            consumer = make_consumer(calib, recorder=recorder)
            res = replay_selection(consumer, sel, scratch)
            rows = recorder.write()
    # the surface dynamics derive from the published fits alone: a projection too
    dynamics = recorded_dynamics(folder / "fits.parquet", folder / DYNAMICS_FILE)
    if (folder / DYNAMICS_FILE).exists():  # counted, so that a damaged one is rebuilt
        import pyarrow.parquet as pq

        rows["dynamics"] = pq.ParquetFile(folder / DYNAMICS_FILE).metadata.num_rows
    manifest = {"key": key, "calibration": calib,
                "selection": {k: v for k, v in asdict(sel).items() if k != "window_ns"},
                "code": code, "events": res.total_events, "rows": rows,
                "parts": len(starts) + 1,
                "bytes": sum(f.stat().st_size for f in folder.iterdir() if f.is_file()),
                "build_seconds": round(time.perf_counter() - t0, 3),
                "calibration_metrics": consumer.metrics(),
                "calibration_journal_hash": res.journal_hash, "dynamics": dynamics}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    return manifest


def cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count() or 1


def _import_path() -> list[str]:
    """A part's ``PYTHONPATH``: the package's root, then this process's own import folders
    (its working directory and script's folder, where a calibration class of the user's own
    may live: a part runs with ``-P``, which adds neither), the interpreter's left out."""
    own = {os.path.abspath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    found = [str(Path(__file__).resolve().parents[3])]
    for p in sys.path:
        p = os.path.abspath(p or os.curdir)
        inside = any(p == o or p.startswith(o + os.sep) for o in own)
        if p not in found and not inside and os.path.isdir(p):
            found.append(p)
    return found


def _build_parts(calib: dict, sel: Selection, scratch: Path, starts: list[int]
                 ) -> list[tuple[Path, int]]:
    """Record the parts beginning at ``sel``'s start and at ``starts``, all at once, each in
    a process of its own (``python -P -m replay.app.surfaces.build``: a fresh interpreter,
    which neither forks a process holding DuckDB's and numba's threads nor, as
    multiprocessing's spawn would, re-runs the caller's script); returns each part's folder
    and the consumer wakes before it.  A part that fails stops the others at once."""
    from replay.engine.loop import PROGRESS_EVERY_S
    from replay.errors import BuildError

    threads = max(1, cores() // (len(starts) + 1))  # numba threads per part
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(_import_path())}
    bounds = list(zip([0, *starts], [*starts, None]))
    folders = [scratch / f"part{i}" for i in range(len(bounds))]
    procs: list[subprocess.Popen] = []
    report_at = time.monotonic() + PROGRESS_EVERY_S + 1  # after the parts' first lines
    try:
        for folder, (begin, until) in zip(folders, bounds):
            spec = {"calib": calib, "selection": asdict(sel), "folder": str(folder),
                    "active_from": begin, "until": until, "threads": threads}
            with open(f"{folder}.log", "w") as part_log:  # the child keeps its own handle
                procs.append(subprocess.Popen(
                    [sys.executable, "-P", "-m", __name__], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, stderr=part_log, text=True, env=env))
            try:
                procs[-1].stdin.write(json.dumps(spec, default=str))
                procs[-1].stdin.close()
            except BrokenPipeError:  # it died at start: the loop below reports its log
                pass
        while True:
            codes = [p.poll() for p in procs]
            failed = [i for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                i = failed[0]
                tail = Path(f"{folders[i]}.log").read_text()[-4000:]
                raise BuildError(f"the surface stream build's part {i} (from "
                                 f"{iso_z(bounds[i][0]) if i else 'the start'}) exited with "
                                 f"code {codes[i]}; its log ends:\n{tail}")
            if all(c == 0 for c in codes):
                break
            if time.monotonic() >= report_at:  # the parts' own progress lines, summed up
                report_at += PROGRESS_EVERY_S
                times = [_market_time(Path(f"{f}.log")) for f in folders]
                if any(times):
                    log.info("building: parts at market time %s",
                             ", ".join(t or "-" for t in times))
            time.sleep(0.05)
        wakes = [int(p.stdout.read().split()[-1]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            p.stdout.close()
    before = [sum(wakes[:i]) for i in range(len(wakes))]
    return list(zip(folders, before))


def _market_time(part_log: Path) -> str:
    """The market time of the last progress line a part logged ("" before its first)."""
    found = re.findall(r"market time (\S+),", part_log.read_text())
    return found[-1] if found else ""


def _build_part(spec: dict) -> int:
    """One part's process: record the wakes in ``[active_from, until)``; returns the
    consumer's wake count."""
    import numba

    from replay.app import use_system_allocator
    from replay.consumers.surface_stream import StreamRecorder

    use_system_allocator()  # as a run's process does
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    numba.set_num_threads(min(spec["threads"], numba.config.NUMBA_NUM_THREADS))
    folder = Path(spec["folder"])
    sel = Selection(**{k: tuple(v) if isinstance(v, list) else v
                       for k, v in spec["selection"].items()})
    recorder = StreamRecorder(folder)
    consumer = make_consumer(spec["calib"], recorder=recorder)
    consumer.active_from = spec["active_from"]
    replay_selection(consumer, sel, folder / "run", end=spec["until"])
    recorder.write()
    return consumer.n_wakes


if __name__ == "__main__":
    print(_build_part(json.loads(sys.stdin.read())))
