"""Bench case ``backtest``: calibrate once, replay many, on the synthetic day.

On ``bench_day.duckdb`` (``--quick``: the two-hour store), with the SVI surface refitted
every 1 s of market time and a ``delta_band`` hedger on a short straddle.  Each day's run goes
in a process of its own, as a job would (its modules imported before the clock starts; the
compiled kernels it calls load inside the timed run):

* the cold process: ``market_only_events_per_second``, the replay with no consumers (after
  a first one that loads the replay's kernels; the faster of the runs with and without the
  feed's read-ahead thread), then
  ``build_events_per_second``: a cold cache, so the run builds the surface stream, then
  replays it;
* the cached processes: ``cached_events_per_second``: the same day, warm cache, another
  hedger config (band 0.05 instead of 0.1): the surface stream is read, not refitted; the
  median of :data:`CACHED_JOBS` such jobs, each in a process of its own
  (``cached_runs_events_per_second``: each job's rate, in the order they ran);
* the floor process: ``cached_no_strategy_events_per_second``, the same cached day with no
  book nor hedger (the calibration's stream spliced into the journal, nothing else): what a
  cached run costs before any strategy (``cached_no_strategy_vs_market_only``, the ceiling
  of ``cached_vs_market_only`` for this engine: its set-up, kernel loading, splicing,
  journal and metrics);
* ``cached_vs_market_only``: the ratio of the two rates above; ``cached_consumer_seconds``,
  where the median cached job's time goes: each consumer's seconds in its wakes (``calibration``:
  splicing the stream's events into the journal; the rest of the run is the market replay,
  the journal's writes and the run's set-up and metrics), and ``cached_journal``, what
  storing its journal cost (the run's ``journal`` metrics: rows, the writer thread's
  seconds, the seconds the run waited for it);
* the epochs process: ``epoch_build_events_per_second``, the cold process's run with
  ``calibration.epoch=6h`` on another cold cache, whose build fits the day's epochs in
  parallel processes (``calibration.build_jobs`` at its default, one per core;
  ``epoch_parts`` of them, the largest peaking at ``epoch_part_rss_mb``): another
  calibration (each epoch starts afresh), so another stream;
* ``same_journal_hash`` (in this process): ``calibration.cache=off`` against the cached run,
  same config, on the two-hour store at a 5 s cadence (a live run at 1 s on the day takes as
  long as the build).

Also reported: the stream's size on disk, the cached run's journal size, the build's share of
the cold run, the peak RSS of each day's process (``peak_rss_mb`` the largest;
``cached_process_rss_mb`` the cached jobs' largest) and
``cached_run_imports``, the modules the cached jobs imported inside their clocks besides numba's
own (which load with the kernels): empty unless :data:`RUN_MODULES` has fallen behind what a
run imports.  Stores are
built in the bench cache folder once per synthesis (:func:`replay.app.bench.synth_store`:
again when the synthesiser's source changes); the surface streams go to a fresh temporary
folder, so the build is always cold.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _cfg(db: Path, out: Path, band: float, every: str = "1s", cache: str = "auto",
         epoch: str | None = None, strategy: bool = True) -> dict:
    cfg = {
        "data": {"db": str(db)}, "out_dir": str(out), "seed": 0, "report": {"html": False},
        "calibration": {"_target_": "replay.consumers.calibration.CalibrationConsumer",
                        "model": "svi", "every": every, "cache": cache, "epoch": epoch},
        "book": {"_target_": "strategies.books.FixedBook", "structure": "straddle",
                 "size": 10.0},
        "strategy": {"_target_": "strategies.hedging.registry.DeltaBand", "band": band,
                     "lot": 1.0},
    }
    return cfg if strategy else {**cfg, "book": None, "strategy": None}


def _timed(cfg: dict) -> tuple[dict, float]:
    import replay

    t0 = time.perf_counter()
    m = replay.run(cfg)
    return m, time.perf_counter() - t0


#: The modules a day's run imports (``replay.app.backtest.run`` imports most of them when it
#: first needs them, and with them numba and scipy): a job pays for them once at start-up,
#: so they are imported before the clock starts.
RUN_MODULES = ("duckdb", "pandas", "pyarrow", "pyarrow.dataset", "pyarrow.pandas_compat",
               "omegaconf", "omegaconf._impl", "numba", "scipy.special", "scipy.linalg",
               "replay.app.backtest", "replay.app.bench", "replay.app.surfaces.cache",
               "replay.engine.loop", "replay.engine.snapshot", "replay.venue.simulator",
               "replay.consumers.calibration", "replay.consumers.marker",
               "replay.consumers.stream_reader", "replay.analytics.dynamics",
               "replay.analytics.execution", "replay.analytics.objective",
               "replay.analytics.tables", "strategies.board", "strategies.books",
               "strategies.hedging.registry")


#: cached jobs timed, each in a process of its own with the same config: the figure is their
#: median, since one run of three seconds on a shared machine moves by a third between runs
CACHED_JOBS = 3


def _imported_since(before: set[str]) -> list[str]:
    """The modules imported since ``before`` was taken, numba's own left out: they are
    imported as the compiled kernels load, which the clock includes by design."""
    return sorted(m for m in set(sys.modules) - before
                  if m.split(".")[0] != "numba")


def _day_job(which: str, db: str, out: str, band: float, epoch: str | None = None) -> dict:
    """One day's run in this (fresh) process, as a job would run it, with the process's peak
    RSS.  ``cold`` first times the market replay without consumers (the second of two: the
    first loads the compiled kernels)."""
    from replay.app import use_system_allocator

    use_system_allocator()
    for name in RUN_MODULES:  # imported before the clock starts, as at a job's start-up
        importlib.import_module(name)
    from replay.engine.loop import run_replay

    got: dict = {}
    if which == "cold":
        run_replay(db, [], Path(out + "_bare0"), progress=False)
        rates = []
        for ahead in (True, False):  # the reference is the faster read-ahead setting
            t0 = time.perf_counter()
            bare = run_replay(db, [], Path(out + f"_bare{ahead}"), progress=False,
                              prefetch=ahead)
            rates.append(bare.total_events / (time.perf_counter() - t0))
        got["market_per_second"] = max(rates)
    before = set(sys.modules)
    m, s = _timed(_cfg(Path(db), Path(out), band=band, epoch=epoch,
                       strategy=which != "floor"))
    return {**got, "seconds": s, "events": m["events_replayed"],
            "imported": _imported_since(before),
            "n_fits": m["calibration"]["n_fits"],
            "fit_ms_median": m["calibration"]["fit_ms_median"],
            "build_seconds": m["surface_stream"]["build_seconds"],
            "built": m["surface_stream"]["built"], "stream": m["surface_stream"]["path"],
            "parts": _parts(m["surface_stream"]["path"]),
            "consumer_seconds": {k: round(v["seconds"], 2) for k, v in m["consumers"].items()
                                 if v["wakes"]},
            "journal": {k: round(v, 2) for k, v in m["journal"].items()},
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "children_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def _parts(stream: str) -> int:
    return json.loads((Path(stream) / "manifest.json").read_text()).get("parts", 1)


def _in_own_process(which: str, db: Path, out: Path, band: float,
                    epoch: str | None = None) -> dict:
    code = ("import importlib.util, json; "
            f"spec = importlib.util.spec_from_file_location('bench_backtest', {__file__!r}); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            f"print(json.dumps(m._day_job({which!r}, {str(db)!r}, {str(out)!r}, {band!r}, "
            f"{epoch!r})))")
    p = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                       check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def run(quick: bool) -> dict:
    from replay.app.bench import CACHE_ENV, day_store

    db = day_store(quick)
    quick_db = day_store(True)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ[CACHE_ENV] = str(Path(tmp) / "cache")  # a cold surface-stream cache
        cold = _in_own_process("cold", db, Path(tmp) / "cold", band=0.1)
        jobs = [_in_own_process("warm", db, Path(tmp) / f"warm{i}", band=0.05)
                for i in range(CACHED_JOBS)]
        rates = [j["events"] / j["seconds"] for j in jobs]
        # the job of the median rate speaks for the cached run (its costs, its journal)
        at = sorted(range(CACHED_JOBS), key=rates.__getitem__)[CACHED_JOBS // 2]
        warm = jobs[at]
        floor = _in_own_process("floor", db, Path(tmp) / "floor", band=0.05)
        os.environ[CACHE_ENV] = str(Path(tmp) / "cache_epochs")
        epochs = _in_own_process("epochs", db, Path(tmp) / "epochs", band=0.1, epoch="6h")
        journal_bytes = (Path(tmp) / f"warm{at}" / "journal.duckdb").stat().st_size
        stream_bytes = sum(f.stat().st_size for f in Path(warm["stream"]).iterdir())
        live, _ = _timed(_cfg(quick_db, Path(tmp) / "live", band=0.1, every="5s", cache="off"))
        cached, _ = _timed(_cfg(quick_db, Path(tmp) / "cached", band=0.1, every="5s"))
    if any(j["built"] for j in (*jobs, floor)) or not cold["built"] or not epochs["built"]:
        # e.g. a source file edited between the two processes: another code version, so
        # another cache key; the figures would not be those of a build and a cached run
        raise RuntimeError("the cold run did not build the surface stream, or the cached "
                           "run did not reuse it; nothing is reported")
    events, market = warm["events"], cold["market_per_second"]
    return {
        "events": events,
        "n_fits": warm["n_fits"],
        "fit_ms_median": warm["fit_ms_median"],
        "build_events_per_second": round(cold["events"] / cold["seconds"]),
        "build_seconds": round(cold["build_seconds"], 2),
        "cold_run_seconds": round(cold["seconds"], 2),
        "cached_events_per_second": round(rates[at]),
        "cached_runs_events_per_second": [round(r) for r in rates],
        "cached_run_seconds": round(warm["seconds"], 2),
        "cached_consumer_seconds": warm["consumer_seconds"],
        "cached_journal": warm["journal"],
        "market_only_events_per_second": round(market),
        "cached_vs_market_only": round(rates[at] / market, 3),
        "cached_no_strategy_events_per_second": round(floor["events"] / floor["seconds"]),
        "cached_no_strategy_vs_market_only": round(floor["events"] / floor["seconds"] / market,
                                                   3),
        "same_journal_hash": live["journal_hash"] == cached["journal_hash"],
        "epoch_build_events_per_second": round(epochs["events"] / epochs["seconds"]),
        "epoch_build_seconds": round(epochs["build_seconds"], 2),
        "epoch_parts": epochs["parts"],
        "epoch_part_rss_mb": round(epochs["children_rss_mb"]) if epochs["parts"] > 1 else None,
        "surface_stream_mb": round(stream_bytes / 2 ** 20, 1),
        "journal_mb": round(journal_bytes / 2 ** 20, 1),
        "peak_rss_mb": round(max(cold["rss_mb"], *(j["rss_mb"] for j in jobs))),
        "cold_process_rss_mb": round(cold["rss_mb"]),
        "cached_process_rss_mb": round(max(j["rss_mb"] for j in jobs)),
        "cached_run_imports": sorted({m for j in jobs for m in j["imported"]}),
    }
