"""When the calibration consumer wakes, and when it starts afresh: ``calibration.every`` and
``calibration.epoch`` as wake rules (the grammar is :func:`calibration.every.parse_every`)."""

from __future__ import annotations

from typing import Any

from calibration.every import parse_every as parse_every_rule
from replay.errors import ConfigError
from replay.units import NS


def parse_every(every: Any, check_s: float) -> tuple[int | None, int | None, float | None]:
    """``calibration.every`` (grammar: :func:`calibration.every.parse_every`) as the
    consumer's wake rule: (deadline interval ns, quote count, quality trigger pct).  A quality
    trigger is checked every ``check_s`` market seconds."""
    try:
        rule = parse_every_rule(every)
    except ValueError as e:
        raise ConfigError(f"calibration.every: {e}") from None
    if not rule:
        raise ConfigError("calibration.every: 'always' has no meaning in a replay; use an "
                          "interval like '1s', a quote count like '500q', or 'quality:10'")
    if "quality_trigger_pct" in rule:
        return int(round(check_s * NS)), None, rule["quality_trigger_pct"]
    return rule.get("every_ns"), rule.get("every_quotes"), None


def no_epoch(epoch: Any) -> bool:
    """Whether ``calibration.epoch`` says "no epochs": unset, ``none``, ``null`` or empty."""
    return str(epoch).strip().lower() in ("", "none", "null")


def parse_epoch(epoch: Any, wake_ns: int | None, latency_ns: int) -> int | None:
    """``calibration.epoch`` in ns (None: the whole replay is one epoch).  It must be a
    whole number of the wake grid's intervals (``wake_ns``: ``every``, or ``check_s`` for
    a quality trigger), and a surface must be usable before the next wake
    (``latency_ns < wake_ns``), so that no wake and no publication straddles a boundary."""
    if no_epoch(epoch):
        return None
    try:
        ns = parse_every_rule(epoch).get("every_ns")
    except ValueError:
        ns = None
    if ns is None:
        raise ConfigError(f"calibration.epoch: {epoch!r} is not a market-time interval such "
                          "as '6h' or '1d'")
    if wake_ns is None:
        raise ConfigError("calibration.epoch: needs calibration.every on a time grid (an "
                          "interval or quality:X), not a quote count")
    if ns % wake_ns:
        raise ConfigError(f"calibration.epoch: {epoch} is not a whole number of wake "
                          f"intervals ({wake_ns / NS:g} s)")
    if latency_ns >= wake_ns:
        raise ConfigError(f"calibration.epoch: needs calibration.latency below the wake "
                          f"interval ({wake_ns / NS:g} s), so that no surface is published "
                          "across an epoch boundary")
    return ns
