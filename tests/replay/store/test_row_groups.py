"""A Parquet file read one row group at a time: cells and values equal the file's rows."""

from __future__ import annotations

import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from replay.store.row_groups import RowGroups


def _table(n: int) -> pa.Table:
    return pa.table({
        "i": pa.array(range(n), pa.int64()),
        "x": pa.array([math.nan if i % 7 == 0 else i / 3 for i in range(n)], pa.float64()),
        "flag": pa.array([i % 2 == 0 for i in range(n)]),
        "s": pa.array([f"m{i % 3}" for i in range(n)]),
        "maybe": pa.array([None if i % 5 == 0 else float(i) for i in range(n)], pa.float64()),
        "xs": pa.array([[i / 7] * (i % 4) for i in range(n)], pa.list_(pa.float64())),
    })


@pytest.mark.parametrize("read_ahead", [True, False])
def test_cells_and_values_are_the_rows_across_groups(tmp_path, read_ahead):
    table = _table(1000)
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=128)
    groups = RowGroups(tmp_path / "t.parquet", keep=2, read_ahead=read_ahead)
    want = table.to_pylist()
    for row, n in [(0, 5), (120, 8), (130, 1), (500, 12), (3, 4), (896, 104)]:
        for c in table.column_names:
            got = groups.cells(row, n, c)
            ref = [w[c] for w in want[row:row + n]]
            assert [type(v) for v in got] == [type(v) for v in ref], c
            # repr keeps NaN equal to NaN and tells -0.0 from 0.0
            assert repr(got) == repr(ref), c
        for c in table.column_names:  # one cell, read without converting its column
            assert repr(groups.value(row, c)) == repr(want[row][c]), c
        # several columns at once are each column's arrays
        for got, c in zip(groups.arrays_of(row, n, ("x", "xs", "s")), ("x", "xs", "s")):
            ref = groups.arrays(row, n, c)
            assert repr(got) == repr(ref), c
        values, offsets = groups.arrays(row, n, "xs")  # a list column: values and offsets
        assert offsets[0] == 0 and len(offsets) == n + 1
        assert [values[a:b].tolist() for a, b in zip(offsets[:-1], offsets[1:])] == \
            [w["xs"] for w in want[row:row + n]]
        assert groups.arrays(row, n, "x").dtype == "float64"
    assert len(groups._held) <= 2


@pytest.mark.parametrize("read_ahead", [True, False])
def test_rows_spans_groups(tmp_path, read_ahead):
    table = _table(1000)
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=128)
    groups = RowGroups(tmp_path / "t.parquet", keep=2, read_ahead=read_ahead)
    for first, end in [(0, 1), (120, 140), (100, 500), (896, 1000)]:
        got = groups.rows(first, end)
        assert got.schema == table.schema
        # repr keeps NaN equal to NaN
        assert repr(got.to_pylist()) == repr(table.slice(first, end - first).to_pylist())


def test_the_next_group_is_read_ahead_and_its_error_raised_when_it_is_asked_for(tmp_path):
    pq.write_table(_table(1000), tmp_path / "t.parquet", row_group_size=128)
    groups = RowGroups(tmp_path / "t.parquet", keep=2)
    read, real = [], groups._read_group

    def read_group(g):
        read.append(g)
        if g == 3:
            raise OSError("group 3 is damaged")
        return real(g)

    groups._read_group = read_group
    assert groups.value(0, "i") == 0
    assert groups._ahead[0] == 1  # group 1 is read ahead, before row 128 is asked for
    groups._ahead[1].result()
    assert read == [0, 1]
    assert groups.value(200, "i") == 200  # and so on: group 2 is read ahead
    groups._ahead[1].result()
    assert read == [0, 1, 2]
    assert groups.value(300, "i") == 300  # group 3's read ahead failed: nothing said yet
    with pytest.raises(OSError, match="group 3 is damaged"):
        groups.value(400, "i")
    assert len(groups._held) <= 2


def test_a_reader_that_jumps_holds_one_read_ahead(tmp_path):
    pq.write_table(_table(1000), tmp_path / "t.parquet", row_group_size=128)
    groups = RowGroups(tmp_path / "t.parquet", keep=2)
    assert groups.value(0, "i") == 0 and groups._ahead[0] == 1
    assert groups.value(600, "i") == 600 and groups._ahead[0] == 5  # group 1's is dropped
    assert groups.value(300, "i") == 300 and groups._ahead[0] == 3


def test_a_value_one_group_holds_throughout_is_read_from_the_statistics(tmp_path):
    """A group whose statistics bound a column to one value (no nulls) serves it without
    reading the group; a column that varies, a float one (Parquet's bounds skip NaN) and a
    nested one are read."""
    n = 256
    table = pa.table({
        "model": pa.array(["svi"] * 128 + ["sabr"] * 127 + ["svi"]),
        "k": pa.array([7] * n, pa.int64()),
        "x": pa.array([1.0, math.nan] * (n // 2), pa.float64()),
        "xs": pa.array([[1.0]] * n, pa.list_(pa.float64())),
    })
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=128)
    groups = RowGroups(tmp_path / "t.parquet", read_ahead=False)
    read = []
    real = groups._read_group
    groups._read_group = lambda g: read.append(g) or real(g)
    assert [groups.value(r, "model") for r in (0, 127)] == ["svi", "svi"]
    assert groups.value(5, "k") == 7 and read == []  # group 0: both from its statistics
    assert groups.value(130, "model") == "sabr" and read == [1]  # group 1 holds two models
    assert groups.value(255, "model") == "svi"
    assert math.isnan(groups.value(1, "x")) and groups.value(0, "xs") == [1.0]
    assert read == [1, 0]
