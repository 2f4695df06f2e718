"""Choosing listed options: expiries by rule (nearest, nearest monthly, a number of days) and
strikes of one expiry.  Deribit lists weeklies (Fridays), monthlies (the last Friday of the
month) and quarterlies, all settling at 08:00 UTC."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from replay.engine.state import UNLISTED, Instruments
from replay.errors import ConfigError
from replay.model.instruments import underlying_of


def listed_options(instruments: Instruments, now: int, underlying: str = "BTC",
                   expiring_after: int | None = None) -> np.ndarray:
    """Option ids of ``underlying`` listed by ``now`` (an instrument defined later is not
    known yet: choosing it would be look-ahead) and expiring after ``expiring_after``
    (default ``now``)."""
    after = now if expiring_after is None else expiring_after
    ids = instruments.listed_by(instruments.ids_of_kind("option"), now)
    keep = [int(i) for i in ids if instruments.expiry_ns[i] > after
            and underlying_of(instruments.name[i]) == underlying]
    return np.array(keep, dtype=np.int64)


def next_listing(instruments: Instruments, now: int, underlying: str = "BTC") -> int | None:
    """When the next option of ``underlying`` is listed after ``now`` (its definition's
    receipt, :attr:`~replay.engine.state.Instruments.listed_ns`), None if no later one.  A
    consumer that wakes then sees the definition as the engine folds it, as a wake on the
    definition event would: it learns no more than the event tells at that instant."""
    if instruments.listed_ns is None:
        return None
    ids = instruments.ids_of_kind("option")
    ids = ids[(instruments.listed_ns[ids] > now) & (instruments.listed_ns[ids] != UNLISTED)]
    later = [int(instruments.listed_ns[i]) for i in ids
             if underlying_of(instruments.name[i]) == underlying]
    return min(later) if later else None


def is_monthly(expiry_ns: int) -> bool:
    """Deribit monthly expiries are the last Friday of the month (08:00 UTC)."""
    day = np.datetime64(int(expiry_ns), "ns").astype("datetime64[D]")
    weekday = (int(day.astype(np.int64)) + 3) % 7  # 1970-01-01 was a Thursday (3)
    next_week = (day + np.timedelta64(7, "D")).astype("datetime64[M]")
    return weekday == 4 and next_week != day.astype("datetime64[M]")


def choose_expiry(instruments: Instruments, now: int, spec: Any, underlying: str = "BTC",
                  min_ns: int = 0, key: str = "book.expiry") -> int:
    """The expiry named by ``spec`` (the config key ``key``): ``nearest`` (first after
    ``now + min_ns``), ``nearest_monthly`` (first last-Friday-of-month one; the nearest if
    none is listed) or a number of days (the listed expiry closest to ``now + days``)."""
    ids = listed_options(instruments, now, underlying, expiring_after=now + int(min_ns))
    if not ids.size:
        raise ConfigError(f"{key}: no {underlying} option expiring after the replay start "
                          "is listed in the data selected")
    exps = np.unique(instruments.expiry_ns[ids])
    days = expiry_days(key, spec)
    if spec == "nearest":
        return int(exps[0])
    if spec == "nearest_monthly":
        monthly = [int(e) for e in exps if is_monthly(int(e))]
        return monthly[0] if monthly else int(exps[0])
    return int(exps[np.argmin(np.abs(exps - (now + days * 86400 * 1e9)))])


def expiry_days(key: str, spec: Any) -> float | None:
    """The number of days of an expiry ``spec`` (:func:`choose_expiry`), None for a rule
    (``nearest``, ``nearest_monthly``); anything else is a :class:`ConfigError` naming
    ``key``.  Books and strategies check their specs with it when they are made, before a
    run writes anything."""
    if spec in ("nearest", "nearest_monthly"):
        return None
    try:
        days = float(spec)
    except (TypeError, ValueError):
        days = math.nan
    if not (math.isfinite(days) and days >= 0):
        raise ConfigError(f"{key}: {spec!r} is not allowed; use nearest, nearest_monthly or "
                          "a number of days")
    return days


def options_at(instruments: Instruments, expiry_ns: int, is_call: bool, now: int,
               underlying: str = "BTC") -> np.ndarray:
    """Ids of the calls (or puts) of one expiry listed by ``now``, sorted by strike."""
    ids = listed_options(instruments, now, underlying)
    ids = ids[(instruments.expiry_ns[ids] == expiry_ns)
              & ((instruments.is_call[ids] == 1) == bool(is_call))]
    return ids[np.argsort(instruments.strike[ids], kind="stable")]


def nearest_strike(instruments: Instruments, ids: np.ndarray, strike: float) -> int:
    if not ids.size:
        raise ConfigError("no listed option of the requested expiry and type")
    return int(ids[np.argmin(np.abs(instruments.strike[ids] - strike))])
