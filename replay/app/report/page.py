"""``report.html`` for a run: one self-contained page (inline PNG charts, no network).

Everything is read back from the run directory (``metrics.json``, ``run.json``,
``journal.duckdb``), so ``volreplay report DIR`` re-renders a report without re-running.
Sections whose data the run did not produce (e.g. no hedging in a calibration-only run) say
so instead of showing an empty chart.
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from replay.app import charts
from replay.app.report.blocks import Section, table, times
from replay.app.report.risk import dynamics_section, forecast_section, margin_section
from replay.units import NS

_TEMPLATE = jinja2.Template("""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>volreplay run {{ name }}</title>
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.5em} h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.9em} td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4} td.k{text-align:left;font-family:monospace} img{max-width:100%}
.note{color:#666;font-style:italic} .hash{font-family:monospace;word-break:break-all}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:0 2em}
</style></head><body>
<h1>volreplay run <code>{{ name }}</code></h1>
<p>Store <code>{{ db }}</code>; market data {{ span }}; {{ events }} market events replayed.</p>
{% for s in sections %}<section id="{{ s.id }}"><h2>{{ s.title }}</h2>
{% if s.intro %}<p>{{ s.intro }}</p>{% endif %}
{% if s.html %}{{ s.html }}{% endif %}
{% for img in s.images %}<img class="chart" alt="{{ s.title }}" src="data:image/png;base64,{{ img }}">{% endfor %}
{% if not s.html and not s.images %}<p class="note">{{ s.empty }}</p>{% endif %}
</section>{% endfor %}
<h2>Journal hash</h2><p class="hash">{{ journal_hash }}</p>
<script>
// Marks how many charts the browser decoded (checked by the browser test).
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.querySelectorAll("img.chart"));
  document.body.setAttribute("data-charts-rendered",
    imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length);
});
</script>
<p class="note">Same data and same config give the same hash; compare it to check that two runs agree.</p>
</body></html>""")


def render_run(run_dir: str | Path) -> Path:
    """Write ``report.html`` into ``run_dir`` from what the run stored; returns its path."""
    from replay.analytics.tables import read_tables

    run_dir = Path(run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else {}
    t = read_tables(run_dir / "journal.duckdb", ["pnl", "attribution", "executions",
                                                 "surface_fits", "hedge_decisions", "margin",
                                                 "vol_forecasts", "surface_dynamics"])
    t["calibration_quotes"] = _smile_quotes(run_dir / "journal.duckdb", _n_snapshots(run))
    sections = [_config_section(run), _headline(metrics), _pnl_section(t["pnl"]),
                _attribution_section(t["attribution"], metrics),
                _hedge_section(t["hedge_decisions"]), margin_section(t["margin"], metrics),
                forecast_section(t["vol_forecasts"], metrics),
                _execution_section(t["executions"], metrics),
                _calibration_section(t["surface_fits"]),
                _smiles_section(t["calibration_quotes"], run),
                _arbitrage_section(t["surface_fits"]),
                dynamics_section(t["surface_dynamics"], metrics)]
    lo, hi = _span(t)
    page = _TEMPLATE.render(
        name=run_dir.name if run_dir.name else str(run_dir), db=run.get("db", "?"),
        span=f"{lo} .. {hi}" if lo else "n/a", events=f"{metrics.get('events_replayed', 0):,}",
        sections=sections, journal_hash=metrics.get("journal_hash", "n/a"))
    path = run_dir / "report.html"
    path.write_text(page)
    return path


def _span(t: dict) -> tuple[str, str]:
    ts = [df["ts"] for df in t.values() if len(df) and "ts" in df]
    if not ts:
        return "", ""
    allts = pd.concat(ts)
    f = lambda x: datetime.fromtimestamp(int(x) / NS, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")  # noqa: E731
    return f(allts.min()), f(allts.max())


def _config_section(run: dict) -> Section:
    s = Section("config", "Run configuration")
    cfg = run.get("config") or {}
    rows = {}
    for group in ("data", "calibration", "book", "strategy", "margin", "venue"):
        v = cfg.get(group)
        rows[group] = "none" if not v else ", ".join(f"{k}={v[k]}" for k in v)
    rows["seed"] = cfg.get("seed")
    s["html"] = table(rows)
    return s


def _headline(m: dict) -> Section:
    s = Section("headline", "Headline metrics",
                 "PnL in USD (inverse options are converted at the index when each cash flow "
                 "happens); calibration errors in implied-vol points.")
    rows = {f"pnl.{k}": v for k, v in (m.get("pnl") or {}).items()}
    rows.update({f"calibration.{k}": v for k, v in (m.get("calibration") or {}).items()})
    ex = m.get("execution") or {}
    rows.update({f"execution.{k}": v for k, v in ex.items() if not k.endswith("_by_leg")})
    rows["events_per_second"] = m.get("events_per_second")
    s["html"] = table(rows)
    return s


def _pnl_section(pnl: pd.DataFrame) -> Section:
    s = Section("pnl", "Cumulative PnL", empty="No positions were held, so there is no PnL.")
    if len(pnl):
        fig, ax = charts.fig()
        x = times(pnl.ts)
        ax.plot(x, pnl.total_usd, label="total (USD)", color="C0")
        ax.plot(x, pnl.options_usd, label="options (USD)", color="C1", lw=0.8)
        ax.plot(x, pnl.hedge_usd, label="hedge (USD)", color="C2", lw=0.8)
        ax.set_ylabel("USD")
        ax2 = ax.twinx()
        ax2.plot(x, pnl.total_coin, label="total (coin)", color="C3", ls="--", lw=0.8)
        ax2.set_ylabel("coin")
        ax.legend(loc="upper left", fontsize=8)
        ax2.legend(loc="upper right", fontsize=8)
        s["images"].append(charts.png(fig))
    return s


def _attribution_section(att: pd.DataFrame, m: dict) -> Section:
    from replay.consumers.marker import BUCKETS

    s = Section("attribution", "PnL attribution",
                 "Second-order Taylor explain from the surface greeks per mark step, and the "
                 "basis (each expiry's forward over the coin's price) moving at refits; fees, "
                 "funding and slippage are their own buckets and the residual takes the rest, "
                 "so the buckets sum to the total.  The vega bucket is split by how the smile "
                 "moved: level (parallel), skew (rotation) and curvature (the rest).",
                 empty="No PnL to attribute.")
    if len(att):
        fig, ax = charts.fig()
        x = times(att.ts)
        buckets = [b for b in BUCKETS if b in att]  # a journal from before a bucket existed
        cum = att[buckets].cumsum()
        pos = cum.clip(lower=0).to_numpy().T
        neg = cum.clip(upper=0).to_numpy().T
        ax.stackplot(x, pos, labels=buckets, alpha=0.8)
        ax.stackplot(x, neg, alpha=0.8)
        ax.plot(x, att.total.cumsum(), color="k", lw=1.2, label="total")
        ax.legend(fontsize=7, ncol=6, loc="upper left")
        ax.set_ylabel("USD, cumulative")
        s["images"].append(charts.png(fig))
        rows = dict(m.get("attribution") or {})
        rows.update({f"vega: {k}": v for k, v in (m.get("attribution_vega") or {}).items()})
        s["html"] = table(rows)
    return s


def _hedge_section(dec: pd.DataFrame) -> Section:
    s = Section("hedge", "Hedge position vs target delta", empty="No hedging decisions.")
    if len(dec) and {"target_delta", "current_hedge"} <= set(dec.columns):
        fig, ax = charts.fig()
        x = times(dec.ts)
        ax.step(x, dec.current_hedge, where="post", label="hedge delta held (BTC)")
        ax.plot(x, dec.target_delta, ".", ms=3, label="target hedge delta (BTC)")
        ax.fill_between(x, dec.band_lo, dec.band_hi, step="post", alpha=0.2, label="band")
        ax.set_ylabel("BTC")
        ax.legend(fontsize=8)
        s["images"].append(charts.png(fig))
    return s


def _execution_section(ex: pd.DataFrame, m: dict) -> Section:
    s = Section("execution", "Slippage and markouts",
                 "Slippage is the fill price against the mid at arrival (bps of mid). Markouts "
                 "are from our side: negative means the fill lost against the later mid. Solid: "
                 "against the fill price (spread and move); dashed: against the mid at the fill "
                 "(the move alone: adverse selection).",
                 empty="No fills.")
    if len(ex):
        fig, ax = charts.fig(5, 3)
        bps = np.sign(ex.qty) * (ex.price - ex.arrival_mid) / ex.arrival_mid * 1e4
        ax.hist(bps.dropna(), bins=40)
        ax.set_xlabel("slippage vs arrival mid, bps")
        s["images"].append(charts.png(fig))
        exm = m.get("execution") or {}
        curves = []
        for key, style, what in (("markout_bps_by_leg", "o-", "vs fill"),
                                 ("markout_mid_bps_by_leg", "s--", "vs mid at fill")):
            for j, (leg, c) in enumerate((exm.get(key) or {}).items()):
                pts = [(float(k.rstrip("s").replace("p", ".")), v) for k, v in c.items()
                       if v is not None]
                if pts:
                    curves.append((f"{leg} {what}", style, j, pts))
        if curves:  # none when no horizon has a mid after its fills (the data ends first)
            fig, ax = charts.fig(5, 3)
            for label, style, j, pts in curves:
                ax.plot(*zip(*pts), style, color=f"C{j}", label=label)
            ax.set_xscale("log")
            ax.axhline(0, color="grey", lw=0.5)
            ax.set_xlabel("horizon, s")
            ax.set_ylabel("markout, bps")
            ax.legend(fontsize=8)
            s["images"].append(charts.png(fig))
    return s


def _calibration_section(fits: pd.DataFrame) -> Section:
    s = Section("calibration", "Calibration error and inside-spread share over time",
                 empty="No surface fits in this run (calibration=none, or no fit in "
                       "its span).")
    if len(fits):
        per_fit = fits.groupby("ts").agg(rmse=("rmse_vol_pts", "first"),
                                         inside=("inside_spread_pct", "first")).reset_index()
        fig, ax = charts.fig()
        x = times(per_fit.ts)
        ax.plot(x, per_fit.rmse, ".-", ms=3, label="in-sample RMSE (vol pts)")
        ax.set_ylabel("vol pts")
        ax2 = ax.twinx()
        ax2.plot(x, per_fit.inside, ".", ms=3, color="C1", label="inside bid/ask, %")
        ax2.set_ylabel("%")
        ax2.set_ylim(0, 101)
        ax.legend(loc="upper left", fontsize=8)
        ax2.legend(loc="lower right", fontsize=8)
        s["images"].append(charts.png(fig))
    return s


def _n_snapshots(run: dict) -> int:
    return int(((run.get("config") or {}).get("report") or {}).get("surface_snapshots", 3))


def _snapshottimes(times: np.ndarray, n_snap: int) -> np.ndarray:
    """``n_snap`` evenly spaced values of the sorted fit times ``times`` (first and last
    included)."""
    return times[np.linspace(0, len(times) - 1, min(n_snap, len(times))).round().astype(int)]


def _smile_quotes(path: Path, n_snap: int) -> pd.DataFrame:
    """The ``calibration_quotes`` rows at the fit times the smiles section shows, in seq order.

    Only those: the table grows with the run (1.9 M rows over the 96 hours of the large bench
    store, one row per quote per fit), and reading all of it into pandas took more memory than
    the whole replay.  Picking the times again from this subset gives the same times."""
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        if not con.execute("SELECT count(*) FROM information_schema.tables "
                           "WHERE table_name = 'calibration_quotes'").fetchall()[0][0]:
            return pd.DataFrame()
        times = np.array([r[0] for r in con.execute(
            "SELECT DISTINCT ts FROM calibration_quotes ORDER BY ts").fetchall()], dtype=np.int64)
        pick = ", ".join(str(int(x)) for x in _snapshottimes(times, n_snap)) or "NULL"
        return con.execute("SELECT * FROM calibration_quotes "
                           f"WHERE ts IN ({pick}) ORDER BY seq").df()


def _smiles_section(cq: pd.DataFrame, run: dict) -> Section:
    s = Section("smiles", "Surface snapshots",
                 "Bid/ask implied-vol bars of the quotes used, the fit (line) and the venue "
                 "mark IV (crosses) per expiry, at evenly spaced fit times.",
                 empty="No calibration quotes journaled.")
    if not len(cq):
        return s
    pick = _snapshottimes(np.unique(cq.ts), _n_snapshots(run))
    for ts in pick:
        q = cq[cq.ts == ts]
        exps = np.unique(q.expiry)
        fig, axes = charts.plt_agg().subplots((len(exps) + 2) // 3, 3, figsize=(11, 2.8 * ((len(exps) + 2) // 3)),
                                 squeeze=False)
        for ax, e in zip(axes.ravel(), exps):
            d = q[q.expiry == e].sort_values("strike")
            k = np.log(d.strike / d.forward)
            ax.vlines(k, 100 * d.bid_iv, 100 * d.ask_iv, color="grey", lw=2, label="bid/ask")
            ax.plot(k, 100 * d.fit_iv, "C0-", label="fit")
            ax.plot(k, 100 * d.venue_mark_iv, "C3x", ms=3, label="venue mark")
            ax.set_title(pd.Timestamp(int(e), unit="ns", tz="UTC").strftime("%d%b%y").upper(), fontsize=9)
            ax.set_xlabel("ln(K/F)", fontsize=8)
        for ax in axes.ravel()[len(exps):]:
            ax.axis("off")
        axes.ravel()[0].legend(fontsize=7)
        fig.suptitle(pd.Timestamp(int(ts), unit="ns", tz="UTC").strftime("%Y-%m-%d %H:%M:%S UTC"),
                     fontsize=10)
        fig.tight_layout()
        s["images"].append(charts.png(fig))
    return s


def _arbitrage_section(fits: pd.DataFrame) -> Section:
    s = Section("arbitrage", "Arbitrage violations",
                 "Butterfly (Durrleman's g), calendar and Lee wing checks on every fitted "
                 "surface; a surface with violations is not published silently.",
                 empty="No surface fits.")
    if len(fits):
        per_fit = fits.groupby("ts").agg(v=("arb_violations", "first"),
                                         published=("published", "first"),
                                         rmse=("rmse_vol_pts", "first"),
                                         reason=("reason", "first")).reset_index()
        # a refit that found no expiry with enough quotes fitted nothing: no quality, and
        # nothing published in its place, which is not a fallback
        fitted = np.isfinite(per_fit.rmse.to_numpy(dtype=float))
        skipped = int((~fitted).sum())
        per_fit = per_fit[fitted]
        bad = per_fit[per_fit.v > 0]
        s["html"] = (f"<p>{len(per_fit)} fits, {int((per_fit.v > 0).sum())} with violations, "
                     f"{int((~per_fit.published).sum())} not published (fell back to the last good "
                     "surface)"
                     + (f"; {skipped} refits skipped (no expiry with enough quotes)" if skipped
                        else "") + ".</p>")
        if len(bad):
            rows = "".join(f"<tr><td>{times([r.ts])[0]}</td><td>{int(r.v)}</td>"
                           f"<td class='k'>{html.escape(str(r.reason))}</td></tr>"
                           for r in bad.head(50).itertuples())
            s["html"] += f"<table><tr><th>time</th><th>violations</th><th>what happened</th></tr>{rows}</table>"
    return s


def rerender(path: Path) -> list[Path]:
    """Re-render a run directory, or every run of a sweep directory plus its sweep page."""
    from replay.errors import UserError

    if not path.is_dir():
        raise UserError(f"{path} is not a directory")
    if (path / "metrics.json").exists():
        return [_render_saved(path)]
    from replay.app.sweeps.summary import job_dirs, summarize_sweep

    runs = sorted(p.parent for p in path.glob("*/metrics.json"))
    jobs = job_dirs(path)  # a sweep's numbered job folders, finished or not
    if not runs and not jobs:
        raise UserError(f"{path} holds no run (no metrics.json) and no sweep jobs")
    out, failed = [], []
    for r in runs:  # one run that cannot be drawn (its linked stream cleaned) stops no other
        try:
            out.append(_render_saved(r))
        except UserError as e:
            failed.append(e)
    if jobs:  # a folder of plain runs gets no sweep page; the sweep's needs no stream
        out += summarize_sweep(path)
    if failed:
        more = f" (and {len(failed) - 1} more run(s) likewise)" if len(failed) > 1 else ""
        raise UserError(f"{failed[0]}{more}; the other reports were written")
    return out


def _render_saved(run: Path) -> Path:
    """:func:`render_run` of a finished run's directory; a damaged one is one
    :class:`~replay.errors.UserError` line saying what cannot be read."""
    import duckdb

    from replay.errors import UserError

    if not (run / "journal.duckdb").is_file():
        raise UserError(f"{run} is not a finished run: it has no journal.duckdb")
    try:
        return render_run(run)
    except json.JSONDecodeError as e:
        raise UserError(f"{run}: metrics.json or run.json cannot be read ({e.msg}, line "
                        f"{e.lineno}); rerun the run") from None
    except duckdb.Error as e:
        raise UserError(f"{run / 'journal.duckdb'} cannot be read: "
                        f"{str(e).splitlines()[0]}") from None
