from __future__ import annotations

import hashlib
import math
import struct

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from replay.engine.journal import Journal
from replay.model.events import (
    H0,
    KINDS,
    TYPES,
    EventKind,
    _canon_column,
    canonical_bytes,
    columns_of,
    payload_bytes,
    payload_digest,
    register_kind,
)
from replay.store.journal_file import recompute_hash


def test_canonical_bytes_layout():
    k = KINDS["mark"]
    got = canonical_bytes(7, 1_000, k, 2, 41, "toy", {"instrument_id": [3], "price": [1.5],
                                                       "value": [float("nan")]})
    payload = (struct.pack("<I", 1) + struct.pack("<q", 3) + struct.pack("<d", 1.5)
               + struct.pack("<Q", 0x7FF8000000000000))
    want = (struct.pack("<qqbq", 7, 1_000, 2, 41) + struct.pack("<I", 4) + b"mark"
            + struct.pack("<I", 3) + b"toy" + hashlib.blake2b(payload, digest_size=32).digest())
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
    for flush_rows, commit_rows in ((1, 1), (7, 20), (10_000, 1 << 20)):
        path = tmp_path / f"j{flush_rows}.duckdb"
        j = Journal(path, flush_rows=flush_rows, commit_rows=commit_rows)
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


def test_a_journal_without_a_path_keeps_the_hash_and_stores_nothing(tmp_path):
    """``Journal(None)`` chains the same hash and seqs as a stored journal, through every
    flush, and writes no file; it cannot be cut back to a snapshot."""
    wake = KINDS["wake"]
    rows = {"consumer": ["cal"] * 2, "reason": ["deadline"] * 2}
    digest = payload_digest(wake, columns_of(wake, {"consumer": "cal", "reason": "deadline"})[1])
    journals = Journal(tmp_path / "j.duckdb", flush_rows=3), Journal(None, flush_rows=3)
    for j in journals:
        _write(j)
        seq = j.append_many([("wake", "engine")], np.zeros(2, np.int64), np.array([200, 201]),
                            np.array([2, 2]), np.array([30, 31]), digest * 2)
        j.add_rows("wake", seq, np.array([200, 201]), rows)
        j.flush()
    stored, bare = journals
    stored.close()
    bare.close()
    assert bare.hash == stored.hash and bare.seq == stored.seq
    assert bare.path is None and list(tmp_path.iterdir()) == [tmp_path / "j.duckdb"]
    with pytest.raises(ValueError, match="cut back"):
        bare.truncate_after(0, H0)


def test_append_many_writes_what_append_writes(tmp_path):
    """A run of recorded events chained by ``append_many``, their rows added by ``add_rows``
    (as a replayed surface stream splices them), gives the journal and hash that appending
    them one by one gives."""
    k = KINDS["calibration_quotes"]
    events = []  # (kind, ts, cause, source, rows)
    for i in range(9):
        n = i % 3  # a fit with no quote rows too
        events.append(("wake", 100 + i, (2, i), "engine",
                       {"consumer": "cal", "reason": "deadline"}))
        events.append(("calibration_quotes", 100 + i, (2, i), "cal", {
            "instrument": [f"BTC-{j}" for j in range(n)], "expiry": [10**18 + i] * n,
            "strike": list(np.linspace(8e4, 1e5, n)), "forward": [9e4] * n,
            "bid_iv": [0.5] * n, "ask_iv": [0.52] * n, "mid_iv": [0.51] * n,
            "fit_iv": [np.nan] * n, "venue_mark_iv": [0.505 + i] * n}))
    one = Journal(tmp_path / "one.duckdb", flush_rows=5)
    one.append("mark", 50, (0, 0), "m", {"instrument_id": 1, "price": 2.0, "value": 3.0})
    for kind, ts, cause, src, rows in events:
        one.append(kind, ts, cause, src, rows)
    one.close()

    many = Journal(tmp_path / "many.duckdb", flush_rows=5)
    many.append("mark", 50, (0, 0), "m", {"instrument_id": 1, "price": 2.0, "value": 3.0})
    kinds = [("wake", "engine"), ("calibration_quotes", "cal")]
    code = np.array([int(e[0] != "wake") for e in events])
    digests = b"".join(payload_digest(KINDS[e[0]], columns_of(KINDS[e[0]], e[4])[1])
                       for e in events)
    seq = many.append_many(kinds, code, np.array([e[1] for e in events]),
                           np.array([e[2][0] for e in events]), np.array([e[2][1] for e in events]),
                           digests)
    assert seq.tolist() == list(range(1, 19))
    many.add_rows("wake", seq[::2], np.arange(100, 109), {"consumer": ["cal"] * 9,
                                                          "reason": ["deadline"] * 9})
    quotes = [e for e in events if e[0] == "calibration_quotes"]
    lens = [len(e[4]["strike"]) for e in quotes]
    table = pa.table({f: sum((e[4][f] for e in quotes), []) for f, _ in k.fields},
                     schema=pa.schema([(f, TYPES[t][1]) for f, t in k.fields]))
    many.add_rows(k, np.repeat(seq[1::2], lens), np.repeat(np.arange(100, 109), lens), table)
    many.close()

    assert many.hash == one.hash and recompute_hash(tmp_path / "many.duckdb") == one.hash_hex
    got = [duckdb.connect(str(tmp_path / f"{n}.duckdb"), read_only=True) for n in ("one", "many")]
    for t in ("journal", "wakes", "calibration_quotes", "marks"):
        a, b = (c.sql(f"SELECT * FROM {t} ORDER BY seq, rowid").fetchall() for c in got)
        assert repr(a) == repr(b) and len(a), t  # repr: NaN == NaN
    for c in got:
        c.close()


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


