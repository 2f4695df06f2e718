"""A recorded consumer (its wakes known in advance, spliced into the journal by the engine
instead of woken) gives the journal of the live consumer it recorded: at every position in the
consumer order, alongside deadline, corridor, count and trade wakes, order arrivals and both
kinds of snapshot, in both engines and after a resume.  The store's timestamps sit on a coarse
grid, so other actions often fall on the recorded wakes' instants: the tie-break is exercised."""

from __future__ import annotations

import pytest

from replay.engine.loop import run_replay
from tests.replay.engine import MS, build_store
from tests.replay.engine.toys import (
    CorridorHedger,
    Periodic,
    QuoteCounter,
    Replayed,
    TouchVenue,
)

SNAPS = {"snapshot_every_events": 250, "snapshot_every_ns": 9_000 * MS}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    p = tmp_path_factory.mktemp("rec") / "s.duckdb"
    build_store(p, seed=5)
    return p


def others() -> list:
    # deadlines on the recorded consumer's grid (500 ms divides 1 s), a corridor with order
    # latency (arrivals), a quote counter that wakes at nearly every event
    return [Periodic("grid", 500 * MS), CorridorHedger("corridor", 3e-4, latency_ns=1_000 * MS),
            QuoteCounter("every_quote", 1), QuoteCounter("trades", 1, trades=True)]


@pytest.mark.parametrize("at", [0, 2, 4])
@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_a_recorded_consumer_journals_what_the_live_one_did(store, tmp_path, at, engine):
    live_cons = others()
    live_cons.insert(at, Periodic("recorded", 1_000 * MS))
    live = run_replay(store, live_cons, tmp_path / "live", venue=TouchVenue(), engine=engine,
                      **SNAPS)
    cons = others()
    cons.insert(at, Replayed("recorded", live.journal_path))
    again = run_replay(store, cons, tmp_path / "again", venue=TouchVenue(), engine=engine,
                       window_ns=3_000 * MS, batch_rows=64, **SNAPS)
    assert cons[at].row == len(cons[at].rows) > 20
    assert again.journal_hash == live.journal_hash


def test_the_order_of_a_tie_matters(store, tmp_path):
    """The test above can fail: splicing every tie after the other actions changes the hash."""
    live_cons = [Periodic("recorded", 1_000 * MS), *others()]
    live = run_replay(store, live_cons, tmp_path / "live", venue=TouchVenue())

    class Late(Replayed):
        def catch_up(self, rt, until, inclusive):
            return super().catch_up(rt, until, False)

    cons = [Late("recorded", live.journal_path), *others()]
    again = run_replay(store, cons, tmp_path / "late", venue=TouchVenue())
    assert again.journal_hash != live.journal_hash


def test_a_resumed_run_with_a_recorded_consumer_reaches_the_live_hash(store, tmp_path):
    live = run_replay(store, [Periodic("recorded", 1_000 * MS), *others()], tmp_path / "live",
                      venue=TouchVenue(), **SNAPS)
    run = tmp_path / "run"
    first = [Replayed("recorded", live.journal_path), *others()]
    run_replay(store, first, run, venue=TouchVenue(), **SNAPS)
    resumed = run_replay(store, [Replayed("recorded", live.journal_path), *others()], run,
                         venue=TouchVenue(), resume=run, **SNAPS)
    assert resumed.journal_hash == live.journal_hash


def test_each_consumers_wakes_and_their_cost_are_counted(store, tmp_path):
    """``consumer_costs`` counts every wake once, by consumer: the woken ones' wakes and a
    recorded consumer's caught-up wakes add up to the run's ``n_wakes``, and replaying a
    consumer changes no other consumer's count."""
    live = run_replay(store, [Periodic("recorded", 1_000 * MS), *others()], tmp_path / "live",
                      venue=TouchVenue())
    again = run_replay(store, [Replayed("recorded", live.journal_path), *others()],
                       tmp_path / "again", venue=TouchVenue())
    for res in (live, again):
        costs = res.consumer_costs
        assert {"recorded", "grid", "corridor", "every_quote", "trades"} <= set(costs)
        assert sum(c["wakes"] for c in costs.values()) == res.n_wakes
        for c in costs.values():
            assert c["seconds"] >= 0.0
            assert (c["us_per_wake"] is None) == (c["wakes"] == 0)
    assert live.consumer_costs["every_quote"]["wakes"] > 100
    for name in ("grid", "corridor", "every_quote", "trades"):
        assert again.consumer_costs[name]["wakes"] == live.consumer_costs[name]["wakes"]
