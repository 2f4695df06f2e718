"""Sweep aggregation: ``summary.parquet`` and ``sweep.html`` for a Hydra multirun.

:class:`SweepSummary` is a Hydra callback (``hydra.callbacks`` in ``conf/config.yaml``), so it
runs after the last job whatever the launcher (basic, joblib, Ray, submitit) or sweeper (basic,
Optuna).  ``volreplay report SWEEP_DIR`` re-runs the same aggregation.

* One row per job: its number, its overrides (one column per overridden key), ``status``
  (``ok`` or ``failed``), ``error`` and every metric flattened with dots
  (``pnl.total_usd``, ``execution.markout_bps.10s``, ...).
* ``objective``: the run config's objective (:mod:`replay.analytics.objective`) for each job that
  succeeded and for which it can be computed, so any sweep can be sorted by it.
* Re-running into a sweep directory that already holds jobs moves those jobs to
  ``previous-<time>/`` first and says so, so nothing is overwritten silently.
* A failed job does not stop the sweep, but once the summary is written the sweep's exit code
  says so (:func:`sweep_exit_code`): a grid of runs that looks complete must not pass a CI
  step.  In an Optuna search a failed trial is an expected outcome (the sampler explored a
  region where the run cannot work), so there only a study without any good trial fails.
"""

from __future__ import annotations

import html
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from replay.analytics.objective import flatten

try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - hydra is a runtime dependency
    Callback = object


#: exit code of the last sweep summarised in this process (0: nothing failed); ``volreplay
#: run`` returns it, since a Hydra callback cannot set the exit code itself
last_exit_code: int | None = None


def job_dirs(sweep: Path) -> list[Path]:
    """A sweep's job folders, named by job number (``hydra.sweep.subdir``'s default), in
    order."""
    return sorted((p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()),
                  key=lambda p: int(p.name))


def _overrides(job: Path) -> dict[str, str]:
    f = job / ".hydra" / "overrides.yaml"
    if not f.exists():
        return {}
    import yaml
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, out = OverridesParser.create(), {}
    for o in yaml.safe_load(f.read_text()) or []:
        k, _, v = str(o).partition("=")
        try:  # the value as typed: Hydra escapes it in the file (2025-01-06T00\:20)
            parsed = parser.parse_override(str(o))
            value = parsed.value()
            v = value if isinstance(value, str) else parsed.get_value_element_as_str()
        except Exception:  # noqa: BLE001 - a line Hydra does not parse: kept as written
            pass
        out[k.lstrip("+~")] = v
    return out


def _sweep_config(sweep: Path, config: Any = None) -> Any:
    """The sweep's config: ``config``, else its saved ``multirun.yaml``, else None."""
    if config is None and (sweep / "multirun.yaml").exists():
        config = OmegaConf.load(sweep / "multirun.yaml")
    return config


def _objective(config: Any) -> Any:
    """The sweep config's objective; None when it has none or it does not parse (then the
    column is left out, with a warning)."""
    from replay.analytics.objective import objective_from_config
    from replay.errors import ConfigError

    if config is None or config.get("objective") is None:
        return None
    try:
        return objective_from_config(config)
    except ConfigError as e:
        print(f"sweep summary: no objective column: {e}", file=sys.stderr)
        return None


def summary_frame(sweep: Path, objective: Any = None) -> pd.DataFrame:
    rows = []
    for job in job_dirs(sweep):
        row: dict[str, Any] = {"job": int(job.name)}
        row.update({f"override.{k}": v for k, v in _overrides(job).items()})
        if (job / "metrics.json").exists():
            row["status"], row["error"] = "ok", None
            metrics = flatten(json.loads((job / "metrics.json").read_text()))
            row.update(metrics)
            if objective is not None:
                try:
                    row["objective"] = objective.evaluate(metrics)
                except ValueError:  # a null metric in this run, or a domain error
                    row["objective"] = None
        else:
            err = job / "error.json"
            row["status"] = "failed"
            row["error"] = json.loads(err.read_text())["error"] if err.exists() else \
                "no metrics.json (the job did not finish)"
        rows.append(row)
    return pd.DataFrame(rows)


def _typed(df: pd.DataFrame, config: Any = None) -> pd.DataFrame:
    """``df`` with each column that is null in every job given the type its values have
    (float for a numeric metric of the sweep's ``config`` or the objective, text otherwise)
    instead of Arrow's ``null`` type, so that summaries of sweeps with and without a block
    concatenate."""
    from replay.analytics.objective import config_metric_names

    numeric = config_metric_names(config) | {"objective"}
    if "objective" not in df:  # every summary has it, null where no job gave metrics
        df["objective"] = np.nan
    for c in df.columns[df.isna().all()]:
        df[c] = df[c].astype("float64" if c in numeric else "string")
    return df


