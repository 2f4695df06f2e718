"""Reading a surface stream (:mod:`replay.consumers.surface_stream`, which documents its
files) back, wake by wake, for a consumer that replays it instead of refitting."""

from __future__ import annotations

import bisect
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from calibration.arbitrage import Violation
from calibration.quality import FitQuality, OOSError
from calibration.surface import Surface
from replay.consumers.surface_stream import (
    FILES,
    INT_QUALITY,
    QUALITY_FIELDS,
    Block,
    StreamMismatch,
    StreamRecorder,
    WakeOutput,
)
from replay.store.row_groups import RowGroups, RowRange


class _WakeRow(NamedTuple):
    """What :meth:`StreamReader.output` reads of one ``wakes`` row, as Python scalars."""

    ts: int
    n_events: int
    f0: int
    f1: int
    q0: int
    q1: int
    surface_wake: int
    spot: float
    usable_ts: int
    fell_back: bool
    has_oos: bool
    oos_sq: float
    oos_n: int


class _Events(NamedTuple):
    """A stream's journal events, laid out by :meth:`StreamReader._events`: the rows that
    emit, where each row's events start (one more entry: the end), and per event its (kind,
    source) code (0 wake, 1 surface_fit, 2 calibration_quotes), time, cause and payload
    digest (32 bytes each)."""

    wake_digest: bytes
    rows: np.ndarray
    start: np.ndarray
    code: np.ndarray
    ts: np.ndarray
    cause_stream: np.ndarray
    cause_seq: np.ndarray
    digests: bytes


class _Blocks:
    """The rows of equal-length columns as tuples of Python scalars (made by ``row``), made
    a block at a time, the last block held: a day's rows as Python objects would cost tens
    of MB, and the replay walks them forward."""

    def __init__(self, cols: tuple[np.ndarray, ...], row: Callable = tuple, size: int = 4096):
        self.cols, self.row, self.size = cols, row, size
        self._block, self._rows = -1, []

    def __getitem__(self, i: int):
        b = i // self.size
        if b != self._block:
            part = (a[b * self.size:(b + 1) * self.size].tolist() for a in self.cols)
            self._rows, self._block = list(map(self.row, zip(*part))), b
        return self._rows[i - b * self.size]


