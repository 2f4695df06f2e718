"""Bench case ``backtest``: the synthetic day end to end, with the surface refitted every 1 s
of market time and a ``delta_band`` hedger on a short straddle (issue goal: 1M events/s).

The store is built once in the bench cache folder (:func:`replay.app.bench.cache_dir`) as
``bench_day.duckdb`` (``--quick``: two hours, ``bench_quick_backtest.duckdb``).  Reported next
to the end-to-end rate: the market replay alone over the same store, so the cost of the
consumers is visible.
"""

from __future__ import annotations

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


def run(quick: bool) -> dict:
    import replay
    from replay.engine.loop import run_replay

    db = _store(quick)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        bare = run_replay(db, [], Path(tmp) / "bare", progress=False)
        bare_eps = bare.total_events / (time.perf_counter() - t0)
        cfg = {
            "data": {"db": str(db)}, "out_dir": str(Path(tmp) / "run"), "seed": 0,
            "report": {"html": False},
            "calibration": {"_target_": "replay.consumers.calibration.CalibrationConsumer", "model": "svi",
                            "every": "1s"},
            "book": {"_target_": "strategies.books.FixedBook", "structure": "straddle",
                     "size": 10.0},
            "strategy": {"_target_": "strategies.hedging.registry.DeltaBand", "band": 0.1,
                         "lot": 1.0},
        }
        t0 = time.perf_counter()
        m = replay.run(cfg)
        wall = time.perf_counter() - t0
    return {"events": m["events_replayed"], "events_per_second": round(m["events_replayed"] / wall),
            "wall_seconds": round(wall, 2), "n_fits": m["calibration"]["n_fits"],
            "fit_ms_median": m["calibration"]["fit_ms_median"],
            "market_only_events_per_second": round(bare_eps)}
