"""The surface stream: what the calibration consumer produced at each of its wakes, as
columnar files that a later run replays instead of refitting (calibrate once, replay many).

The published surface at time ``t`` depends only on market events with ``ts_recv <= t`` and
on the calibration config, never on the strategy, so it is a projection of the market: built
once (:class:`StreamRecorder`, attached to a live consumer), stored, and replayed
(:class:`replay.consumers.stream_reader.StreamReader`) by a consumer that journals the same
events as the live one at the same places, byte for byte.  That is why a cached run and a
live run have the same journal hash.

A stream directory holds (all Parquet):

``wakes.parquet``, one row per wake that produced anything:
    ``wake`` (the consumer's wake ordinal, from 1), ``ts`` and ``n_events`` (the replay
    position, checked on replay), ``cause_stream`` and ``cause_seq`` (the last market event
    folded at the wake: the journal cause of what it emitted), the rows ``[f0, f1)`` of
    ``fits`` and ``[q0, q1)`` of ``quotes`` it journaled, its fit quality (``q_*``, null
    without a fit), its out-of-sample score (``oos_sq_sum``, ``oos_n``, null when not
    scored), and what it published:
    ``surface_wake`` (the wake whose fitted surface is published, -1 for none), ``spot`` (the
    underlying mid at the fit), ``usable_ts`` (fit time plus ``calibration.latency``), and
    ``violations`` (JSON: the arbitrage violations of this wake's fitted surface), and
    ``fits_digest`` and ``quotes_digest``, the payload digests of its ``surface_fit`` and
    ``calibration_quotes`` events (null: not emitted).
``fits.parquet``, one row per expiry of a fit:
    ``wake``, ``ts``, ``usable_ts``, the journal's ``surface_fit`` fields and the ``k`` range
    (``k_lo``, ``k_hi``) that, with them, rebuilds the slice.
``quotes.parquet``:
    ``wake`` and the journal's ``calibration_quotes`` fields (as sampled by
    ``calibration.quotes_every``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from calibration.quality import FitQuality, OOSError
from calibration.surface import Surface, param_values
from replay.errors import StoreError
from replay.model.events import KINDS, TYPES

FIT_FIELDS = tuple(f for f, _ in KINDS["surface_fit"].fields)
QUOTE_FIELDS = tuple(f for f, _ in KINDS["calibration_quotes"].fields)
QUALITY_FIELDS = tuple(f.name for f in fields(FitQuality))
INT_QUALITY = tuple(f.name for f in fields(FitQuality) if f.type in ("int", int))
FILES = ("wakes.parquet", "fits.parquet", "quotes.parquet")


@dataclass(eq=False)
class WakeOutput:
    """What one wake of the calibration consumer produced.

    ``fits`` / ``quotes``: its ``surface_fit`` / ``calibration_quotes`` events (``None``: not
    emitted), as journal columns (computed) or as a :class:`Block` of a stream (replayed);
    ``fitted``: the surface this wake fitted; ``publish``: the surface that becomes usable at
    ``usable_ts`` (the fitted one or an earlier good one; replayed: a loader of it), with the
    underlying mid ``spot`` at the fit; ``fell_back``: a failed fit left the last good surface
    published; ``good``: the fitted surface is now the last good one."""

    ts: int
    n_events: int
    cause: tuple[int, int] = (-1, -1)
    fits: dict[str, Any] | Block | None = None
    quotes: dict[str, Any] | Block | None = None
    quality: FitQuality | None = None
    oos: OOSError | None = None
    fitted: Surface | None = None
    publish: Surface | Callable[[], Surface] | None = None
    spot: float = math.nan
    usable_ts: int = 0
    fell_back: bool = False
    good: bool = False


def surface_fit_rows(r: Any, snapshot: Any, model: str) -> dict[str, list]:
    """The ``surface_fit`` event's columns (docs/outputs.md) for a refit's result ``r`` (a
    :class:`calibration.scheme.FitResult`) on the quotes ``snapshot``: one row per fitted
    expiry, the fit-level figures repeated on each, or one row saying why nothing was
    fitted."""
    fitted, q = r.fitted, r.quality
    if fitted is None:
        return dict(model=[model], expiry=[0], t=[math.nan], forward=[math.nan], params=[[]],
                    n_quotes=[0], rmse_vol_pts=[math.nan], inside_spread_pct=[math.nan],
                    fit_ms=[r.fit_ms], arb_violations=[0], published=[False],
                    reason=[r.reason or "no fit"], carried=[False])
    sl = fitted.slices
    n = len(sl)
    nq = {s.expiry_ns: int(u.size) for s, u in zip(snapshot.slices, r.used)}
    return dict(
        model=[s.model for s in sl], expiry=[s.expiry_ns for s in sl], t=[s.t for s in sl],
        forward=[s.forward for s in sl],
        params=[[float(x) for x in param_values(s.params)] for s in sl],
        n_quotes=[nq.get(s.expiry_ns, 0) for s in sl], rmse_vol_pts=[q.rmse_vol_pts] * n,
        inside_spread_pct=[q.inside_spread_pct] * n, fit_ms=[r.fit_ms] * n,
        arb_violations=[len(r.violations)] * n, published=[not r.fell_back] * n,
        reason=[r.reason] * n, carried=[s.expiry_ns in r.carried for s in sl])


@dataclass(frozen=True)
class Block:
    """Recorded journal payload rows ``[i0, i1)`` of ``table`` and their digest
    (:func:`replay.model.events.payload_digest`), appended without per-row Python."""

    digest: bytes
    table: pa.Table
    i0: int
    i1: int


def _floats(t: pa.DataType) -> bool:
    """Whether a column holds floats, or lists of them."""
    return pa.types.is_floating(t) or (pa.types.is_list(t) and pa.types.is_floating(t.value_type))


def _writer(path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    # LZ4, not zstd: a replay reads every row group back, and decodes a day's fits in
    # 0.08 s instead of 0.13 s for 8 % more bytes.  No dictionaries for floats, whose
    # values hardly repeat: trying them cost the encoder twice the time (0.75 against
    # 0.33 s for a day's fits) for files 20 % larger
    # page checksums: a reader verifies each page it reads (:class:`RowGroups`)
    return pq.ParquetWriter(path, schema, compression="lz4", write_page_checksum=True,
                            use_dictionary=[f.name for f in schema if not _floats(f.type)])


def join_parts(parts: list[tuple[Path, int]], folder: Path) -> dict:
    """The stream of consecutive parts of one replay, each recorded by a consumer that slept
    until its part began (``(part folder, wakes before it)``): their files concatenated row
    group by row group, with the wake ordinals (``wake``, ``surface_wake`` when one) and the
    row ranges of ``fits`` and ``quotes`` (``f0, f1, q0, q1``) offset by the parts before.
    The wakes' market positions and causes need nothing: every part replayed from the
    start.  Returns the row counts, as :meth:`StreamRecorder.write` does."""
    counts = {"wakes": 0, "fits": 0, "quotes": 0}
    folder.mkdir(parents=True, exist_ok=True)
    writers = {name: _writer(folder / f"{name}.parquet", schema)
               for name, schema in StreamRecorder.schemas().items()}
    try:
        for part, wakes_before in parts:
            rows_before = dict(counts)
            for name, writer in writers.items():
                file = pq.ParquetFile(part / f"{name}.parquet", page_checksum_verification=True)
                for g in range(file.num_row_groups):
                    t = file.read_row_group(g)
                    shift = {"wake": wakes_before}
                    if name == "wakes":
                        shift |= {"f0": rows_before["fits"], "f1": rows_before["fits"],
                                  "q0": rows_before["quotes"], "q1": rows_before["quotes"]}
                        sw = t["surface_wake"]
                        t = t.set_column(t.schema.get_field_index("surface_wake"),
                                         "surface_wake", pc.if_else(
                                             pc.less(sw, 0), sw, pc.add(sw, wakes_before)))
                    for col, by in shift.items():
                        t = t.set_column(t.schema.get_field_index(col), col,
                                         pc.add(t[col], by))
                    writer.write_table(t)
                    counts[name] += t.num_rows
    finally:
        for writer in writers.values():
            writer.close()
    return counts


def _write_tables(tables: list[tuple[pq.ParquetWriter, pa.Table]]) -> None:
    for writer, table in tables:
        writer.write_table(table)


class StreamMismatch(StoreError):
    """A cached surface stream that does not belong to the replay reading it."""


class StreamRecorder:
    """Collects the outputs of a live consumer's wakes and writes them as a stream.

    With ``folder``, every ``group_wakes`` wakes go to the files as one Parquet row group, so
    a day's build holds a few thousand wakes in memory, not the day; without it everything
    stays in the lists (``wakes``, ``fits``, ``quotes``) until :meth:`write`."""

    def __init__(self, folder: str | Path | None = None, group_wakes: int = 4096) -> None:
        self.folder = None if folder is None else Path(folder)
        self.group_wakes = int(group_wakes)
        self._writers: dict[str, pq.ParquetWriter] = {}
        # the row groups are encoded and written on a thread of their own, one at a time
        self._encoder: ThreadPoolExecutor | None = None
        self._writing: Future | None = None
        # one list per column of each file, in the files' column order
        cols = {name: {c: [] for c in schema.names} for name, schema in self.schemas().items()}
        self.wakes, self.fits, self.quotes = cols["wakes"], cols["fits"], cols["quotes"]
        self.n_wakes = self.n_fits = self.n_quotes = 0
        self._good: tuple[Surface | None, int] = (None, -1)  # the last good surface, its wake

    def add(self, wake: int, out: WakeOutput, payloads: dict[str, tuple[int, dict, bytes]]
            ) -> None:
        """Record one wake's output; ``payloads``: its fit and quote rows by kind, as the
        journal appended them (:func:`replay.model.events.checked_payload`)."""
        w = self.wakes
        f0, q0 = self.n_fits, self.n_quotes
        if out.fits is not None:
            n = len(out.fits["expiry"])
            self._extend(self.fits, wake, n, out.fits,
                         ts=[out.ts] * n, usable_ts=[out.usable_ts] * n)
            fitted = out.fitted.slices if out.fitted is not None else ()
            self.fits["k_lo"] += [s.k_lo for s in fitted]
            self.fits["k_hi"] += [s.k_hi for s in fitted]
            if out.fitted is None:  # the "no fit" row: nothing to rebuild
                self.fits["k_lo"].append(math.nan)
                self.fits["k_hi"].append(math.nan)
            self.n_fits += n
        if out.quotes is not None:
            n = len(out.quotes["strike"])
            self._extend(self.quotes, wake, n, out.quotes)
            self.n_quotes += n
        src = -1  # a wake publishes what it fitted or, falling back, the last good surface
        if out.publish is not None and out.publish is out.fitted:
            src = wake
        elif out.publish is not None and out.publish is self._good[0]:
            src = self._good[1]
        elif out.publish is not None:
            raise RuntimeError("a published surface was neither fitted now nor the last good one")
        if out.good:
            self._good = (out.fitted, wake)
        # its fields are scalars: a shallow view, not asdict's deep copy
        q = vars(out.quality) if out.quality is not None else dict.fromkeys(QUALITY_FIELDS)
        for k, v in (("wake", wake), ("ts", out.ts), ("n_events", out.n_events),
                     ("cause_stream", out.cause[0]), ("cause_seq", out.cause[1]), ("f0", f0),
                     ("f1", self.n_fits), ("q0", q0), ("q1", self.n_quotes),
                     *((f"q_{f}", q[f]) for f in QUALITY_FIELDS),
                     ("oos_sq_sum", None if out.oos is None else out.oos.sq_sum),
                     ("oos_n", None if out.oos is None else out.oos.n),
                     ("surface_wake", src), ("spot", out.spot), ("usable_ts", out.usable_ts),
                     ("fell_back", out.fell_back),
                     ("violations", json.dumps([vars(v) for v in out.fitted.violations])
                      if out.fitted is not None else "[]"),
                     ("fits_digest", payloads["surface_fit"][2] if out.fits is not None
                      else None),
                     ("quotes_digest", payloads["calibration_quotes"][2]
                      if out.quotes is not None else None)):
            w[k].append(v)
        self.n_wakes += 1
        if self.folder is not None and len(w["wake"]) >= self.group_wakes:
            self._flush()

    @staticmethod
    def _extend(dest: dict[str, list], wake: int, n: int, cols: dict, **extra: list) -> None:
        dest["wake"] += [wake] * n
        for k, v in {**cols, **extra}.items():
            if k != "wake" and k in dest:
                dest[k] += np.asarray(v).tolist() if isinstance(v, np.ndarray) else list(v)

    @staticmethod
    def schemas() -> dict[str, pa.Schema]:
        fit_types = dict(KINDS["surface_fit"].fields)
        quote_types = dict(KINDS["calibration_quotes"].fields)
        return {
            "wakes": pa.schema(
                [(c, pa.int64()) for c in ("wake", "ts", "n_events", "cause_stream",
                                           "cause_seq", "f0", "f1", "q0", "q1")]
                + [(f"q_{f}", pa.int64() if f in INT_QUALITY else pa.float64())
                   for f in QUALITY_FIELDS]
                + [("oos_sq_sum", pa.float64()), ("oos_n", pa.int64()),
                   ("surface_wake", pa.int64()), ("spot", pa.float64()),
                   ("usable_ts", pa.int64()), ("fell_back", pa.bool_()),
                   ("violations", pa.string()), ("fits_digest", pa.binary(32)),
                   ("quotes_digest", pa.binary(32))]),
            "fits": pa.schema([("wake", pa.int64()), ("ts", pa.int64()), ("usable_ts", pa.int64())]
                              + [(f, TYPES[fit_types[f]][1]) for f in FIT_FIELDS]
                              + [("k_lo", pa.float64()), ("k_hi", pa.float64())]),
            "quotes": pa.schema([("wake", pa.int64())]
                                + [(f, TYPES[quote_types[f]][1]) for f in QUOTE_FIELDS]),
        }

    def _flush(self) -> None:
        """Append what is held to the files as one row group each and forget it.  The
        tables are made here; their encoding and writing runs on the encoder thread while
        the build goes on (the previous row groups' first, so the files keep their order)."""
        tables = []
        for name, schema in self.schemas().items():
            cols = getattr(self, name)
            writer = self._writers.get(name)
            if writer is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                writer = self._writers[name] = _writer(self.folder / f"{name}.parquet", schema)
            if cols["wake"]:
                tables.append((writer, pa.table(cols, schema=schema)))
            for v in cols.values():
                v.clear()
        self._wait()
        if self._encoder is None:
            self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stream-write")
        self._writing = self._encoder.submit(_write_tables, tables)

    def _wait(self) -> None:
        """Wait for the row groups being written (raising what their writing raised)."""
        if self._writing is not None:
            writing, self._writing = self._writing, None
            writing.result()

    def write(self, folder: str | Path | None = None) -> dict:
        """Write what is left and close the files (in ``folder``, if none was given at
        construction); returns the row counts."""
        if self.folder is None:
            if folder is None:
                raise ValueError("StreamRecorder.write needs a folder")
            self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._flush()
            self._wait()
        finally:
            for writer in self._writers.values():
                writer.close()
            self._writers = {}
            if self._encoder is not None:
                self._encoder.shutdown()
                self._encoder = None
        return {"wakes": self.n_wakes, "fits": self.n_fits, "quotes": self.n_quotes}
