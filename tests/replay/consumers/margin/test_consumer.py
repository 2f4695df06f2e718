"""The margin consumer inside a backtest: the metrics and journal contract, equity against the
marker's PnL, margin calls and liquidation through the normal fill path, isolated mode,
resume, and config errors that name the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from numpy.testing import assert_allclose

import replay
from replay.errors import ConfigError
from replay.synth import SynthConfig, synthesize
from tests.helpers import conf_group, journal_query

MARGIN_KEYS = {"model", "initial_usd_mean", "initial_usd_max", "maintenance_usd_mean",
               "min_equity_over_mm", "margin_calls", "liquidations", "breach_horizon_s",
               "observations", "breaches", "breach_rate", "kupiec_p", "christoffersen_p"}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("synth") / "s.duckdb"
    synthesize(db, SynthConfig(hours=0.5, seed=3, model="heston", scale="small"))
    return db



def _cfg(db: Path, out: Path, margin: str = "portfolio", **over) -> dict:
    cfg = {"data": {"db": str(db)}, "seed": 0, "out_dir": str(out),
           "report": {"html": False, "pnl_every_s": 30.0},
           "calibration": {**conf_group("calibration", "svi"), "every": "60s"},
           "book": conf_group("book", "fixed"), "strategy": conf_group("strategy", "delta_band"),
           "margin": conf_group("margin", margin), "venue": over.pop("venue", {})}
    for key, value in over.items():
        node = cfg
        *path, last = key.split(".")
        for p in path:
            node = node[p]
        node[last] = value
    return cfg



@pytest.mark.parametrize("model", ["standard", "portfolio"])
def test_margin_metrics_and_journal(store, tmp_path, model):
    m = replay.run(_cfg(store, tmp_path / model, model))
    block = m["margin"]
    assert MARGIN_KEYS <= set(block)
    assert block["model"] == model and block["margin_calls"] == 0 and block["liquidations"] == 0
    assert block["initial_usd_mean"] > 0 and block["min_equity_over_mm"] > 1
    rows = journal_query(tmp_path / model, "SELECT * FROM margin ORDER BY seq")
    assert {"ts", "model", "initial_usd", "maintenance_usd", "equity_usd", "worst_scenario",
            "scenario_1", "pnl_usd_1", "free_cross_usd", "free_isolated_usd"} <= set(rows)
    assert (rows["reason"] == "fill").any()  # re-evaluated right after the book's fills
    assert (rows["initial_isolated_usd"] >= rows["initial_usd"] * (1 - 1e-12)).all()
    assert (rows["free_isolated_usd"] <= rows["free_cross_usd"] + 1e-6).all()
    # equity = initial equity + the marker's PnL at the instants both evaluate
    pnl = journal_query(tmp_path / model, "SELECT ts, total_usd FROM pnl")
    both = rows.merge(pnl, on="ts")
    assert len(both) >= 10
    assert_allclose(both["equity_usd"], 1_000_000.0 + both["total_usd"], rtol=1e-12)
    held = rows[rows["legs"] > 0]
    assert len(held) and (held["initial_usd"] > 0).all()
    if model == "portfolio":
        assert (held["worst_scenario"] != "").all()


def test_too_little_equity_is_called_and_liquidated(store, tmp_path):
    out = tmp_path / "liq"
    m = replay.run(_cfg(store, out, venue={"initial_equity": 20_000.0}))
    block = m["margin"]
    assert block["margin_calls"] >= 1 and block["liquidations"] >= 1
    assert block["min_equity_over_mm"] < 1
    liq = journal_query(out, "SELECT * FROM liquidations ORDER BY seq")
    assert len(liq) == block["liquidations"]
    orders = journal_query(out, "SELECT o.order_id, o.instrument_id, o.qty FROM orders o "
                     "WHERE o.consumer = 'margin'")
    assert len(orders) == len(liq)
    assert_allclose(sorted(orders["qty"]), sorted(liq["qty"]))
    # the liquidated options are gone from the books: their fills net to zero
    net = journal_query(out, "SELECT instrument_id, sum(qty) AS q FROM fills GROUP BY 1")
    gone = net[net.instrument_id.isin(liq.instrument_id)]
    assert_allclose(gone["q"], 0.0, atol=1e-9)
    # each liquidation fill paid the liquidation fee on top of the trading fee
    ex = journal_query(out, "SELECT e.fee, e.qty, e.instrument_id FROM executions e JOIN orders o "
                 "USING (order_id) WHERE o.consumer = 'margin'")
    assert len(ex) and (ex["fee"] >= 0.005 * ex["qty"].abs() * 0.999).all()
    calls = journal_query(out, "SELECT * FROM margin_calls")
    assert (calls["free_usd"] < 0).all()


def test_coin_collateral_is_revalued_at_the_coin_price(store, tmp_path):
    """Coin collateral is the initial coins plus the coin PnL, valued at today's price (not
    today's price times the initial coins plus PnL booked in USD at past prices)."""
    out = tmp_path / "coin"
    replay.run(_cfg(store, out, "standard", venue={"initial_equity": 10.0,
                                                   "equity_currency": "coin"}))
    both = journal_query(out, "SELECT m.equity_usd, m.usd_per_coin, p.total_coin FROM margin m "
                   "JOIN pnl p USING (ts)")
    assert len(both) >= 10 and both["usd_per_coin"].nunique() > 1
    assert_allclose(both["equity_usd"], (10.0 + both["total_coin"]) * both["usd_per_coin"],
                    rtol=1e-12)


