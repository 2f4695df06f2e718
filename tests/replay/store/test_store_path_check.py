"""A store path that is not a DuckDB store file or a Parquet store folder is refused up front.

DuckDB opens an existing CSV or Parquet *file* as an in-memory database without complaint, so
before the check ``ingest`` reported rows that were never saved and ``run``/``inspect`` failed
with a raw catalog error.  Every command must now end with one ``volreplay: error:`` line that
names the path, exit code 2, and leave the file untouched.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from replay.errors import StoreError
from replay.store import attach_store, open_store
from replay.store.database import DUCKDB_MAGIC, check_store_file
from tests.helpers import one_error_line, volreplay

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "tardis"
QUOTES = FIX / "deribit_quotes_2024-03-01.csv"


@pytest.fixture
def data_files(tmp_path: Path) -> dict[str, Path]:
    csv = tmp_path / "quotes.csv"
    csv.write_bytes(QUOTES.read_bytes())
    par = tmp_path / "quotes.parquet"
    pq.write_table(pa.table({"a": [1, 2, 3]}), par)
    return {"csv": csv, "parquet": par}


def test_duckdb_files_carry_the_magic_the_check_relies_on(tmp_path):
    """Checked on files DuckDB itself wrote: an empty database and one with a table."""
    empty, full = tmp_path / "empty.duckdb", tmp_path / "full.duckdb"
    duckdb.connect(str(empty)).close()
    with duckdb.connect(str(full)) as con:
        con.execute("CREATE TABLE t AS SELECT range AS x FROM range(1000)").fetchall()
    for f in (empty, full):
        assert f.read_bytes()[8:12] == DUCKDB_MAGIC
        check_store_file(f, create=False)  # accepted


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_ingest_into_a_data_file_is_refused(data_files, tmp_path, kind):
    target = data_files[kind]
    before = target.read_bytes()
    p = volreplay("ingest", "tardis-quotes", str(QUOTES), "--db", str(target), cwd=tmp_path)
    one_error_line(p, str(target), "not a DuckDB database", "Parquet store folder")
    assert '"ingested"' not in p.stdout
    assert target.read_bytes() == before


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_synth_into_a_data_file_is_refused(data_files, tmp_path, kind):
    target = data_files[kind]
    before = target.read_bytes()
    p = volreplay("synth", "--db", str(target), "--hours", "0.01", cwd=tmp_path)
    one_error_line(p, str(target), "not a DuckDB database")
    assert target.read_bytes() == before  # synth must not delete a file it did not create


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_inspect_of_a_data_file_is_refused(data_files, tmp_path, kind):
    p = volreplay("inspect", "--db", str(data_files[kind]), cwd=tmp_path)
    one_error_line(p, str(data_files[kind]), "not a DuckDB database")


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_run_on_a_data_file_is_refused(data_files, tmp_path, kind):
    p = volreplay("run", f"data.db={data_files[kind]}", f"hydra.run.dir={tmp_path / 'run'}",
                   "report.html=false", cwd=tmp_path)
    one_error_line(p, str(data_files[kind]), "not a DuckDB database")


def test_the_message_says_what_the_file_looks_like(data_files, tmp_path):
    with pytest.raises(StoreError, match="is a Parquet file"):
        open_store(data_files["parquet"])
    with pytest.raises(StoreError, match="is a text file"):
        open_store(data_files["csv"], read_only=False)
    (tmp_path / "zero.duckdb").write_bytes(b"")
    with pytest.raises(StoreError, match="is an empty file"):
        open_store(tmp_path / "zero.duckdb", read_only=False)


def test_a_duckdb_database_that_is_not_a_store_is_refused_for_reading(tmp_path):
    other = tmp_path / "other.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE t (x INTEGER)").fetchall()
    p = volreplay("inspect", "--db", str(other), cwd=tmp_path)
    one_error_line(p, str(other), "not a market store", "instruments")
    with pytest.raises(StoreError, match="not a market store"):
        attach_store(duckdb.connect(), other, "mkt")


def test_a_duckdb_database_that_is_not_a_store_is_refused_for_writing(tmp_path):
    """Ingesting into a run's journal (or any other database) would add market tables to it;
    it is refused and the database is left as it was."""
    other = tmp_path / "journal.duckdb"
    with duckdb.connect(str(other)) as con:
        con.execute("CREATE TABLE journal (seq BIGINT)").fetchall()
    with pytest.raises(StoreError, match="not a market store"):
        open_store(other, read_only=False)
    with duckdb.connect(str(other), read_only=True) as con:
        assert [r[0] for r in con.execute("SHOW TABLES").fetchall()] == ["journal"]


def test_a_new_store_may_not_be_named_like_a_data_file(tmp_path):
    target = tmp_path / "new.parquet"
    p = volreplay("ingest", "tardis-quotes", str(QUOTES), "--db", str(target), cwd=tmp_path)
    one_error_line(p, str(target), "cannot be named like a .parquet data file")
    assert not target.exists()


def test_attach_refuses_a_data_file(data_files):
    with pytest.raises(StoreError, match="not a DuckDB database"):
        attach_store(duckdb.connect(), data_files["csv"], "mkt")


def test_real_stores_still_open(tmp_path):
    """The check must not refuse what is valid: a new store, the same store reopened, memory."""
    db = tmp_path / "s.duckdb"
    p = volreplay("ingest", "tardis-quotes", str(QUOTES), "--db", str(db), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    with open_store(db) as st:
        assert st.count("underlying_quotes") > 0
    with open_store(":memory:", read_only=False) as st:
        assert st.count("instruments") == 0
    p = volreplay("inspect", "--db", str(db), cwd=tmp_path)
    assert p.returncode == 0, p.stderr


def test_writing_into_a_folder_says_db_takes_a_file(tmp_path):
    # before the fix: an empty folder was called a read-only Parquet store
    folder = tmp_path / "data"
    folder.mkdir()
    with pytest.raises(StoreError, match="is a directory, not a store to write to: --db takes "
                                         "a DuckDB store's file"):
        open_store(folder, read_only=False)
    (folder / "manifest.json").write_text("{}")
    with pytest.raises(StoreError, match="is read-only; load into a DuckDB store"):
        open_store(folder, read_only=False)
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json"]  # nothing written
