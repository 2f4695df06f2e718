"""Bench case ``parquet_store``: replaying a Parquet export in place against the DuckDB store
it came from, side by side in one run, plus the export itself.

The store is the synthetic day of the ``backtest`` case (``bench_day.duckdb`` in the bench
cache folder, :func:`replay.app.bench.cache_dir`; ``--quick``: two hours); the export is written
to a temporary folder each run.  The replay has no consumers, so the figures compare the
storage paths only; ``same_journal_hash`` checks that both give the same run.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path


def run(quick: bool) -> dict:
    from replay.app.bench import day_store
    from replay.engine.loop import run_replay
    from replay.store.parquet import export_parquet

    db = day_store(quick)
    with tempfile.TemporaryDirectory() as tmp:
        pq = Path(tmp) / "store"
        t0 = time.perf_counter()
        man = export_parquet(db, pq)
        export_s = time.perf_counter() - t0
        rates, hashes = {}, {}
        for name, path in (("duckdb", db), ("parquet", pq), ("duckdb_again", db)):
            t0 = time.perf_counter()
            res = run_replay(path, [], Path(tmp) / name, progress=False)
            rates[name] = res.total_events / (time.perf_counter() - t0)
            hashes[name] = res.journal_hash
        rows = sum(t["rows"] for t in man["tables"].values())
    duck = max(rates["duckdb"], rates["duckdb_again"])  # the first run also warms the OS cache
    return {"events": res.total_events, "export_rows_per_second": round(rows / export_s),
            "duckdb_events_per_second": round(duck),
            "parquet_events_per_second": round(rates["parquet"]),
            "ratio_parquet_vs_duckdb": round(rates["parquet"] / duck, 3),
            "same_journal_hash": len(set(hashes.values())) == 1}
