"""Structured run configuration (Hydra ConfigStore schemas) and user-facing config errors.

The groups are ``data``, ``calibration``, ``strategy``, ``book``, ``venue``, ``report`` and
``experiment`` (CONTRACT.md).  ``data``, ``venue`` and ``report`` are typed here, so OmegaConf
rejects a wrong type or an unknown key and names it.  ``calibration``, ``strategy`` and ``book``
are instantiated by ``_target_``, so users can plug in their own classes; their keys are
checked against the target's signature by :func:`instantiate_checked`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


class ConfigError(ValueError):
    """A configuration mistake; the message names the key and the allowed values."""


def check_choice(key: str, value: Any, allowed: tuple | list) -> Any:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not allowed; choose one of {', '.join(map(str, allowed))}")
    return value


def check_range(key: str, value: float, lo: float | None = None, hi: float | None = None,
                lo_open: bool = False) -> float:
    ok = True
    if lo is not None:
        ok &= value > lo if lo_open else value >= lo
    if hi is not None:
        ok &= value <= hi
    if not ok:
        lo_s = "-inf" if lo is None else f"{lo}"
        hi_s = "inf" if hi is None else f"{hi}"
        raise ConfigError(f"{key}: {value!r} is out of range {'(' if lo_open else '['}{lo_s}, {hi_s}]")
    return value


@dataclass
class DataConfig:
    db: str = "datasets/demo.duckdb"
    start: str | None = None  # ISO time or null (store start)
    end: str | None = None
    instruments: list[str] | None = None  # instrument names to replay (null: all)
    expiries: list[str] | None = None  # option expiries (ISO dates) to replay (null: all)
    underlying: str | None = None  # instrument name used as "the underlying" (null: auto)
    window_s: float = 300.0  # feed window of market time per DuckDB scan


@dataclass
class VenueConfig:
    latency_ms: float = 5.0
    jitter_ms: float = 0.0
    jitter: str = "none"  # none | uniform | exponential
    option_fee_per_contract: float = 0.0003  # coin
    option_fee_cap: float = 0.125  # fraction of premium
    hedge_taker_bps: float = 5.0
    hedge_maker_bps: float = 0.0
    depth_levels: int = 5  # synthetic ladder when the data has no depth
    depth_step_ticks: float = 1.0
    depth_size_multiplier: float = 1.0
    default_size: float = 10.0  # option contracts shown at the touch where the data has no sizes
    hedge_default_size: float = 100000.0  # hedge contracts at the touch where it has no book
    hedge_half_spread_bps: float = 1.0  # quoted spread around a hedge price that has no book
    price_band: float = 0.05  # reject market orders that would fill further than this from mid
    queue: str = "conservative"  # passive orders' queue model: conservative | probabilistic
    passive_ttl_s: float = 60.0  # a resting limit order expires after this (market seconds)
    # Consumers whose limit orders are negotiated trades that fill whole at their limit, as
    # maker: the books (market-making takes the other side of a printed trade at its price;
    # a fixed book opening "at mid" is an RFQ/block at mid).  Hedgers trade on the book.
    negotiated_consumers: list[str] = field(default_factory=lambda: ["book"])


@dataclass
class ReportConfig:
    html: bool = True
    markout_horizons_s: list[float] = field(default_factory=lambda: [1.0, 10.0, 60.0, 300.0])
    pnl_every_s: float = 60.0
    pnl_mark: str = "mid"  # options marked at: mid | surface (mark-to-model, see replay/pnl.py)
    surface_snapshots: int = 3  # smiles shown at this many evenly spaced fit times


@dataclass
class ObjectiveConfig:
    """What an Optuna sweep optimises (see :mod:`replay.objective`); also a summary column.

    The defaults live here rather than in ``conf/config.yaml`` so that an experiment can set
    them.  The default is hedging error plus half the costs: fees and slippage are PnL,
    negative when paid, so subtracting them adds what was paid."""

    expr: str = "pnl.step_std_usd - 0.5 * (pnl.fees_usd + pnl.slippage_usd)"
    direction: str = "minimize"  # minimize | maximize


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    venue: VenueConfig = field(default_factory=VenueConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    calibration: Any = None
    strategy: Any = None
    book: Any = None
    experiment: Any = None
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    seed: int = 0
    snapshot_every_s: float | None = None
    resume: str | None = None
    out_dir: str | None = None  # set by the app to Hydra's output dir


def register() -> None:
    cs = ConfigStore.instance()
    cs.store(name="run_schema", node=RunConfig)
    cs.store(group="data", name="schema", node=DataConfig)
    cs.store(group="venue", name="schema", node=VenueConfig)
    cs.store(group="report", name="schema", node=ReportConfig)


def _init_keywords(cls: type) -> tuple[list[str], bool]:
    """Keyword arguments ``cls(...)`` accepts, following ``**kwargs`` that are passed on to
    base classes (``super().__init__(**common)``); ``open_ended`` when the chain ends in a
    ``**kwargs`` that no base class defines."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names += [p.name for p in params if p.name != "self" and p.kind in
                  (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in names]
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names, False
    return names, True


def instantiate_checked(group: str, node: Any, **extra: Any) -> Any:
    """``hydra.utils.instantiate`` with errors that name the group, key and allowed keys."""
    from hydra.utils import get_class, instantiate
    from omegaconf import OmegaConf

    if node is None:
        return None
    target = OmegaConf.select(node, "_target_") if OmegaConf.is_config(node) else node.get("_target_")
    if not target:
        raise ConfigError(f"{group}: missing _target_ (the class to instantiate)")
    try:
        cls = get_class(target)
    except Exception:
        raise ConfigError(f"{group}._target_: cannot import {target!r}") from None
    allowed, open_ended = _init_keywords(cls)
    # run-provided collaborators (e.g. the surface board) go only to targets that take them
    extra = {k: v for k, v in extra.items() if open_ended or k in allowed}
    if not open_ended:
        keys = [k for k in (OmegaConf.to_container(node) if OmegaConf.is_config(node) else node)
                if k != "_target_"]
        unknown = [k for k in keys if k not in allowed]
        if unknown:
            raise ConfigError(f"{group}.{unknown[0]}: unknown key for {target}; "
                              f"allowed keys: {', '.join(allowed)}")
    try:
        return instantiate(node, **extra, _convert_="all")
    except ConfigError:
        raise
    except Exception as e:  # Hydra wraps constructor errors; surface ours unwrapped
        cause = e.__cause__ or e
        if isinstance(cause, ConfigError):
            raise cause from None
        if isinstance(cause, (TypeError, ValueError)):
            raise ConfigError(f"{group}: {cause}") from None
        raise
