"""``binance-ws``: raw Binance websocket recordings, one message per line.

Line format: ``<local receive time, ns since epoch> <JSON>`` where the JSON is a combined-stream
envelope ``{"stream": "btcusdt@bookTicker", "data": {...}}`` (plain or gzip file).

* ``@bookTicker`` becomes ``underlying_quotes`` (best bid/ask price ``b``/``a``, size ``B``/``A``).
* ``@trade`` becomes ``underlying_trades``: price ``p``, size ``q``, trade id ``t``; the
  aggressor is the buyer unless ``m`` (buyer is maker) is true, so ``side = -1 if m else +1``.
* ``@depth...`` book diffs and REST depth snapshots (``lastUpdateId``/``bids``/``asks``) are
  not ingested (the store keeps top of book); each is accounted for as a quarantined row with
  a ``skipped: depth ...`` reason and counted in ``skipped_depth`` of the JSON report.

Clocks: ``ts_recv`` is the local receive stamp.  ``ts_exchange`` is the transaction time ``T``
where present, else the event time ``E`` (ms, converted to ns); spot bookTicker messages
carry neither, so their ``ts_exchange`` equals ``ts_recv``.  The two clocks come from different
machines: in the shared 2024-08-08 recordings the receive clock runs about 1.2 s *behind* the
exchange clock.  Both are kept as recorded; consumers that need latency should estimate the
offset (``volreplay inspect`` reports it) rather than assume ``ts_recv >= ts_exchange``.

Market: USD-M futures messages carry ``e``/``E`` on bookTicker and ``X`` on trades; spot ones
do not.  Perp rows go to instrument ``BINANCE-<SYMBOL>-PERP`` (linear, 1 coin per contract,
tick 0.1), spot rows to ``BINANCE-<SYMBOL>-SPOT`` (tick 0.01).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from replay.errors import IngestError
from replay.ingest.core import Chunk, Reject
from replay.model.instruments import underlying_of
from replay.store.database import TS_MAX, TS_MIN

CHUNK_LINES = 100_000
_PERP_TICK, _SPOT_TICK = 0.1, 0.01


def _open(path: Path):
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="\n")
    # lines end at "\n" only: a stray "\r" inside a message is not a line break
    return open(path, encoding="utf-8", errors="replace", newline="\n")


def read(path: Path) -> Iterator[Chunk]:
    try:
        fh = _open(path)
        with fh:
            buf: list[str] = []
            line0 = 1
            for line in fh:
                buf.append(line.rstrip("\r\n"))
                if len(buf) == CHUNK_LINES:
                    yield _chunk(buf, line0)
                    line0 += len(buf)
                    buf = []
            if buf:
                yield _chunk(buf, line0)
    except (OSError, EOFError) as e:
        raise IngestError(f"{path}: cannot read ({e})") from None


def _ms(v) -> int | None:
    return int(v) * 1_000_000 if isinstance(v, int | float) and not isinstance(v, bool) else None


def _chunk(lines: list[str], line0: int) -> Chunk:
    quotes: dict[str, list] = {k: [] for k in
                               ("ts_exchange", "ts_recv", "instrument", "bid_price", "ask_price",
                                "bid_size", "ask_size", "_loc")}
    trades: dict[str, list] = {k: [] for k in
                               ("ts_exchange", "ts_recv", "instrument", "price", "size", "side",
                                "trade_id", "_loc")}
    rejects: list[Reject] = []
    seen: dict[str, tuple[str, int]] = {}
    for i, line in enumerate(lines):
        loc = line0 + i
        try:
            head, _, body = line.partition(" ")
            ts_recv = int(head)
            msg = json.loads(body)
            if isinstance(msg, dict) and "lastUpdateId" in msg and "bids" in msg:
                rejects.append(Reject(loc, "skipped: depth snapshot (REST order book)", line,
                                      "underlying_quotes"))
                continue
            stream = msg["stream"]
            d = msg["data"]
            if not isinstance(d, dict) or not isinstance(stream, str):
                raise ValueError("envelope without data")
            symbol = str(d.get("s") or stream.split("@")[0]).upper()
            if "@depth" in stream:
                rejects.append(Reject(loc, "skipped: depth diff (top of book comes from bookTicker)",
                                      line, "underlying_quotes"))
                continue
            if stream.endswith("@bookTicker"):
                perp = "e" in d or "E" in d
                name = f"BINANCE-{symbol}-{'PERP' if perp else 'SPOT'}"
                ts_ex = _ms(d.get("T")) or _ms(d.get("E")) or ts_recv
                row = (ts_ex, ts_recv, name, float(d["b"]), float(d["a"]), float(d["B"]),
                       float(d["A"]), loc)
                for k, v in zip(quotes, row):
                    quotes[k].append(v)
            elif stream.endswith("@trade"):
                perp = "X" in d
                name = f"BINANCE-{symbol}-{'PERP' if perp else 'SPOT'}"
                ts_ex = _ms(d.get("T")) or _ms(d.get("E")) or ts_recv
                m = d["m"]
                if not isinstance(m, bool):
                    raise ValueError("m is not a boolean")
                row = (ts_ex, ts_recv, name, float(d["p"]), float(d["q"]), -1 if m else 1,
                       str(d["t"]), loc)
                for k, v in zip(trades, row):
                    trades[k].append(v)
            else:
                rejects.append(Reject(loc, f"unparsable: unsupported stream {stream[:60]!r}", line))
                continue
            if TS_MIN <= ts_recv < TS_MAX and TS_MIN <= ts_ex < TS_MAX:
                # listed at its earliest plausible row (a row quarantined for its clock
                # does not date it)
                kind, t0 = seen.get(name, ("perp" if perp else "spot", ts_recv))
                seen[name] = (kind, min(t0, ts_recv))
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as e:
            rejects.append(Reject(loc, f"unparsable: {type(e).__name__}: {str(e)[:80]}", line))
    rows = {}
    if quotes["_loc"]:
        rows["underlying_quotes"] = _table(quotes)
    if trades["_loc"]:
        rows["underlying_trades"] = _table(trades)
    return Chunk(n_read=len(lines), rows=rows, instruments=_defs(seen), rejects=rejects,
                 raw=lambda at: [lines[int(a) - line0] for a in np.asarray(at)])


def _clamp(x: int) -> int:
    """Out-of-int64 stamps become 0, which validation quarantines as out of range."""
    return x if -(2**63) <= x < 2**63 else 0


def _table(cols: dict[str, list]) -> pa.Table:
    out = {}
    for k, v in cols.items():
        if k in ("ts_exchange", "ts_recv", "_loc"):
            out[k] = pa.array([_clamp(x) for x in v], pa.int64())
        elif k == "side":
            out[k] = pa.array(v, pa.int8())
        elif k in ("instrument", "trade_id"):
            out[k] = pa.array(v, pa.string())
        else:
            out[k] = pa.array(v, pa.float64())
    return pa.table(out)


def _defs(seen: dict[str, tuple[str, int]]) -> pa.Table | None:
    if not seen:
        return None
    names = sorted(seen)
    kinds = [seen[n][0] for n in names]
    ts = [_clamp(seen[n][1]) for n in names]
    return pa.table({
        "ts_exchange": pa.array(ts, pa.int64()),
        "ts_recv": pa.array(ts, pa.int64()),
        "name": names,
        "venue": ["binance"] * len(names),
        "kind": kinds,
        "underlying": [underlying_of(n) for n in names],
        "quote_currency": ["USDT"] * len(names),
        "settlement": ["linear"] * len(names),
        "contract_size": [1.0] * len(names),
        "tick_size": [_PERP_TICK if k == "perp" else _SPOT_TICK for k in kinds],
    })
