"""volreplay's replay package: market store, ingestion, synthetic market, engine, venue, CLI."""

from __future__ import annotations

from replay.store import MarketStore, open_store

__all__ = ["MarketStore", "open_store", "run"]


def run(cfg):  # noqa: ANN001 - a Hydra/OmegaConf config or a plain mapping
    """Run one backtest from a config and return its metrics dict."""
    from replay.backtest import run as _run

    return _run(cfg)
