"""Bench case ``backtest``: calibrate once, replay many, on the synthetic day.

All in one process, on ``bench_day.duckdb`` (``--quick``: the two-hour store), with the SVI
surface refitted every 1 s of market time and a ``delta_band`` hedger on a short straddle:

* ``market_only_events_per_second``: the replay with no consumers (the second of two, the
  first having loaded the compiled kernels that every later run in the process reuses);
* ``build_events_per_second``: a cold cache: the run builds the surface stream, then replays it;
* ``cached_events_per_second``: the same day, warm cache, another hedger config (band 0.05
  instead of 0.1): the surface stream is read, not refitted;
* ``cached_vs_market_only``: the ratio of the two above;
* ``same_journal_hash``: ``calibration.cache=off`` against the cached run, same config, on the
  two-hour store at a 5 s cadence (a live run at 1 s on the day takes as long as the build).

Also reported: the stream's size on disk, the cached run's journal size, the build's share of
the cold run, and the peak RSS of the case process.  Stores are built once in the bench cache
folder (:func:`replay.app.bench.cache_dir`); the surface streams go to a fresh temporary
folder, so the build is always cold.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from pathlib import Path


def _store(quick: bool) -> Path:
    from replay.app.bench import dataset_path
    from replay.synth import SynthConfig, synthesize

    path = dataset_path("bench_quick_backtest.duckdb" if quick else "bench_day.duckdb")
    if not path.exists():
        synthesize(path, SynthConfig(hours=2 if quick else None, seed=11, model="heston",
                                     scale="small" if quick else "day"))
    return path


def _cfg(db: Path, out: Path, band: float, every: str = "1s", cache: str = "auto") -> dict:
    return {
        "data": {"db": str(db)}, "out_dir": str(out), "seed": 0, "report": {"html": False},
        "calibration": {"_target_": "replay.consumers.calibration.CalibrationConsumer",
                        "model": "svi", "every": every, "cache": cache},
        "book": {"_target_": "strategies.books.FixedBook", "structure": "straddle",
                 "size": 10.0},
        "strategy": {"_target_": "strategies.hedging.registry.DeltaBand", "band": band,
                     "lot": 1.0},
    }


def _timed(cfg: dict) -> tuple[dict, float]:
    import replay

    t0 = time.perf_counter()
    m = replay.run(cfg)
    return m, time.perf_counter() - t0


def run(quick: bool) -> dict:
    from replay.app.bench import CACHE_ENV
    from replay.engine.loop import run_replay

    db = _store(quick)
    quick_db = _store(True)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ[CACHE_ENV] = str(Path(tmp) / "cache")  # a cold surface-stream cache
        run_replay(db, [], Path(tmp) / "bare0", progress=False)  # loads the numba kernels
        t0 = time.perf_counter()
        bare = run_replay(db, [], Path(tmp) / "bare", progress=False)
        market = bare.total_events / (time.perf_counter() - t0)
        cold, cold_s = _timed(_cfg(db, Path(tmp) / "cold", band=0.1))
        warm, warm_s = _timed(_cfg(db, Path(tmp) / "warm", band=0.05))
        journal_bytes = (Path(tmp) / "warm" / "journal.duckdb").stat().st_size
        stream = Path(warm["surface_stream"]["path"])
        stream_bytes = sum(f.stat().st_size for f in stream.iterdir())
        live, _ = _timed(_cfg(quick_db, Path(tmp) / "live", band=0.1, every="5s", cache="off"))
        cached, _ = _timed(_cfg(quick_db, Path(tmp) / "cached", band=0.1, every="5s"))
    events = warm["events_replayed"]
    return {
        "events": events,
        "n_fits": warm["calibration"]["n_fits"],
        "fit_ms_median": warm["calibration"]["fit_ms_median"],
        "build_events_per_second": round(cold["events_replayed"] / cold_s),
        "build_seconds": round(cold["surface_stream"]["build_seconds"], 2),
        "cold_run_seconds": round(cold_s, 2),
        "cached_events_per_second": round(events / warm_s),
        "cached_run_seconds": round(warm_s, 2),
        "market_only_events_per_second": round(market),
        "cached_vs_market_only": round(events / warm_s / market, 3),
        "same_journal_hash": live["journal_hash"] == cached["journal_hash"],
        "surface_stream_mb": round(stream_bytes / 2 ** 20, 1),
        "journal_mb": round(journal_bytes / 2 ** 20, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
