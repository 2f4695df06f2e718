"""``deribit-summary``: Deribit option book-summary snapshots (Parquet), one row per option.

Source columns (the schema drifts between files; every column but ``harvest_time`` and
``instrument_name`` may be missing):

=====================  =======================================================================
``harvest_time``       snapshot time (UTC).  Both clocks are set to it: the files carry no
                       separate exchange stamp.
``instrument_name``    e.g. ``BTC-26DEC25-90000-C``.  Strike, expiry (08:00 UTC) and call/put
                       are always parsed from the name, so files without ``strike``/``expiry``/
                       ``option_type`` columns load the same way.
``best_bid_price``     premium in BTC (inverse option); missing or NULL means no bid.  A book
``best_ask_price``     with one side only is a valid quote.
``mark_price``         Deribit's mark premium, BTC; 0 when the option is worth under half a tick.
``mark_iv``, ``bid_iv``, ``ask_iv``   percent in the source, stored as fractions.
``underlying_price``   the forward (future or synthetic) of the expiry, USD.
``open_interest``      contracts.
=====================  =======================================================================

The files have no sizes, so ``bid_size``/``ask_size`` are NULL; fill models apply their
documented default depth.  The future of every expiry (``BTC-26DEC25``: inverse, 10 USD per
contract, tick 2.5) is defined too, without quotes: its price is the options'
``underlying_price``, so a backtest can hedge with it.  Contract size is 1 BTC and the stored tick is Deribit's minimum
(0.0001 BTC; 0.0005 above 0.005 BTC premium).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from calibration.quotes import MIN_T_YEARS, QuoteSnapshot, build_snapshot
from replay.errors import IngestError
from replay.ingest.core import Chunk, Reject
from replay.model.instruments import DERIBIT_OPTION_TICK, deribit_spec, parse_deribit_name
from replay.store.database import TS_MAX, TS_MIN

BATCH_ROWS = 65_536
_PCT = ("mark_iv", "bid_iv", "ask_iv")
_COPY = ("best_bid_price", "best_ask_price", "mark_price", "underlying_price", "open_interest")
_RENAME = {"best_bid_price": "bid_price", "best_ask_price": "ask_price"}


def read(path: Path) -> Iterator[Chunk]:
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # not a parquet file at all
        raise IngestError(f"{path}: not a readable Parquet file ({e})") from None
    names = set(pf.schema_arrow.names)
    missing = {"harvest_time", "instrument_name"} - names
    if missing:
        raise IngestError(f"{path}: not a Deribit summary file, missing column(s) {sorted(missing)}")
    row0 = 0
    for batch in pf.iter_batches(batch_size=BATCH_ROWS):
        yield _chunk(pa.Table.from_batches([batch]), row0)
        row0 += batch.num_rows


def _chunk(t: pa.Table, row0: int) -> Chunk:
    n = t.num_rows
    locs = np.arange(row0, row0 + n, dtype=np.int64)
    ts = _ns(t.column("harvest_time"))
    names = t.column("instrument_name").to_pylist()
    parsed = [parse_deribit_name(x) for x in names]
    ok = np.array([p is not None and p.kind == "option" for p in parsed], dtype=bool) & (ts > 0)
    rejects = []
    if not ok.all():
        raws = _raw_rows(t, np.flatnonzero(~ok))
        for i, raw in zip(np.flatnonzero(~ok), raws):
            why = ("timestamp out of range: harvest_time missing or absurd" if ts[i] <= 0
                   else f"unparsable: instrument name {names[i]!r} is not a Deribit option")
            rejects.append(Reject(int(locs[i]), why, raw, "option_quotes"))
    idx = np.flatnonzero(ok)
    sub = t.take(pa.array(idx))
    cols: dict[str, pa.Array] = {
        "ts_exchange": pa.array(ts[idx]),
        "ts_recv": pa.array(ts[idx]),
        "instrument": pa.array([names[i] for i in idx], pa.string()),
    }
    for c in _COPY:
        if c in sub.column_names:
            cols[_RENAME.get(c, c)] = pc.cast(sub.column(c), pa.float64())
    for c in _PCT:
        if c in sub.column_names:
            cols[c] = pc.divide(pc.cast(sub.column(c), pa.float64()), 100.0)
    cols["_loc"] = pa.array(locs[idx])
    quotes = pa.table(cols)

    # listed at its earliest plausible row (a row quarantined for its clock does not date it)
    first_seen: dict[str, int] = {}
    for i in idx[(ts[idx] >= TS_MIN) & (ts[idx] < TS_MAX)]:
        first_seen[names[i]] = min(first_seen.get(names[i], int(ts[i])), int(ts[i]))
    by_name = {names[i]: parsed[i] for i in idx}
    defs = [(nm, by_name[nm], t0) for nm, t0 in first_seen.items()]
    # The future of each expiry, defined (not quoted) where its contract is known: the files
    # carry its price as the options' underlying_price, which the replay uses as the
    # future's reference price.  Not BTC's spec for every coin (an ETH future is 1 USD a
    # contract, not 10), nor an inverse future under a USDC-linear option.
    futures: dict[str, tuple] = {}
    for nm, _, t0 in defs:
        fut = nm.rsplit("-", 2)[0]
        p = parse_deribit_name(fut)
        if p is not None and deribit_spec(p) and (fut not in futures or t0 < futures[fut][2]):
            futures[fut] = (fut, p, t0)
    defs += list(futures.values())
    specs = [deribit_spec(d[1]) or (1.0, DERIBIT_OPTION_TICK) for d in defs]
    kinds = [d[1].kind for d in defs]
    instruments = pa.table({
        "ts_exchange": pa.array([d[2] for d in defs], pa.int64()),
        "ts_recv": pa.array([d[2] for d in defs], pa.int64()),
        "name": [d[0] for d in defs],
        "venue": ["deribit"] * len(defs),
        "kind": kinds,
        "underlying": [d[1].underlying for d in defs],
        "quote_currency": ["USD"] * len(defs),
        "expiry_ns": pa.array([d[1].expiry_ns for d in defs], pa.int64()),
        "strike": pa.array([d[1].strike for d in defs], pa.float64()),
        "is_call": pa.array([d[1].is_call for d in defs], pa.bool_()),
        "settlement": [d[1].settlement for d in defs],
        "contract_size": pa.array([s[0] for s in specs], pa.float64()),
        "tick_size": pa.array([s[1] for s in specs], pa.float64()),
    })
    return Chunk(n_read=n, rows={"option_quotes": quotes}, instruments=instruments,
                 rejects=rejects, raw=lambda at: _raw_rows(t, np.asarray(at) - row0))


_PER_NS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


def _ns(col: pa.ChunkedArray) -> np.ndarray:
    """Timestamps of any unit to int64 ns UTC; missing or beyond int64 ns (after 2262) -> 0,
    which the caller quarantines, so one absurd stamp never fails the whole file."""
    if not pa.types.is_timestamp(col.type):
        raise IngestError(f"harvest_time has type {col.type}, expected a timestamp")
    raw = pc.fill_null(pc.cast(col, pa.int64()), 0).to_numpy(zero_copy_only=False)
    factor = _PER_NS[col.type.unit]
    ok = np.abs(raw) < np.iinfo(np.int64).max // factor
    return np.where(ok, raw, 0) * factor


def _raw_rows(t: pa.Table, idx: np.ndarray) -> list[str]:
    """The source row as JSON text, for the quarantine."""
    import json

    sub = t.take(pa.array(idx, pa.int64())).to_pylist()
    return [json.dumps(r, default=str, sort_keys=True) for r in sub]


# ------------------------------------------------------------- snapshots for calibration studies

def summary_files(root: Path | str) -> list[Path]:
    """The Deribit summary Parquet files under ``root``, in file-name (= time) order."""
    return sorted(Path(root).rglob("*.parquet"), key=lambda p: p.name)


@dataclass(frozen=True, eq=False)
class SummaryRows:
    """The option rows of one ``harvest_time``: the inputs of
    :func:`calibration.quotes.build_snapshot`."""

    ts_ns: int
    expiry_ns: np.ndarray
    strike: np.ndarray
    is_call: np.ndarray
    bid: np.ndarray  # coin, NaN when absent
    ask: np.ndarray
    forward: np.ndarray  # the venue's underlying price of the expiry, USD
    mark_iv: np.ndarray  # fraction
    instrument: list[str]

    def snapshot(self, min_t: float = MIN_T_YEARS, parity: bool = True) -> QuoteSnapshot:
        return build_snapshot(self.ts_ns, self.expiry_ns, self.strike, self.is_call, self.bid,
                              self.ask, self.forward, mark_iv=self.mark_iv,
                              instrument=self.instrument, min_t=min_t, parity=parity)


_SNAPSHOT_COLS = ("bid_price", "ask_price", "mark_iv", "underlying_price")


def summary_rows(paths: Sequence[Path | str], underlying: str = "BTC") -> Iterator[SummaryRows]:
    """The files' option rows of ``underlying``, one :class:`SummaryRows` per ``harvest_time``
    that has at least one bid, in time order, without a store in between.

    They are read by :func:`read`, the adapter ``volreplay ingest deribit-summary`` uses, so a
    calibration study over the files sees the rows an ingest parses; the ingest's own checks
    (:func:`replay.ingest.core.validate`) and deduplication are not applied here, so a
    crossed book or a repeated row that an ingest would quarantine is kept (the recordings
    in the repository's tests have neither: their ingest quarantines no row).  Snapshots
    with no bid at all (early files carry no book) are skipped.
    """
    parts = []
    for path in paths:
        for ch in read(Path(path)):
            t = ch.rows["option_quotes"]
            parts.append(pa.table({
                "ts": t.column("ts_recv"), "name": t.column("instrument"),
                **{c: (t.column(c) if c in t.column_names else pa.nulls(t.num_rows, pa.float64()))
                   for c in _SNAPSHOT_COLS}}))
    if not parts:
        return
    tab = pa.concat_tables(parts)
    tab = tab.filter(pc.starts_with(tab.column("name"), f"{underlying}-"))
    tab = tab.sort_by([("ts", "ascending"), ("name", "ascending")])
    ts = tab.column("ts").to_numpy()
    names = tab.column("name").to_pylist()
    cols = {c: tab.column(c).to_numpy(zero_copy_only=False).astype(float) for c in _SNAPSHOT_COLS}
    parsed = {nm: parse_deribit_name(nm) for nm in set(names)}
    exp = np.array([parsed[nm].expiry_ns for nm in names], dtype=np.int64)
    strike = np.array([parsed[nm].strike for nm in names], dtype=float)
    is_call = np.array([parsed[nm].is_call for nm in names], dtype=bool)
    bounds = np.flatnonzero(np.diff(ts)) + 1
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, ts.size]):
        if not np.isfinite(cols["bid_price"][lo:hi]).any():
            continue
        sel = slice(lo, hi)
        yield SummaryRows(int(ts[lo]), exp[sel], strike[sel], is_call[sel],
                          cols["bid_price"][sel], cols["ask_price"][sel],
                          cols["underlying_price"][sel], cols["mark_iv"][sel], names[lo:hi])


def summary_snapshots(paths: Sequence[Path | str], underlying: str = "BTC", *,
                      min_t: float = MIN_T_YEARS) -> Iterator[QuoteSnapshot]:
    """Calibration snapshots of the files (:func:`summary_rows`), in time order; snapshots
    without any usable expiry yield nothing."""
    for rows in summary_rows(paths, underlying):
        snap = rows.snapshot(min_t)
        if snap.slices:
            yield snap