def test_isolated_mode_with_a_rule_and_resume(store, tmp_path):
    """Isolated portfolio margin whose vol shocks follow a stateful rule: a resume from the
    first snapshot gives the uninterrupted hash and margin block."""
    out = tmp_path / "iso"
    rule = {"_target_": "replay.consumers.margin.SurfaceVariability", "window_s": 600.0,
            "floor": 0.2}
    cfg = {**_cfg(store, out, "portfolio", **{"margin.mode": "isolated",
                                              "margin.isolate_by": "expiry",
                                              "margin.rule": rule}),
           "snapshot_every_s": 300.0}
    full = replay.run(cfg)
    assert full["margin"]["mode"] == "isolated"
    params = journal_query(out, "SELECT params FROM margin WHERE params <> '{}'")["params"]
    assert len(params) and params.str.contains("volatility_range_up").all()
    snaps = sorted((out / "snapshots").iterdir())
    for s in snaps[1:]:
        s.unlink()
    resumed = replay.run({**cfg, "resume": str(out)})
    assert resumed["journal_hash"] == full["journal_hash"]
    assert resumed["margin"] == full["margin"]


@pytest.mark.parametrize("key, value, match", [
    ("margin.portfolio.price_rnage", 0.1, r"margin.portfolio.price_rnage: unknown key"),
    ("margin.mode", "pooled", r"margin.mode: 'pooled' is not allowed"),
    ("margin.portfolio.price_range", 1.5, r"margin.portfolio.price_range: 1.5 is out of range"),
    ("margin.portfolio.dynamics", "sticky_delta", r"margin.portfolio.dynamics: 'sticky_delta'"),
])
def test_bad_margin_config_names_the_key(store, tmp_path, key, value, match):
    with pytest.raises(ConfigError, match=match):
        replay.run(_cfg(store, tmp_path / "bad", **{key: value}))


def test_the_margin_frontier_preset_composes_and_runs(gbm_quarter_hour, tmp_path):
    from hydra import compose, initialize_config_dir

    from replay.app.hydra_app import CONF_DIR
    from replay.model.config import register

    register()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[
            "experiment=margin_frontier", f"data.db={gbm_quarter_hour}",
            f"+out_dir={tmp_path / 'run'}", "report.html=false", "margin.rule.k=2.0"])
    m = replay.run(cfg)
    assert m["margin"]["model"] == "portfolio" and m["margin"]["breach_horizon_s"] == 900.0
    params = journal_query(tmp_path / "run", "SELECT params FROM margin WHERE params <> '{}'")["params"]
    assert len(params) >= 3  # every evaluation once a surface is published
    # k ATM_IV sqrt(h) with the GBM store's true vol, 0.5, as the surface's ATM vol
    ranges = params.map(lambda p: json.loads(p)["price_range"])
    assert_allclose(ranges, 2.0 * 0.5 * (900 / (365 * 86400)) ** 0.5, rtol=0.05)


