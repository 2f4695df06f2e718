"""One backtest from a config: wire the consumers, replay, measure, write the run directory.

The run directory (Hydra's output dir, or ``cfg.out_dir``) receives ``journal.duckdb`` from the
engine, then ``metrics.json`` (CONTRACT.md keys) and ``report.html``.  Consumers are called in
this order at any instant: calibration (publishes the surface), book (trades the options),
strategy (hedges), marker (marks and attributes) — so a hedge always sees the surface and the
positions of the same instant.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from replay.config import ConfigError, DataConfig, ReportConfig, VenueConfig, instantiate_checked

NS = 1_000_000_000
_NULL_CALIBRATION = dict.fromkeys(("n_fits", "rmse_vol_pts", "inside_spread_pct",
                                   "oos_rmse_vol_pts", "param_jitter", "arb_violations",
                                   "fit_ms_median", "vs_venue_mark_iv_mae_vol_pts"))


def _typed(cls, node: Any, group: str):
    """A typed group (data/venue/report) from a DictConfig or mapping, naming bad keys."""
    from omegaconf import OmegaConf

    d = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node or {})
    unknown = sorted(set(d) - set(cls.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"{group}.{unknown[0]}: unknown key; allowed keys: "
                          f"{', '.join(cls.__dataclass_fields__)}")
    return cls(**d)


def _ts(key: str, s: str | None) -> int | None:
    if s is None:
        return None
    try:
        dt = datetime.fromisoformat(str(s))
    except ValueError:
        raise ConfigError(f"{key}: {s!r} is not an ISO date/time (e.g. 2025-12-10T00:00)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1e6) * 1000


def _active(node: Any) -> bool:
    if node is None:
        return False
    try:
        return bool(node.get("_target_"))
    except AttributeError:
        return False


def run(cfg: Any) -> dict:
    """Run one backtest; returns the metrics dict (also written to ``metrics.json``)."""
    from omegaconf import OmegaConf

    from replay.engine import run_replay
    from replay.pnl import PnLMarker
    from replay.state import Instruments
    from replay.store import open_store
    from replay.venue.simulator import SimulatedVenue, specs_from_store
    from strategies.base import SurfaceBoard

    if not OmegaConf.is_config(cfg):
        cfg = OmegaConf.create(cfg)
    data = _typed(DataConfig, cfg.get("data"), "data")
    venue_cfg = _typed(VenueConfig, cfg.get("venue"), "venue")
    report = _typed(ReportConfig, cfg.get("report"), "report")
    out = Path(cfg.get("out_dir") or
               Path("reports") / "runs" / datetime.now().strftime("%Y-%m-%d/%H-%M-%S"))
    out.mkdir(parents=True, exist_ok=True)
    t_wall = time.perf_counter()

    db = data.db if "://" in data.db else Path(data.db)  # a URL stays a URL
    with open_store(db) as store:
        inst_table = store.instruments()
        ids = store.instrument_ids()
    if inst_table.num_rows == 0:
        raise ConfigError(f"data.db: store {db} has no instruments (is it empty?)")
    names = {v: k for k, v in ids.items()}
    sel_ids = None
    if data.instruments:
        missing = [n for n in data.instruments if n not in ids]
        if missing:
            raise ConfigError(f"data.instruments: {missing[0]!r} is not in {db}")
        sel_ids = [ids[n] for n in data.instruments]
    if data.underlying:
        if data.underlying not in ids:
            raise ConfigError(f"data.underlying: {data.underlying!r} is not in {db}; "
                              f"non-option instruments: {_non_options(inst_table)}")
        underlying = ids[data.underlying]
    else:
        underlying = Instruments.from_arrow(inst_table).default_underlying()
    expiries = [_ts("data.expiries", e) + 8 * 3600 * NS for e in data.expiries] if data.expiries else None

    specs = specs_from_store(inst_table)
    board = SurfaceBoard()
    venue = SimulatedVenue(venue_cfg, specs)
    calib = instantiate_checked("calibration", cfg.calibration, board=board) \
        if _active(cfg.get("calibration")) else None
    book = instantiate_checked("book", cfg.book, board=board) \
        if _active(cfg.get("book")) else None
    strategy = instantiate_checked("strategy", cfg.strategy, board=board) \
        if _active(cfg.get("strategy")) else None
    marker = PnLMarker(venue, board, every_s=report.pnl_every_s, mark=report.pnl_mark) \
        if (book or strategy) else None
    consumers = [c for c in (calib, book, strategy, marker) if c is not None]
    if not consumers:
        raise ConfigError("nothing to run: calibration, book and strategy are all none")

    res = run_replay(db, consumers, out, start=_ts("data.start", data.start),
                     end=_ts("data.end", data.end), window_ns=int(data.window_s * NS),
                     snapshot_every_ns=int(cfg.snapshot_every_s * NS) if cfg.get("snapshot_every_s") else None,
                     resume=cfg.get("resume"), venue=venue, seed=int(cfg.get("seed", 0)),
                     underlying_id=underlying, instrument_ids=sel_ids, expiries=expiries)
    metrics = _metrics(res, calib, marker, venue, out, db, report)
    # end to end: consumers, venue and analytics included (the report is rendered after)
    metrics["wall_seconds"] = time.perf_counter() - t_wall
    metrics["events_per_second"] = res.total_events / metrics["wall_seconds"]
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, allow_nan=False,
                                                 default=_json_default))
    (out / "run.json").write_text(json.dumps({
        "db": str(db), "underlying": names.get(underlying),
        "config": OmegaConf.to_container(cfg, resolve=True)}, indent=2, default=str))
    if report.html:
        from replay.report import render_run

        render_run(out)
    return metrics


def _non_options(inst_table) -> str:
    rows = [r for r in inst_table.to_pylist() if r["kind"] != "option"]
    return ", ".join(r["name"] for r in rows) or "none"


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def _finite(x: float | None) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _metrics(res, calib, marker, venue, out: Path, db: Path, report: ReportConfig) -> dict:
    from replay.analytics import execution_metrics
    from replay.journal import read_tables
    from replay.pnl import BUCKETS, PNL_KEYS

    m: dict[str, Any] = {
        "events_replayed": res.total_events,
        "wall_seconds": res.wall_seconds,
        "events_per_second": res.events_per_second,
        "journal_hash": res.journal_hash,
        "calibration": calib.metrics() if calib is not None else dict(_NULL_CALIBRATION),
    }
    tables = read_tables(out / "journal.duckdb", ["pnl", "attribution"])
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
        }
        att = {k: float(marker.totals[k]) for k in BUCKETS if k != "residual"}
        att["residual"] = m["pnl"]["total_usd"] - math.fsum(att.values())
        m["attribution"] = att
    else:
        m["pnl"] = dict.fromkeys(PNL_KEYS)
        m["attribution"] = dict.fromkeys(BUCKETS)
    m["execution"] = execution_metrics(out / "journal.duckdb", db, report.markout_horizons_s)
    for block in ("pnl", "calibration"):
        m[block] = {k: (_finite(v) if isinstance(v, float) else v) for k, v in m[block].items()}
    return m
