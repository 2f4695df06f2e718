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


class _Kind(NamedTuple):
    """The emitting rows of a stream that have rows of one kind (fits or quotes): how many
    precede each emitting row (one more entry: all of them), and per such row the index of
    its event in the layout, its time, stream row and wake."""

    before: list[int]
    event: np.ndarray
    ts: np.ndarray
    row: np.ndarray
    wake: np.ndarray


class _Events(NamedTuple):
    """A stream's journal events, laid out by :meth:`StreamReader._events`: the rows that
    emit (also as a list, for bisection), where each row's events start (one more entry: the
    end; also as a list), each row's time, per event its (kind, source) code (0 wake, 1
    surface_fit, 2 calibration_quotes), time, cause and payload digest (32 bytes each), and
    the rows with fits and with quotes (:class:`_Kind`)."""

    wake_digest: bytes
    rows: list[int]
    start: np.ndarray
    starts: list[int]
    row_ts: np.ndarray
    code: np.ndarray
    ts: np.ndarray
    cause_stream: np.ndarray
    cause_seq: np.ndarray
    digests: bytes
    fits: _Kind
    quotes: _Kind


#: the ``fits`` columns :meth:`StreamReader.surface` reads, the model first
_SURFACE_COLUMNS = ("model", "params", "expiry", "t", "forward", "k_lo", "k_hi")


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
            # the columns a surface is rebuilt from, read on their own: a replay that links
            # the fit rows reads nothing else of the file (a day's row group: 2 ms, not 12)
            self._surface_fits = RowGroups(folder / "fits.parquet", list(_SURFACE_COLUMNS),
                                           damaged=mend)
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
        # as lists: a replay looks both up at every other consumer's wake, and bisect on a
        # list costs a fifth of np.searchsorted's call
        self._ts_list, self._usable_list = self.ts.tolist(), self.publish_usable.tolist()
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

    def rows_until(self, until: int, inclusive: bool) -> int:
        """How many rows are before ``until`` (or at it, if ``inclusive``)."""
        return (bisect.bisect_right if inclusive else bisect.bisect_left)(self._ts_list, until)

    def published_until(self, until: int, inclusive: bool) -> int:
        """How many of the rows that publish a surface (:attr:`publishing`) have it usable
        before ``until`` (or at it, if ``inclusive``)."""
        return (bisect.bisect_right if inclusive else bisect.bisect_left)(self._usable_list,
                                                                          until)

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
        r0, r1 = bisect.bisect_left(ev.rows, i0), bisect.bisect_left(ev.rows, i1)
        if r0 == r1:
            return
        e0, e1 = ev.starts[r0], ev.starts[r1]
        first = journal.append_many(
            (("wake", "engine"), ("surface_fit", consumer), ("calibration_quotes", consumer)),
            ev.code[e0:e1], ev.ts[e0:e1], ev.cause_stream[e0:e1], ev.cause_seq[e0:e1],
            ev.digests[32 * e0:32 * e1])[0]
        shift = int(first) - e0  # an event's seq: its index in the layout plus this
        journal.add_rows("wake", ev.start[r0:r1] + shift, ev.row_ts[r0:r1],
                         {f: v * (r1 - r0) for f, v in wake[0].items()})
        for kind, file, first_row, end_row, k in (
                ("surface_fit", self._fits, self.f0, self.f1, ev.fits),
                ("calibration_quotes", self._quotes, self.q0, self.q1, ev.quotes)):
            a, b = k.before[r0], k.before[r1]
            if a == b:
                continue
            seq, ts = k.event[a:b] + shift, k.ts[a:b]
            if self.link:
                journal.link_rows(kind, file.path, seq, ts, k.wake[a:b])
                continue
            r = k.row[a:b]
            lens = end_row[r] - first_row[r]
            lo, hi = int(first_row[r[0]]), int(end_row[r[-1]])
            if hi - lo != lens.sum():
                raise StreamMismatch(f"surface stream {self.folder}: the {kind} rows of wakes "
                                     f"{self.wake[r[0]]}..{self.wake[r[-1]]} are not contiguous;"
                                     " rebuild it with calibration.cache=refresh")
            journal.add_rows(kind, np.repeat(seq, lens), np.repeat(ts, lens),
                             RowRange(file, lo, hi))

    def _events(self, wake_digest: bytes) -> _Events:
        """The journal events of the whole stream, laid out once (a replay splices them a
        few at a time): for each row that emitted anything, its ``wake`` event (whose
        payload digest is ``wake_digest``), then its ``surface_fit`` and
        ``calibration_quotes`` events when it has them."""
        if self._laid_out is None or self._laid_out.wake_digest != wake_digest:
            rows = np.flatnonzero(self.has_fits | self.has_quotes)
            fits, quotes = self.has_fits[rows], self.has_quotes[rows]
            per_row = 1 + fits.astype(np.int64) + quotes
            start = np.concatenate(([0], np.cumsum(per_row)))
            row_ts = self.ts[rows]

            def kind(has: np.ndarray, after_wake: np.ndarray) -> _Kind:
                at = np.flatnonzero(has)
                return _Kind(np.concatenate(([0], np.cumsum(has))).tolist(),
                             start[at] + after_wake[at], row_ts[at], rows[at],
                             self.wake[rows[at]])

            fit, quote = kind(fits, np.ones(len(rows), np.int64)), kind(quotes, per_row - 1)
            code = np.zeros(start[-1], np.int64)
            code[fit.event], code[quote.event] = 1, 2
            digests = np.empty((start[-1], 32), np.uint8)
            digests[start[:-1]] = np.frombuffer(wake_digest, np.uint8)
            digests[fit.event] = self.fits_digest[fit.row]
            digests[quote.event] = self.quotes_digest[quote.row]
            self._laid_out = _Events(
                wake_digest, rows.tolist(), start, start.tolist(), row_ts, code,
                np.repeat(row_ts, per_row), np.repeat(self.cause_stream[rows], per_row),
                np.repeat(self.cause_seq[rows], per_row), digests.tobytes(), fit, quote)
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
        (values, _), *cols = self._surface_fits.arrays_of(f0, n, _SURFACE_COLUMNS[1:])
        # a fit's slices are of one model (the scheme fits every slice with its configured
        # model): one cell read, not the column's strings, and the parameters one block
        model = [self._surface_fits.value(f0, "model")] * n if n else []
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
