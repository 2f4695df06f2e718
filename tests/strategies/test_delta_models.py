"""Hedgers under each smile dynamics in a backtest: the default keeps the sticky-strike
journal, the others change the deltas the hedge follows, and the measured SSR / Hull-White
state survives a resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import replay
from replay.errors import ConfigError
from replay.synth import SynthConfig, synthesize
from strategies.dynamics import SmileTracker
from tests.helpers import conf_group, journal_query


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("synth") / "s.duckdb"
    synthesize(db, SynthConfig(hours=1.0, seed=6, model="heston", scale="small"))
    return db


def _cfg(db: Path, out: Path, **strategy) -> dict:
    return {"data": {"db": str(db)}, "seed": 0, "out_dir": str(out),
            "report": {"html": False, "pnl_every_s": 60.0},
            "calibration": {**conf_group("calibration", "svi"), "every": "30s"},
            "book": {**conf_group("book", "fixed"), "structure": "risk_reversal", "delta": 0.25},
            "strategy": {**conf_group("strategy", "delta_band"), "band": 0.02,
                         "dynamics_horizon_s": 60.0, **strategy}}


def _targets(run: Path) -> np.ndarray:
    return journal_query(run, "SELECT target_delta FROM hedge_decisions ORDER BY seq")[
        "target_delta"].to_numpy()


def test_delta_models_in_a_backtest(store, tmp_path):
    base = replay.run(_cfg(store, tmp_path / "ss"))
    same = replay.run(_cfg(store, tmp_path / "ss1", ssr=1.0, delta_model="ssr"))
    assert same["journal_hash"] == base["journal_hash"]  # R = 1 is sticky strike
    t_base = _targets(tmp_path / "ss")
    for model, extra in (("sticky_moneyness", {}), ("ssr", {"ssr": 2.0}),
                         ("ssr", {}), ("min_variance", {})):
        out = tmp_path / f"{model}{len(extra)}"
        m = replay.run(_cfg(store, out, delta_model=model, **extra))
        assert m["journal_hash"] != base["journal_hash"], (model, extra)
        t = _targets(out)
        assert np.isfinite(t).all() and len(t)
    # a short put wing under sticky moneyness: the skew makes the hedge target differ
    assert not np.allclose(_targets(tmp_path / "sticky_moneyness0")[:5], t_base[:5])


def test_measured_dynamics_survive_a_resume(store, tmp_path):
    out = tmp_path / "r"
    cfg = {**_cfg(store, out, delta_model="min_variance"), "snapshot_every_s": 900.0}
    full = replay.run(cfg)
    snaps = sorted((out / "snapshots").iterdir())
    for s in snaps[2:]:
        s.unlink()
    assert replay.run({**cfg, "resume": str(out)})["journal_hash"] == full["journal_hash"]


def test_bad_delta_model_config(store, tmp_path):
    with pytest.raises(ConfigError, match="strategy.delta_model: 'sticky_delta'"):
        replay.run(_cfg(store, tmp_path / "b", delta_model="sticky_delta"))
    with pytest.raises(ConfigError, match="strategy.ssr"):
        replay.run(_cfg(store, tmp_path / "b2", delta_model="ssr", ssr="high"))


def test_tracker_state_round_trips():
    t = SmileTracker()
    t2 = SmileTracker()
    t2.load_state_dict(t.state_dict())
    assert t2.last is None and not t2.pairs


def test_book_delta_paths_agree_under_a_delta_model():
    """The aggregate delta (``greeks``) and the corridor's delta function (``delta_fn``) add
    the same vega x vol move."""
    from numpy.testing import assert_allclose

    from calibration.pricing.smile_delta import dynamics_delta
    from strategies.greeks import BookLegs

    legs = BookLegs(np.array([1, 2]), np.array([-10.0, 5.0]), np.array([90_000.0, 105_000.0]),
                    np.array([0.05, 0.1]), np.array([0.6, 0.5]), np.array([False, True]),
                    np.array([1.001, 1.002]), 95_000.0, inverse=np.array([False, True]))
    moved = legs.with_vol_moves(np.array([0.3, -0.2]))
    # USD delta: q b dV/dF for the linear leg, q dV/dF for the inverse one (worth V / b USD)
    want = float(np.sum(legs.qty * np.array([1.001, 1.0]) * dynamics_delta(
        legs.forward, legs.strike, legs.t, legs.vol, legs.is_call, np.array([0.3, -0.2]))))
    assert_allclose(moved.greeks().delta, want, rtol=1e-12)
    assert_allclose(moved.delta_fn()(95_000.0), want, rtol=1e-9)
    assert moved.greeks().delta != legs.greeks().delta


def test_the_skew_is_read_at_the_legs_expiry_as_fitted():
    """Six hours after the fit, sticky moneyness moves a 30-day leg's vol by minus its own
    slice's skew.  Read at the time left, the skew blended in the 2-day slice's steeper one
    (0.17 % off before the fix; the surface's central difference is within 2e-5 of the
    slice's own skew)."""
    from calibration.models.svi import SVIParams
    from calibration.pricing.smile_delta import ssr_vol_move
    from calibration.surface import SmileSlice, Surface
    from strategies.dynamics import with_delta_model
    from strategies.greeks import NS_PER_YEAR, BookLegs

    day = 86400 * 10**9
    fit, now = 0, 6 * 3600 * 10**9
    sl = [SmileSlice("svi", SVIParams(0.25 * d / 365, 0.2 * (d / 365) ** 0.5, rho, 0.0, 0.1),
                     d * day, d / 365, 100_000.0, -1.0, 1.0)
          for d, rho in ((2, -0.9), (30, -0.2))]
    surf = Surface(sl, ts_ns=fit)
    strike = np.array([110_000.0])
    legs = BookLegs(np.array([1]), np.ones(1), strike, np.array([(30 * day - now) / NS_PER_YEAR]),
                    surf.iv_expiry(strike, np.array([30 * day])), np.array([True]), np.ones(1),
                    100_000.0, inverse=np.array([True]))
    got = with_delta_model(legs, surf, "sticky_moneyness", 0.0, SmileTracker(), now)
    _, skew = sl[1].vol_and_skew(np.log(strike / 100_000.0))
    np.testing.assert_allclose(got.dvol_dlnf, ssr_vol_move(skew, 0.0), rtol=1e-4)
