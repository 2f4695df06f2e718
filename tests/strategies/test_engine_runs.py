"""Books and strategies inside the real engine: corridor wakes, determinism, resume, Hydra."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from hydra.utils import instantiate

from replay.engine.loop import run_replay
from replay.errors import ConfigError
from replay.model.plugins import instantiate_checked
from strategies.board import SurfaceBoard
from strategies.books import FixedBook, MarketMakerBook
from strategies.hedging.registry import STRATEGIES, DeltaBand, WhalleyWilmott
from tests.strategies.test_base import (
    E1,
    NS,
    SPOT,
    LimitOrTouchVenue,
    build_store,
    journal_table,
)

COMMON = {"hedge": "perp", "delta_source": "flat", "flat_vol": 0.6, "min_trade": 1.0}
START = E1 - 60 * NS
TRADES = [(START + (3 + 2 * i) * NS + NS // 2, name, p, 1.5, side) for i, (name, p, side) in
          enumerate([("BTC-26DEC25-100000-C", 0.05, 1), ("BTC-26DEC25-90000-P", 0.02, -1),
                     ("BTC-12DEC25-105000-C", 0.001, 1), ("BTC-26DEC25-110000-C", 0.02, -1)])]


def trending(s: np.ndarray) -> np.ndarray:
    """Up 1.5 % in 40 s, then back down: the band must be left on both sides."""
    s = np.asarray(s, dtype=float)
    return SPOT * (1.0 + 0.015 * np.minimum(s, 80.0 - s) / 40.0)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    p = tmp_path_factory.mktemp("runs") / "s.duckdb"
    build_store(p, START, 80, spot_fn=trending, trades=TRADES)
    return p


def consumers():
    return [MarketMakerBook(name="mm", size_cap=1.0, latency_ns=1_000_000),
            FixedBook(structure="straddle", expiry="nearest_monthly", size=5.0),
            WhalleyWilmott(name="hedger", risk_aversion=1e-4, cost=0.002, latency_ns=3_000_000,
                           max_wake_ns=20 * NS, **COMMON)]


def test_band_wakes_on_its_corridor_and_trades_there(store, tmp_path):
    book = FixedBook(structure="call", expiry="nearest_monthly", size=10.0)
    hedger = DeltaBand(name="hedger", band=0.05, max_wake_ns=30 * NS, **COMMON)
    res = run_replay(store, [book, hedger], tmp_path / "run", venue=LimitOrTouchVenue(),
                     progress=False)
    dec = journal_table(res.journal_path, "hedge_decisions")
    wakes = journal_table(res.journal_path, "wakes")
    reason = dict(zip(wakes.seq, wakes.reason))
    # the wake event of each decision precedes it in the journal
    dec["why"] = [reason[max(s for s in reason if s < q)] for q in dec.seq]
    corr = dec[dec.why == "corridor"]
    assert len(corr) >= 4
    prev = dec.shift(1)
    for i in corr.index:
        lo, hi = prev.loc[i, "corridor_lo"], prev.loc[i, "corridor_hi"]
        assert not lo <= dec.loc[i, "spot"] <= hi  # it woke because the corridor was left
        assert dec.loc[i, "trade_delta"] != 0.0  # and the band was breached there
    assert dec.trade_delta.iloc[0] > 5.0  # the first wake hedged the new book
    later = dec.iloc[1:]
    assert (later.trade_delta[later.why == "deadline"] == 0.0).all()  # time decay is small
    assert (dec.corridor_lo < dec.spot).all() and (dec.spot < dec.corridor_hi).all()


def test_an_edge_band_with_lots_wakes_only_where_a_lot_trades(store, tmp_path):
    """Rebalancing to the band's edge, orders rounded to lots of 2,000 contracts and no
    minimum trade: a corridor wake comes only once a lot can trade (the breach beyond half a
    lot), not at every underlying update after the band is left while the trade rounds to
    no lot."""
    book = FixedBook(structure="call", expiry="nearest_monthly", size=10.0)
    hedger = WhalleyWilmott(name="hedger", risk_aversion=1e-4, cost=0.002,
                            max_wake_ns=30 * NS, **{**COMMON, "min_trade": 0.0, "lot": 2000.0})
    res = run_replay(store, [book, hedger], tmp_path / "run", venue=LimitOrTouchVenue(),
                     progress=False)
    dec = journal_table(res.journal_path, "hedge_decisions")
    wakes = journal_table(res.journal_path, "wakes")
    corridor = set(wakes.seq[wakes.reason == "corridor"])
    woke = dec[[max((s for s in wakes.seq if s < q), default=-1) in corridor for q in dec.seq]]
    assert len(woke) >= 2 and (woke.trade_delta != 0.0).all()


def test_fast_and_reference_engines_agree(store, tmp_path):
    fast = run_replay(store, consumers(), tmp_path / "fast", venue=LimitOrTouchVenue(),
                      progress=False)
    ref = run_replay(store, consumers(), tmp_path / "ref", venue=LimitOrTouchVenue(),
                     progress=False, engine="reference")
    kinds = journal_table(fast.journal_path, "journal").kind.value_counts()
    assert kinds["hedge_decision"] > 3 and kinds["book_order"] >= 5
    assert fast.journal_hash == ref.journal_hash


@pytest.mark.parametrize("name", ["delta_band", "whalley_wilmott", "zakamouline"])
def test_compiled_and_python_corridor_searches_give_the_same_journal(store, tmp_path, name,
                                                                     monkeypatch):
    """The hedgers' corridors by the compiled search and by its Python twin: the same wakes,
    trades and journal hash in the engine."""
    cls = STRATEGIES[name]
    extra = {"band": 0.05} if name == "delta_band" else {"risk_aversion": 1e-4, "cost": 0.002}

    def run(compiled: bool):
        monkeypatch.setattr(cls, "compiled_corridor", compiled)
        book = FixedBook(structure="straddle", expiry="nearest_monthly", size=5.0)
        hedger = cls(name="hedger", max_wake_ns=20 * NS, **extra, **COMMON)
        return run_replay(store, [book, hedger], tmp_path / str(compiled),
                          venue=LimitOrTouchVenue(), progress=False)

    fast, ref = run(True), run(False)
    decisions = journal_table(fast.journal_path, "hedge_decisions")
    assert (decisions.reason == "corridor").sum() >= 2 and (decisions.contracts != 0).sum() >= 2
    assert fast.journal_hash == ref.journal_hash


def test_resume_from_a_snapshot_gives_the_same_journal(store, tmp_path):
    full = run_replay(store, consumers(), tmp_path / "full", venue=LimitOrTouchVenue(),
                      progress=False, snapshot_every_ns=15 * NS)
    snaps = sorted((tmp_path / "full" / "snapshots").glob("*.snap"))
    assert len(snaps) >= 3
    shutil.copytree(tmp_path / "full", tmp_path / "resumed")
    mid = tmp_path / "resumed" / "snapshots" / snaps[len(snaps) // 2].name
    res = run_replay(store, consumers(), tmp_path / "resumed", venue=LimitOrTouchVenue(),
                     progress=False, snapshot_every_ns=15 * NS, resume=mid)
    assert res.journal_hash == full.journal_hash


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategies_instantiate_from_hydra_targets(name):
    cls = STRATEGIES[name]
    board = SurfaceBoard()
    cfg = {"_target_": f"strategies.hedging.registry.{cls.__name__}", "name": "hedger",
           "hedge": "perp", "delta_source": "surface", "flat_vol": 0.5, "latency_ns": 5_000_000,
           "min_trade": 1, "max_wake_ns": 60_000_000_000}
    s = instantiate(cfg, board=board)
    assert type(s) is cls and s.board is board and s.flat_vol == 0.5
    # the run's checked path: every accepted key is known, a wrong one is named
    s = instantiate_checked("strategy", cfg, board=board, unrelated_collaborator=object())
    assert type(s) is cls and s.board is board
    with pytest.raises(ConfigError, match="strategy.bnad: unknown key"):
        instantiate_checked("strategy", {**cfg, "bnad": 0.1})


def test_books_instantiate_from_hydra_targets():
    fixed = instantiate({"_target_": "strategies.books.FixedBook", "structure": "risk_reversal",
                         "expiry": "nearest_monthly", "size": 2, "side": "long", "delta": 0.25,
                         "execution": "mid"})
    mm = instantiate({"_target_": "strategies.books.MarketMakerBook", "size_cap": 5,
                      "rights": "call", "min_days": 1, "max_days": 60, "max_abs_delta": 0.6})
    assert isinstance(fixed, FixedBook) and isinstance(mm, MarketMakerBook)
    assert fixed.sign == 1.0 and mm.size_cap == 5.0
