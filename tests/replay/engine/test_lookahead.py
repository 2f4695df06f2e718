"""No look-ahead, as a property: changing any event with ``ts_recv > t`` (values, existence,
timing) leaves every journal entry with ``ts <= t`` unchanged."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs

from replay.engine.loop import run_replay
from replay.model.schema import MARKET_TABLES, columns
from replay.store import open_store
from tests.replay.engine import MS, T0, build_store
from tests.replay.engine.test_engine_equivalence import _same, journal_rows, toys
from tests.replay.engine.toys import TouchVenue

SPAN_MS = 20_000
END = T0 + SPAN_MS * MS + 50 * MS  # fixed, so end-of-data timers do not depend on the data
_VALUE = {"underlying_quotes": ["bid_price", "ask_price", "bid_size"],
          "option_quotes": ["bid_price", "ask_price"], "underlying_trades": ["price"],
          "option_trades": ["price", "size"], "funding": ["funding_rate"]}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    d = tmp_path_factory.mktemp("lookahead")
    ids = build_store(d / "s.duckdb", seed=6, n_under=300, n_opt=300, span_ms=SPAN_MS)
    res = run_replay(d / "s.duckdb", toys(ids), d / "run", venue=TouchVenue(), end=END,
                     window_ns=2_000 * MS)
    return d, ids, journal_rows(res.journal_path)


def _altered_store(src: Path, dst: Path, t: int, rng: np.random.Generator, modes) -> None:
    with open_store(src) as s, open_store(dst, read_only=False) as d:
        d.ensure_instruments(s.instruments().drop(["instrument_id", "seq"]))
        for table in MARKET_TABLES:
            if table == "instruments":
                continue
            tbl = s.con.sql(f"SELECT * FROM {table} ORDER BY seq").to_arrow_table()
            tbl = tbl.select([c for c in columns(table) if c != "seq"])
            late = np.asarray(tbl.column("ts_recv").to_numpy()) > t
            if "values" in modes:
                for c in _VALUE[table]:
                    x = np.asarray(tbl.column(c).to_numpy(zero_copy_only=False), float)
                    x = np.where(late, x * rng.uniform(0.9, 1.1, len(x)), x)
                    tbl = tbl.set_column(tbl.column_names.index(c), c, pa.array(x))
            if "shift" in modes:
                delay = int(rng.integers(1, 500)) * MS
                for c in ("ts_recv", "ts_exchange"):
                    x = np.asarray(tbl.column(c).to_numpy()) + np.where(late, delay, 0)
                    tbl = tbl.set_column(tbl.column_names.index(c), c, pa.array(x))
            if "drop" in modes:
                keep = ~late | (rng.random(len(late)) < 0.6)
                tbl = tbl.filter(pa.array(keep))
            if "shift" in modes:  # keep stored replay order
                tbl = tbl.sort_by([("ts_recv", "ascending"), ("ts_exchange", "ascending")])
            tbl = tbl.filter(pc.less(tbl.column("ts_recv"), END))
            d.append_ordered(table, tbl)


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(frac=hs.floats(0.05, 0.9), seed=hs.integers(0, 2**31 - 1),
       modes=hs.sets(hs.sampled_from(["values", "drop", "shift"]), min_size=1))
def test_future_events_do_not_change_the_past(base, frac, seed, modes):
    d, ids, want = base
    t = T0 + int(frac * SPAN_MS) * MS + 3 * MS  # off the 10 ms grid and on it alike
    with tempfile.TemporaryDirectory() as tmp:
        alt = Path(tmp) / "alt.duckdb"
        _altered_store(d / "s.duckdb", alt, t, np.random.default_rng(seed), modes)
        res = run_replay(alt, toys(ids), Path(tmp) / "run", venue=TouchVenue(), end=END,
                         window_ns=2_000 * MS)
        got = journal_rows(res.journal_path)
    n_past = sum(1 for r in want["journal"] if r[1] <= t)
    assert n_past > 0
    assert _same(got["journal"][:n_past], want["journal"][:n_past])
    assert all(r[1] > t for r in got["journal"][n_past:])  # nothing new slipped into the past
    for table in want:
        past = [r for r in want[table] if r[1] <= t]
        assert _same([r for r in got[table] if r[1] <= t], past), table
