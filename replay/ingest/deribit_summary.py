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

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from replay.ingest.core import Chunk, IngestError, Reject
from replay.instruments import ParsedName, parse_deribit_name

BATCH_ROWS = 65_536
#: Deribit BTC futures: 10 USD per contract, 2.5 USD tick
FUTURE_CONTRACT_USD, FUTURE_TICK = 10.0, 2.5
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

    first_seen: dict[str, int] = {}
    for i in idx:
        first_seen.setdefault(names[i], int(ts[i]))
    by_name = {names[i]: parsed[i] for i in idx}
    defs = [(nm, by_name[nm], t0) for nm, t0 in first_seen.items()]
    # The future of each expiry, defined (not quoted): the files carry its price as the
    # options' underlying_price, which the replay uses as the future's reference price.
    futures: dict[str, tuple] = {}
    for nm, p, t0 in defs:
        fut = nm.rsplit("-", 2)[0]
        if fut not in futures:
            futures[fut] = (fut, ParsedName("future", p.underlying, p.expiry_ns, None, None,
                                             "inverse"), t0)
    defs += list(futures.values())
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
        "contract_size": pa.array([1.0 if k == "option" else FUTURE_CONTRACT_USD for k in kinds]),
        "tick_size": pa.array([0.0001 if k == "option" else FUTURE_TICK for k in kinds]),
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
