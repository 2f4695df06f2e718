"""Linked rows: a journal whose payload rows of a kind are those of a Parquet file (a surface
stream's) holds the rows, types and hash a journal that stores them holds, and stores them
when cut back to a snapshot."""

from __future__ import annotations

import shutil

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from replay.engine.journal import Journal
from replay.model.events import KINDS, TYPES, columns_of, payload_digest
from replay.store.journal_file import links, recompute_hash
from replay.store.journal_tables import linkable

FITS = KINDS["surface_fit"]


def _fit_rows(wake: int) -> dict:
    """A fit of ``wake % 3 + 1`` expiries (SVI parameters as a float list, a NaN, flags)."""
    n = wake % 3 + 1
    return {"model": ["svi"] * n, "expiry": [10**18 + 86_400 * j for j in range(n)],
            "t": [0.01 * (j + 1) for j in range(n)], "forward": [9e4 + wake] * n,
            "params": [[0.01, 0.1, -0.3, 0.0, 0.2 + 0.01 * j] for j in range(n)],
            "n_quotes": [10 + j for j in range(n)], "rmse_vol_pts": [0.5] * n,
            "inside_spread_pct": [float("nan")] * n, "fit_ms": [0.3] * n,
            "arb_violations": [0] * n, "published": [wake % 2 == 0] * n, "reason": [""] * n,
            "carried": [j == 1 for j in range(n)]}


@pytest.fixture
def fits_file(tmp_path):
    """Six wakes' fit rows with their ``wake``, as a stream's ``fits.parquet`` holds them."""
    rows = [(w, _fit_rows(w)) for w in range(6)]
    cols = {"wake": sum(([w] * len(r["model"]) for w, r in rows), [])}
    cols.update({f: sum((r[f] for _, r in rows), []) for f, _ in FITS.fields})
    path = tmp_path / "fits.parquet"
    pq.write_table(pa.table(cols, schema=pa.schema(
        [("wake", pa.int64())] + [(f, TYPES[t][1]) for f, t in FITS.fields])), path)
    return path, rows


def _stored_and_linked(tmp_path, fits_file) -> tuple[Journal, Journal]:
    path, rows = fits_file
    stored, linked = (Journal(tmp_path / f"{n}.duckdb", flush_rows=4) for n in ("s", "l"))
    for w, r in rows:
        stored.append("surface_fit", 100 + w, (2, w), "cal", r)
    digests = b"".join(payload_digest(FITS, columns_of(FITS, r)[1]) for _, r in rows)
    n = len(rows)
    seq = linked.append_many([("surface_fit", "cal")], np.zeros(n, np.int64),
                             100 + np.arange(n), np.full(n, 2), np.arange(n), digests)
    for j in range(0, n, 2):  # as a replay splices them: a few at a time
        linked.link_rows("surface_fit", path, seq[j:j + 2], 100 + np.arange(j, j + 2),
                         np.arange(j, j + 2))
    return stored, linked


def _fits(journal) -> list:
    with duckdb.connect(str(journal), read_only=True) as con:
        return con.sql("SELECT * FROM surface_fits ORDER BY seq, expiry").fetchall()


def test_linked_rows_are_the_stored_rows_with_their_hash(tmp_path, fits_file):
    stored, linked = _stored_and_linked(tmp_path, fits_file)
    stored.close()
    linked.close()
    assert linked.hash == stored.hash
    assert recompute_hash(tmp_path / "l.duckdb") == recompute_hash(tmp_path / "s.duckdb") \
        == stored.hash_hex
    a, b = _fits(tmp_path / "s.duckdb"), _fits(tmp_path / "l.duckdb")
    assert repr(a) == repr(b) and len(a) == sum(len(r["model"]) for _, r in fits_file[1])
    with duckdb.connect(str(tmp_path / "l.duckdb"), read_only=True) as con:
        assert links(con) == {"surface_fit": str(fits_file[0].resolve())}
        kinds = dict(con.sql("SELECT table_name, table_type FROM information_schema.tables "
                             "WHERE table_name IN ('surface_fits', 'wakes')").fetchall())
        assert kinds == {"surface_fits": "VIEW", "wakes": "BASE TABLE"}
        types = dict(con.sql("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_name = 'surface_fits'").fetchall())
        assert types == {"seq": "BIGINT", "ts": "BIGINT",
                         **{f: TYPES[t][0] for f, t in FITS.fields}}


