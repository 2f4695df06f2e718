"""Bench case ``ingest``: rows/s of real Deribit summaries and of a large canonical CSV.

Both go through the full path users take (`replay.ingest.ingest`: parse, validate, dedup,
merge, commit) into a fresh temporary store.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from replay.app.bench import RECORDINGS
from replay.ingest import ingest
from replay.store import open_store


def _timed(fmt: str, srcs: list[str], db: Path) -> tuple[int, float]:
    with open_store(db, read_only=False) as s:
        t0 = time.perf_counter()
        rep = ingest(s, fmt, srcs)
        dt = time.perf_counter() - t0
    assert rep.read == rep.ingested + rep.quarantined
    return rep.read, dt


def run(quick: bool) -> dict:
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        deribit = sorted((RECORDINGS / "deribit").rglob("*.parquet"))
        if deribit:
            files = deribit[:20] if quick else deribit
            rows, dt = _timed("deribit-summary", [str(f) for f in files], tmp / "d.duckdb")
            out.update(deribit_files=len(files), deribit_rows=rows,
                       deribit_rows_per_second=round(rows / dt))
        else:
            out["deribit_note"] = f"{RECORDINGS} not found"
        try:
            from replay.ingest.canonical import write_canonical_csv
        except ImportError:
            write_canonical_csv = None
        if write_canonical_csv is not None:
            n = 200_000 if quick else 5_000_000
            paths = write_canonical_csv(tmp / "canonical", n, seed=0)
            rows, dt = _timed("canonical", [str(p) for p in paths], tmp / "c.duckdb")
            out.update(canonical_rows=rows, canonical_rows_per_second=round(rows / dt),
                       canonical_mb=round(sum(p.stat().st_size for p in paths) / 2**20, 1))
    rows = out.get("canonical_rows", 0) + out.get("deribit_rows", 0)
    secs = sum(out[k] / out[k + "_per_second"] for k in ("canonical_rows", "deribit_rows") if k in out)
    out.update(rows=rows, rows_per_second=round(rows / secs) if secs else None)
    return out
