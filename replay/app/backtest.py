"""One backtest from a config: wire the consumers, replay, measure, write the run directory.

The run directory (Hydra's output dir, or ``cfg.out_dir``) receives ``run.json`` (the resolved
config, written before the replay so that a resume can check it), ``journal.duckdb`` from the
engine, then ``metrics.json`` (docs/outputs.md keys) and ``report.html``.  Consumers are called in
this order at any instant: calibration (publishes the surface), book (trades the options),
strategy (hedges), marker (marks and attributes), margin (requirement, calls, liquidation) — so
a hedge always sees the surface and the positions of the same instant.

Before anything is written the config is checked (:func:`replay.model.config.validate_numbers`), the
data selection must overlap the store, and a resume must find a snapshot of a run started
with the same config; a new run never reuses a directory that holds another run's journal.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from replay.analytics.objective import checked_objective
from replay.app.selection import check_hedge, forecast_bars, resolve_data, typed
from replay.errors import ConfigError, RefusedAtStart
from replay.model.config import (
    PLUGIN_GROUPS,
    RESUME_FREE_KEYS,
    DataConfig,
    ReportConfig,
    VenueConfig,
    check_consumer_names,
    checked_config,
    config_diff,
)
from replay.model.plugins import instantiate_checked
from replay.units import NS, iso_z

log = logging.getLogger(__name__)
_NULL_CALIBRATION = dict.fromkeys(("n_fits", "rmse_vol_pts", "inside_spread_pct",
                                   "oos_rmse_vol_pts", "param_jitter", "arb_violations",
                                   "fit_ms_median", "vs_venue_mark_iv_mae_vol_pts", "fallbacks",
                                   "skipped_no_quotes"))


def _active(node: Any) -> bool:
    try:
        return node is not None and bool(node.get("_target_"))
    except AttributeError:
        return False


def _without(node: Any, *keys: str) -> Any:
    """A copy of a config node without ``keys`` (None stays None)."""
    if node is None:
        return None
    from omegaconf import OmegaConf

    d = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    for key in keys:
        d.pop(key, None)
    return OmegaConf.create(d)


def _comparable(resolved: dict) -> dict:
    """The parts of a resolved config that decide the journal, with defaults filled in, so
    that a run and its resume compare equal however each was written down."""
    d = dict(resolved)
    for group, cls in (("data", DataConfig), ("venue", VenueConfig), ("report", ReportConfig)):
        d[group] = asdict(typed(cls, d.get(group), group))
    for group in PLUGIN_GROUPS:
        d[group] = d.get(group) if _active(d.get(group)) else None
    cal = d.get("calibration")
    if _active(cal):  # refresh replays the stream auto does; off fits live: another journal
        d["calibration"] = {**cal, "cache": "off" if cal.get("cache") == "off" else "auto"}
    d["seed"] = int(d.get("seed") or 0)
    d["snapshot_every_s"] = d.get("snapshot_every_s")
    return d


def run(cfg: Any) -> dict:
    """Run one backtest; returns the metrics dict (also written to ``metrics.json``)."""
    with ExitStack() as held:  # the surface stream it reads, let go however the run ends
        return _run(cfg, held)


def _run(cfg: Any, held: ExitStack) -> dict:
    from omegaconf import OmegaConf

    from replay.app import FEED_READ_AHEAD, use_system_allocator
    from replay.app.surfaces.build import DYNAMICS_FILE
    from replay.app.surfaces.cache import BUILD_KEYS, cache_mode, ensure_stream, read_manifest
    from replay.app.surfaces.cache import store_fingerprint as fingerprint
    from replay.consumers.marker import PnLMarker
    from replay.consumers.stream_reader import StreamReader
    from replay.engine.loop import ProgressLog, run_replay
    from replay.venue.simulator import SimulatedVenue, specs_from_store
    from strategies.board import SurfaceBoard

    use_system_allocator()
    if not OmegaConf.is_config(cfg):
        cfg = OmegaConf.create(cfg)
    resolved = checked_config(cfg)  # before anything is written: see replay.model.config
    if resolved.get("objective") is not None:  # read by sweeps, but a typo is one whatever runs
        checked_objective(cfg)
    data = typed(DataConfig, cfg.get("data"), "data")
    venue_cfg = typed(VenueConfig, cfg.get("venue"), "venue")
    report = typed(ReportConfig, cfg.get("report"), "report")
    resume = cfg.get("resume")
    out = _out_dir(cfg.get("out_dir"), resume)
    t_wall = time.perf_counter()

    d = resolve_data(data)
    if _active(cfg.get("strategy")):
        check_hedge(cfg, d)
    db, inst_table, underlying, sel_ids, expiries = (d.db, d.inst_table, d.sel.underlying_id,
                                                     d.sel.instrument_ids, d.sel.expiries)
    span_text, names = d.span_text, d.names
    specs = specs_from_store(inst_table)
    board = SurfaceBoard()
    venue = SimulatedVenue(venue_cfg, specs)
    calib_node = cfg.calibration if _active(cfg.get("calibration")) else None
    if (calib_node is not None or _active(cfg.get("book"))) and \
            not any(s.is_option for s in specs.values()):
        raise ConfigError(f"data.db: {db} lists no options, which calibration and book need "
                          "(calibration=none book=none strategy=none forecast=all forecasts "
                          "its underlying's volatility)")
    cache = cache_mode(calib_node)
    calib = instantiate_checked("calibration", _without(calib_node, *BUILD_KEYS), board=board) \
        if calib_node is not None else None
    book = instantiate_checked("book", cfg.book, board=board) \
        if _active(cfg.get("book")) else None
    forecasts = fc = None
    if _active(cfg.get("forecast")):
        from replay.consumers.forecast import ForecastBoard

        forecasts = ForecastBoard()
        fc = instantiate_checked("forecast", cfg.forecast, board=board, forecasts=forecasts)
    strategy = instantiate_checked("strategy", cfg.strategy, board=board, forecasts=forecasts) \
        if _active(cfg.get("strategy")) else None
    if book is None and not getattr(strategy, "trades", True):
        strategy = None  # it never trades and there is nothing to hold: nothing to mark either
    marker = PnLMarker(venue, board, every_s=report.pnl_every_s, mark=report.pnl_mark) \
        if (book or strategy) else None
    margin = instantiate_checked("margin", cfg.margin, venue=venue, board=board,
                                 forecasts=forecasts) if _active(cfg.get("margin")) else None
    consumers = [c for c in (calib, fc, book, strategy, marker, margin) if c is not None]
    if not consumers:
        raise ConfigError("nothing to run: calibration, book and strategy are all none")
    check_consumer_names(venue_cfg, {c.name for c in consumers})
    bars = forecast_bars(d, fc) if fc is not None else None  # before the run dir is claimed

    run_info = {"db": str(db), "underlying": names.get(underlying), "config": resolved}
    if cfg.get("snapshot_every_s") or resume:  # what a resume must find unchanged
        run_info["store_fingerprint"] = fingerprint(db)
    if resume:
        snap_path, n_done = _check_resume(resume, out, run_info)
    else:
        snap_path, n_done = None, 0
        _claim(out, run_info)
    replaying = False
    try:  # a config the data refuses (no hedge instrument, no such expiry) frees the dir
        stream = recorded = None  # recorded: the stream's surface dynamics block
        copies = {}  # journal tables copied while the replay runs
        if calib is not None:
            stream = ensure_stream(_without(calib_node, "cache"), d.sel, mode=cache, log=log)
            if stream is not None:
                held.callback(stream.release)
                manifest = read_manifest(stream.path)
                calib.stream = StreamReader(stream.path, manifest["calibration_metrics"],
                                            link=stream.link and not resume)  # see truncate_after
                recorded = manifest.get("dynamics")
                if recorded is not None and (stream.path / DYNAMICS_FILE).exists():
                    # the stream's surface dynamics table (none without published fits), kept if
                    # the run replays all of the stream, else replaced by its journal's after it
                    copies["surface_dynamics"] = stream.path / DYNAMICS_FILE
        replaying = True
        res = run_replay(db, consumers, out, start=d.sel.start, end=d.sel.end,
                         window_ns=int(data.window_s * NS),
                         snapshot_every_ns=int(cfg.snapshot_every_s * NS) if cfg.get("snapshot_every_s") else None,
                         resume=snap_path, venue=venue, seed=int(cfg.get("seed", 0)),
                         underlying_id=underlying, instrument_ids=sel_ids, expiries=expiries,
                         progress=None if sys.stderr.isatty() else ProgressLog(n_done),
                         prefetch=FEED_READ_AHEAD, copy_tables=copies)
    except ConfigError as e:
        if resume:
            raise
        if not replaying or isinstance(e, RefusedAtStart):
            _release(out, run_info, f"failed: {e}")
        else:  # refused mid-replay (a roll finds no expiry): its journal is kept
            _write_run_json(out, {**run_info, "status": f"failed: {e}"})
        raise
    except KeyboardInterrupt:  # resumable from its last snapshot (resume=...)
        _write_run_json(out, {**run_info, "status": "interrupted"})
        raise
    if res.total_events == 0:
        _release(out, run_info, "failed: no market events in the selection")
        keys = "data.start, data.end" + (", data.instruments" if sel_ids else "")
        raise ConfigError(f"{keys}: the selection holds no market events; {span_text}")
    metrics = _metrics(res, calib, marker, venue, out, db, report, underlying,
                       getattr(strategy, "name", None))
    known = recorded if recorded is not None and calib.replayed_whole else None
    metrics.update(_risk_metrics(out / "journal.duckdb", calib, fc, bars, margin, known))
    metrics["surface_stream"] = stream.as_metrics() if stream is not None else {
        "cache": cache if calib is not None else None, "key": None, "built": False,
        "build_seconds": None, "path": None}
    # end to end: consumers, venue and analytics included (the report is rendered after)
    metrics["wall_seconds"] = time.perf_counter() - t_wall
    metrics["events_per_second"] = res.total_events / metrics["wall_seconds"]
    tmp = out / ".metrics.json.tmp"  # whole or absent: a sweep reads it as the job's result
    tmp.write_text(json.dumps(metrics, indent=2, allow_nan=False, default=_json_default))
    tmp.replace(out / "metrics.json")
    _write_run_json(out, {**run_info, "status": "complete"})
    if report.html:
        from replay.app.report import render_run

        render_run(out)
    return metrics


def _risk_metrics(journal: Path, calib, fc, bars, margin, known_dynamics) -> dict:
    """The blocks computed from the journal after the replay (docs/outputs.md): the surface
    dynamics of a calibrated run (``known_dynamics``: the stream's block, its table copied
    during the replay, see :func:`replay.analytics.dynamics.dynamics`), the forecasts' scores
    (their realised vols written first) and the margin breach backtest."""
    out: dict[str, Any] = {}
    if calib is not None:
        from replay.analytics.dynamics import dynamics

        out["dynamics"] = dynamics(journal, known=known_dynamics)
    if fc is not None:
        from replay.analytics.forecast_scores import fill_realized, forecast_block, realized_block

        fill_realized(journal, bars[0], bars[1])
        out["forecast"] = forecast_block(journal, fc.cfg.every_s, fc.cfg.forecasters)
        out["forecast"]["realized"] = realized_block(*bars[2], fc.cfg.sample_s)
        if out["forecast"]["ranking_truth"]:
            log.info("forecasters by QLIKE against the true variance: %s",
                     out["forecast"]["ranking_truth"])
    if margin is not None:
        from replay.analytics.breach import margin_block

        out["margin"] = margin_block(journal, margin)
    return out


def _out_dir(out_dir: str | None, resume: str | None) -> Path:
    """Where the run writes: ``out_dir``, else the resumed run's directory, else a new one."""
    if resume:
        from replay.engine.snapshot import run_dir_of

        run_dir = run_dir_of(resume)
        if out_dir is not None and Path(out_dir).resolve() != run_dir.resolve():
            raise ConfigError(f"resume: {resume} belongs to run directory {run_dir}, but this run "
                              f"would write to {out_dir}; a resume continues in its own "
                              "directory (drop hydra.run.dir)")
        return run_dir
    return Path(out_dir) if out_dir is not None else \
        Path("reports") / "runs" / datetime.now().strftime("%Y-%m-%d/%H-%M-%S")


