"""A run's market data: the ``data`` config group resolved against the store and checked.

Every command that replays (``volreplay run``, ``volreplay calibrate``) resolves its selection
here, so a surface stream built by one is found by the other; a run that forecasts also
samples the underlying's bars over it here (:func:`forecast_bars`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from replay.errors import ConfigError
from replay.model.config import DataConfig
from replay.units import NS, iso_z

EXPIRY_HOUR_NS = 8 * 3600 * NS  # options expire at 08:00 UTC
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Selection:
    """The market data a run replays: what a surface stream is computed over."""

    db: str
    start: int | None = None
    end: int | None = None
    instrument_ids: tuple[int, ...] | None = None
    expiries: tuple[int, ...] | None = None
    underlying_id: int | None = None
    window_ns: int = 300 * NS  # the scan window: it changes how the store is read, not what


@dataclass(frozen=True)
class ResolvedData:
    db: Any  # a Path, or a URL string
    sel: Selection
    inst_table: Any  # the store's instruments (pyarrow.Table)
    names: dict[int, str]  # instrument id -> name
    span_text: str  # "<db> spans a .. b", for error lines
    first_ts: int = 0  # the selection's first instant (its start, else the data's first)


def resolve_data(data: DataConfig) -> ResolvedData:
    """Open the store named by ``data.db`` and check the selection against it; every
    mistake is a :class:`~replay.errors.ConfigError` naming the key."""
    from replay.engine.state import Instruments
    from replay.store import open_store

    start, end = _ts("data.start", data.start), _ts("data.end", data.end)
    if not str(data.db).strip():
        raise ConfigError("data.db is empty: give the path of a store (a DuckDB file, or a "
                          "Parquet store's directory or URL)")
    db = data.db if "://" in data.db else Path(data.db)  # a URL stays a URL
    with open_store(db) as store:
        inst_table = store.instruments()
        ids = store.instrument_ids()
        span = store.time_span()
    if inst_table.num_rows == 0:
        raise ConfigError(f"data.db: store {db} has no instruments (is it empty?)")
    span_text = _check_span(db, span, data, start, end)
    start, end = _within(span, start, end)
    for key in ("instruments", "expiries"):
        if getattr(data, key) is not None and not len(getattr(data, key)):
            raise ConfigError(f"data.{key}: an empty list selects nothing; null selects all")
    sel_ids = None
    if data.instruments:
        missing = [n for n in data.instruments if n not in ids]
        if missing:
            raise ConfigError(f"data.instruments: {missing[0]!r} is not in {db}")
        # a set: in any order or repeated, one selection (one surface stream's key)
        sel_ids = tuple(sorted({ids[n] for n in data.instruments}))
    first = int(start if start is not None else span[0])
    if data.underlying:
        allowed = _non_options(inst_table)
        if data.underlying not in allowed:
            what = "is not in" if data.underlying not in ids else "is an option of"
            raise ConfigError(f"data.underlying: {data.underlying!r} {what} {db}; "
                              f"non-option instruments: {', '.join(allowed) or 'none'}")
        underlying = ids[data.underlying]
    else:
        underlying = Instruments.from_arrow(inst_table).default_underlying(first)
    if sel_ids is not None and underlying >= 0 and underlying not in sel_ids:
        # the coin's price: every conversion reads it
        sel_ids = tuple(sorted((*sel_ids, int(underlying))))
    expiries = _expiries(data, inst_table, db, span_text)
    sel = Selection(str(db), start, end, sel_ids, tuple(expiries) if expiries else None,
                    int(underlying), int(data.window_s * NS))
    return ResolvedData(db, sel, inst_table, {v: k for k, v in ids.items()}, span_text, first)


def check_hedge(cfg: Any, d: ResolvedData) -> None:
    """Refuse a strategy whose hedge instrument (``strategy.hedge``) the data lacks at the
    selection's start, before a surface stream is built for it or a sweep's first job runs
    (the strategy would refuse it at its start; :func:`strategies.hedge.resolve_hedge`)."""
    from omegaconf import OmegaConf

    from replay.engine.state import Instruments
    from strategies.hedge import HEDGE_KINDS, resolve_hedge

    node = cfg.get("strategy")
    hedge = OmegaConf.select(node, "hedge", default=None) if OmegaConf.is_config(node) else None
    if hedge in HEDGE_KINDS:
        iid = resolve_hedge(Instruments.from_arrow(d.inst_table), hedge, d.first_ts,
                            OmegaConf.select(node, "underlying", default=None) or "BTC")
        if d.sel.instrument_ids is not None and iid not in d.sel.instrument_ids:
            raise ConfigError(f"data.instruments: leaves out {d.names[iid]}, the hedge "
                              f"(strategy.hedge={hedge}): its market would not be replayed; "
                              "list it too")


def typed(cls, node: Any, group: str):
    """A typed group (data/venue/report) from a DictConfig or mapping, naming bad keys."""
    from omegaconf import OmegaConf

    d = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node or {})
    unknown = sorted(set(d) - set(cls.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"{group}.{unknown[0]}: unknown key; allowed keys: "
                          f"{', '.join(cls.__dataclass_fields__)}")
    return cls(**d)




def _ts(key: str, s: str | None) -> int | None:
    if s is None:
        return None
    try:
        dt = datetime.fromisoformat(str(s))
    except ValueError:
        raise ConfigError(f"{key}: {s!r} is not an ISO date/time (e.g. 2025-12-10T00:00)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1e6) * 1000




def _check_span(db: Any, span: tuple[int | None, int | None], data: DataConfig,
                start: int | None, end: int | None) -> str:
    """Refuse a time selection that cannot hold an event; returns "<db> spans a .. b"."""
    lo, hi = span
    if lo is None or hi is None:
        raise ConfigError(f"data.db: store {db} holds no market events")
    text = f"{db} spans {iso_z(lo)} .. {iso_z(hi)}"
    if start is not None and end is not None and start >= end:
        raise ConfigError(f"data.start: {data.start} is not before data.end {data.end}; {text}")
    if start is not None and start > hi:
        raise ConfigError(f"data.start: {data.start} is after the end of the data; {text}")
    if end is not None and end <= lo:
        raise ConfigError(f"data.end: {data.end} is before the start of the data; {text}")
    return text




def _within(span: tuple[int, int], start: int | None, end: int | None
            ) -> tuple[int | None, int | None]:
    """The selection's bounds, a bound beyond the data dropped: the replay then runs from
    the first event to the last, as with no bound.  Its clock would otherwise run on over
    time with no data (a walk-forward's partial last day), firing timers that mark a frozen
    market and dilute every per-step figure; and both spellings of one selection share a
    surface stream."""
    lo, hi = span
    if end is not None and end > hi + 1:
        log.info("data.end %s is past the end of the data (%s): the replay ends at its last "
                 "event", iso_z(end), iso_z(hi))
    return (None if start is not None and start <= lo else start,
            None if end is not None and end > hi else end)


def _expiries(data: DataConfig, inst_table: Any, db: Any, span_text: str) -> list[int] | None:
    """``data.expiries`` as expiry_ns values, each one that some option of the store has."""
    if not data.expiries:
        return None
    listed = sorted({r["expiry_ns"] for r in inst_table.select(["kind", "expiry_ns"]).to_pylist()
                     if r["kind"] == "option" and r["expiry_ns"] is not None})
    out = []
    for e in data.expiries:
        ns = _ts("data.expiries", e) + EXPIRY_HOUR_NS
        if ns not in listed:
            days = ", ".join(iso_z(x - EXPIRY_HOUR_NS)[:10] for x in listed) or "none"
            raise ConfigError(f"data.expiries: {e!r} is not an option expiry in {db}; "
                              f"expiries: {days} ({span_text})")
        out.append(ns)
    return sorted(set(out))




def _non_options(inst_table) -> list[str]:
    """The names of the store's instruments that may be the underlying: all but options."""
    return [r["name"] for r in inst_table.select(["name", "kind"]).to_pylist()
            if r["kind"] != "option"]


def forecast_bars(d: ResolvedData, fc: Any) -> tuple:
    """The underlying's bars over the selection (the store's previous-tick sampling at 1 s),
    handed to the forecast consumer before the replay, the synthetic truth path when the store
    has one, and the 1-second samples: ``(bars, (ts, variance) | None, (grid, mid))``."""
    from replay.consumers.forecast.forecasters import bars_from_mid
    from replay.store import open_store

    step = NS  # 1-second previous-tick samples: the bars take every sample_s-th, TSRV all
    with open_store(d.db) as st:
        lo, hi = st.time_span("underlying_quotes")
        if lo is None or d.sel.underlying_id is None or d.sel.underlying_id < 0:
            raise ConfigError("forecast: the store has no underlying quotes to forecast from "
                              "(forecasts need the underlying's tape; a store of option "
                              "summaries has none)")
        start = d.sel.start if d.sel.start is not None else lo
        end = d.sel.end if d.sel.end is not None else hi
        # a sample whose quote is older than a bar is missing: a hole in the tape
        grid, mid = st.sampled_mid(d.sel.underlying_id, start - start % step, end, step,
                                   max_age_ns=int(fc.cfg.sample_s * NS))
        truth = None
        if "truth_path" in st.tables():
            # the whole quadratic variation's rate, jumps included (older stores: variance)
            cols = st.con.sql("SELECT * FROM truth_path LIMIT 0").columns
            var = "total_variance" if "total_variance" in cols else "variance"
            t = st.con.sql(f"SELECT ts, {var} FROM truth_path ORDER BY ts").to_arrow_table()
            truth = (t.column("ts").to_numpy(), t.column(var).to_numpy())
    bars = bars_from_mid(grid, mid, fc.cfg.sample_s)
    fc.prepare(bars, start, end, truth)
    return bars, truth, (grid, mid)
