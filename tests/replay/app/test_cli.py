"""User mistakes at the command line that reach a file (a source in another format, a damaged
store or run, a cache path that is a file) end in one ``volreplay: error:`` line, exit code 2,
and lose nothing: no traceback, no empty store left behind, the quarantine kept."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.helpers import one_error_line, volreplay
from tests.replay.ingest import BOOK_TICKER_LINE, plain_and_gzipped

TARDIS_QUOTES = Path(__file__).resolve().parents[2] / "fixtures" / "tardis" / \
    "deribit_quotes_2024-03-01.csv"


def test_a_source_in_another_format_is_quarantined_and_an_error(tmp_path):
    db = tmp_path / "s.duckdb"
    p = volreplay("ingest", "binance-ws", str(TARDIS_QUOTES), "--db", str(db), cwd=tmp_path)
    one_error_line(p, "none of the", "rows read could be ingested", "binance-ws")
    rep = json.loads(p.stdout.strip().splitlines()[-1])
    assert rep["read"] == rep["quarantined"] > 0 and rep["ingested"] == 0
    with duckdb.connect(str(db), read_only=True) as con:  # every row kept, with its reason
        assert con.execute("SELECT count(*) FROM quarantine").fetchone()[0] == rep["read"]


def test_a_source_whose_rows_are_all_stored_is_not_an_error(tmp_path):
    """Every row a duplicate of one in the store (the same rows, compressed): exit 0 and a
    note, not the "are the sources in the format?" error; with bad rows beside them, the
    error says how many were already stored and names the other reasons."""
    db = tmp_path / "s.duckdb"
    plain, packed = plain_and_gzipped(tmp_path, BOOK_TICKER_LINE)
    assert volreplay("ingest", "binance-ws", str(plain), "--db", str(db),
                     cwd=tmp_path).returncode == 0
    p = volreplay("ingest", "binance-ws", str(packed), "--db", str(db), cwd=tmp_path)
    assert p.returncode == 0 and "already in the store" in p.stderr
    rep = json.loads(p.stdout.strip().splitlines()[-1])
    assert (rep["read"], rep["ingested"], rep["quarantine_reasons"]) == (1, 0, {"duplicate": 1})
    (tmp_path / "b.jsonl").write_text(BOOK_TICKER_LINE + "not json\n")
    p = volreplay("ingest", "binance-ws", str(tmp_path / "b.jsonl"), "--db", str(db),
                  cwd=tmp_path)
    one_error_line(p, "1 were already in the store", "most as 'unparsable'")


def test_a_failed_ingest_leaves_no_new_store(tmp_path):
    text = tmp_path / "notes.parquet"
    text.write_text("not a Parquet file\n")
    db = tmp_path / "s.duckdb"
    p = volreplay("ingest", "deribit-summary", str(text), "--db", str(db), cwd=tmp_path)
    one_error_line(p)
    assert not db.exists()


def test_a_truncated_store_isone_error_line(tmp_path):
    db = tmp_path / "s.duckdb"
    assert volreplay("ingest", "tardis-quotes", str(TARDIS_QUOTES), "--db", str(db),
                      cwd=tmp_path).returncode == 0
    cut = tmp_path / "cut.duckdb"
    cut.write_bytes(db.read_bytes()[: db.stat().st_size // 3])
    one_error_line(volreplay("inspect", "--db", str(cut), cwd=tmp_path), str(cut))


def test_a_store_with_a_damaged_block_is_one_error_line(tmp_path):
    """A block zeroed inside an intact file: DuckDB refuses it on opening, with a checksum
    error that is neither an I/O error nor ours; reading and writing each say so in one line,
    and an ingest into a truncated store reports the I/O error, not its failed rollback."""
    db = tmp_path / "s.duckdb"
    assert volreplay("ingest", "tardis-quotes", str(TARDIS_QUOTES), "--db", str(db),
                      cwd=tmp_path).returncode == 0
    data = bytearray(db.read_bytes())
    data[4096:4096 + 8192] = bytes(8192)
    bad = tmp_path / "bad.duckdb"
    bad.write_bytes(bytes(data))
    one_error_line(volreplay("inspect", "--db", str(bad), cwd=tmp_path), str(bad))
    one_error_line(volreplay("ingest", "tardis-quotes", str(TARDIS_QUOTES), "--db", str(bad),
                             cwd=tmp_path), str(bad))
    cut = tmp_path / "cut.duckdb"
    cut.write_bytes(db.read_bytes()[: db.stat().st_size // 3])
    one_error_line(volreplay("ingest", "tardis-quotes", str(TARDIS_QUOTES), "--db", str(cut),
                             cwd=tmp_path), str(cut))


def test_a_run_directory_the_system_refuses_is_one_error_line(gbm_quarter_hour, tmp_path):
    """A run directory that is a file (FileExistsError) or lies under one
    (NotADirectoryError): the operating system's refusal of a path the user named."""
    taken = tmp_path / "taken"
    taken.write_text("a file\n")
    for run_dir in (taken, taken / "run"):
        one_error_line(volreplay("run", f"data.db={gbm_quarter_hour}", f"hydra.run.dir={run_dir}",
                                 "report.html=false", cwd=tmp_path), str(taken))
    assert taken.read_text() == "a file\n"


