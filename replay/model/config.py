"""Structured run configuration (Hydra ConfigStore schemas) and user-facing config errors.

The groups are ``data``, ``calibration``, ``strategy``, ``book``, ``margin``, ``forecast``,
``venue``, ``report`` and ``experiment`` (docs/outputs.md).  ``data``, ``venue`` and ``report``
are typed here, so OmegaConf rejects a wrong type or an unknown key and names it.
``calibration``, ``strategy``, ``book``, ``margin`` and ``forecast`` are instantiated by
``_target_``, so users can plug in
their own classes; their keys are checked against the target's signature by
:func:`instantiate_checked`.

Every numeric key has declared bounds in :data:`BOUNDS`, and :func:`validate_numbers` walks the
resolved config once before a run touches anything: a value out of range (a negative
``snapshot_every_s`` would loop forever writing snapshots) is one error naming the key and the
allowed interval.  A test keeps the table complete for the shipped schemas and targets.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from hydra.core.config_store import ConfigStore

from replay.errors import ConfigError
from replay.units import NS


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
    # a share of the underlying, per contract of one unit of it: in coin for an inverse
    # option, of the underlying's USD value for a linear one
    option_fee_per_contract: float = 0.0003
    option_fee_cap: float = 0.125  # fraction of premium
    hedge_taker_bps: float = 5.0
    hedge_maker_bps: float = 0.0
    depth_levels: int = 5  # synthetic ladder when the data has no depth
    depth_step_ticks: float = 1.0
    depth_size_multiplier: float = 1.0
    default_size: float = 10.0  # option contracts shown at the touch where the data has no sizes
    hedge_default_size: float = 100000.0  # hedge contracts at the touch where it has no book
    hedge_half_spread_bps: float = 1.0  # quoted spread around a hedge price that has no book
    price_band: float = 0.05  # no fill further than this fraction from the mark (else the mid)
    queue: str = "conservative"  # passive orders' queue model: conservative | probabilistic
    passive_ttl_s: float = 60.0  # a resting limit order expires after this (market seconds)
    funding_every_s: float = 60.0  # perp funding accrued at least this often (market seconds)
    # Consumers whose limit orders are negotiated trades that fill whole at their limit, as
    # maker: the books (market-making takes the other side of a printed trade at its price;
    # a fixed book opening "at mid" is an RFQ/block at mid).  Hedgers trade on the book.
    negotiated_consumers: list[str] = field(default_factory=lambda: ["book"])
    # Collateral (used when margin is on: docs/outputs.md): the account's equity at the start,
    # in USD or in coin (revalued at the coin's price as the replay runs).
    initial_equity: float = 1_000_000.0
    equity_currency: str = "usd"  # usd | coin
    # Orders of these consumers are liquidations: the venue adds liquidation_fee x notional
    # (replay/venue/fees.py) to their trading fee.
    liquidation_consumers: list[str] = field(default_factory=lambda: ["margin"])
    liquidation_fee: float = 0.005


@dataclass
class ReportConfig:
    html: bool = True
    markout_horizons_s: list[float] = field(default_factory=lambda: [1.0, 10.0, 60.0, 300.0])
    pnl_every_s: float = 60.0
    pnl_mark: str = "mid"  # options marked at: mid | surface (mark-to-model, see replay/consumers/marker.py)
    surface_snapshots: int = 3  # smiles shown at this many evenly spaced fit times


@dataclass
class ObjectiveConfig:
    """What an Optuna sweep optimises (see :mod:`replay.analytics.objective`); also a summary column.

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
    margin: Any = None
    forecast: Any = None
    experiment: Any = None
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    seed: int = 0
    snapshot_every_s: float | None = None
    resume: str | None = None
    out_dir: str | None = None  # set by the app to Hydra's output dir


def register() -> None:
    # Only the top-level schema: it types the data, venue and report nodes that the group
    # options merge into, so per-group "schema" options (which `volreplay run --help` would
    # list next to the real options) are not needed.
    ConfigStore.instance().store(name="run_schema", node=RunConfig)


