"""The journal audit (:func:`replay.store.journal_file.recompute_hash`) covers what the hash
does not: every payload row belongs to an event of its kind, at that event's time; and an
append that fails takes no seq."""

from __future__ import annotations

import struct

import duckdb
import numpy as np
import pytest

from replay.engine.journal import Journal
from replay.errors import StoreError
from replay.store.journal_file import recompute_hash
from tests.replay.engine.test_journal import _write


@pytest.fixture
def journal(tmp_path):
    path = tmp_path / "j.duckdb"
    j = Journal(path)
    _write(j)
    j.close()
    assert recompute_hash(path) == j.hash_hex
    return path


@pytest.mark.parametrize("edit", [
    "UPDATE calibration_quotes SET ts = ts + 3600 WHERE seq = (SELECT min(seq) FROM "
    "calibration_quotes)",
    "INSERT INTO calibration_quotes SELECT * REPLACE (seq + 1 AS seq) FROM calibration_quotes "
    "LIMIT 1",
])
def test_a_payload_row_moved_in_time_or_under_another_event_fails_the_audit(journal, edit):
    """Before, both edits kept the audit's hash equal to the live one, while the analytics
    (which read each row's ts, and join rows to events by seq) saw other data."""
    with duckdb.connect(str(journal)) as con:
        con.execute(edit)
    with pytest.raises(StoreError, match="the journal was changed after it was written"):
        recompute_hash(journal)


def test_an_append_that_fails_takes_no_seq(tmp_path):
    """A cause that does not fit the event head is refused; before, the seq it was about to
    take was used up, leaving a gap before the next event's."""
    j = Journal(tmp_path / "j.duckdb")
    j.append("mark", 1, (2, 0), "a", {"instrument_id": 0, "price": 1.0, "value": np.nan})
    with pytest.raises(struct.error):
        j.append("mark", 2, (300, 5), "a", {"instrument_id": 0, "price": 1.0, "value": 2.0})
    assert j.append("mark", 3, (2, 1), "a", {"instrument_id": 0, "price": 1.0, "value": 3.0}) \
        == 1
    j.close()
    assert recompute_hash(tmp_path / "j.duckdb") == j.hash_hex
