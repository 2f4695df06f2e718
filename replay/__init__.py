"""volreplay's replay package: store, ingestion, synthetic market, engine, venue, consumers,
analytics and the application (CLI, Hydra app, sweeps, reports).

The public face is small and lazy, so that ``import replay`` loads neither DuckDB nor numba::

    import replay
    with replay.open_store("datasets/demo.duckdb") as store: ...
    cfg = replay.compose(["data.db=datasets/demo.duckdb", "strategy=periodic"])
    cfg.out_dir = "reports/runs/mine"
    metrics = replay.run(cfg)  # one backtest from a Hydra/OmegaConf config or a mapping

The layers and what each subpackage owns are in ``docs/architecture.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from calibration.jitcache import invalidate_stale

invalidate_stale(Path(__file__).parent)  # before any kernel loads from the numba cache

__all__ = ["MarketStore", "compose", "open_store", "run"]


def run(cfg: Any) -> dict:
    """Run one backtest from a config (Hydra/OmegaConf or a plain mapping); its metrics dict.

    The config is the whole of it: a group it leaves out (``calibration``, ``book``,
    ``strategy``, ...) is not run, so start from :func:`compose`, which gives the config
    ``volreplay run`` would with the same overrides; ``out_dir`` is where the run writes."""
    from replay.app.backtest import run as _run

    return _run(cfg)


def compose(overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """The ``volreplay run`` config (an OmegaConf node) composed with Hydra ``overrides``
    (``["strategy=periodic", "calibration.every=5s"]``), with no run directory: a mistake is
    a :class:`replay.errors.ConfigError` naming the key."""
    from replay.app.compose import compose_checked

    return compose_checked(list(overrides))


def __getattr__(name: str) -> Any:
    if name in ("MarketStore", "open_store"):
        import replay.store

        return getattr(replay.store, name)
    raise AttributeError(f"module 'replay' has no attribute {name!r}")
