"""Bench ``hedgers``: what a wake of each hedging strategy costs.

On the synthetic day (``--quick``: the two-hour store) with the SVI surface refitted every
1 s, a short straddle is hedged by each strategy of ``conf/strategy`` in turn, at its default
config.  The surface stream is built once, by a first run, in a fresh temporary cache; the
runs measured then replay it, so each strategy's figures come from a run as a sweep's job
makes it.  Per strategy, from the run's ``metrics.json`` (``consumers``, ``execution``): the
hedger's wakes and its mean time per wake, its orders and the run's wall time, with the PnL
marker's mean time per mark (the same in every run) as the reference.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

CONF = Path(__file__).resolve().parents[1] / "conf" / "strategy"


def _strategies() -> dict[str, dict]:
    from omegaconf import OmegaConf

    return {p.stem: OmegaConf.to_container(OmegaConf.load(p))
            for p in sorted(CONF.glob("*.yaml")) if p.stem != "none"}


def run(quick: bool) -> dict:
    from replay.app.bench import CACHE_ENV, day_store

    # the backtest case's store and run config, so that the two cases measure one day
    spec = importlib.util.spec_from_file_location("bench_backtest",
                                                  Path(__file__).with_name("backtest.py"))
    bt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bt)
    _cfg, _timed = bt._cfg, bt._timed
    db = day_store(quick)
    out: dict = {"events": None, "stream_build_seconds": None}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ[CACHE_ENV] = str(Path(tmp) / "cache")
        first, _ = _timed(_cfg(db, Path(tmp) / "build", band=0.1))
        out["events"] = first["events_replayed"]
        out["stream_build_seconds"] = round(first["surface_stream"]["build_seconds"], 2)
        for name, strategy in _strategies().items():
            cfg = _cfg(db, Path(tmp) / name, band=0.1)
            cfg["strategy"] = strategy
            m, seconds = _timed(cfg)
            if m["surface_stream"]["built"]:
                raise RuntimeError(f"{name}: the run rebuilt the surface stream")
            hedger, pnl = m["consumers"]["hedger"], m["consumers"]["pnl"]
            out[name] = {
                "wakes": hedger["wakes"],
                "us_per_wake": _round(hedger["us_per_wake"]),
                "orders": m["execution"]["n_orders"],
                "run_seconds": round(seconds, 2),
                "marker_us_per_mark": _round(pnl["us_per_wake"]),
            }
    return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)
