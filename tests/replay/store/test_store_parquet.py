"""Parquet stores: ``volreplay export`` and reading the export in place.

The synthetic store here straddles midnight UTC, so every market table has two day
partitions.  Checks: the export holds exactly the store's content and layout, is
byte-deterministic, replays to the same journal hash, a windowed scan opens only its day's
files, filtered scans keep replay order, and user mistakes give one clear error line.
"""

from __future__ import annotations

import filecmp
import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from replay.engine.loop import run_replay
from replay.errors import StoreError
from replay.model.schema import MARKET_TABLES
from replay.store import open_store
from replay.store.parquet import ParquetStore, export_parquet, is_parquet_location
from replay.synth import EPOCH_NS, SynthConfig, synthesize
from tests.replay.engine.toys import CorridorHedger, Periodic, QuoteCounter, TouchVenue

NS = 1_000_000_000
MIDNIGHT = EPOCH_NS  # 2025-01-06 00:00 UTC; the store runs 23:52:30 .. 00:07:30
DAYS = ["2025-01-05", "2025-01-06"]
REPLAYED = [t for t in MARKET_TABLES if t != "instruments"]


@pytest.fixture(scope="module")
def duck(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("pq") / "two_days.duckdb"
    synthesize(db, SynthConfig(hours=0.25, seed=3, model="heston", scale="small",
                               start_ns=MIDNIGHT - 450 * NS))
    return db


@pytest.fixture(scope="module")
def pq(duck) -> Path:
    out = duck.parent / "two_days.parquet"
    export_parquet(duck, out)
    return out


def _table(store, name: str) -> pa.Table:
    return store.con.cursor().sql(f"SELECT * FROM {name}").to_arrow_table()


def test_export_layout_and_manifest(duck, pq):
    man = json.loads((pq / "manifest.json").read_text())
    assert man["format"] == "volreplay-parquet" and man["partition"] == "day"
    assert man["source"] == duck.name
    with open_store(duck) as d:
        assert sorted(man["tables"]) == d.tables()
        assert [man["span"]["first_ns"], man["span"]["last_ns"]] == list(d.time_span())
        for t, entry in man["tables"].items():
            assert entry["rows"] == d.count(t), t
            assert sum(f["rows"] for f in entry["files"]) == entry["rows"]
    for t in REPLAYED:
        paths = [f["path"] for f in man["tables"][t]["files"]]
        assert paths == [f"{t}/date={day}/data.parquet" for day in DAYS]
    assert [f["path"] for f in man["tables"]["instruments"]["files"]] == \
        ["instruments/data.parquet"]
    # one Parquet file on disk per manifest entry, nothing else
    on_disk = sorted(str(p.relative_to(pq)) for p in pq.rglob("*.parquet"))
    assert on_disk == sorted(f["path"] for e in man["tables"].values() for f in e["files"])


def test_parquet_store_reads_exactly_what_the_duckdb_store_holds(duck, pq):
    with open_store(duck) as d, open_store(pq) as p:
        assert isinstance(p, ParquetStore) and p.read_only
        assert p.tables() == d.tables()
        for t in d.tables():
            a, b = _table(p, t), _table(d, t)
            assert a.schema == b.schema, t
            assert a.equals(b), t
            assert p.count(t) == d.count(t)
        assert p.time_span() == d.time_span()
        assert all(p.time_span(t) == d.time_span(t) for t in MARKET_TABLES)
        assert p.instruments().equals(d.instruments())
        assert p.instrument_ids() == d.instrument_ids()
        some = sorted(d.instrument_ids().values())[::7]
        for t in REPLAYED:
            for kw in ({}, {"start": MIDNIGHT}, {"end": MIDNIGHT}, {"after_seq": 100},
                       {"start": MIDNIGHT + 9 * 86_400 * NS},  # no file: typed and empty
                       {"start": MIDNIGHT - 60 * NS, "end": MIDNIGHT + 60 * NS,
                        "instrument_ids": some, "cols": ["ts_recv", "seq", "instrument_id"]}):
                got = p.scan(t, batch_rows=1000, **kw).read_all()
                assert got.equals(d.scan(t, **kw).read_all()), (t, kw)
                seq = got.column("seq").to_numpy()
                assert (np.diff(seq) > 0).all(), (t, kw)
        assert p.files("option_quotes", start=MIDNIGHT + 9 * 86_400 * NS) == []


def test_export_is_byte_deterministic(duck, pq, tmp_path):
    again = tmp_path / "again"
    export_parquet(duck, again)
    files = sorted(p.relative_to(pq) for p in pq.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    _, mismatch, errors = filecmp.cmpfiles(pq, again, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors
    one = json.loads((tmp_path / "again" / "manifest.json").read_text())
    assert one["content_sha256"] == json.loads((pq / "manifest.json").read_text())["content_sha256"]


def test_same_seed_gives_the_same_bytes_once_exported(duck, pq, tmp_path):
    """docs/outputs.md: the same synth seed gives the same bytes.  DuckDB files carry run-specific
    header and block bytes, so the byte-level form is the export; the tables' content (and
    seq) is already identical in the DuckDB files (tests/replay/synth)."""
    twin = tmp_path / "twin.duckdb"
    synthesize(twin, SynthConfig(hours=0.25, seed=3, model="heston", scale="small",
                                 start_ns=MIDNIGHT - 450 * NS))
    export_parquet(twin, tmp_path / "twin")
    files = sorted(str(p.relative_to(pq)) for p in pq.rglob("*.parquet"))
    _, mismatch, errors = filecmp.cmpfiles(pq, tmp_path / "twin", files, shallow=False)
    assert files and not mismatch and not errors
    sha = [json.loads((d / "manifest.json").read_text())["content_sha256"]
           for d in (pq, tmp_path / "twin")]
    assert sha[0] == sha[1]


def _consumers(ids: dict[str, int]) -> list:
    near = tuple(i for n, i in ids.items() if "-7JAN25-" in n)
    return [Periodic("periodic", 20 * NS),
            CorridorHedger("corridor", 3e-4, latency_ns=25_000_000),
            QuoteCounter("near", 50, instruments=near, trades=True, quotes=True)]


@pytest.mark.parametrize("window", ["all", "day2", "instruments"])
def test_replay_over_parquet_gives_the_same_journal_hash(duck, pq, tmp_path, window):
    with open_store(duck) as d:
        ids = d.instrument_ids()
    kw: dict = {"start": MIDNIGHT, "end": MIDNIGHT + 86_400 * NS} if window == "day2" else {}
    if window == "instruments":
        kw["instrument_ids"] = [i for n, i in ids.items() if "-7JAN25-" in n or "-" not in n[4:]]
    runs = [run_replay(src, _consumers(ids), tmp_path / name, venue=TouchVenue(),
                       window_ns=60 * NS, progress=False, **kw)
            for name, src in (("duck", duck), ("pq", pq))]
    assert runs[0].events > 1000 and runs[0].n_wakes > 10
    assert runs[0].events == runs[1].events
    assert runs[0].journal_hash == runs[1].journal_hash


def test_windowed_scan_opens_only_the_files_of_its_days(duck, pq, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(pq, copy)
    day2 = {"start": MIDNIGHT, "end": MIDNIGHT + 86_400 * NS}
    with open_store(copy) as p, open_store(duck) as d:
        for t in REPLAYED:
            assert p.files(t, **day2) == [f"{t}/date={DAYS[1]}/data.parquet"]
            assert p.files(t, end=MIDNIGHT) == [f"{t}/date={DAYS[0]}/data.parquet"]
        # remove the first day: a day-2 scan must not notice, a full scan must
        for f in copy.glob(f"*/date={DAYS[0]}/data.parquet"):
            f.unlink()
        for t in REPLAYED:
            assert p.scan(t, **day2).read_all().equals(d.scan(t, **day2).read_all()), t
        with pytest.raises(duckdb.IOException):
            p.scan("option_quotes").read_all()


def test_filtered_scans_keep_replay_order_in_both_stores(tmp_path):
    # DuckDB plans a long IN list (list_contains over bound ids) as a hash join whose output
    # is not in scan order once a table spans a few row groups; this size showed it.
    n, rng = 600_000, np.random.default_rng(1)
    db = tmp_path / "big.duckdb"
    with open_store(db, read_only=False) as st:
        ids = st.ensure_instruments(pa.table({
            "ts_exchange": [MIDNIGHT] * 100, "ts_recv": [MIDNIGHT] * 100,
            "name": [f"P{i}" for i in range(100)], "venue": ["t"] * 100,
            "kind": ["perp"] * 100, "underlying": ["BTC"] * 100,
            "quote_currency": ["USD"] * 100, "settlement": ["inverse"] * 100,
            "contract_size": [10.0] * 100, "tick_size": [0.5] * 100}))
        ts = MIDNIGHT + np.arange(n, dtype=np.int64) * 1_000_000
        st.append_ordered("underlying_quotes", pa.table({
            "ts_exchange": ts, "ts_recv": ts,
            "instrument_id": rng.choice(np.array(sorted(ids.values()), np.int32), n),
            "bid_price": np.full(n, 100.0), "ask_price": np.full(n, 101.0)}))
    export_parquet(db, tmp_path / "big")
    wanted = sorted(ids.values())[::3]
    for src in (db, tmp_path / "big"):
        with open_store(src) as s:
            got = s.scan("underlying_quotes", cols=["seq", "instrument_id"],
                         instrument_ids=wanted).read_all()
        assert set(got.column("instrument_id").to_pylist()) == set(wanted)
        assert (np.diff(got.column("seq").to_numpy()) > 0).all(), src


def test_analytics_sql_runs_over_an_attached_parquet_store(duck, pq, tmp_path):
    import replay
    from replay.analytics import execution as analytics
    from tests.replay.app.test_backtest import _cfg

    replay.run(_cfg(duck, tmp_path / "run"))  # a journal with orders and executions
    journal = tmp_path / "run" / "journal.duckdb"

    def fills(store):
        with analytics.connect(journal, store) as con:  # the store attached as ``mkt``
            return (analytics.fills_table(con, [1.0, 10.0]).df(),
                    analytics.shortfall_table(con).df())

    (a, sa), (b, sb) = fills(pq), fills(duck)
    assert len(a) > 0 and a.equals(b) and len(sa) > 0 and sa.equals(sb)


def test_loading_into_a_parquet_store_is_refused(pq):
    with pytest.raises(StoreError, match="read-only; load into a DuckDB store"):
        open_store(pq, read_only=False)
    with open_store(pq) as p:
        for call in (lambda: p.begin_load("canonical", "x", None),
                     lambda: p.ensure_instruments(pa.table({"name": ["X"]})),
                     lambda: p.append_ordered("funding", pa.table({"ts_recv": [1]})),
                     lambda: p.write_aux("truth_x", pa.table({"a": [1]})),
                     lambda: p.stage("funding", pa.table({"ts_recv": [1]}))):
            with pytest.raises(StoreError, match="read-only; load into a DuckDB store"):
                call()


def test_user_mistakes_are_clear_errors(duck, pq, tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreError, match="directory without manifest.json"):
        open_store(tmp_path / "plain")
    with pytest.raises(StoreError, match="does not exist"):
        ParquetStore(tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(StoreError, match="not valid JSON"):
        open_store(bad)
    with pytest.raises(StoreError, match="not empty"):
        export_parquet(duck, pq)
    with pytest.raises(StoreError, match="already a Parquet store"):
        export_parquet(pq, tmp_path / "x")
    with pytest.raises(StoreError, match="partition"):
        export_parquet(duck, tmp_path / "y", partition="hour")
    with pytest.raises(StoreError, match="unsupported URL scheme"):
        open_store("ftp://host/store")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_urls_and_a_missing_httpfs_extension(pq, tmp_path):
    assert open_store(f"file://{pq}").count("option_quotes") > 0
    assert is_parquet_location("s3://bucket/store") and is_parquet_location(Path("s3://b/s"))
    assert not is_parquet_location(tmp_path / "x.duckdb")
    # an empty extension folder and a repository that has nothing: httpfs cannot load
    cfg = {"extension_directory": str(tmp_path / "ext"),
           "custom_extension_repository": str(tmp_path / "no-repo")}
    with pytest.raises(StoreError, match=r"cannot read s3://bucket/store: .*httpfs.*INSTALL"):
        ParquetStore("s3://bucket/store/", duckdb_config=cfg)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "replay", *args], capture_output=True,
                          text=True, timeout=300)


def test_cli_export_then_inspect(duck, pq, tmp_path):
    out = tmp_path / "cli"
    p = _cli("export", "--db", str(duck), "--out", str(out), "--partition", "none")
    assert p.returncode == 0, p.stderr
    line = json.loads(p.stdout)
    assert line["files"] == 1 + len(REPLAYED) + 3  # instruments, market tables, truth_*
    assert [f["path"] for f in json.loads((out / "manifest.json").read_text())
            ["tables"]["option_quotes"]["files"]] == ["option_quotes/data.parquet"]
    a, b = _cli("inspect", "--db", str(duck), "--json"), _cli("inspect", "--db", str(out), "--json")
    assert a.returncode == b.returncode == 0, b.stderr
    sa, sb = json.loads(a.stdout), json.loads(b.stdout)
    assert sa.pop("db") != sb.pop("db") and sa == sb
    p = _cli("export", "--db", str(duck), "--out", str(out))
    assert p.returncode == 2 and "not empty" in p.stderr and "Traceback" not in p.stderr
    p = _cli("inspect", "--db", str(tmp_path))
    assert p.returncode == 2 and "without manifest.json" in p.stderr
    assert "Traceback" not in p.stderr


def test_backtest_over_parquet_matches_the_duckdb_store(duck, pq, tmp_path):
    import replay
    from tests.replay.app.test_backtest import _cfg

    a = replay.run(_cfg(duck, tmp_path / "duck"))
    b = replay.run(_cfg(pq, tmp_path / "pq"))
    assert a["journal_hash"] == b["journal_hash"]
    assert a["pnl"] == b["pnl"] and a["execution"] == b["execution"]


def test_an_incomplete_copy_is_refused_on_open(pq, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(pq, copy)
    victim = sorted(copy.glob("option_quotes/date=*/data.parquet"))[-1]
    victim.write_bytes(victim.read_bytes()[:-10])  # truncated
    with pytest.raises(StoreError, match="bytes, the manifest says"):
        open_store(copy)
    victim.unlink()
    with pytest.raises(StoreError, match="is missing"):
        open_store(copy)


def test_export_refuses_a_url(duck):
    with pytest.raises(StoreError, match="writes a local directory"):
        export_parquet(duck, "s3://bucket/day.parquet")


def test_a_damaged_parquet_file_is_a_store_error_naming_it(pq, tmp_path):
    """Bytes zeroed inside one day's option quotes (the file keeps its size and its footer):
    DuckDB fails while decompressing it mid-replay, and the replay says which file and why
    instead of a traceback."""
    from replay.engine.feed import Feed

    bad = tmp_path / "bad"
    shutil.copytree(pq, bad)
    f = bad / "option_quotes" / "date=2025-01-06" / "data.parquet"
    data = bytearray(f.read_bytes())
    data[len(data) // 4: len(data) // 4 + 5000] = bytes(5000)
    f.write_bytes(bytes(data))
    with open_store(bad) as store, pytest.raises(StoreError, match="cannot be read.*data.parquet"):
        for _ in Feed(store).windows():
            pass
