"""End-to-end backtests on a small synthetic store: metrics contract, exact attribution sum,
determinism, calibration-only runs and user-facing config errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import duckdb
import pytest
from numpy.testing import assert_allclose
from omegaconf import OmegaConf

import replay
from replay.errors import ConfigError
from replay.model.orders import REJECT_REASONS
from replay.synth import SynthConfig, synthesize

CONF = Path(__file__).resolve().parents[3] / "conf"
CONTRACT_KEYS = {
    "calibration": {"n_fits", "rmse_vol_pts", "inside_spread_pct", "oos_rmse_vol_pts",
                    "param_jitter", "arb_violations", "fit_ms_median",
                    "vs_venue_mark_iv_mae_vol_pts"},
    "pnl": {"total_usd", "total_coin", "options_usd", "hedge_usd", "fees_usd", "funding_usd",
            "slippage_usd", "step_std_usd"},
    "execution": {"n_orders", "n_fills", "slippage_bps_mean", "implementation_shortfall_usd",
                  "markout_bps"},
    "attribution": {"delta", "gamma", "vega", "theta", "vanna", "volga", "funding", "fees",
                    "slippage", "residual"},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("synth") / "s.duckdb"
    synthesize(db, SynthConfig(hours=0.5, seed=3, model="heston", scale="small"))
    return db


def _cfg(db: Path, out: Path, **groups) -> dict:
    def group(name: str, option: str):
        return OmegaConf.to_container(OmegaConf.load(CONF / name / f"{option}.yaml"))

    cfg = {"data": {"db": str(db)}, "seed": 0, "out_dir": str(out),
           "report": {"html": False, "pnl_every_s": 30.0}}
    for name, option in {"calibration": "svi", "book": "fixed", "strategy": "delta_band",
                         **groups}.items():
        node = group(name, option) if option else None
        if node:
            node.pop("defaults", None)
        cfg[name] = node
    cfg["calibration"]["every"] = "60s"
    return cfg


def test_backtest_metrics_contract_and_exact_attribution(store, tmp_path):
    m = replay.run(_cfg(store, tmp_path / "a"))
    assert set(m) >= {"events_replayed", "wall_seconds", "events_per_second", "journal_hash"}
    for block, keys in CONTRACT_KEYS.items():
        assert keys <= set(m[block]), block
    assert set(m["execution"]["markout_bps"]) == {"1s", "10s", "60s", "300s"}
    assert m["execution"]["n_fills"] >= 2  # the straddle legs at least
    assert m["calibration"]["n_fits"] > 0 and m["calibration"]["arb_violations"] == 0
    # each consumer's wakes and their cost; the calibration's are its replayed stream's
    assert {"calibration", "hedger", "pnl"} <= set(m["consumers"])
    assert m["consumers"]["calibration"]["wakes"] > 0 and m["consumers"]["hedger"]["wakes"] > 0
    # what the journal's rows cost: every row of every table, the writer's time and the wait
    with duckdb.connect(str(tmp_path / "a" / "journal.duckdb"), read_only=True) as con:
        tables = [r[0] for r in con.sql("SELECT table_name FROM duckdb_tables()").fetchall()]
        stored = sum(con.sql(f'SELECT count(*) FROM "{t}"').fetchall()[0][0] for t in tables
                     if t != "journal_meta")
    copied = m["journal"]["rows"]
    assert 0 < copied <= stored and m["journal"]["writer_seconds"] > 0
    assert 0 <= m["journal"]["wait_seconds"]
    # the buckets sum to the total (the residual takes what the Taylor explain misses)
    att = m["attribution"]
    assert_allclose(math.fsum(att.values()), m["pnl"]["total_usd"], rtol=1e-12, atol=1e-9)
    # fees and slippage are costs; the hedge's are the fills' on what is not an option
    assert m["pnl"]["fees_usd"] < 0 and m["pnl"]["slippage_usd"] < 0
    with duckdb.connect(str(tmp_path / "a" / "journal.duckdb"), read_only=True) as con:
        con.execute(f"ATTACH '{store}' AS mkt (READ_ONLY)")
        hedge_fees = con.sql("SELECT sum(fee_usd) FROM executions e JOIN mkt.instruments i "
                             "USING (instrument_id) WHERE i.kind <> 'option'").fetchall()[0][0]
    assert hedge_fees > 0
    assert_allclose(m["pnl"]["hedge_fees_usd"], -hedge_fees, rtol=1e-12)
    assert m["pnl"]["fees_usd"] < m["pnl"]["hedge_fees_usd"]  # the straddle's fees besides
    assert m["pnl"]["slippage_usd"] <= m["pnl"]["hedge_slippage_usd"] <= 0
    on_disk = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert on_disk["journal_hash"] == m["journal_hash"]


def test_same_data_and_config_same_journal_hash(store, tmp_path):
    a = replay.run(_cfg(store, tmp_path / "a"))
    b = replay.run(_cfg(store, tmp_path / "b"))
    assert a["journal_hash"] == b["journal_hash"]
    c = replay.run({**_cfg(store, tmp_path / "c"), "seed": 1,
                    "venue": {"jitter": "uniform", "jitter_ms": 5.0}})
    assert c["journal_hash"] != a["journal_hash"]


def test_calibration_only_replay(store, tmp_path):
    m = replay.run(_cfg(store, tmp_path / "cal", book=None, strategy=None))
    assert m["calibration"]["n_fits"] > 0
    assert m["execution"]["n_orders"] == 0
    assert m["pnl"]["total_usd"] is None and m["attribution"]["residual"] is None


def test_bad_config_names_the_key(store, tmp_path):
    cfg = _cfg(store, tmp_path / "bad")
    cfg["strategy"]["bandwidth"] = 0.2
    with pytest.raises(ConfigError, match=r"strategy.bandwidth: unknown key.*allowed keys: .*band"):
        replay.run(cfg)
    cfg = _cfg(store, tmp_path / "bad2")
    cfg["strategy"]["hedge"] = "swap"
    with pytest.raises(ConfigError, match=r"strategy.hedge: 'swap' is not allowed; choose one of perp"):
        replay.run(cfg)
    cfg = _cfg(store, tmp_path / "bad3")
    cfg["venue"] = {"latncy_ms": 3}
    with pytest.raises(ConfigError, match=r"venue.latncy_ms: unknown key; allowed keys: latency_ms"):
        replay.run(cfg)
    cfg = _cfg(store, tmp_path / "bad4")
    cfg["calibration"]["every"] = "often"
    with pytest.raises(ConfigError, match=r"calibration.every: 'often' is not understood"):
        replay.run(cfg)


def test_resume_from_snapshot_reproduces_the_hash(store, tmp_path):
    """Every consumer (calibration scheme, book, hedger, marker) and the venue's portfolio
    round-trip through a snapshot: resuming from the last one gives the uninterrupted hash."""
    out = tmp_path / "r"
    cfg = {**_cfg(store, out), "snapshot_every_s": 300.0}
    full = replay.run(cfg)
    snaps = sorted((out / "snapshots").iterdir())
    assert len(snaps) >= 3
    for s in snaps[1:]:  # keep only the first snapshot: the resume must replay the rest
        s.unlink()
    resumed = replay.run({**cfg, "resume": str(out)})
    assert resumed["journal_hash"] == full["journal_hash"]
    assert resumed["pnl"] == full["pnl"] and resumed["attribution"] == full["attribution"]


def test_a_new_run_refuses_a_directory_that_holds_a_run(store, tmp_path):
    """The engine starts a new run by deleting the journal and snapshots it finds."""
    out = tmp_path / "used"
    cfg = {**_cfg(store, out), "snapshot_every_s": 600.0}
    replay.run(cfg)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match=r"already holds a run \(journal.duckdb\).*resume="):
        replay.run(cfg)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # a run without snapshots cannot be resumed: the error does not suggest it
    bare = tmp_path / "bare"
    replay.run(_cfg(store, bare))
    with pytest.raises(ConfigError, match=r"already holds a run .*or remove it \(it has no "
                                          r"snapshot to resume from\)$"):
        replay.run(_cfg(store, bare))
    # a resume with another book is refused before the snapshot is restored
    with pytest.raises(ConfigError, match=r"resume: the config differs .* in book "):
        replay.run({**cfg, "book": None, "resume": str(out)})


def test_rejected_orders_are_counted_by_reason_and_noted(store, tmp_path):
    """A price band narrower than any spread refuses every market order: the run holds
    nothing, and its metrics (and the note a single run prints) say why."""
    from replay.app.hydra_app import rejected_note

    m = replay.run({**_cfg(store, tmp_path / "a"), "venue": {"price_band": 1e-9}})
    ex = m["execution"]
    assert ex["n_fills"] == 0 and ex["n_orders"] >= 2
    assert ex["rejected"] == {**dict.fromkeys(REJECT_REASONS, 0), "price_band": ex["n_orders"]}
    assert rejected_note(m) == (
        f"volreplay: note: the venue rejected all or part of {ex['n_orders']} of "
        f"{ex['n_orders']} orders (price_band: {ex['n_orders']}); see the journal's rejections "
        "table (docs/outputs.md)")
    with duckdb.connect(str(tmp_path / "a" / "journal.duckdb"), read_only=True) as con:
        per_order = con.sql("SELECT count(DISTINCT order_id) FROM rejections").fetchall()[0][0]
    assert per_order == ex["n_orders"]
