"""Bench ``margin``: one portfolio-margin evaluation of a 50-leg book on a real surface.

The surface is an SVI fit of the latest real Deribit BTC snapshot; the book is 50 options of
that snapshot (a fixed seed picks strikes across every expiry, long and short, 1-20
contracts) plus a perpetual hedge.  One evaluation is what the margin consumer does per wake
for the whole book: the sticky-moneyness vols at the 17 moved forwards, the 35 scenarios'
full revaluation, the extended table, the delta shock and the requirement.  Reported side by
side in this process: the same evaluation with sticky-strike dynamics, with the numpy
reference revaluation instead of the kernel, and standard margin.  Goal: under 200 us.
"""

from __future__ import annotations

import time

import numpy as np

from replay.app.bench import RECORDINGS

DATA = RECORDINGS / "deribit" / "BTC"
LEGS = 50


def _median_us(fn, repeats: int) -> float:
    for _ in range(20):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - t0)
    return round(float(np.median(out)) / 1e3, 2)


def run(quick: bool) -> dict:
    if not DATA.is_dir():
        return {"error": f"real Deribit data not found at {DATA.resolve()}"}
    from calibration.pricing.forwards import time_to_expiry
    from calibration.scheme import CalibrationScheme, SchemeConfig
    from replay.consumers.margin import PMParams, make_legs, portfolio_margin, standard_margin
    from replay.consumers.margin.portfolio import surface_vol_after_move
    from replay.ingest.deribit_summary import summary_files, summary_rows

    row = list(summary_rows(summary_files(DATA)[-1:]))[-1]
    surf = CalibrationScheme(SchemeConfig(model="svi")).refit(row.snapshot()).surface
    rng = np.random.default_rng(0)
    t_all = np.asarray(time_to_expiry(row.ts_ns, row.expiry_ns), dtype=float)
    live = np.flatnonzero(t_all > 1 / 365)
    pick = rng.choice(live, LEGS, replace=False)
    t = t_all[pick]
    fwd = surf.forward(t)
    strike, call = row.strike[pick].astype(float), row.is_call[pick].astype(bool)
    vol = surf.iv(strike, t)
    units = rng.integers(1, 21, LEGS) * np.where(rng.random(LEGS) < 0.5, -1.0, 1.0)
    spot = float(surf.forward(0.0))
    legs = make_legs(np.append(units, -3.0), np.append(fwd, spot),
                     strike=np.append(strike, np.nan), t=np.append(t, 0.0),
                     is_call=np.append(call, False), vol=np.append(vol, np.nan))
    p = PMParams()
    repeats = 300 if quick else 3000

    def pm(params=p, reference=False):
        return portfolio_margin(legs, params, surface_vol_after_move(surf, legs.t), reference)

    res = pm()
    return {
        "legs": len(legs), "scenarios": int(res.pnl.shape[1]),
        "eval_us_median": _median_us(pm, repeats),
        "sticky_strike_us_median": _median_us(
            lambda: pm(p.with_values(dynamics="sticky_strike")), repeats),
        "reference_us_median": _median_us(lambda: pm(reference=True), max(repeats // 10, 30)),
        "standard_us_median": _median_us(lambda: standard_margin(legs), repeats),
        "im_usd": round(float(res.im[0]), 2),
        "binding_scenario": res.scenarios.labels[int(res.worst[0])],
        "goal_eval_us": 200.0,
    }