def test_a_one_row_payload_has_the_bytes_of_its_columns():
    """The one-row fast path of :func:`payload_bytes` writes what the column path writes, for
    every declared type and the values callers pass: numpy and Python scalars, NaNs of any
    payload or sign, signed zeros, infinities, None strings and bools."""
    kind = register_kind(EventKind("test_one_row", "test_one_row", (
        ("i", "int"), ("x", "float"), ("s", "str"), ("b", "bool"), ("xs", "floats"),
        ("skip", "float")), unhashed=("skip",)))
    odd_nan = np.frombuffer(struct.pack("<Q", 0xFFF0000000000123), "<f8")[0]
    ints = [0, -3, 2**62, np.int64(7), np.int32(-2), True]
    floats = [1.5, -0.0, 0.0, math.inf, -math.inf, math.nan, odd_nan, np.float64(-2.25),
              np.float32(0.1), 3, np.nan, -np.float64(np.nan)]
    strs = ["", "a", "é", None, np.str_("np")]
    bools = [True, False, None, np.bool_(True), np.bool_(False), 0, 2]
    lists = [[], [1.0, math.nan], np.array([odd_nan, -0.0])]
    rng = np.random.default_rng(0)
    for _ in range(400):
        row = {"i": ints[rng.integers(len(ints))], "x": floats[rng.integers(len(floats))],
               "s": strs[rng.integers(len(strs))], "b": bools[rng.integers(len(bools))],
               "xs": lists[rng.integers(len(lists))], "skip": 1.0}
        n, cols = columns_of(kind, row)
        want = struct.pack("<I", 1) + b"".join(_canon_column(cols[f], t) for f, t in kind.fields
                                                if f != "skip")
        assert n == 1 and payload_bytes(kind, cols) == want, row
    KINDS.pop("test_one_row")


def test_a_float_list_field_is_a_column_or_a_broadcast_row(tmp_path):
    """``floats`` fields (a fit's parameters): a list of lists is one list per row, a flat list
    one row's list repeated; lists of different lengths hash apart and round-trip."""
    kind = register_kind(EventKind("test_floats", "test_floats",
                                   (("name", "str"), ("xs", "floats"))))
    assert columns_of(kind, {"name": ["a", "b"], "xs": [[1.0, 2.0], []]}) == \
        (2, {"name": ["a", "b"], "xs": [[1.0, 2.0], []]})
    assert columns_of(kind, {"name": ["a", "b"], "xs": [1.0, 2.0]}) == \
        (2, {"name": ["a", "b"], "xs": [[1.0, 2.0], [1.0, 2.0]]})
    split = {"name": ["a", "a"], "xs": [[1.0], [2.0]]}
    assert payload_bytes(kind, split) != payload_bytes(kind, {**split, "xs": [[1.0, 2.0], []]})
    j = Journal(tmp_path / "j.duckdb")
    j.append("test_floats", 5, (-1, -1), "t", {"name": ["a", "b"], "xs": [[1.0, math.nan], []]})
    j.close()
    assert recompute_hash(tmp_path / "j.duckdb") == j.hash_hex


