"""Bench case ``synth``: events per second written by ``volreplay synth``.

Quick: the small scale for 1 hour; full: the synthetic day (24 h).  The store goes to a
temporary directory that is deleted afterwards.  One untimed warm-up block compiles the numba
kernels first, so the figure is the steady write rate.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from replay.synth import SynthConfig, synthesize


def run(quick: bool) -> dict:
    cfg = SynthConfig(hours=1.0, scale="small", seed=1) if quick else SynthConfig(scale="day", seed=1)
    with tempfile.TemporaryDirectory(prefix="volreplay-bench-synth-") as tmp:
        synthesize(Path(tmp) / "warmup.duckdb", SynthConfig(hours=0.05, seed=1))
        db = Path(tmp) / "synth.duckdb"
        t0 = time.perf_counter()
        summary = synthesize(db, cfg)
        wall = time.perf_counter() - t0
        size_mb = db.stat().st_size / 2**20
    return {
        "events": summary["events"],
        "events_per_second": round(summary["events"] / wall, 1),
        "wall_seconds": round(wall, 3),
        "scale": cfg.scale,
        "hours": cfg.run_hours,
        "model": cfg.model,
        "instruments": summary["instruments"],
        "tables": summary["tables"],
        "db_mb": round(size_mb, 1),
    }
