"""volreplay's replay package: market store, ingestion, synthetic market, engine, venue, CLI."""

from __future__ import annotations

from pathlib import Path

from replay.jitcache import invalidate_stale

invalidate_stale(Path(__file__).parent)  # before any kernel loads from the numba cache

from replay.store import MarketStore, open_store  # noqa: E402

__all__ = ["MarketStore", "open_store", "run"]


def run(cfg):  # noqa: ANN001 - a Hydra/OmegaConf config or a plain mapping
    """Run one backtest from a config and return its metrics dict."""
    from replay.backtest import run as _run

    return _run(cfg)