def test_rows_are_durable_at_each_commit_and_flush(tmp_path):
    """Rows go to the database every ``flush_rows`` and commit every ``commit_rows`` (and at
    every flush): a process that dies between commits leaves the journal as of the last one,
    which is all a resume from a snapshot (taken right after a flush) reads."""
    path = tmp_path / "j.duckdb"
    # a mark is two rows (its journal row and its payload row): a write every 2 marks, a
    # commit every 3 writes
    j = Journal(path, flush_rows=4, commit_rows=12)

    def mark(i: int) -> None:
        j.append("mark", i, (2, i), "a", {"instrument_id": 0, "price": 1.0, "value": 2.0})

    def stored() -> int:
        with duckdb.connect(str(path), read_only=True) as con:
            return con.sql("SELECT count(*) FROM marks").fetchall()[0][0]

    for i in range(5):  # two writes, no commit
        mark(i)
    j.sync()
    j.con.close()  # the process dies: the open transaction is rolled back
    assert stored() == 0
    j = Journal(path, flush_rows=4, commit_rows=12)
    for i in range(7):  # the third write commits 6 marks
        mark(i)
    j.sync()
    j.con.close()
    assert stored() == 6
    j = Journal(path, flush_rows=4, commit_rows=12)
    mark(0)
    j.flush()
    j.con.close()
    assert stored() == 7


def test_the_smallest_kinds_wait_for_a_later_write_and_every_commit(tmp_path):
    """A write leaves the kinds with the fewest rows buffered (up to half a flush) for a
    later one, so a kind of a few rows a day is not an INSERT at every write; a commit (and a
    flush) writes every kind."""
    j = Journal(tmp_path / "j.duckdb", flush_rows=64)

    def count(table: str) -> int:
        j.sync()  # the journal's own connection sees its open transaction
        return j.con.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0]

    for i in range(30):
        if i % 10 == 0:
            j.append("wake", i, (2, i), "engine", {"consumer": "c", "reason": "deadline"})
        j.append("mark", i, (2, i), "a", {"instrument_id": 0, "price": 1.0, "value": 2.0})
    # the write at 64 rows (3 wakes and 29 marks, each a journal row and a payload row)
    # leaves the wakes' 3 payload rows buffered
    assert count("journal") == 32 and count("marks") == 29 and count("wakes") == 0
    j.flush()
    assert count("marks") == 30 and count("wakes") == 3
    j.close()
    assert recompute_hash(tmp_path / "j.duckdb") == j.hash_hex


def test_costs_count_every_row_written_and_the_writers_time(tmp_path):
    """``costs()``: the rows handed to the writer (journal rows and payload rows alike, the
    kinds held back for a later write counted when written), its seconds and the wait."""
    j = Journal(tmp_path / "j.duckdb", flush_rows=64)
    assert j.costs() == {"rows": 0, "writer_seconds": 0.0, "wait_seconds": 0.0}
    for i in range(40):
        if i % 10 == 0:
            j.append("wake", i, (2, i), "engine", {"consumer": "c", "reason": "deadline"})
        j.append("mark", i, (2, i), "a", {"instrument_id": 0, "price": 1.0, "value": 2.0})
    j.sync()
    assert j.costs()["rows"] == 32 + 29  # the first write: the wakes' payload rows wait
    j.close()
    costs = j.costs()
    assert costs["rows"] == 2 * (40 + 4)
    with duckdb.connect(str(tmp_path / "j.duckdb"), read_only=True) as con:
        assert sum(con.sql(f"SELECT count(*) FROM {t}").fetchall()[0][0]
                   for t in ("journal", "marks", "wakes")) == costs["rows"]
    assert costs["writer_seconds"] > 0 and 0 <= costs["wait_seconds"]


