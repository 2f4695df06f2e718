"""A Parquet file read one row group at a time, for readers that walk it forward: a replayed
surface stream holds a day of fits, and only the groups around the replay position are in
memory."""

from __future__ import annotations

import bisect
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


class RowGroups:
    """A Parquet file read one row group at a time, the last ``keep`` of them held: rows are
    addressed by their index in the whole file."""

    def __init__(self, path: Path, columns: list[str] | None = None, keep: int = 2):
        self.file = pq.ParquetFile(path)
        self.columns, self.keep = columns, keep
        sizes = [self.file.metadata.row_group(g).num_rows
                 for g in range(self.file.num_row_groups)]
        self.start = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64))).tolist()
        self._held: dict[int, pa.Table] = {}
        self._lists: dict[tuple[int, str], list] = {}
        self._last = (0, 0, -1)  # (first row, end row, group) of the group last located

    def _locate(self, row: int) -> tuple[int, pa.Table, int]:
        """The group holding ``row``, its table and the row's index in it; the replay walks
        forward, so the group last asked for nearly always holds it."""
        lo, hi, g = self._last
        if not lo <= row < hi:
            g = bisect.bisect_right(self.start, row) - 1
            lo, hi = self.start[g], self.start[g + 1]
            self._last = (lo, hi, g)
        table = self._held.get(g)
        if table is None:
            table = self._held[g] = self.file.read_row_group(g, columns=self.columns)
            while len(self._held) > self.keep:
                old = next(iter(self._held))
                del self._held[old]
                self._lists = {k: v for k, v in self._lists.items() if k[0] != old}
        return g, table, row - lo

    def locate(self, row: int) -> tuple[pa.Table, int]:
        """The row group holding ``row`` and the row's index in it."""
        _, table, j = self._locate(row)
        return table, j

    def value(self, row: int, column: str):
        """One cell as a Python object (each held group's column converted once)."""
        g, table, j = self._locate(row)
        values = self._lists.get((g, column))
        if values is None:
            values = self._lists[g, column] = table.column(column).to_pylist()
        return values[j]