def test_a_linked_journal_cut_back_holds_the_rows_up_to_its_snapshot(tmp_path, fits_file):
    stored, linked = _stored_and_linked(tmp_path, fits_file)
    stored.close()
    linked.close()
    with duckdb.connect(str(tmp_path / "s.duckdb")) as con:  # the hash up to seq 2
        cut = Journal(None)
        for seq, ts, _, cs, cq, _ in con.sql("SELECT * FROM journal WHERE seq <= 2 ORDER BY seq"
                                             ).fetchall():
            w = int(seq)
            cut.append("surface_fit", ts, (cs, cq), "cal", fits_file[1][w][1])
    again = Journal(tmp_path / "l.duckdb")
    again.truncate_after(2, cut.hash)
    again.close()
    assert recompute_hash(tmp_path / "l.duckdb") == cut.hash_hex
    # a resumed run stores its rows: the cut journal holds its linked ones, and links nothing
    assert repr(_fits(tmp_path / "l.duckdb")) == \
        repr([r for r in _fits(tmp_path / "s.duckdb") if r[0] <= 2])
    with duckdb.connect(str(tmp_path / "l.duckdb"), read_only=True) as con:
        assert links(con) == {}
        assert con.sql("SELECT count(*) FROM journal_links").fetchall() == [(0,)]
        assert con.sql("SELECT table_type FROM information_schema.tables "
                       "WHERE table_name = 'surface_fits'").fetchall() == [("BASE TABLE",)]


def test_a_path_duckdb_would_glob_is_never_linked(tmp_path, fits_file):
    odd = tmp_path / "cache*"
    odd.mkdir()
    shutil.copy(fits_file[0], odd / "fits.parquet")
    assert linkable(fits_file[0]) and not linkable(odd / "fits.parquet")
    with pytest.raises(ValueError, match="glob"):
        Journal(None).link_rows("surface_fit", odd / "fits.parquet", np.array([0]),
                                np.array([100]), np.array([0]))


def test_rows_of_a_kind_are_linked_to_one_file_and_never_after_stored_ones(tmp_path,
                                                                             fits_file):
    path, rows = fits_file
    j = Journal(tmp_path / "j.duckdb")
    seq = j.append("surface_fit", 100, (2, 0), "cal", rows[0][1])
    j.flush()
    j.link_rows("surface_fit", path, np.array([seq + 1]), np.array([101]), np.array([1]))
    with pytest.raises(ValueError, match="not "):
        j.link_rows("surface_fit", tmp_path / "other.parquet", np.array([seq + 2]),
                    np.array([102]), np.array([2]))
    with pytest.raises(ValueError, match="surface_fits holds rows"):
        j.flush()


def test_a_linked_file_gone_is_one_clear_error(tmp_path, fits_file):
    """Reading a linked table, or auditing the hash, names the fix; other tables read."""
    from replay.analytics.tables import read_tables
    from replay.errors import StoreError

    stored, linked = _stored_and_linked(tmp_path, fits_file)
    stored.close()
    linked.close()
    fits_file[0].rename(tmp_path / "moved.parquet")
    for read in (recompute_hash, lambda p: read_tables(p, ["surface_fits"])):
        with pytest.raises(StoreError, match="which is gone.*run the backtest again"):
            read(tmp_path / "l.duckdb")
    # the tables that link nothing still read (a report's fills and marks after a cache clean)
    assert len(read_tables(tmp_path / "l.duckdb", ["journal"])["journal"]) > 0
