"""Sweep objectives: one number per run, computed from its metrics by a small expression.

An Optuna sweep (``hydra/sweeper=optuna``) needs a single figure to minimise or maximise, and
what that figure should be is a desk's choice: hedging error alone, error plus a multiple of
the costs, calibration error, ...  So the objective is configuration (``objective.expr`` and
``objective.direction``), for example::

    pnl.step_std_usd - 0.5 * (pnl.fees_usd + pnl.slippage_usd)

Names are the metric keys of ``metrics.json`` flattened with dots (``execution.markout_bps.10s``
too).  The expression is parsed with :mod:`ast` and evaluated by walking the tree; only numbers,
metric names, ``+ - * / **``, unary minus, parentheses and ``abs min max sqrt log`` are
accepted, so a config file can never run code.  Everything is computed in floating point, which
also keeps ``10 ** 10 ** 10`` from turning into an endless big-integer computation.

A name that no run can produce is a :class:`~replay.model.config.ConfigError` that names it and its
closest metric names; a metric that is null in one run (e.g. no hedge fills) or arithmetic that
fails there (``log`` of a negative) is an :class:`ObjectiveValueError` for that run only.
"""

from __future__ import annotations

import ast
import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from replay.errors import ConfigError, ObjectiveValueError
from replay.model.config import check_choice
from replay.model.orders import REJECT_REASONS

DIRECTIONS = ("minimize", "maximize")
FUNCTIONS: dict[str, tuple[Any, int, int]] = {  # name: (function, min args, max args)
    "abs": (abs, 1, 1),
    "sqrt": (math.sqrt, 1, 1),
    "log": (math.log, 1, 2),
    "min": (min, 2, 64),
    "max": (max, 2, 64),
}
# A metric name: an identifier, then dot-separated parts that may start with a digit ("10s"),
# or be an expiry bucket of days ("7-30d", "90d+": the dynamics block's keys, whose "-" and
# "+" would otherwise read as operators).  The look-behind keeps the exponent of "1e-3" and
# the tail of "x.y" from matching on their own.
_NAME = re.compile(r"(?<![\w.])[A-Za-z_]\w*(?:\.(?:\d+-\d+d\b|\d+d\+|\w+))*")
_BINOPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
           ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b,
           ast.Pow: math.pow}  # math.pow: a domain error raises instead of giving a complex
# Metric blocks whose keys are open: a calibration scheme may report figures of its own.
OPEN_PREFIXES = ("calibration.",)


@dataclass(frozen=True)
class Objective:
    """A parsed objective expression; :meth:`evaluate` gives its value for one run."""

    expr: str
    direction: str
    names: tuple[str, ...]  # metric names the expression uses, in order of first use
    _tree: ast.Expression = field(repr=False, compare=False)

    def evaluate(self, metrics: Mapping[str, Any]) -> float:
        """The objective's value from a run's metrics (nested as in metrics.json, or flat)."""
        flat = _flat(metrics)
        values: dict[str, float] = {}
        for i, name in enumerate(self.names):
            if name not in flat:
                raise ConfigError(f"objective.expr: unknown metric {name!r}{_suggest(name, flat)}")
            v = flat[name]
            if v is None:
                raise ObjectiveValueError(f"objective: metric {name} is null in this run")
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ObjectiveValueError(f"objective: metric {name} is not a number ({v!r})")
            values[_placeholder(i)] = float(v)
        try:
            out = _eval(self._tree.body, values)
        except (ArithmeticError, ValueError) as e:
            raise ObjectiveValueError(f"objective: {self.expr!r} cannot be computed: {e}") from None
        if not math.isfinite(out):
            raise ObjectiveValueError(f"objective: {self.expr!r} is {out} for this run")
        return out


