"""volreplay's replay package: store, ingestion, synthetic market, engine, venue, consumers,
analytics and the application (CLI, Hydra app, sweeps, reports).

The public face is small and lazy, so that ``import replay`` loads neither DuckDB nor numba::

    import replay
    with replay.open_store("datasets/demo.duckdb") as store: ...
    metrics = replay.run(cfg)  # one backtest from a Hydra/OmegaConf config or a mapping

The layers and what each subpackage owns are in ``docs/architecture.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calibration.jitcache import invalidate_stale

invalidate_stale(Path(__file__).parent)  # before any kernel loads from the numba cache

__all__ = ["MarketStore", "open_store", "run"]


def run(cfg: Any) -> dict:
    """Run one backtest from a config (Hydra/OmegaConf or a plain mapping); its metrics dict."""
    from replay.app.backtest import run as _run

    return _run(cfg)


def __getattr__(name: str) -> Any:
    if name in ("MarketStore", "open_store"):
        import replay.store

        return getattr(replay.store, name)
    raise AttributeError(f"module 'replay' has no attribute {name!r}")