@dataclass(frozen=True)
class Bound:
    """The values a numeric key accepts: an interval, integers only, null, or also strings
    (keys like ``book.expiry`` that take a name or a number)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False
    nullable: bool = False
    strings: bool = False  # a string is passed on to the target, which checks it
    note: str = ""

    def interval(self) -> str:
        lo = "-inf" if self.lo is None else f"{self.lo:g}"
        hi = "inf" if self.hi is None else f"{self.hi:g}"
        return (f"{'(' if self.lo_open or self.lo is None else '['}{lo}, "
                f"{hi}{')' if self.hi_open or self.hi is None else ']'}")

    def check(self, key: str, value: Any) -> None:
        if value is None:
            if self.nullable:
                return
            raise ConfigError(f"{key}: null is not allowed; use a number in {self.interval()}")
        if isinstance(value, str) and self.strings:
            return
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: {value!r} is not a number; allowed: {self._allowed()}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: {value!r} is not finite; allowed: {self._allowed()}")
        if self.integer and not float(value).is_integer():
            raise ConfigError(f"{key}: {value!r} is not an integer; allowed: {self._allowed()}")
        ok = ((self.lo is None or (value > self.lo if self.lo_open else value >= self.lo))
              and (self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)))
        if not ok:
            raise ConfigError(f"{key}: {value!r} is out of range; allowed: {self._allowed()}")

    def _allowed(self) -> str:
        s = ("integers in " if self.integer else "") + self.interval()
        s += " or null" if self.nullable else ""
        s += " or a name" if self.strings else ""
        return s + (f" ({self.note})" if self.note else "")


#: the longest duration (and latest time) a key may give, in nanoseconds: about 146 years,
#: so that a time plus a duration stays an int64 (the engine's clock)
MAX_NS = 2 ** 62


def _duration(unit_ns: float, positive: bool = True, note: str = "market seconds",
              **kw: Any) -> Bound:
    """The bound of a duration in units of ``unit_ns`` nanoseconds: at least a nanosecond
    (``positive``; else 0) and at most :data:`MAX_NS`, since the engine counts it in int64
    nanoseconds (1e-12 s was 0 ns, and 1e13 ms overflowed the journal's hashing)."""
    return Bound(lo=1 / unit_ns if positive else 0, hi=MAX_NS / unit_ns,
                 integer=unit_ns == 1, note=note, **kw)


_POS = Bound(lo=0, lo_open=True)
_NONNEG = Bound(lo=0)
_FINITE = Bound()
_UNIT = Bound(lo=0, hi=1)
_POS_S = _duration(NS)
_NONNEG_S = _duration(NS, positive=False)
_POS_NS = _duration(1, note="nanoseconds")
_NONNEG_NS = _duration(1, positive=False, note="nanoseconds")
_LATENCY_NS = _duration(1, positive=False, nullable=True, note="nanoseconds; null: the venue's")

# Declared bounds of every numeric key.  Keys of calibration/book/strategy apply when the
# node's _target_ is one of ours (a user's own class checks its own arguments).
BOUNDS: dict[str, Bound] = {
    "seed": Bound(lo=0, integer=True),
    "snapshot_every_s": _duration(NS, nullable=True,
                                  note="market seconds between snapshots; null: none"),
    "data.window_s": _duration(NS, note="market seconds per scan"),
    "venue.latency_ms": _duration(NS / 1e3, positive=False, note="milliseconds"),
    "venue.jitter_ms": _duration(NS / 1e3, positive=False, note="milliseconds"),
    "venue.option_fee_per_contract": _NONNEG, "venue.option_fee_cap": _UNIT,
    "venue.hedge_taker_bps": _NONNEG,
    "venue.hedge_maker_bps": Bound(note="negative: a rebate"),
    "venue.depth_levels": Bound(lo=1, integer=True), "venue.depth_step_ticks": _POS,
    "venue.depth_size_multiplier": _POS, "venue.default_size": _POS,
    "venue.hedge_default_size": _POS, "venue.hedge_half_spread_bps": _NONNEG,
    "venue.price_band": _POS, "venue.passive_ttl_s": _POS_S, "venue.funding_every_s": _POS_S,
    "venue.initial_equity": _NONNEG, "venue.liquidation_fee": _UNIT,
    "report.pnl_every_s": _duration(NS, note="market seconds between marks"),
    "report.markout_horizons_s": _POS_S,  # each element
    "report.surface_snapshots": Bound(lo=0, integer=True),
    "calibration.every": _duration(NS, strings=True,
                                   note="seconds, or '60s', '500q', 'quality:10'"),
    "calibration.lam": _NONNEG, "calibration.n_starts": Bound(lo=1, integer=True),
    "calibration.max_rmse_vol_pts": _POS, "calibration.sabr_beta": _UNIT,
    "calibration.check_s": _POS_S, "calibration.stale_s": _POS_S,
    "calibration.latency": _duration(NS, positive=False, note="market seconds from fit to use"),
    "calibration.quotes_every_s": _duration(NS, positive=False, note="0: every fit"),
    "calibration.max_quote_rows": Bound(lo=0, integer=True, note="0: all"),
    "calibration.epoch": _duration(NS, strings=True, nullable=True,
                                   note="seconds, or '6h', '1d'; null: one epoch"),
    "calibration.build_jobs": Bound(lo=0, integer=True, note="0: one per core"),
    "calibration.loss.mid_weight": _NONNEG, "calibration.loss.min_tick_weight": _NONNEG,
    "calibration.loss.stale_weight": _NONNEG, "calibration.loss.min_half_spread": _POS,
    "calibration.loss.band_margin": Bound(lo=0, hi=0.5, hi_open=True),
    "book.size": _POS, "book.expiry": Bound(lo=0, strings=True, note="days"),
    "book.delta": Bound(lo=0, hi=1, lo_open=True, hi_open=True, nullable=True),
    "book.flat_vol": _POS, "book.latency_ns": _LATENCY_NS, "book.min_expiry_ns": _NONNEG_NS,
    "book.size_cap": _POS, "book.min_days": _NONNEG,
    "book.max_days": Bound(lo=0, nullable=True), "book.min_abs_delta": _UNIT,
    "book.max_abs_delta": _UNIT, "book.min_moneyness": Bound(lo=0, nullable=True),
    "book.max_moneyness": Bound(lo=0, lo_open=True, nullable=True),
    "book.max_wake_ns": _POS_NS, "book.poll_ns": _POS_NS,
    "strategy.flat_vol": _POS, "strategy.latency_ns": _LATENCY_NS,
    "strategy.min_trade": _NONNEG, "strategy.lot": Bound(lo=0, note="0: no rounding"),
    "strategy.max_wake_ns": _POS_NS, "strategy.idle_wake_ns": _POS_NS,
    "strategy.band": _POS, "strategy.risk_aversion": _POS, "strategy.cost": _NONNEG,
    "strategy.r": _FINITE, "strategy.period_ns": _POS_NS, "strategy.anchor_ns": _NONNEG_NS,
    "strategy.move_pct": _POS, "strategy.expiry_1": Bound(lo=0, strings=True, note="days"),
    "strategy.expiry_2": Bound(lo=0, strings=True, note="days"),
    "strategy.option_min_trade": _NONNEG, "strategy.roll_ns": _NONNEG_NS,
    "strategy.dynamics_horizon_s": _POS_S, "strategy.dynamics_window_s": _POS_S,
    "strategy.ssr": Bound(strings=True, note="or 'measured'"),
    "margin.every_s": _POS_S, "margin.grace_s": _NONNEG_S, "margin.liquidation_ratio": _UNIT,
    "margin.flat_vol": _POS, "margin.breach_horizon_s": _POS_S,
    "margin.breach_p": Bound(lo=0, hi=1, lo_open=True, hi_open=True),
    "margin.standard.im_base": _NONNEG, "margin.standard.im_min": _NONNEG,
    "margin.standard.mm_rate": _NONNEG, "margin.standard.future_im": _NONNEG,
    "margin.standard.future_mm": _NONNEG,
    "margin.portfolio.price_range": Bound(lo=0, hi=1, lo_open=True, hi_open=True),
    "margin.portfolio.n_moves": Bound(lo=2, integer=True),
    "margin.portfolio.volatility_range_up": _NONNEG,
    "margin.portfolio.volatility_range_down": _UNIT,
    "margin.portfolio.min_volatility_for_shock_up": _NONNEG,
    "margin.portfolio.short_term_vega_power": _NONNEG,
    "margin.portfolio.long_term_vega_power": _NONNEG,
    "margin.portfolio.max_delta_shock": _NONNEG,
    "margin.portfolio.extended_moves": Bound(lo=-1, lo_open=True),  # each element
    "margin.portfolio.extended_table_factor": _NONNEG,
    "margin.portfolio.extended_dampener": _NONNEG, "margin.portfolio.mm_factor": _UNIT,
    "margin.portfolio.short_option_contingency": _NONNEG,
    "margin.portfolio.min_dte_days": _POS, "margin.portfolio.min_volatility": _POS,
    "margin.rule.k": _POS, "margin.rule.horizon_s": _POS_S, "margin.rule.floor": _UNIT,
    "margin.rule.cap": _POS, "margin.rule.window_s": _POS_S, "margin.rule.tenor_s": _POS_S,
    "forecast.horizons_s": _POS_S,  # each element
    "forecast.every_s": _POS_S, "forecast.sample_s": _POS_S, "forecast.refit_s": _POS_S,
    "forecast.lookback_s": _POS_S, "forecast.ewma_lambda": Bound(lo=0, hi=1, lo_open=True,
                                                               hi_open=True),
    "forecast.flat_vol": _POS, "forecast.min_returns": Bound(lo=2, integer=True),
}
PLUGIN_GROUPS = ("calibration", "book", "strategy", "margin", "forecast")
_OUR_TARGETS = ("replay.", "strategies.", "calibration.")


def check_consumer_names(venue: VenueConfig, present: set[str]) -> None:
    """Refuse a name in ``venue.negotiated_consumers`` or ``venue.liquidation_consumers``
    that is neither a consumer of the run (``present``) nor one of the defaults (which name
    consumers a run may leave out): a misspelt ``[books]`` left the book's orders to the
    book's queue, and the run traded nothing, without a word."""
    for key in ("negotiated_consumers", "liquidation_consumers"):
        allowed = present | set(getattr(VenueConfig(), key))
        bad = [n for n in getattr(venue, key) if n not in allowed]
        if bad:
            raise ConfigError(f"venue.{key}: {bad[0]!r} is no consumer of this run; its "
                              f"consumers: {', '.join(sorted(present))}")


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], node