def parse_objective(expr: str, direction: str = "minimize",
                    known: Iterable[str] | None = None) -> Objective:
    """Parse and check ``expr``; with ``known`` metric names, unknown names are rejected now
    (names under :data:`OPEN_PREFIXES` are accepted, and checked against each run instead)."""
    check_choice("objective.direction", direction, DIRECTIONS)
    if not isinstance(expr, str) or not expr.strip():
        raise ConfigError("objective.expr: empty; give an expression such as "
                          "'pnl.step_std_usd - 0.5 * (pnl.fees_usd + pnl.slippage_usd)'")
    names: list[str] = []

    def substitute(m: re.Match) -> str:
        word = m.group(0)
        if word in FUNCTIONS and expr[m.end():].lstrip().startswith("("):
            return word
        if word not in names:
            names.append(word)
        return _placeholder(names.index(word))

    source = _NAME.sub(substitute, expr.strip())
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as e:
        raise ConfigError(f"objective.expr: cannot parse {expr!r} ({e.msg})") from None
    try:
        _check(tree.body)
    except ConfigError as e:  # say it in the user's words, not the placeholders'
        msg = re.sub(r"_m(\d+)_", lambda m: names[int(m.group(1))], str(e))
        raise ConfigError(f"objective.expr: {msg} is not allowed in {expr!r}; use numbers, "
                          "metric names, + - * / **, parentheses and "
                          f"{', '.join(FUNCTIONS)}") from None
    if known is not None:
        known = set(known)
        for name in names:
            if name not in known and not name.startswith(OPEN_PREFIXES):
                hint = " (it is not a number)" if name in NOT_NUMBERS else _suggest(name, known)
                raise ConfigError(f"objective.expr: unknown metric {name!r}{hint}")
    return Objective(expr=expr, direction=direction, names=tuple(names), _tree=tree)


#: metrics a run writes that are no numbers (a hash, a flag): never an objective
NOT_NUMBERS = ("journal_hash", "surface_stream.built")
#: the numeric keys of the ``margin`` block (runs with ``margin`` on; docs/outputs.md)
NUMERIC_MARGIN_KEYS = ("initial_usd_mean", "initial_usd_max", "maintenance_usd_mean",
                       "min_equity_over_mm", "margin_calls", "liquidations", "breach_horizon_s",
                       "observations", "breaches", "breach_rate", "kupiec_p",
                       "christoffersen_p")


#: the consumers of a backtest with every block on, by name (``metrics.json``'s ``consumers``):
#: the calibration, the book, the hedger, the PnL marker, margin, forecasts and the venue's two
CONSUMERS = ("calibration", "book", "hedger", "pnl", "margin", "forecast", "venue.passive",
             "venue.carry")


def known_metric_names(markout_horizons_s: Iterable[float] = (1.0, 10.0, 60.0, 300.0)
                       ) -> set[str]:
    """The numeric metric names every backtest writes (docs/outputs.md), flattened with dots."""
    from replay.analytics.execution import _hname
    from replay.consumers.marker import BUCKETS, PNL_KEYS, VEGA_SPLIT

    names = {"events_replayed", "wall_seconds", "events_per_second"}
    # each consumer's wakes and their cost, for the consumers of a run with every block on
    names |= {f"consumers.{c}.{k}" for c in CONSUMERS for k in ("wakes", "seconds", "us_per_wake")}
    names |= {f"calibration.{k}" for k in (
        "n_fits", "rmse_vol_pts", "inside_spread_pct", "oos_rmse_vol_pts", "param_jitter",
        "arb_violations", "fit_ms_median", "vs_venue_mark_iv_mae_vol_pts", "fallbacks",
        "skipped_no_quotes")}
    names |= {"surface_stream.build_seconds"}
    from replay.engine.journal import COST_KEYS

    names |= {f"journal.{k}" for k in COST_KEYS}
    names |= {f"margin.{k}" for k in NUMERIC_MARGIN_KEYS}
    from replay.analytics.forecast_scores import REALIZED_KEYS, SCORES
    from replay.consumers.forecast.forecasters import FORECASTERS

    names |= {f"forecast.{f}.{k}" for f in FORECASTERS for k in SCORES}
    names |= {"forecast.horizon_s", "forecast.vrp_mean"}
    names |= {f"forecast.realized.{k}" for k in REALIZED_KEYS}
    from replay.analytics.dynamics import BUCKETS as EXPIRY_BUCKETS

    names |= {f"dynamics.{k}.{b}" for k in ("ssr", "ssr_se") for b, _ in EXPIRY_BUCKETS}
    names |= {"dynamics.horizon_s", "dynamics.window_s", "dynamics.pairs"}
    names |= {f"pnl.{k}" for k in PNL_KEYS}
    names |= {f"attribution.{k}" for k in BUCKETS}
    names |= {f"attribution_vega.{k}" for k in VEGA_SPLIT}
    names |= {f"execution.{k}" for k in ("n_orders", "n_fills", "slippage_bps_mean",
                                         "delay_cost_bps_mean", "implementation_shortfall_usd",
                                         "shortfall_unpriced_orders")}
    names |= {f"execution.rejected.{r}" for r in REJECT_REASONS}
    for h in map(_hname, markout_horizons_s):
        names.add(f"execution.markout_bps.{h}")
        for curve in ("markout_bps_by_leg", "markout_mid_bps_by_leg"):
            names |= {f"execution.{curve}.{leg}.{h}" for leg in ("option", "hedge")}
    return names