def _write_run_json(out: Path, info: dict) -> None:
    (out / "run.json").write_text(json.dumps(info, indent=2, default=str))


def refuse_used_dir(out: Path) -> None:
    """A new run must not write into a directory that holds another run's journal or
    snapshots: the engine starts a new run by deleting them."""
    for name in ("journal.duckdb", "snapshots"):
        if (out / name).exists():
            then = (f"or continue that run with resume={out}" if (out / "snapshots").is_dir()
                    else "or remove it (it has no snapshot to resume from)")
            raise ConfigError(f"out_dir: {out} already holds a run ({name}); choose another "
                              f"hydra.run.dir, {then}")


def _claim(out: Path, run_info: dict) -> None:
    """Take ``out`` for a new run (see :func:`refuse_used_dir`) and record its config."""
    refuse_used_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_run_json(out, {**run_info, "status": "running"})


def _release(out: Path, run_info: dict, status: str) -> None:
    """Undo :func:`_claim` after a run that failed on a config the data refuses, or replayed
    nothing: its journal was created by this run and is of no use, so the directory can be
    used again; ``run.json`` keeps the config and, as its status, why."""
    import shutil

    for p in (out / "journal.duckdb", out / "journal.duckdb.wal"):
        p.unlink(missing_ok=True)
    shutil.rmtree(out / "snapshots", ignore_errors=True)  # timers may snapshot an empty span
    _write_run_json(out, {**run_info, "status": status})


