"""Report sections of the risk measurements: margin, volatility forecasts, surface dynamics."""

from __future__ import annotations

import pandas as pd

from replay.app import charts
from replay.app.report.blocks import Section, table, times


def margin_section(mg: pd.DataFrame, m: dict) -> Section:
    s = Section("margin", "Margin", "Initial and maintenance requirement against equity (USD); "
                 "the table counts which scenario bound the requirement (portfolio margin).",
                 empty="Margin was off (margin=none).")
    if len(mg):
        fig, ax = charts.fig()
        x = times(mg.ts)
        iso = (m.get("margin") or {}).get("mode") == "isolated"
        ax.step(x, mg.initial_isolated_usd if iso else mg.initial_usd, where="post",
                label="initial margin", color="C0")
        ax.step(x, mg.maintenance_isolated_usd if iso else mg.maintenance_usd, where="post",
                label="maintenance margin", color="C3")
        ax.set_ylabel("requirement, USD")
        ax2 = ax.twinx()  # equity is usually far above the requirement: its own scale
        ax2.step(x, mg.equity_usd, where="post", label="equity", color="k", lw=0.8)
        ax2.set_ylabel("equity, USD")
        ax.legend(loc="upper left", fontsize=8)
        ax2.legend(loc="upper right", fontsize=8)
        s["images"].append(charts.png(fig))
        bound = mg.loc[mg.worst_scenario != "", "worst_scenario"].value_counts()
        rows = {k: v for k, v in (m.get("margin") or {}).items()}
        rows.update({f"bound by: {k}": int(v) for k, v in bound.head(5).items()})
        s["html"] = table(rows)
    return s


def forecast_section(fc: pd.DataFrame, m: dict) -> Section:
    s = Section("forecast", "Volatility forecasts",
                "Each forecaster's vol forecast for the first horizon against the realised vol "
                "over that horizon (filled in after the run), and the scores (QLIKE and MSE on "
                "variance, Mincer-Zarnowitz R², Diebold-Mariano against the flat baseline).",
                empty="No forecasts in this run (forecast=none, or no forecast was due in "
                      "its span).")
    if len(fc):
        h = fc.horizon_s.min()
        d = fc[fc.horizon_s == h]
        fig, ax = charts.fig()
        for name, g in d.groupby("forecaster", sort=True):
            ax.plot(times(g.ts), g.forecast_vol, lw=0.9, label=name)
        real = d.drop_duplicates("ts").sort_values("ts")
        ax.plot(times(real.ts), real.realized_vol, color="k", lw=1.6, label="realised")
        if real.true_vol.notna().any():
            ax.plot(times(real.ts), real.true_vol, color="k", ls="--", lw=1, label="true")
        ax.set_ylabel(f"vol over the next {h:g} s")
        ax.legend(fontsize=7, ncol=5)
        s["images"].append(charts.png(fig))
        block = m.get("forecast") or {}
        rows = {f"{n}.{k}": v for n, sc in block.items() if isinstance(sc, dict)
                for k, v in sc.items() if k in ("qlike", "mse", "mz_r2", "dm_vs_flat", "n")}
        rows.update({k: block.get(k) for k in ("best_by_qlike", "vrp_mean", "horizon_s")})
        s["html"] = table(rows)
    return s


def dynamics_section(dyn: pd.DataFrame, m: dict) -> Section:
    s = Section("dynamics", "Surface dynamics",
                "The skew stickiness ratio (1: sticky strike, 0: sticky moneyness) per expiry "
                "bucket with two standard errors, the rolling SSR of each expiry against its "
                "days to expiry, and the ATM vol against the forward.",
                empty="No surface was calibrated in this run (calibration=none, or no "
                      "fit in its span).")
    if not len(dyn):
        return s
    import numpy as np

    from replay.analytics.dynamics import BUCKETS

    block = m.get("dynamics") or {}
    fig, (ax1, ax2) = charts.plt_agg().subplots(1, 2, figsize=(10, 3.4))
    days = dyn.tau * 365.0
    ok = dyn.ssr.notna()
    ax1.scatter(days[ok], dyn.ssr[ok], s=3, alpha=0.3, color="C0", label="rolling, per expiry")
    edges = [0.0] + [b for _, b in BUCKETS[:-1]] + [max(float(days.max()), 100.0)]
    for (name, _), lo, hi in zip(BUCKETS, edges[:-1], edges[1:]):
        r, se = (block.get("ssr") or {}).get(name), (block.get("ssr_se") or {}).get(name)
        if r is not None and se is not None:
            mid = np.sqrt(max(lo, 0.1) * hi)
            ax1.errorbar([mid], [r], yerr=[2 * se], fmt="o", color="C3", capsize=3)
    ax1.set_xscale("log")
    ax1.axhline(1.0, color="k", lw=0.6, ls="--")
    ax1.axhline(0.0, color="k", lw=0.6, ls=":")
    ax1.set_xlabel("days to expiry")
    ax1.set_ylabel("SSR")
    near = dyn.loc[(days - 30.0).abs().groupby(dyn.ts).idxmin()]
    ax2.scatter(near.forward, near.atm_vol, s=3, c=near.ts, cmap="viridis")
    ax2.set_xlabel("forward (USD)")
    ax2.set_ylabel("ATM vol, expiry nearest 30 days")
    fig.tight_layout()
    s["images"].append(charts.png(fig))
    s["html"] = table({f"ssr {k}": v for k, v in (block.get("ssr") or {}).items()})
    return s