def resolve_config(cfg: Any) -> dict:
    """``cfg`` (an OmegaConf config) as plain containers, every interpolation resolved; an
    interpolation that does not resolve (``data.end=${oops}``) is one :class:`ConfigError`
    line naming its key."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except ConfigError:
        raise
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ConfigError(f"{key}: {msg}" if key else msg) from None


def check_keys(cfg: Mapping[str, Any]) -> None:
    """Keys a ``+key=value`` override added where nothing reads them: a top-level key that is
    not one of :class:`RunConfig`'s, or keys under a plugin group whose option takes none
    (``margin=none`` with ``+margin.mode=cross``).  Raises :class:`ConfigError` naming the
    first."""
    known = {f.name for f in fields(RunConfig)} | {"hydra"}
    for key in cfg:
        if key not in known:
            raise ConfigError(f"{key}: unknown key; allowed keys: {', '.join(sorted(known))}")
    for group in PLUGIN_GROUPS:
        node = cfg.get(group)
        if isinstance(node, Mapping) and node and not node.get("_target_"):
            raise ConfigError(f"{group}.{next(iter(node))}: {group}=none takes no keys; choose "
                              f"a {group} option first (e.g. {group}=<name>)")


def checked_config(cfg: Any) -> dict:
    """``cfg`` resolved (:func:`resolve_config`) after the checks every run makes before it
    writes anything: its keys (:func:`check_keys`) and its numbers (:func:`validate_numbers`)."""
    resolved = resolve_config(cfg)
    check_keys(resolved)
    validate_numbers(resolved)
    return resolved


def validate_numbers(cfg: Mapping[str, Any]) -> None:
    """Check every numeric key of a resolved config (plain containers) against
    :data:`BOUNDS`; raises :class:`ConfigError` naming the first bad key."""
    for key, value in _leaves(cfg):
        bound = BOUNDS.get(key)
        if bound is None:
            continue
        group = key.split(".", 1)[0]
        if group in PLUGIN_GROUPS:
            target = str((cfg.get(group) or {}).get("_target_") or "")
            if not target.startswith(_OUR_TARGETS):
                continue
        for i, v in enumerate(value) if isinstance(value, list) else [(None, value)]:
            bound.check(key if i is None else f"{key}[{i}]", v)


# Keys that may differ between a run and its resume: they do not enter the journal's hash
# (where the output goes, the post-run analytics and report, the sweep objective, the scan
# window, how the surface stream is built and its rows kept; ``calibration.cache`` may go from
# ``auto`` to ``refresh`` and back, not to or from ``off``, see replay.app.backtest).
RESUME_FREE_KEYS = ("resume", "out_dir", "objective", "experiment", "data.window_s",
                    "calibration.build_jobs", "calibration.journal_rows",
                    "report.html", "report.markout_horizons_s", "report.surface_snapshots")


def config_diff(a: Mapping[str, Any], b: Mapping[str, Any], ignore: tuple[str, ...] = (),
                prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted key, value in a, value in b)`` for every key whose values differ; a node
    present on one side only is one entry (``book``, not each of its keys)."""
    out: list[tuple[str, Any, Any]] = []
    for k in dict.fromkeys([*a, *b]):
        key = f"{prefix}{k}"
        if key in ignore:
            continue
        va, vb = a.get(k), b.get(k)
        if isinstance(va, Mapping) and isinstance(vb, Mapping):
            out += config_diff(va, vb, ignore, key + ".")
        elif va != vb:
            out.append((key, va, vb))
    return out
