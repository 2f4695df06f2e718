"""Margin rules: the implied-move range and the surface-variability shocks."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from numpy.testing import assert_allclose

from calibration.models.svi import SVIParams
from calibration.surface import SmileSlice, Surface
from replay.consumers.margin import ImpliedMove, SurfaceVariability
from replay.errors import ConfigError

DAY_NS = 86400 * 10**9


def _flat(vol: float, ts_ns: int = 0) -> Surface:
    """A flat smile at ``vol`` on four expiries (SVI with b = 0)."""
    out = []
    for days in (1, 7, 30, 90):
        t = days / 365
        out.append(SmileSlice("svi", SVIParams(vol * vol * t, 0.0, 0.0, 0.0, 0.1),
                              ts_ns + days * DAY_NS, t, 50_000.0, -1, 1))
    return Surface(out, ts_ns)


def test_implied_move_is_k_sigma_sqrt_h():
    rule = ImpliedMove(k=2.5, horizon_s=3600.0)
    got = rule.params(SimpleNamespace(now=0), _flat(0.6))["price_range"]
    assert_allclose(got, 2.5 * 0.6 * math.sqrt(3600 / (365 * 86400)), rtol=1e-12)
    assert ImpliedMove(floor=0.1).params(SimpleNamespace(now=0), _flat(0.6)) == \
        {"price_range": 0.1}
    assert ImpliedMove(floor=0.05).params(SimpleNamespace(now=0), None) == {"price_range": 0.05}
    assert ImpliedMove().params(SimpleNamespace(now=0), None) == {}
    with pytest.raises(ConfigError, match="margin.rule.k"):
        ImpliedMove(k=-1)
    # from a forecast instead of the surface
    from replay.consumers.forecast import ForecastBoard

    board = ForecastBoard()
    rule = ImpliedMove(k=2.0, horizon_s=3600.0, vol="forecast", forecast="ewma")
    assert rule.params(SimpleNamespace(now=0), _flat(0.6), board) == {}
    board.latest[("ewma", 3600.0)] = 0.8
    assert_allclose(rule.params(SimpleNamespace(now=0), None, board)["price_range"],
                    2.0 * 0.8 * math.sqrt(3600 / (365 * 86400)), rtol=1e-12)
    with pytest.raises(ConfigError, match="needs forecasts"):
        rule.params(SimpleNamespace(now=0), None, None)


def test_surface_variability_measures_the_vol_of_the_atm_vol():
    rng = np.random.default_rng(4)
    rule = SurfaceVariability(k=2.0, horizon_s=3600.0, window_s=10 * 86400, floor=0.0,
                              cap=10.0)
    s_true = 2e-3  # per sqrt(second) of log vol
    lv, out = math.log(0.6), {}
    for i in range(2000):
        now = i * 60 * 10**9
        out = rule.params(SimpleNamespace(now=now), _flat(math.exp(lv), now))
        lv += s_true * math.sqrt(60.0) * rng.standard_normal()
    want = 2.0 * s_true * math.sqrt(3600.0)
    assert_allclose(out["volatility_range_up"], want, rtol=0.06)  # ~1/sqrt(2 x 2000) error
    state = rule.state_dict()
    again = SurfaceVariability(k=2.0, horizon_s=3600.0, window_s=10 * 86400, floor=0.0,
                               cap=10.0)
    again.load_state_dict(state)
    assert again.obs == rule.obs