def _check_resume(resume: str, out: Path, run_info: dict) -> tuple[Path, int]:
    """The snapshot to resume from and its event count, after checking that the run was
    started with this config (keys in RESUME_FREE_KEYS may differ) on this store's content (a
    snapshot's place in each table is a ``seq``, which a merging ingest renumbers)."""
    from replay.engine import snapshot as snap
    from replay.engine.state import C_EVENTS, C_NOW

    path, payload = snap.find_latest(resume)
    if not (out / "journal.duckdb").exists():
        raise ConfigError(f"resume: {out} holds no journal.duckdb to continue")
    stored = out / "run.json"
    if stored.exists():
        try:
            started = json.loads(stored.read_text())
            before = _comparable(started.get("config") or {})
        except (ValueError, TypeError) as e:  # written by an older version, or edited
            raise ConfigError(f"resume: cannot read the config of {out} from run.json "
                              f"({e}); nothing was changed") from None
        if started.get("store_fingerprint") not in (None, run_info["store_fingerprint"]):
            raise ConfigError(f"resume: the store {run_info['db']} has changed since {out} was "
                              "started (data was ingested into it); its snapshots no longer "
                              "point into the same rows: start the run afresh")
        diff = config_diff(before, _comparable(run_info["config"]), RESUME_FREE_KEYS)
        if diff:
            shown = "; ".join(f"{k}: {_brief(a)} -> {_brief(b)}" for k, a, b in diff[:3])
            more = f"; and {len(diff) - 3} more" if len(diff) > 3 else ""
            raise ConfigError(f"resume: the config differs from the one {out} was started with, "
                              f"in {', '.join(k for k, _, _ in diff)} ({shown}{more}); resume "
                              "with the run's config")
    else:
        log.warning("resume: %s has no run.json, so the config cannot be checked", out)
    n = int(payload["clock"][C_EVENTS])
    log.info("resuming %s from snapshot %s (%s events, market time %s)", out, path, f"{n:,}",
             iso_z(int(payload["clock"][C_NOW])))
    return path, n


