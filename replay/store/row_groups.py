"""A Parquet file read one row group at a time, for readers that walk it forward: a replayed
surface stream holds a day of fits, and only the groups around the replay position are in
memory.  The group after the one last read is read ahead on a thread of the file's own
(Arrow decodes without the GIL), so a reader that walks on finds it read: a group of a
day's fits takes about 10 ms to read, in the replay's path otherwise."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from replay.errors import StoreError


class RowRange(NamedTuple):
    """Rows ``[first, end)`` of a :class:`RowGroups` file, read when :meth:`table` is called:
    a writer that holds ranges until it writes them can join adjacent ones
    (:meth:`follows`) and read each run as a few large slices instead of many small ones."""

    file: RowGroups
    first: int
    end: int

    def table(self) -> pa.Table:
        return self.file.rows(self.first, self.end)

    def follows(self, other: RowRange) -> bool:
        """Whether this range starts where ``other`` ends, in the same file."""
        return self.file is other.file and self.first == other.end


class RowGroups:
    """A Parquet file read one row group at a time, the last ``keep`` of them held and, with
    ``read_ahead``, the next one read on a thread (every read of the file is made there, one
    at a time): rows are addressed by their index in the whole file."""

    def __init__(self, path: Path, columns: list[str] | None = None, keep: int = 2,
                 read_ahead: bool = True, damaged: str = ""):
        self.path = Path(path)
        # pages written with checksums are verified as they are read (a file damaged in
        # place, its size and footer intact, is refused, not read as other values)
        self.file = pq.ParquetFile(path, page_checksum_verification=True)
        self.damaged = damaged  # what a StoreError on a damaged page adds (how to mend it)
        self.columns, self.keep = columns, keep
        sizes = [self.file.metadata.row_group(g).num_rows
                 for g in range(self.file.num_row_groups)]
        self.start = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64))).tolist()
        # the thread ends when the reader is collected (the pool's own weak reference)
        self._pool = ThreadPoolExecutor(1, "volreplay-rowgroups") if read_ahead else None
        self._ahead: tuple[int, Future] | None = None  # the group being read ahead
        self._held: dict[int, pa.Table] = {}
        # (group, column): the column converted; (group, column, "cells"): dictionary-encoded
        self._converted: dict[tuple, Any] = {}
        self._last = (0, 0, -1)  # (first row, end row, group) of the group last located
        self._constants: dict[tuple[int, str], Any] = {}  # (group, column): _constant's answer
        schema = self.file.schema
        self._leaves = {schema.column(i).path: i for i in range(len(schema))}

    def _group_of(self, row: int) -> tuple[int, int]:
        """The group holding ``row`` and the row's index in it; the replay walks forward, so
        the group last asked for nearly always holds it."""
        lo, hi, g = self._last
        if not lo <= row < hi:
            g = bisect.bisect_right(self.start, row) - 1
            lo, hi = self.start[g], self.start[g + 1]
            self._last = (lo, hi, g)
        return g, row - lo

    def _locate(self, row: int) -> tuple[int, pa.Table, int]:
        """The group holding ``row``, its table (read if it is not held) and the row's index
        in it."""
        g, j = self._group_of(row)
        table = self._held.get(g)
        if table is None:
            table = self._held[g] = self._read(g)
            while len(self._held) > self.keep:
                old = next(iter(self._held))
                del self._held[old]
                self._converted = {k: v for k, v in self._converted.items() if k[0] != old}
            if self._pool is not None and g + 1 < self.file.num_row_groups \
                    and g + 1 not in self._held:
                self._ahead = (g + 1, self._pool.submit(self._read_group, g + 1))
        return g, table, j

    def _constant(self, g: int, column: str) -> Any:
        """The one value every row of group ``g`` holds in ``column`` when the file's
        statistics bound it so (no nulls, its lower and upper bounds equal: pyarrow, which
        writes the streams, records the values themselves, never truncated ones), else
        :data:`_VARIES`.  Floats are left out: Parquet's bounds skip NaNs."""
        key = (g, column)
        got = self._constants.get(key, None)
        if got is None:
            got = _VARIES
            i = self._leaves.get(column)  # a flat column's chunk (a nested one has several)
            st = None if i is None else self.file.metadata.row_group(g).column(i).statistics
            if (st is not None and st.has_min_max and st.has_null_count and st.null_count == 0
                    and st.physical_type not in ("FLOAT", "DOUBLE") and st.min == st.max):
                got = st.min
            self._constants[key] = got
        return got

    def _read(self, g: int) -> pa.Table:
        """Group ``g``: the read ahead if it is of ``g`` (its error, if it failed, is raised
        here), else read now; a read ahead of another group is dropped, so a reader that
        jumps about holds no more than one."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == g:
            return ahead[1].result()
        if self._pool is None:
            return self._read_group(g)
        return self._pool.submit(self._read_group, g).result()

    def _read_group(self, g: int) -> pa.Table:
        try:
            return self.file.read_row_group(g, columns=self.columns)
        except (OSError, pa.ArrowException) as e:
            raise StoreError(f"{self.path} is damaged ({str(e).splitlines()[0]})"
                             f"{self.damaged}") from None

    def locate(self, row: int) -> tuple[pa.Table, int]:
        """The row group holding ``row`` and the row's index in it."""
        _, table, j = self._locate(row)
        return table, j

    def rows(self, first: int, end: int) -> pa.Table:
        """Rows ``[first, end)`` as slices of the groups holding them."""
        parts = []
        while first < end:
            _, table, j = self._locate(first)
            n = min(end - first, table.num_rows - j)
            parts.append(table.slice(j, n))
            first += n
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)

    def value(self, row: int, column: str):
        """One cell as a Python object (as :meth:`cells` gives it).  The columns read a cell
        at a time (a fit's model, a wake's violations) repeat a few values: each held group's
        column is dictionary-encoded once, and a cell is then two lookups instead of an Arrow
        scalar made and converted (about ten microseconds in a replay)."""
        const = self._constant(self._group_of(row)[0], column)
        if const is not _VARIES:  # one value in the whole group: its rows need not be read
            return const
        g, table, j = self._locate(row)
        coded = self._converted.get((g, column, "cells"))
        if coded is None:
            col = table.column(column)
            if pa.types.is_nested(col.type):  # no dictionary encoding: one scalar
                return col[j].as_py()
            enc = col.combine_chunks().dictionary_encode()
            values = enc.dictionary.to_pylist() + [None]  # a null's code: the last
            codes = enc.indices.fill_null(len(values) - 1).to_numpy(zero_copy_only=False)
            coded = self._converted[g, column, "cells"] = (codes, values)
        codes, values = coded
        return values[codes[j]]

    def cells(self, row: int, n: int, column: str) -> list:
        """The ``n`` cells from ``row`` on (one group holds them all) as Python objects."""
        conv = self.arrays(row, n, column)
        if isinstance(conv, tuple):
            values, offsets = conv
            ends = offsets.tolist()
            return [values[a:b].tolist() for a, b in zip(ends[:-1], ends[1:])]
        return conv.tolist() if isinstance(conv, np.ndarray) else conv

    def arrays(self, row: int, n: int, column: str
               ) -> np.ndarray | tuple[np.ndarray, np.ndarray] | list:
        """The ``n`` cells from ``row`` on (one group holds them all) as a numpy array
        (numbers without nulls), the flat values of ``n`` lists of numbers and their ``n + 1``
        offsets into them (from 0), or else a list of Python objects.

        Each held group's column is converted once, numbers and lists of numbers through
        numpy: a group's worth of Python objects would cost more memory than its table.
        """
        return self.arrays_of(row, n, (column,))[0]

    def arrays_of(self, row: int, n: int, columns: Sequence[str]) -> list:
        """:meth:`arrays` of each of ``columns``, their group located once."""
        g, table, j = self._locate(row)
        out: list = []
        for column in columns:
            conv = self._converted.get((g, column))
            if conv is None:
                conv = self._converted[g, column] = _compact(table.column(column))
            if isinstance(conv, tuple):
                values, offsets = conv
                a = offsets[j]
                out.append((values[a:offsets[j + n]], offsets[j:j + n + 1] - a))
            else:
                out.append(conv[j:j + n])
        return out


#: :meth:`RowGroups._constant`'s answer for a column whose rows hold several values
_VARIES = object()


def _compact(column: pa.ChunkedArray) -> np.ndarray | tuple[np.ndarray, np.ndarray] | list:
    """A column as a numpy array (numbers without nulls), a flat numpy array and its offsets
    (lists of numbers without nulls), or else a list of Python objects."""
    arr = column.combine_chunks()
    typ = arr.type
    if arr.null_count == 0 and (pa.types.is_integer(typ) or pa.types.is_floating(typ)
                                or pa.types.is_boolean(typ)):
        return arr.to_numpy(zero_copy_only=False)
    if (arr.null_count == 0 and pa.types.is_list(typ) and arr.values.null_count == 0
            and pa.types.is_floating(typ.value_type)):
        return arr.values.to_numpy(zero_copy_only=False), arr.offsets.to_numpy()
    return arr.to_pylist()
