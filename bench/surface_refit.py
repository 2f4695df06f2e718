"""Bench ``surface_refit``: a full real Deribit BTC snapshot, from raw coin quotes to a
published SVI surface: forwards (venue and put-call parity), implied vols of bid/ask/mid,
loss weights, every expiry's fit, arbitrage checks and quality.

Warm: the scheme holds the state left by the previous snapshot (restored before each repeat,
untimed).  Cold: warm start off.  Medians over repeats after a warm-up.  Also reported: the
split between building the snapshot (forwards + IVs) and the refit itself.

The forward of each expiry is the venue's (Deribit's ``underlying_price``), as the design
prescribes where one exists; the put-call parity estimate is then only a diagnostic and is
timed separately (``parity_ms_median``: estimating it for every expiry as well).
"""

from __future__ import annotations

import time

import numpy as np

from replay.app.bench import RECORDINGS

DATA = RECORDINGS / "deribit" / "BTC"


def _times(fn, repeats: int) -> tuple[float, float, float]:
    fn()
    tot, snap = [], []
    for _ in range(repeats):
        a, b, c = fn()
        tot.append(c - a)
        snap.append(b - a)
    return (float(np.median(tot)) / 1e6, float(np.median(snap)) / 1e6,
            float(np.median(np.subtract(tot, snap))) / 1e6)


def run(quick: bool) -> dict:
    if not DATA.is_dir():
        return {"error": f"real Deribit data not found at {DATA.resolve()}"}
    from calibration.scheme import CalibrationScheme, SchemeConfig
    from replay.ingest.deribit_summary import summary_files, summary_rows

    rows = list(summary_rows(summary_files(DATA)[-2:]))
    if len(rows) < 2:
        return {"error": "fewer than two Deribit snapshots with quotes"}
    before, now = rows[-2], rows[-1]
    repeats = 10 if quick else 60
    out: dict = {}
    for name, warm in (("warm", True), ("cold", False)):
        scheme = CalibrationScheme(SchemeConfig(model="svi", warm_start=warm))
        scheme.refit(before.snapshot())
        state = scheme.state_dict()

        def once(scheme=scheme, state=state):
            scheme.load_state_dict(state)
            t0 = time.perf_counter_ns()
            snap = now.snapshot(parity=False)
            t1 = time.perf_counter_ns()
            r = scheme.refit(snap)
            t2 = time.perf_counter_ns()
            assert r.surface is not None
            return t0, t1, t2

        tot, snap_ms, fit_ms = _times(once, repeats)
        out[f"{name}_ms_median"] = round(tot, 3)
        out[f"{name}_snapshot_ms_median"] = round(snap_ms, 3)
        out[f"{name}_fit_ms_median"] = round(fit_ms, 3)
    par = []
    for _ in range(max(repeats // 4, 3)):
        t0 = time.perf_counter_ns()
        now.snapshot(parity=True)
        t1 = time.perf_counter_ns()
        now.snapshot(parity=False)
        par.append((t1 - t0) - (time.perf_counter_ns() - t1))
    out["parity_ms_median"] = round(float(np.median(par)) / 1e6, 3)
    snap = now.snapshot()
    out["expiries"] = len(snap.slices)
    out["quotes"] = snap.n_two_sided
    out["rows"] = int(now.strike.size)
    out["goal_warm_ms"] = 1.0
    return out