@pytest.fixture(scope="module")
def finished_run(gbm_quarter_hour, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("cli_run")
    p = volreplay("run", f"data.db={gbm_quarter_hour}", f"hydra.run.dir={d / 'run'}",
                   "report.html=false", "calibration.every=300s", cwd=d)
    assert p.returncode == 0, p.stderr[-3000:]
    return d / "run"


@pytest.mark.parametrize("damage, needle", [
    (lambda run: (run / "metrics.json").write_text('{"journal_hash": '), "metrics.json"),
    (lambda run: (run / "journal.duckdb").unlink(), "no journal.duckdb"),
    (lambda run: (run / "journal.duckdb").write_bytes(b"DUCK" * 10), "journal.duckdb"),
])
def test_report_of_a_damaged_run_isone_error_line(finished_run, tmp_path, damage, needle):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    damage(run)
    one_error_line(volreplay("report", str(run), cwd=tmp_path), needle)


def test_a_cache_folder_that_is_a_file_isone_error_line(gbm_quarter_hour, tmp_path):
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("")
    p = volreplay("run", f"data.db={gbm_quarter_hour}", f"hydra.run.dir={tmp_path / 'run'}",
                   "report.html=false", "calibration.every=300s", cwd=tmp_path,
                   env={"VOLREPLAY_CACHE_DIR": str(not_a_folder)})
    one_error_line(p, "surface cache", "VOLREPLAY_CACHE_DIR")


def test_the_journal_audit_needs_nothing_but_the_file(finished_run, tmp_path):
    """``recompute_hash`` in a fresh process, which has imported none of the modules that
    declare the run's event kinds, gives the run's hash: the journal records its kinds."""
    code = ("import sys; from replay.store.journal_file import recompute_hash; "
            "print(recompute_hash(sys.argv[1]))")
    p = subprocess.run([sys.executable, "-c", code, str(finished_run / "journal.duckdb")],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    want = json.loads((finished_run / "metrics.json").read_text())["journal_hash"]
    assert p.stdout.strip() == want


def test_synth_into_a_folder_says_what_it_writes(tmp_path):
    (tmp_path / "d").mkdir()
    one_error_line(volreplay("synth", "--db", str(tmp_path / "d"), cwd=tmp_path),
                    "a folder; synth writes a DuckDB store file")


def test_a_store_without_options_is_refused_before_any_work(shared_data, tmp_path):
    """Not after a surface stream of no wakes has been built and cached."""
    db = tmp_path / "binance.duckdb"
    assert volreplay("ingest", "binance-ws", str(shared_data / "binance"), "--db", str(db),
                      cwd=tmp_path).returncode == 0
    cache = tmp_path / "cache"
    p = volreplay("run", f"data.db={db}", f"hydra.run.dir={tmp_path / 'run'}",
                   "report.html=false", cwd=tmp_path, env={"VOLREPLAY_CACHE_DIR": str(cache)})
    line = one_error_line(p, "lists no options", "calibration=none book=none")
    assert not (tmp_path / "run").exists() and not (cache / "surfaces").exists()
    # what the error suggests runs
    hint = line[line.index("(calibration=none"):].split(" forecasts")[0].strip("(").split()
    p = volreplay("run", f"data.db={db}", f"hydra.run.dir={tmp_path / 'run'}",
                  "report.html=false", *hint, cwd=tmp_path, env={"VOLREPLAY_CACHE_DIR": str(cache)})
    assert p.returncode == 0, p.stderr[-2000:]


def test_a_reader_that_goes_away_is_no_traceback():
    """``volreplay inspect --json | head -c 10``: the pipe closes while we write.  A command
    writing 1 MB makes it certain (the pipe holds 64 KB); the run ends quietly, exit code 1."""
    code = ("import sys\nfrom replay.app import cli\n"
            "cli.cmd_inspect = lambda args: print('x' * 1_000_000)\n"
            "sys.exit(cli.main(['inspect', '--db', 'any.duckdb']))\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parents[3])
    p.stdout.read(10)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 1 and "Traceback" not in err, err