def stream_builds(df: pd.DataFrame) -> int:
    """Jobs that built a surface stream (calibrate once, replay many: 1 for a cold cache,
    0 for a warm one, whatever the number of jobs)."""
    col = "surface_stream.built"
    return int(df[col].fillna(False).astype(bool).sum()) if col in df else 0


def summarize_sweep(sweep: str | Path, config: Any = None) -> list[Path]:
    """Write ``summary.parquet`` and ``sweep.html`` into ``sweep``; returns their paths.
    ``config`` (the sweep's config) gives the objective; without it ``multirun.yaml`` does."""
    sweep = Path(sweep)
    config = _sweep_config(sweep, config)
    df = summary_frame(sweep, _objective(config))
    pq = sweep / "summary.parquet"
    _typed(df, config).to_parquet(pq, index=False)
    page = sweep / "sweep.html"
    page.write_text(_html(df, sweep))
    return [pq, page]


def _plot(df: pd.DataFrame, x: str, y: str, xlabel: str, ylabel: str, title: str) -> str | None:
    from replay.app import charts  # matplotlib only when a sweep page is drawn

    if x not in df or y not in df:
        return None
    d = df[["job", x, y]].apply(pd.to_numeric, errors="coerce").dropna()
    if d.empty or (d[x] == 0).all() and (d[y] == 0).all():  # e.g. no hedging in this sweep
        return None
    fig, ax = charts.fig(6, 4)
    ax.scatter(d[x], d[y])
    for job, xv, yv in d.itertuples(index=False):
        ax.annotate(str(int(job)), (xv, yv), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    return charts.png(fig)


def _html(df: pd.DataFrame, sweep: Path) -> str:
    costs = None
    # the hedge leg's fees and slippage: the options book's trades cost the same in every job
    # of a sweep of hedgers
    if len(df) and {"pnl.hedge_fees_usd", "pnl.hedge_slippage_usd"} <= set(df.columns):
        costs = -(pd.to_numeric(df["pnl.hedge_fees_usd"], errors="coerce")
                  + pd.to_numeric(df["pnl.hedge_slippage_usd"], errors="coerce"))
        df = df.assign(**{"hedging_cost_usd": costs})
        if "pnl.step_std_usd" in df:
            df = df.assign(**{"hedging_error_var": pd.to_numeric(df["pnl.step_std_usd"],
                                                                  errors="coerce") ** 2})
    imgs = [_plot(df, "hedging_error_var", "hedging_cost_usd", "hedging-error variance (USD², per mark step)",
                  "hedging costs: the hedge's fees + slippage (USD)",
                  "Hedging cost vs hedging-error variance"),
            _plot(df, "calibration.n_fits", "calibration.oos_rmse_vol_pts", "number of refits",
                  "out-of-sample RMSE (vol pts)", "Calibration error vs refit frequency"),
            _plot(df, "margin.initial_usd_mean", "margin.breach_rate",
                  "average initial margin (USD)", "breach rate",
                  "Margin frontier: breaches vs capital")]
    cols = [c for c in df.columns if c.startswith("override.")] + [
        c for c in ("status", "objective", "pnl.total_usd", "pnl.step_std_usd",
                    "hedging_cost_usd", "execution.n_fills", "calibration.n_fits", "calibration.rmse_vol_pts",
                    "calibration.oos_rmse_vol_pts", "calibration.inside_spread_pct",
                    "calibration.arb_violations", "margin.initial_usd_mean", "margin.breach_rate",
                    "margin.breaches", "margin.observations", "margin.kupiec_p",
                    "margin.liquidations", "events_per_second", "error") if c in df.columns]
    head = "".join(f"<th onclick='sortBy({i})'>{html.escape(c)}</th>" for i, c in enumerate(["job"] + cols))
    body = []
    for rd in df.to_dict("records"):
        cells = [rd["job"]] + [rd.get(c) for c in cols]
        body.append("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in cells) + "</tr>")
    charts = "".join(f"<img alt='chart' src='data:image/png;base64,{i}'>" for i in imgs if i)
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>volreplay sweep {html.escape(sweep.name)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}} table{{border-collapse:collapse;font-size:.85em}}
td,th{{border:1px solid #ddd;padding:.2em .5em}} th{{background:#f4f4f4;cursor:pointer}}
img{{max-width:48%;margin-right:1%}}</style>
<script>
function sortBy(n){{const t=document.getElementById('jobs');const rows=[...t.tBodies[0].rows];
const asc=t.dataset.col==n&&t.dataset.dir!='asc';t.dataset.col=n;t.dataset.dir=asc?'asc':'desc';
rows.sort((a,b)=>{{const x=a.cells[n].textContent,y=b.cells[n].textContent;const fx=parseFloat(x),fy=parseFloat(y);
if((x==='')!==(y===''))return x===''?1:-1;
const c=(isNaN(fx)||isNaN(fy))?x.localeCompare(y):fx-fy;return asc?c:-c}});rows.forEach(r=>t.tBodies[0].appendChild(r))}}
</script></head><body>
<h1>Sweep <code>{html.escape(str(sweep))}</code></h1>
<p>{len(df)} jobs, {int((df.status == 'ok').sum()) if len(df) else 0} succeeded, {stream_builds(df)} surface stream build(s). Click a column to sort.
Hedging cost is the hedge's fees plus slippage (the options book's own trades left out); hedging error is the variance of the PnL per mark step.</p>
{charts}
<table id="jobs"><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>
</body></html>"""


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


class SweepSummary(Callback):
    """Hydra callback: protect earlier jobs at the start, aggregate at the end."""

    def on_multirun_start(self, config, **kwargs) -> None:
        sweep = Path(config.hydra.sweep.dir)
        if not sweep.is_dir():
            return
        old = job_dirs(sweep)
        if not old:
            return
        keep = sweep / f"previous-{time.strftime('%Y%m%d-%H%M%S')}"
        keep.mkdir()
        for p in old + [sweep / n for n in ("summary.parquet", "sweep.html", "multirun.yaml",
                                            "optimization_results.yaml") if (sweep / n).exists()]:
            shutil.move(str(p), keep / p.name)
        print(f"sweep dir {sweep} already held {len(old)} jobs: moved them to {keep}",
              file=sys.stderr)

    def on_multirun_end(self, config, **kwargs) -> None:
        global last_exit_code

        sweep = Path(config.hydra.sweep.dir)
        target = str(OmegaConf.select(config, "hydra.sweeper._target_", default="") or "")
        # first: Hydra turns what a callback raises into a warning, and a summary that fails
        # must not leave the sweep's exit code at 0
        last_exit_code = 1
        last_exit_code = sweep_exit_code(sweep, search="optuna" in target.lower())
        try:
            paths = summarize_sweep(sweep, config)
        except Exception as e:
            print(f"volreplay: sweep summary failed ({type(e).__name__}: {e}); the jobs' own "
                  f"results are in {sweep}", file=sys.stderr)
            last_exit_code = max(last_exit_code, 1)
            raise
        builds = stream_builds(pd.read_parquet(paths[0]))
        print(f"sweep summary: {paths[0]}\nsweep report:  {paths[1]}\n"
              f"surface stream builds: {builds}")


def sweep_exit_code(sweep: Path, search: bool = False) -> int:
    """0 when every job succeeded (for a ``search``, when any trial did); else 2 when each
    failed job failed on a user error (its ``error.json`` says so), or when a search's jobs
    ran but its objective could be computed on none of their metrics; 1 when a job crashed or
    never finished."""
    from replay.errors import EXIT_USER_ERROR

    jobs = job_dirs(sweep)
    failed = [j for j in jobs if not (j / "metrics.json").exists()]
    if search and len(failed) < len(jobs) and _search_completed(sweep) == 0:
        print("volreplay: error: sweep: no trial completed: the objective could not be "
              f"computed on the metrics of any job (see {sweep / 'optimization_results.yaml'})",
              file=sys.stderr)
        return EXIT_USER_ERROR
    if not failed or (search and len(failed) < len(jobs)):
        return 0
    user = all((j / "error.json").exists()
               and json.loads((j / "error.json").read_text()).get("user_error") for j in failed)
    print(f"volreplay: error: sweep: {len(failed)} of {len(jobs)} jobs failed (jobs "
          f"{', '.join(j.name for j in failed)}; their errors are in the summary)", file=sys.stderr)
    return EXIT_USER_ERROR if user else 1


def _search_completed(sweep: Path) -> int | None:
    """How many of a search's trials completed (``optimization_results.yaml``), None if
    it wrote no results."""
    import yaml

    path = sweep / "optimization_results.yaml"
    return (yaml.safe_load(path.read_text()) or {}).get("n_complete") if path.exists() else None
