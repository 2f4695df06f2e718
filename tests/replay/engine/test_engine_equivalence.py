from __future__ import annotations

import itertools
import math

import duckdb
import numpy as np
import pytest
from numpy.testing import assert_allclose

from replay.engine.loop import run_replay
from replay.engine.state import C_EVENTS
from replay.engine.wake import WakeCondition
from replay.model.events import KINDS
from replay.store.journal_file import recompute_hash
from tests.replay.engine import MS, build_store
from tests.replay.engine.toys import CorridorHedger, Periodic, QuoteCounter, TouchVenue


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    p = tmp_path_factory.mktemp("eq") / "s.duckdb"
    ids = build_store(p, seed=3)
    return p, ids


def toys(ids) -> list:
    near = tuple(i for n, i in ids.items() if "12DEC25" in n)
    return [Periodic("periodic", 700 * MS), CorridorHedger("corridor", 4e-4, latency_ns=25 * MS),
            QuoteCounter("count_all", 41), QuoteCounter("count_near", 13, instruments=near),
            QuoteCounter("trades_near", 2, instruments=near, trades=True),
            QuoteCounter("either_near", 5, instruments=near, trades=True, quotes=True)]


def journal_rows(path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = {"journal": con.sql("SELECT * FROM journal ORDER BY seq").fetchall()}
        for k in KINDS.values():
            out[k.table] = con.sql(f"SELECT * FROM {k.table} ORDER BY seq, rowid").fetchall()
        return out
    finally:
        con.close()


def _eq(p, q) -> bool:  # value equality with NaN == NaN
    return p == q or (isinstance(p, float) and isinstance(q, float)
                      and math.isnan(p) and math.isnan(q))


def _same(a, b) -> bool:
    return len(a) == len(b) and all(
        len(x) == len(y) and all(_eq(p, q) for p, q in zip(x, y)) for x, y in zip(a, b))


def test_fast_and_reference_journals_are_identical(store, tmp_path):
    p, ids = store
    kw = {"snapshot_every_events": 250, "snapshot_every_ns": 9_000 * MS}
    fast = run_replay(p, toys(ids), tmp_path / "fast", window_ns=4_000 * MS, batch_rows=128,
                      venue=TouchVenue(), **kw)
    ref = run_replay(p, toys(ids), tmp_path / "ref", engine="reference", venue=TouchVenue(), **kw)
    a, b = journal_rows(fast.journal_path), journal_rows(ref.journal_path)
    for table in a:
        assert _same(a[table], b[table]), table
    assert fast.journal_hash == ref.journal_hash
    assert recompute_hash(fast.journal_path) == fast.journal_hash
    kinds = {r[2] for r in a["journal"]}
    assert {"wake", "mark", "order", "fill", "snapshot"} <= kinds  # every toy acted
    reasons = {r[3] for r in a["wakes"]}
    assert {"deadline", "corridor", "quote_count", "trade_count"} <= reasons
    assert fast.positions == ref.positions and fast.positions  # the toy venue booked fills


@pytest.mark.parametrize("window_ms,batch_rows,prefetch", [
    (1_000, 7, False), (5_000, 1 << 20, True), (10**8, 64, True)])
def test_hash_does_not_depend_on_window_or_batch(store, tmp_path, window_ms, batch_rows, prefetch):
    p, ids = store
    base = run_replay(p, toys(ids), tmp_path / "base", venue=TouchVenue(), window_ns=3_000 * MS)
    other = run_replay(p, toys(ids), tmp_path / "other", venue=TouchVenue(),
                       window_ns=window_ms * MS, batch_rows=batch_rows, prefetch=prefetch)
    assert other.journal_hash == base.journal_hash
    assert other.n_wakes == base.n_wakes > 50


class Probe:
    """Records what it saw at each wake (the market clock and event count)."""

    def __init__(self, name, cond):
        self.name, self.cond, self.seen = name, cond, []

    def on_start(self, ctx):
        return self.cond(ctx.now)

    def on_wake(self, ctx):
        st = ctx._rt.state
        self.seen.append((ctx.now, ctx.reason, st.now, int(st.clock[C_EVENTS]), st.cause(),
                          ctx.market.underlying_mid()))
        return self.cond(ctx.now)

    def state_dict(self):
        return {}

    def load_state_dict(self, d):
        pass


def _all_events(p) -> np.ndarray:
    con = duckdb.connect(str(p), read_only=True)
    try:
        q = " UNION ALL ".join(f"SELECT ts_recv FROM {t}" for t in
                               ("instruments", "funding", "underlying_quotes", "underlying_trades",
                                "option_quotes", "option_trades"))
        return np.sort(np.array([r[0] for r in con.sql(q).fetchall()]))
    finally:
        con.close()


def test_deadline_wake_sees_exactly_the_events_up_to_t(store, tmp_path):
    p, _ = store
    step = 333 * MS
    probe = Probe("probe", lambda now: WakeCondition(deadline=(now // step + 1) * step))
    run_replay(p, [probe], tmp_path / "d", window_ns=2_000 * MS)
    ts = _all_events(p)
    assert len(probe.seen) > 100
    for now, reason, last_ts, n_events, _, _ in probe.seen:
        assert reason == "deadline" and now % step == 0
        assert n_events == np.searchsorted(ts, now, side="right")  # all with ts_recv <= T
        assert last_ts <= now


def test_corridor_wakes_right_after_the_breaching_quote(store, tmp_path):
    p, ids = store
    width = 3e-4
    probe = Probe("probe", lambda now: None)
    center = {"mid": None}

    def cond(now):
        mid = probe.seen[-1][5] if probe.seen else None
        if mid is None or not np.isfinite(mid):
            return WakeCondition(quote_count=1, instruments=(ids["BTC-PERPETUAL"],))
        center["mid"] = mid
        return WakeCondition(corridor=(mid * (1 - width), mid * (1 + width)))

    probe.cond = cond
    run_replay(p, [probe], tmp_path / "c", window_ns=2_000 * MS)
    corr = [s for s in probe.seen if s[1] == "corridor"]
    assert len(corr) > 5
    con = duckdb.connect(str(p), read_only=True)
    uq = {r[0]: r[1:] for r in con.sql(
        "SELECT seq, instrument_id, bid_price, ask_price FROM underlying_quotes").fetchall()}
    con.close()
    prev_mid = None
    for now, reason, last_ts, _, (stream, seq), mid in probe.seen:
        if reason == "corridor":
            iid, bid, ask = uq[seq]
            assert stream == 2 and iid == ids["BTC-PERPETUAL"] and last_ts == now
            assert_allclose(mid, 0.5 * (bid + ask), rtol=0, atol=0)
            assert abs(mid / prev_mid - 1) > width
        prev_mid = mid


def test_orders_reach_the_venue_at_arrival_with_the_book_then(store, tmp_path):
    p, _ = store
    lat = 35 * MS
    res = run_replay(p, [CorridorHedger("h", 3e-4, latency_ns=lat)], tmp_path / "o",
                     venue=TouchVenue(fee_rate=0.0), window_ns=2_500 * MS)
    rows = journal_rows(res.journal_path)
    orders = {r[2]: r for r in rows["orders"]}  # order_id -> row
    assert len(rows["fills"]) > 3
    con = duckdb.connect(str(p), read_only=True)
    for _seq, ts, oid, iid, qty, price, _fee, _mult in rows["fills"]:
        o = orders[oid]
        assert ts == o[6] == o[1] + lat  # fill time = arrival = decision + latency
        side = "ask_price" if qty > 0 else "bid_price"
        # the touch as of arrival: the last quote with ts_recv <= arrival in replay order
        want = con.execute(f"SELECT {side} FROM underlying_quotes WHERE instrument_id = ? "
                           "AND ts_recv <= ? ORDER BY seq DESC LIMIT 1", [iid, ts]).fetchall()[0][0]
        assert_allclose(price, want, rtol=0, atol=0)
    con.close()


def test_progress_is_quiet_off_a_terminal_and_calls_a_callable(store, tmp_path, capfd):
    p, _ = store
    res = run_replay(p, [], tmp_path / "quiet", window_ns=4_000 * MS)
    assert capfd.readouterr().err == ""  # stderr is not a TTY under pytest: no bar
    seen = []
    run_replay(p, [], tmp_path / "cb", window_ns=4_000 * MS, batch_rows=100,
               progress=lambda n, now: seen.append((n, now)))
    assert len(seen) > 5 and seen[-1][0] == res.events
    assert all(a[0] < b[0] and a[1] <= b[1] for a, b in itertools.pairwise(seen))


@pytest.mark.parametrize("what,streams,n", [("quote", (2, 4), 9), ("trade", (3, 5), 2)])
def test_count_wakes_after_every_nth_matching_event(store, tmp_path, what, streams, n):
    from replay.engine.feed import Feed
    from replay.store import open_store

    p, ids = store
    chosen = (ids["BTC-PERPETUAL"], *[i for n, i in ids.items() if n.endswith("-C")][:3])
    probe = Probe("probe", lambda now: WakeCondition(**{f"{what}_count": n},
                                                     instruments=chosen))
    run_replay(p, [probe], tmp_path / "q", window_ns=1_500 * MS)
    with open_store(p) as st:
        ev = [(int(s), int(q), int(i)) for b in Feed(st, window_ns=10**12)
              for s, q, i in zip(b.stream, b.seq, b.instrument_id)]
    matching = [(s, q) for s, q, i in ev if s in streams and i in chosen]
    want = matching[n - 1::n]
    got = [s[4] for s in probe.seen]
    assert len(got) == len(want) > 10 and got == want
    assert all(s[1] == f"{what}_count" for s in probe.seen)


def test_wake_condition_validation():
    with pytest.raises(ValueError):
        WakeCondition()
    with pytest.raises(ValueError):
        WakeCondition(corridor=(2.0, 1.0))
    with pytest.raises(ValueError):
        WakeCondition(quote_count=0)
    with pytest.raises(ValueError):
        WakeCondition(trade_count=0)
    with pytest.raises(ValueError):
        WakeCondition(deadline=5, instruments=(1,))
    from replay.engine.wake import WakeTable

    w = WakeTable(1, 4)
    with pytest.raises(ValueError, match="not after now"):
        w.set(0, WakeCondition(deadline=10), now=10)