def test_a_failed_write_surfaces_at_the_next_flush(tmp_path):
    """Inserts run on the writer thread: what fails there is raised to the caller, at its
    next write or at the flush at the latest (which one depends on when the thread ran), and
    stays the error raised (at close too): the writes behind it are not run, where they
    would fail on its aborted transaction instead."""
    j = Journal(tmp_path / "j.duckdb", flush_rows=1)
    j.con.execute("DROP TABLE marks").fetchall()  # the writer's table is gone
    j.append("mark", 0, (-1, -1), "a", {"instrument_id": 0, "price": 1.0, "value": 2.0})
    with pytest.raises(duckdb.CatalogException):
        j.append("wake", 1, (-1, -1), "engine", {"consumer": "a", "reason": "deadline"})
        j.flush()
    with pytest.raises(duckdb.CatalogException):
        j.close()


def test_the_writer_runs_nothing_after_a_failed_write():
    from replay.store.ordered_writer import OrderedWriter

    w, ran = OrderedWriter("t", in_flight=4), []
    w.submit(ran.append, 1)
    w.submit(lambda: 1 / 0)
    w.submit(ran.append, 2)
    for call in (w.sync, lambda: w.submit(ran.append, 3)):
        with pytest.raises(ZeroDivisionError):
            call()
    w.shutdown()
    assert ran == [1]


def test_a_journal_records_its_hash_version_and_refuses_another(tmp_path):
    """A journal says which hash definition it was written under; one written under another
    is neither audited nor appended to (its stored hash is not comparable), and one that
    records none (older journals) is audited under the current definition."""
    from replay.errors import StoreError
    from replay.model.events import HASH_VERSION

    path = tmp_path / "j.duckdb"
    j = Journal(path)
    _write(j)
    j.close()
    with duckdb.connect(str(path)) as con:
        assert con.execute("SELECT value FROM journal_meta WHERE key = 'kind:mark'").fetchall() \
            == [(KINDS["mark"].declaration(),)]  # each kind it holds, declared
        assert con.execute("SELECT value FROM journal_meta WHERE key = 'hash_version'"
                           ).fetchall() == [(str(HASH_VERSION),)]
        con.execute("UPDATE journal_meta SET value = '1' WHERE key = 'hash_version'").fetchall()
    with pytest.raises(StoreError, match="hashed under definition 1"):
        recompute_hash(path)
    with pytest.raises(StoreError, match="definition 1"):
        Journal(path)
    with duckdb.connect(str(path)) as con:
        con.execute("DROP TABLE journal_meta").fetchall()
    assert recompute_hash(path) == j.hash_hex


def test_copy_table_copies_a_parquet_file_on_the_writer(tmp_path):
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1, 2, 3], "y": ["a", "b", None]}), tmp_path / "t.parquet")
    j = Journal(tmp_path / "j.duckdb")
    _write(j)
    j.copy_table("derived", tmp_path / "t.parquet")
    with pytest.raises(ValueError, match="journal table"):
        j.copy_table("fills", tmp_path / "t.parquet")
    j.close()
    assert recompute_hash(tmp_path / "j.duckdb") == j.hash_hex  # the events are untouched
    with duckdb.connect(str(tmp_path / "j.duckdb"), read_only=True) as con:
        assert con.execute("SELECT * FROM derived").fetchall() == [(1, "a"), (2, "b"), (3, None)]


def test_float_lists_have_their_layout_whether_of_one_length_or_ragged():
    """Each list is its uint32 length then its floats (NaN canonical), one list after another;
    lists of one length take one array pass, which must give the same bytes."""
    odd_nan = np.frombuffer(struct.pack("<Q", 0x7FF0000000000123), "<f8")[0]

    def by_hand(vals):
        out = b""
        for x in vals:
            out += struct.pack("<I", len(x))
            for v in x:
                out += struct.pack("<Q", 0x7FF8000000000000) if v != v else struct.pack("<d", v)
        return out

    rng = np.random.default_rng(3)
    for vals in ([list(rng.standard_normal(5)) for _ in range(12)],
                 [[1.0, odd_nan, -0.0, math.inf, 2.5]] * 3, [np.array([1.0, np.nan])] * 2,
                 [[1.0], [2.0, 3.0], []], [[], []], [], [(1, 2, 3)]):
        assert _canon_column(vals, "floats") == by_hand(vals)