def test_coin_collateral_pnl_stays_in_coin_when_the_price_moves():
    """A closed inverse perp trade realised +5 coin (1M USD of contracts bought at 40,000,
    sold at 50,000): with the book flat, the collateral's PnL is 5 coin whatever the coin's
    price (in USD, what it was booked at)."""
    from replay.consumers.margin.book import group_pnl
    from replay.model.orders import Fill, InstrumentSpec
    from replay.venue.accounting import Portfolio

    pf = Portfolio({2: InstrumentSpec(2, "perp", "inverse", 10.0, 0.5)})
    pf.apply_fill(Fill(1, 2, 0, 1, 40_000.0, 100_000, "taker"), 40_000.0)
    pf.apply_fill(Fill(2, 2, 0, -1, 50_000.0, 100_000, "taker"), 50_000.0)
    for s in (50_000.0, 60_000.0):
        mk = pf.mark({2: s}, s)
        assert_allclose(group_pnl(mk, {2: 0}, 1, coin=True) / s, [5.0, 0.0], rtol=1e-12)
    assert_allclose(group_pnl(pf.mark({2: 60_000.0}, 60_000.0), {2: 0}, 1)[0], 250_000.0,
                    rtol=1e-12)


@pytest.mark.parametrize("currency", ["usd", "coin"])
def test_evaluate_values_the_ledgers_book_in_its_collateral_currency(currency):
    """The consumer builds the legs from the venue's ledger with each delta-one position's
    entry price and passes the collateral's currency: the journaled worst scenarios of a book
    of futures entered away from their marks are the ledger's own change of value (USD, or
    coin at today's price) at the moved prices."""
    from types import SimpleNamespace

    import numpy as np

    from replay.consumers.margin import MarginConsumer, PMParams, portfolio_margin
    from tests.replay.consumers.margin import _ledger as lg

    coin = currency == "coin"
    pf = lg.ledger([(lg.INV_PERP, -30_000.0, 50_000.0), (lg.INV_FUT, 20_000.0, 57_000.0),
                    (lg.LIN_FUT, 3.0, 70_000.0)])
    venue = SimpleNamespace(
        carry=SimpleNamespace(catch_up=lambda ctx: None), portfolio=pf, specs=lg.SPECS,
        cfg=SimpleNamespace(equity_currency=currency, initial_equity=100.0 if coin else 6e6),
        fill_listeners=[])
    rows = []
    ctx = SimpleNamespace(market=lg._Market(), now=lg.NOW,
                          emit=lambda kind, **row: rows.append(row))
    MarginConsumer("portfolio", venue=venue, liquidate=False).evaluate(ctx, "deadline")
    res = portfolio_margin(lg.legs_of(pf), PMParams(), coin=coin)
    assert_allclose(rows[0]["initial_usd"], res.im[0], rtol=1e-12)
    labels = res.scenarios.labels
    for n in (1, 2, 3):
        move = res.scenarios.moves[labels.index(rows[0][f"scenario_{n}"])]
        want = lg.ledger_change(pf, np.array([move]), coin)[0]
        assert_allclose(rows[0][f"pnl_usd_{n}"], want, rtol=1e-9)


def test_positions_whose_liquidation_is_in_flight_are_not_liquidated_again():
    """Two positions closed in one pass, the first order with the longer latency (jitter): the
    fill of the second woke the consumer while the first was in flight, past the last-sent
    order's arrival, and it sent a second closing order: the short call ended long."""
    from types import SimpleNamespace

    from replay.consumers.margin import MarginConsumer
    from replay.model.orders import Fill
    from tests.replay.consumers.margin import _ledger as lg

    pf = lg.ledger([(lg.INV_CALL, -10.0, lg.S), (lg.LIN_CALL, -10.0, lg.S)])
    venue = SimpleNamespace(
        carry=SimpleNamespace(catch_up=lambda ctx: None), portfolio=pf, specs=lg.SPECS,
        cfg=SimpleNamespace(equity_currency="usd", initial_equity=50_000.0), fill_listeners=[],
        position=lambda i: pf.positions[i].qty if i in pf.positions else 0.0)
    latencies, orders = iter([30_000_000, 5_000_000]), []

    def submit(iid, qty):
        ctx.last_arrival_ts = ctx.now + next(latencies)
        orders.append((iid, qty, ctx.last_arrival_ts))

    ctx = SimpleNamespace(market=lg._Market(), now=lg.NOW, emit=lambda kind, **r: None,
                          submit=submit, last_arrival_ts=None)
    margin = MarginConsumer("standard", venue=venue, grace_s=0.0)
    margin.evaluate(ctx, "deadline")
    assert len(orders) == 2 and margin.pending_until == max(a for *_, a in orders)
    iid, qty, first = min(orders, key=lambda o: o[2])
    pf.apply_fill(Fill(99, iid, first, 1, lg.prices(lg.S)[iid], abs(qty), "taker"), lg.S)
    ctx.now = first + 1
    margin.evaluate(ctx, "fill")
    assert len(orders) == 2  # the other position's closing order is still on its way