def _brief(v: Any) -> str:
    """A config value in an error line: a whole node by its class, null as in YAML."""
    if isinstance(v, dict):
        return str(v.get("_target_", "{...}")).rpartition(".")[2]
    return "null" if v is None else repr(v)


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _metrics(res, calib, marker, venue, out: Path, db: Path, report: ReportConfig,
             underlying: int, hedger: str | None) -> dict:
    from replay.analytics.execution import connect, execution_metrics, hedge_costs
    from replay.analytics.tables import read_tables
    from replay.consumers.marker import BUCKETS, PNL_KEYS, VEGA_SPLIT

    m: dict[str, Any] = {
        "events_replayed": res.total_events, "wall_seconds": res.wall_seconds,
        "events_per_second": res.events_per_second, "journal_hash": res.journal_hash,
        "consumers": res.consumer_costs, "journal": res.journal_costs,
        "calibration": calib.metrics() if calib is not None else dict(_NULL_CALIBRATION),
    }
    journal = out / "journal.duckdb"
    with connect(journal, db, underlying) as con:  # one connection for the tables and SQL
        tables = read_tables(journal, ["pnl", "attribution", "executions", "orders"], con)
        execution = execution_metrics(journal, db, report.markout_horizons_s, underlying, con)
    pnl = tables["pnl"]
    if marker is not None and len(pnl):
        last = pnl.iloc[-1]
        # hedging error: the std of each mark step's PnL net of trading costs (fees and
        # slippage are reported on their own, the cost side of a cost-vs-error frontier)
        att_steps = tables["attribution"]
        steps = (att_steps["total"] - att_steps["fees"] - att_steps["slippage"]).to_numpy()
        m["pnl"] = {
            "total_usd": float(last.total_usd), "total_coin": float(last.total_coin),
            "options_usd": float(last.options_usd), "hedge_usd": float(last.hedge_usd),
            "fees_usd": float(last.fees_usd), "funding_usd": float(last.funding_usd),
            "slippage_usd": -float(sum(venue.slippage_usd.values())),
            "step_std_usd": float(np.std(steps, ddof=1)) if steps.size > 1 else None,
            **hedge_costs(tables["executions"], tables["orders"], hedger),
        }
        att = {k: float(marker.totals[k]) for k in BUCKETS if k != "residual"}
        att["residual"] = m["pnl"]["total_usd"] - math.fsum(att.values())
        m["attribution"] = att
        m["attribution_vega"] = {k: float(v) for k, v in marker.vega_split.items()}
    else:
        m["pnl"] = dict.fromkeys(PNL_KEYS)
        m["attribution"] = dict.fromkeys(BUCKETS)
        m["attribution_vega"] = dict.fromkeys(VEGA_SPLIT)
    m["execution"] = execution
    for block in ("pnl", "calibration"):
        m[block] = {k: (_finite(v) if isinstance(v, float) else v) for k, v in m[block].items()}
    return m