class StreamReader:
    """Serves the recorded outputs of a stream to a replaying consumer, wake by wake.

    Loading is columnar (no Python object per fit row), so opening a day's stream costs
    well under a second; surfaces are rebuilt only when someone reads them."""

    def __init__(self, folder: str | Path, metrics: dict | None = None, link: bool = False):
        folder = Path(folder)
        #: the building consumer's :meth:`metrics` over the whole stream, when known
        self.metrics = metrics
        #: whether :meth:`splice` links the journal's fit and quote rows instead of copying
        self.link = link
        missing = [f for f in FILES if not (folder / f).exists()]
        if missing:
            raise StreamMismatch(f"surface stream {folder} is incomplete (no {missing[0]}); "
                                 "rebuild it with calibration.cache=refresh")
        self.folder = folder
        try:
            w = pq.read_table(folder / "wakes.parquet", columns=[
                c for c in StreamRecorder.schemas()["wakes"].names if c != "violations"],
                page_checksum_verification=True)
            # the bulky files are read as the replay walks them; their footers now
            mend = "; rebuild it with calibration.cache=refresh"
            self._violations = RowGroups(folder / "wakes.parquet", ["violations"], damaged=mend)
            self._fits = RowGroups(folder / "fits.parquet", damaged=mend)
            self._quotes = RowGroups(folder / "quotes.parquet", damaged=mend)
        except (pa.ArrowException, OSError) as e:
            raise StreamMismatch(f"surface stream {folder} cannot be read ("
                                 f"{str(e).splitlines()[0]}); rebuild it with "
                                 "calibration.cache=refresh") from None
        col = {c: w[c].to_numpy(zero_copy_only=False) for c in (
            "wake", "ts", "n_events", "cause_stream", "cause_seq", "f0", "f1", "q0", "q1",
            "surface_wake", "spot", "usable_ts", "fell_back")}
        self.wake, self.ts, self.n_events = col["wake"], col["ts"], col["n_events"]
        self.f0, self.f1, self.q0, self.q1 = col["f0"], col["f1"], col["q0"], col["q1"]
        self.surface_wake, self.spot = col["surface_wake"], col["spot"]
        self.usable_ts, self.fell_back = col["usable_ts"], col["fell_back"]
        self.cause_stream, self.cause_seq = col["cause_stream"], col["cause_seq"]
        # the rows that publish a surface, and when it becomes usable (nondecreasing: the
        # latency is one constant)
        self.publishing = np.flatnonzero(self.surface_wake >= 0)
        self.publish_usable = self.usable_ts[self.publishing]
        self.has_quality = w["q_n_quotes"].is_valid().to_numpy(zero_copy_only=False)
        self.has_oos = w["oos_n"].is_valid().to_numpy(zero_copy_only=False)
        self.oos_sq = w["oos_sq_sum"].fill_null(0.0).to_numpy()
        self.oos_n = w["oos_n"].fill_null(0).to_numpy()
        self.has_fits, self.fits_digest = _digests(w["fits_digest"])
        self.has_quotes, self.quotes_digest = _digests(w["quotes_digest"])
        # what a wake reads, as Python scalars: a replayed wake then costs a list lookup, not
        # a dozen NumPy scalar conversions (made a block at a time: the replay walks forward)
        self._rows = _Blocks((self.ts, self.n_events, self.f0, self.f1, self.q0, self.q1,
                              self.surface_wake, self.spot, self.usable_ts, self.fell_back,
                              self.has_oos, self.oos_sq, self.oos_n), _WakeRow._make)
        # NaN, not None, where a quality field is null: param_jitter is then replaced by None
        self._quality = _Blocks((self.has_quality, w["q_param_jitter"].is_valid().to_numpy(
            zero_copy_only=False), *(w[f"q_{f}"].to_numpy(zero_copy_only=False)
                                     for f in QUALITY_FIELDS)))
        # the bulky parts (fit and quote rows, _fits and _quotes) are read a row group at a
        # time as the replay walks forward, so a day's stream is never in memory at once
        self._surface: tuple[int, Surface] | None = None
        self._wakes: list[int] | None = None  # self.wake as a list, for surface's look-ups
        self._laid_out: _Events | None = None

    def __len__(self) -> int:
        return len(self.wake)

    def splice(self, journal, i0: int, i1: int, consumer: str, wake: tuple[dict, bytes]
               ) -> None:
        """Journal rows ``[i0, i1)`` as the live consumer's wakes did: for each row that
        emitted anything, a ``wake`` event (``wake``: its one-row columns and digest), then
        its ``surface_fit`` and ``calibration_quotes`` events, each at the row's time and
        cause.  The events are chained in one pass
        (:meth:`replay.engine.journal.Journal.append_many`) and their rows copied as slices of
        the stream's files, or with :attr:`link` linked to them
        (:meth:`~replay.engine.journal.Journal.link_rows`)."""
        ev = self._events(wake[1])
        r0, r1 = np.searchsorted(ev.rows, (i0, i1)).tolist()
        if r0 == r1:
            return
        e0, e1 = int(ev.start[r0]), int(ev.start[r1])
        first = journal.append_many(
            [("wake", "engine"), ("surface_fit", consumer), ("calibration_quotes", consumer)],
            ev.code[e0:e1], ev.ts[e0:e1], ev.cause_stream[e0:e1], ev.cause_seq[e0:e1],
            ev.digests[32 * e0:32 * e1])[0]
        rows = ev.rows[r0:r1]
        wake_seq = ev.start[r0:r1] + (first - e0)  # each row's events follow its wake
        ts = self.ts[rows]
        journal.add_rows("wake", wake_seq, ts, {f: v * (r1 - r0) for f, v in wake[0].items()})
        fits = self.has_fits[rows]
        for kind, file, first_row, end_row, has, seq in (
                ("surface_fit", self._fits, self.f0, self.f1, fits, wake_seq + 1),
                ("calibration_quotes", self._quotes, self.q0, self.q1, self.has_quotes[rows],
                 wake_seq + 1 + fits)):
            r = rows[has]
            if not len(r):
                continue
            if self.link:
                journal.link_rows(kind, file.path, seq[has], ts[has], self.wake[r])
                continue
            lens = end_row[r] - first_row[r]
            a, b = int(first_row[r[0]]), int(end_row[r[-1]])
            if b - a != lens.sum():
                raise StreamMismatch(f"surface stream {self.folder}: the {kind} rows of wakes "
                                     f"{self.wake[r[0]]}..{self.wake[r[-1]]} are not contiguous;"
                                     " rebuild it with calibration.cache=refresh")
            journal.add_rows(kind, np.repeat(seq[has], lens), np.repeat(ts[has], lens),
                             RowRange(file, a, b))

    def _events(self, wake_digest: bytes) -> _Events:
        """The journal events of the whole stream, laid out once (a replay splices them a
        few at a time): for each row that emitted anything, its ``wake`` event (whose
        payload digest is ``wake_digest``), then its ``surface_fit`` and
        ``calibration_quotes`` events when it has them."""
        if self._laid_out is None or self._laid_out.wake_digest != wake_digest:
            rows = np.flatnonzero(self.has_fits | self.has_quotes)
            emitted = np.column_stack([np.ones(len(rows), bool), self.has_fits[rows],
                                       self.has_quotes[rows]])
            per_row = emitted.sum(axis=1)
            digests = np.empty((len(rows), 3, 32), np.uint8)
            digests[:, 0] = np.frombuffer(wake_digest, np.uint8)
            digests[:, 1], digests[:, 2] = self.fits_digest[rows], self.quotes_digest[rows]
            self._laid_out = _Events(
                wake_digest, rows, np.concatenate(([0], np.cumsum(per_row))),
                np.broadcast_to(np.arange(3), emitted.shape)[emitted],
                np.repeat(self.ts[rows], per_row), np.repeat(self.cause_stream[rows], per_row),
                np.repeat(self.cause_seq[rows], per_row), digests[emitted].tobytes())
        return self._laid_out

    def _block(self, file: RowGroups, digest: np.ndarray, i0: int, i1: int) -> Block:
        t, j = file.locate(i0)
        return Block(digest.tobytes(), t, j, j + i1 - i0)

    def fit_quality(self, i: int) -> FitQuality | None:
        has, has_jitter, *values = self._quality[i]
        if not has:
            return None
        q = {f: (int(v) if f in INT_QUALITY else float(v))
             for f, v in zip(QUALITY_FIELDS, values)}
        if not has_jitter:
            q["param_jitter"] = None
        return FitQuality(**q)

    def output(self, i: int) -> WakeOutput:
        """The output recorded at row ``i`` of ``wakes``."""
        r = self._rows[i]
        return WakeOutput(
            r.ts, r.n_events,
            fits=self._block(self._fits, self.fits_digest[i], r.f0, r.f1)
            if self.has_fits[i] else None,
            quotes=self._block(self._quotes, self.quotes_digest[i], r.q0, r.q1)
            if self.has_quotes[i] else None,
            quality=self.fit_quality(i),
            oos=OOSError(r.oos_sq, r.oos_n) if r.has_oos else None,
            publish=None if r.surface_wake < 0 else partial(self.surface, r.surface_wake),
            spot=r.spot, usable_ts=r.usable_ts, fell_back=r.fell_back)

    def surface(self, wake: int) -> Surface:
        """The surface fitted at ``wake``, rebuilt exactly (the same object while it is the
        latest one asked for, as a live consumer republishes its last good surface)."""
        if self._surface is not None and self._surface[0] == wake:
            return self._surface[1]
        if self._wakes is None:  # a list: bisect on it costs a tenth of np.searchsorted's call
            self._wakes = self.wake.tolist()
        i = bisect.bisect_left(self._wakes, wake)  # wakes are recorded in order
        if i == len(self._wakes) or self._wakes[i] != wake:
            raise StreamMismatch(f"surface stream {self.folder} has no wake {wake}; rebuild it "
                                 "with calibration.cache=refresh")
        # three scalars, not the wake's whole row: the rows are converted a block at a time
        # (output), and surfaces are asked for at a few wakes in a hundred
        f0, n = int(self.f0[i]), int(self.f1[i] - self.f0[i])
        (values, _), *cols = self._fits.arrays_of(
            f0, n, ("params", "expiry", "t", "forward", "k_lo", "k_hi"))
        # a fit's slices are of one model (the scheme fits every slice with its configured
        # model): one cell read, not the column's strings, and the parameters one block
        model = [self._fits.value(f0, "model")] * n if n else []
        text = self._violations.value(i, "violations")
        violations = [] if text == "[]" else [Violation(**v) for v in json.loads(text)]
        surf = Surface.from_columns(model, values.reshape(n, len(values) // max(n, 1)), *cols,
                                    int(self.ts[i]), violations)
        self._surface = (wake, surf)
        return surf

    def metrics_rows(self, n: int) -> tuple[list[FitQuality], list[OOSError], int, int]:
        """Over the first ``n`` rows: the fit qualities, out-of-sample scores, fallbacks and
        fits skipped for want of quotes (what a live consumer accumulates)."""
        qs = [self.fit_quality(i) for i in np.flatnonzero(self.has_quality[:n])]
        oos = [OOSError(float(self.oos_sq[i]), int(self.oos_n[i]))
               for i in np.flatnonzero(self.has_oos[:n])]
        fitted = (self.f1 > self.f0)[:n]
        skipped = int(np.sum(fitted & ~self.has_quality[:n]))
        return qs, oos, int(np.sum(self.fell_back[:n] & self.has_quality[:n])), skipped


def _digests(column: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """A digest column as (is it there, the digests as rows of 32 bytes, zeros where not)."""
    there = column.is_valid().to_numpy(zero_copy_only=False)
    filled = column.fill_null(pa.scalar(bytes(32), pa.binary(32))).combine_chunks()
    data = np.frombuffer(filled.buffers()[1], np.uint8)  # fixed width: 32 bytes a row
    return there, data[32 * filled.offset:32 * (filled.offset + len(filled))].reshape(-1, 32)
