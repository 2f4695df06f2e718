"""Bounded-memory CSV streaming shared by the Tardis and canonical adapters.

A file (plain or gzip, detected by its magic bytes, not its extension) is read in blocks of
whole lines (``BLOCK_BYTES`` at a time).  Each block is parsed by Arrow's C++ CSV reader with
every column as a string, so that the adapters decide what a malformed value means instead of
the parser aborting the file.  Lines Arrow could not map one-to-one onto a row are found
first, in Python, and become ``unparsable:`` rejects:

* a wrong number of fields, an empty line, a stray carriage return inside a line, bytes that
  are not UTF-8.

Quoting is switched off (Tardis never quotes, and an unbalanced quote in a corrupt line would
otherwise swallow the lines after it); a field wrapped in one pair of double quotes is
unwrapped.  Fields therefore cannot contain commas or line breaks.

Locators are 1-based physical line numbers; the header is line 1 and is not a row.  The raw
text of a block's lines stays available until the next block is read, which is how rejects
get their raw content without keeping the file in memory.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from replay.errors import IngestError
from replay.ingest.core import Reject

BLOCK_BYTES = 8 << 20
MAX_LINE_BYTES = 64 << 20
_FLOAT_RE = r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$|^[+-]?(?i:inf|infinity|nan)$"
_INT_RE = r"^[+-]?\d+$"


@dataclass
class CsvBlock:
    """One block of data lines: ``table`` holds the parsable lines (string columns, empty
    field = null), ``locs`` their line numbers, ``rejects`` the lines that were not."""

    n_read: int
    table: pa.Table
    locs: np.ndarray
    rejects: list[Reject] = field(default_factory=list)
    first_line: int = 0
    blob: bytes = b""
    _lines: list[bytes] | None = None

    def raw(self, locators: np.ndarray) -> list[str | None]:
        """Source text of the given line numbers (only valid while this block is current)."""
        if self._lines is None:
            self._lines = self.blob.split(b"\n")
        out = []
        for loc in np.asarray(locators, dtype=np.int64):
            i = int(loc) - self.first_line
            out.append(_text(self._lines[i]) if 0 <= i < self.n_read else None)
        return out


def _text(line: bytes) -> str:
    return line.rstrip(b"\r\n").decode("utf-8", errors="replace")


def open_binary(path: Path) -> io.BufferedIOBase:
    """Open ``path`` for binary reading, decompressing gzip transparently."""
    f = open(path, "rb")  # noqa: SIM115 -- the caller owns and closes the handle
    magic = f.read(2)
    f.seek(0)
    if magic == b"\x1f\x8b":
        return io.BufferedReader(gzip.GzipFile(fileobj=f), buffer_size=1 << 20)
    return f


class CsvReader:
    """Header plus a block iterator over one CSV file.  Use as a context manager."""

    def __init__(self, path: Path, target: str = "", block_bytes: int | None = None):
        self.path = Path(path)
        self.target = target
        self.block_bytes = block_bytes or BLOCK_BYTES
        try:
            self._f = open_binary(self.path)
            first = self._f.readline()
        except (OSError, EOFError, gzip.BadGzipFile) as e:
            raise IngestError(f"{self.path}: cannot read ({e})") from None
        #: no bytes at all (after decompression): a file without rows, like an empty file of
        #: any other format, rather than a CSV with a broken header
        self.empty = first == b""
        if self.empty:
            self.header: list[str] = []
            return
        if not first.strip():
            self._f.close()
            raise IngestError(f"{self.path}: empty file or empty first line; expected a CSV header")
        try:
            head = first.rstrip(b"\r\n").decode("utf-8-sig")
        except UnicodeDecodeError:
            self._f.close()
            raise IngestError(f"{self.path}: the header line is not UTF-8 text") from None
        self.header = [h.strip().strip('"').strip() for h in head.split(",")]
        dup = sorted({h for h in self.header if self.header.count(h) > 1})
        if dup:
            self._f.close()
            raise IngestError(f"{self.path}: header repeats column(s) {dup}")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self._f.close()

    def require(self, columns: list[str], what: str) -> None:
        if self.empty:
            return
        missing = [c for c in columns if c not in self.header]
        if missing:
            raise IngestError(f"{self.path}: not a {what} file; header lacks column(s) {missing} "
                              f"(header: {','.join(self.header)[:300]})")

    def blocks(self) -> Iterator[CsvBlock]:
        if self.empty:
            return
        line_no = 2  # the header was line 1
        carry = b""
        while True:
            data = self._f.read(self.block_bytes)
            if not data:
                if carry:
                    yield self._parse(carry + b"\n", line_no)
                return
            data = carry + data
            cut = data.rfind(b"\n")
            if cut < 0:
                if len(data) > MAX_LINE_BYTES:
                    raise IngestError(f"{self.path}: line {line_no} is longer than "
                                      f"{MAX_LINE_BYTES >> 20} MB; not a CSV file?")
                carry = data
                continue
            blob, carry = data[:cut + 1], data[cut + 1:]
            blk = self._parse(blob, line_no)
            line_no += blk.n_read
            yield blk

    def _parse(self, blob: bytes, first: int) -> CsvBlock:
        n = blob.count(b"\n")
        ncol = len(self.header)
        # Fast path: nothing a per-line check would reject, so Arrow maps lines 1:1 to rows.
        clean = ((b"\r" not in blob or blob.count(b"\r") == blob.count(b"\r\n"))
                 and b"\n\n" not in blob and b"\n\r\n" not in blob
                 and not blob.startswith((b"\n", b"\r\n")))
        if clean:
            table = self._arrow(blob)
            if table is not None and table.num_rows == n:
                return CsvBlock(n, table, np.arange(first, first + n, dtype=np.int64),
                                first_line=first, blob=blob)
        lines = blob.split(b"\n")[:n]
        good: list[int] = []
        rejects: list[Reject] = []
        for i, body in enumerate(lines):
            if body.endswith(b"\r"):
                body = body[:-1]
            why = ""
            if not body.strip():
                why = "unparsable: empty line"
            elif b"\r" in body:
                why = "unparsable: carriage return inside the line"
            elif body.count(b",") != ncol - 1:
                why = f"unparsable: {body.count(b',') + 1} fields, expected {ncol}"
            else:
                try:
                    body.decode("utf-8")
                except UnicodeDecodeError:
                    why = "unparsable: not UTF-8 text"
            if why:
                rejects.append(Reject(first + i, why, _text(body), self.target))
            else:
                good.append(i)
        if good:
            table = self._arrow(b"".join(lines[i].rstrip(b"\r") + b"\n" for i in good))
            if table is None or table.num_rows != len(good):
                raise IngestError(f"{self.path}: CSV block at line {first} could not be split "
                                  "into rows")
        else:
            table = pa.table({h: pa.array([], pa.string()) for h in self.header})
        locs = first + np.asarray(good, dtype=np.int64)
        return CsvBlock(n, table, locs, rejects, first, blob, lines)

    def _arrow(self, blob: bytes) -> pa.Table | None:
        """Parse a block with Arrow; ``None`` when any line does not fit (the caller then
        checks line by line)."""
        try:
            t = pacsv.read_csv(
                io.BytesIO(blob),
                read_options=pacsv.ReadOptions(column_names=self.header, use_threads=False,
                                               block_size=max(len(blob) + 1, 1 << 16)),
                parse_options=pacsv.ParseOptions(quote_char=False, newlines_in_values=False),
                convert_options=pacsv.ConvertOptions(
                    column_types={h: pa.string() for h in self.header},
                    strings_can_be_null=True, null_values=[""]))
        except (pa.ArrowInvalid, UnicodeDecodeError):
            return None
        if b'"' in blob:
            t = pa.table([_unquote(c) for c in t.columns], names=t.column_names)
        return t


def _unquote(col: pa.ChunkedArray) -> pa.ChunkedArray:
    un = pc.replace_substring_regex(col, r'^"(.*)"$', r"\1")
    return pc.if_else(pc.equal(un, ""), pa.scalar(None, pa.string()), un)


def parse_float(col: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Strings to float64.  Empty and NaN become null; returns (values, unparsable mask)."""
    col = _combine(col)
    try:
        vals = pc.cast(col, pa.float64())
        bad = np.zeros(len(col), dtype=bool)
    except pa.ArrowInvalid:
        ok = pc.fill_null(pc.match_substring_regex(col, _FLOAT_RE), True)
        bad = ~ok.to_numpy(zero_copy_only=False)
        masked = pc.if_else(ok, col, pa.scalar(None, pa.string()))
        try:
            vals = pc.cast(masked, pa.float64())
        except pa.ArrowInvalid:  # the regex accepted something Arrow does not: go value by value
            vals, bad = _one_by_one(masked, pa.float64(), bad)
    vals = pc.if_else(pc.is_nan(vals), pa.scalar(None, pa.float64()), vals)
    return vals, bad


def parse_int(col: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Strings of decimal digits to int64.  Returns (values, unparsable mask, overflow mask);
    overflowing values are null in ``values`` and flagged separately because they are well
    formed numbers that are merely out of any plausible range."""
    col = _combine(col)
    n = len(col)
    try:
        return pc.cast(col, pa.int64()), np.zeros(n, bool), np.zeros(n, bool)
    except pa.ArrowInvalid:
        pass
    ok = pc.fill_null(pc.match_substring_regex(col, _INT_RE), True)
    bad = ~ok.to_numpy(zero_copy_only=False)
    masked = pc.if_else(ok, col, pa.scalar(None, pa.string()))
    vals, over = _one_by_one(masked, pa.int64(), np.zeros(n, bool))
    return vals, bad, over & ~bad


def _one_by_one(col: pa.Array, typ: pa.DataType, bad: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    bad = bad.copy()
    out = []
    for i, v in enumerate(col.to_pylist()):
        if v is None:
            out.append(None)
            continue
        try:
            out.append(pc.cast(pa.array([v]), typ)[0].as_py())
        except (pa.ArrowInvalid, OverflowError):
            out.append(None)
            bad[i] = True
    return pa.array(out, typ), bad


def _combine(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
