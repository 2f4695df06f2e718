from __future__ import annotations

import hashlib
import math
import struct

import duckdb
import numpy as np
import pytest

from replay.engine.journal import (
    H0,
    KINDS,
    EventKind,
    Journal,
    canonical_bytes,
    recompute_hash,
    register_kind,
)


def test_canonical_bytes_layout():
    k = KINDS["mark"]
    got = canonical_bytes(7, 1_000, k, 2, 41, "toy", {"instrument_id": [3], "price": [1.5],
                                                       "value": [float("nan")]})
    want = (struct.pack("<qqbq", 7, 1_000, 2, 41) + struct.pack("<I", 4) + b"mark"
            + struct.pack("<I", 3) + b"toy" + struct.pack("<I", 1) + struct.pack("<q", 3)
            + struct.pack("<d", 1.5) + struct.pack("<Q", 0x7FF8000000000000))
    assert got == want


def test_nan_payloads_are_canonical_but_signed_zero_is_not():
    k = KINDS["mark"]
    odd_nan = np.frombuffer(struct.pack("<Q", 0x7FF0000000000123), "<f8")[0]
    assert math.isnan(odd_nan)
    a = canonical_bytes(0, 0, k, -1, -1, "", {"instrument_id": [0], "price": [odd_nan], "value": [0.0]})
    b = canonical_bytes(0, 0, k, -1, -1, "", {"instrument_id": [0], "price": [np.nan], "value": [0.0]})
    c = canonical_bytes(0, 0, k, -1, -1, "", {"instrument_id": [0], "price": [np.nan], "value": [-0.0]})
    assert a == b and b != c


def _write(j: Journal) -> None:
    for i in range(20):
        j.append("mark", 100 + i, (2, i), "a", {"instrument_id": i % 3, "price": i * 0.5,
                                                "value": np.nan if i % 4 == 0 else -i})
        if i % 5 == 0:
            n = 1 + i % 3
            j.append("calibration_quotes", 100 + i, (4, i), "cal", {
                "instrument": [f"BTC-{k}" for k in range(n)], "expiry": 10**18, "strike": np.linspace(8e4, 1e5, n),
                "forward": 9e4, "bid_iv": np.full(n, 0.5), "ask_iv": np.full(n, 0.52),
                "mid_iv": np.full(n, 0.51), "fit_iv": np.full(n, np.nan),
                "venue_mark_iv": np.full(n, 0.505)})


def test_running_hash_chain_flush_independence_and_audit(tmp_path):
    hashes, tables = [], []
    for flush_rows in (1, 7, 10_000):
        path = tmp_path / f"j{flush_rows}.duckdb"
        j = Journal(path, flush_rows=flush_rows)
        _write(j)
        j.close()
        hashes.append(j.hash_hex)
        assert recompute_hash(path) == j.hash_hex  # the stored rows carry the whole hash
        con = duckdb.connect(str(path), read_only=True)
        tables.append((con.sql("SELECT * FROM journal ORDER BY seq").fetchall(),
                       con.sql("SELECT * FROM calibration_quotes ORDER BY seq, rowid").fetchall()))
        con.close()
    assert len(set(hashes)) == 1
    assert tables[0][0] == tables[1][0] == tables[2][0]
    assert len(tables[0][1]) == 1 + 2 + 3 + 1  # multi-row payloads, one journal row each
    assert len(tables[0][0]) == 24
    # the chain by hand for the first event
    k = KINDS["mark"]
    first = canonical_bytes(0, 100, k, 2, 0, "a", {"instrument_id": [0], "price": [0.0],
                                                   "value": [np.nan]})
    h1 = hashlib.blake2b(H0 + first, digest_size=32).digest()
    j = Journal(tmp_path / "one.duckdb")
    j.append("mark", 100, (2, 0), "a", {"instrument_id": 0, "price": 0.0, "value": np.nan})
    assert j.hash == h1
    j.close()


def test_contract_tables_exist_and_bad_appends_fail(tmp_path):
    j = Journal(tmp_path / "j.duckdb")
    with pytest.raises(KeyError):
        j.append("nope", 0, (-1, -1))
    with pytest.raises(ValueError):
        j.append("mark", 0, (-1, -1), rows={"instrument_id": 1})
    j.close()
    con = duckdb.connect(str(tmp_path / "j.duckdb"), read_only=True)
    names = {r[0] for r in con.sql("SELECT table_name FROM information_schema.tables").fetchall()}
    cols = [r[0] for r in con.sql("DESCRIBE calibration_quotes").fetchall()]
    con.close()
    assert {"journal", "fills", "surface_fits", "calibration_quotes", "pnl"} <= names
    assert cols[1:] == ["ts", "instrument", "expiry", "strike", "forward", "bid_iv", "ask_iv",
                        "mid_iv", "fit_iv", "venue_mark_iv"]


def test_kinds_declared_later_get_their_table(tmp_path):
    kind = register_kind(EventKind("test_late_kind", "test_late", (("x", "float"), ("tag", "str"))))
    assert register_kind(kind) is kind  # idempotent
    with pytest.raises(ValueError):
        register_kind(EventKind("test_late_kind", "test_late", (("x", "int"),)))
    with pytest.raises(ValueError):
        register_kind(EventKind("other", "test_late", ()))
    j = Journal(tmp_path / "j.duckdb")
    j.append("test_late_kind", 5, (-1, -1), rows={"x": 1.25, "tag": None})
    j.close()
    assert recompute_hash(tmp_path / "j.duckdb") == j.hash_hex
    KINDS.pop("test_late_kind")