def objective_from_config(cfg: Any, known: Iterable[str] | None = None) -> Objective:
    """The :class:`Objective` of a run config's ``objective`` node."""
    node = cfg.get("objective") if cfg is not None else None
    if node is None:
        raise ConfigError("objective: missing; set objective.expr and objective.direction")
    return parse_objective(node.get("expr"), node.get("direction", "minimize"), known)


def config_metric_names(cfg: Any) -> set[str]:
    """The numeric metric names a run config's runs write: :func:`known_metric_names` at its
    ``report.markout_horizons_s`` (the defaults without a config)."""
    from omegaconf import OmegaConf

    if isinstance(cfg, dict):
        cfg = OmegaConf.create(cfg)
    horizons = OmegaConf.select(cfg, "report.markout_horizons_s", default=None,
                                throw_on_resolution_failure=False) \
        if OmegaConf.is_config(cfg) else None
    return known_metric_names(horizons) if horizons is not None else known_metric_names()


def checked_objective(cfg: Any) -> Objective:
    """:func:`objective_from_config` checked against the metric names the config's runs will
    write (:func:`config_metric_names`): what a sweep checks before its first job."""
    return objective_from_config(cfg, config_metric_names(cfg))


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested metrics as one level, keys joined by dots (``pnl.fees_usd``)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _placeholder(i: int) -> str:
    return f"_m{i}_"


def _flat(metrics: Mapping[str, Any]) -> dict[str, Any]:
    if any(isinstance(v, Mapping) for v in metrics.values()):
        return flatten(dict(metrics))
    return dict(metrics)


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    if not close:
        close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.3)
    return f"; did you mean {', '.join(close)}?" if close else ""


def _check(node: ast.AST) -> None:
    """Reject every construct but the arithmetic listed in the module docstring (the error
    names the construct only; :func:`parse_objective` words the message)."""
    bad = None
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            bad = f"operator {type(node.op).__name__}"
        else:
            _check(node.left)
            _check(node.right)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            bad = f"operator {type(node.op).__name__}"
        else:
            _check(node.operand)
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            bad = f"constant {node.value!r}"
    elif isinstance(node, ast.Name):
        if not re.fullmatch(r"_m\d+_", node.id):
            bad = f"{node.id!r} without arguments"
    elif isinstance(node, ast.Call):
        fn = node.func.id if isinstance(node.func, ast.Name) else None
        if fn not in FUNCTIONS or node.keywords:
            bad = f"call of {ast.unparse(node.func)}"
        else:
            lo, hi = FUNCTIONS[fn][1:]
            if not lo <= len(node.args) <= hi or any(isinstance(a, ast.Starred) for a in node.args):
                bad = f"{fn}() with {len(node.args)} arguments"
            for a in node.args:
                _check(a)
    else:
        bad = type(node).__name__
    if bad:
        raise ConfigError(bad)


def _eval(node: ast.AST, values: dict[str, float]) -> float:
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_eval(node.left, values), _eval(node.right, values))
    if isinstance(node, ast.UnaryOp):
        v = _eval(node.operand, values)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return values[node.id]
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    fn = FUNCTIONS[node.func.id][0]
    return float(fn(*(_eval(a, values) for a in node.args)))
