import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from calibration.pricing.black import gamma as black_gamma
from calibration.pricing.black import vega as black_vega
from strategies.hedging.bands import (
    band_trade,
    gamma_vega_neutralise,
    leland_vol,
    move_corridor,
    next_periodic_deadline,
    whalley_wilmott_half_width,
    zakamouline_h0,
    zakamouline_h1,
    zakamouline_half_width,
    zakamouline_k,
    zakamouline_modified_vol,
)


def test_whalley_wilmott_hand_value() -> None:
    # (1.5 * 1 * 5e-4 * 50000 * (1e-4)^2 / 1e-3)^(1/3) = (3.75e-4)^(1/3)
    h = whalley_wilmott_half_width(1e-4, 50000.0, 5e-4, 1e-3)
    assert_allclose(h, 3.75e-4 ** (1 / 3), rtol=1e-14)


def test_whalley_wilmott_scaling_with_cost_gamma_and_discount() -> None:
    base = whalley_wilmott_half_width(2e-4, 60000.0, 1e-4, 2e-3, r=0.05, tau=0.5)
    costs = np.array([1e-4, 8e-4, 27e-4])
    h = whalley_wilmott_half_width(2e-4, 60000.0, costs, 2e-3, r=0.05, tau=0.5)
    assert_allclose(h / base, [1.0, 2.0, 3.0], rtol=1e-13)  # H ~ lam^(1/3)
    assert_allclose(whalley_wilmott_half_width(-4e-4, 60000.0, 1e-4, 2e-3, 0.05, 0.5) / base,
                    4 ** (1 / 3), rtol=1e-13)  # H ~ |Gamma|^(2/3)
    undiscounted = whalley_wilmott_half_width(2e-4, 60000.0, 1e-4, 2e-3)
    assert_allclose(base / undiscounted, math.exp(-0.05 * 0.5 / 3), rtol=1e-13)


LAM, TAU, R, SIG, RA, S, G = 0.002, 0.25, 0.03, 0.6, 0.5, 50000.0, 2e-4


def test_zakamouline_terms_against_hand_computation() -> None:
    # K = -4.76 lam^.78 tau^-.02 (e^{-r tau}/sigma)^.25 (ra S^2 |G|)^.15, term by term in logs
    log_k = (math.log(4.76) + 0.78 * math.log(LAM) - 0.02 * math.log(TAU)
             + 0.25 * (-R * TAU - math.log(SIG)) + 0.15 * math.log(RA * S * S * G))
    k = -math.exp(log_k)
    assert_allclose(k, -0.28105443042241834, rtol=1e-12)
    assert_allclose(zakamouline_k(G, S, LAM, RA, SIG, TAU, R), k, rtol=1e-12)
    assert_allclose(zakamouline_k(-G, S, LAM, RA, SIG, TAU, R), k, rtol=1e-12)
    h0 = 0.002 / (0.5 * 50000.0 * 0.36 * 0.25)  # = 8.888...e-7
    assert_allclose(zakamouline_h0(S, LAM, RA, SIG, TAU), h0, rtol=1e-13)
    log_h1 = (math.log(1.12) + 0.31 * math.log(LAM) + 0.05 * math.log(TAU)
              + 0.25 * (-R * TAU - math.log(SIG)) + 0.5 * math.log(G / RA))
    assert_allclose(zakamouline_h1(G, LAM, RA, SIG, TAU, R), math.exp(log_h1), rtol=1e-12)
    assert_allclose(math.exp(log_h1), 0.003452329208822757, rtol=1e-12)
    assert_allclose(zakamouline_half_width(G, S, LAM, RA, SIG, TAU, R), h0 + math.exp(log_h1),
                    rtol=1e-12)


def test_zakamouline_modified_vol_direction() -> None:
    k = -0.28105443042241834
    assert_allclose(zakamouline_modified_vol(SIG, k, short=True), 0.6 * math.sqrt(1.28105443042241834),
                    rtol=1e-13)
    assert_allclose(zakamouline_modified_vol(SIG, k, short=False),
                    0.6 * math.sqrt(0.71894556957758166), rtol=1e-13)
    assert zakamouline_modified_vol(SIG, -3.0, short=False) == 0.0  # clipped


def test_leland_vol_hand_value_and_monotonicity() -> None:
    dt = 1.0 / 8760.0  # hourly, in years
    le = math.sqrt(2 / math.pi) * 0.001 / (0.5 * math.sqrt(dt))
    assert_allclose(le, 0.149356, rtol=1e-5)  # 0.7978846e-3 / (0.5 * 0.01068437)
    assert_allclose(leland_vol(0.5, 0.001, dt), 0.5 * math.sqrt(1 + le), rtol=1e-14)
    assert_allclose(leland_vol(0.5, 0.001, dt, short=False), 0.5 * math.sqrt(1 - le), rtol=1e-14)
    by_cost = leland_vol(0.5, np.array([0.0, 1e-4, 1e-3, 1e-2]), dt)
    assert by_cost[0] == 0.5 and np.all(np.diff(by_cost) > 0)
    by_dt = leland_vol(0.5, 1e-3, np.array([1 / 8760, 1 / 365, 1 / 52]))
    assert np.all(np.diff(by_dt) < 0) and np.all(by_dt > 0.5)


def test_band_trade_edge_and_center() -> None:
    assert band_trade(0.30, 0.25, 0.1) == 0.0
    assert_allclose(band_trade(0.50, 0.25, 0.1, to="edge"), 0.15, rtol=1e-14)
    assert_allclose(band_trade(0.00, 0.25, 0.1, to="edge"), -0.15, rtol=1e-14)
    assert_allclose(band_trade(0.50, 0.25, 0.1, to="center"), 0.25, rtol=1e-14)
    with pytest.raises(ValueError):
        band_trade(0.5, 0.0, 0.1, to="middle")


def test_triggers() -> None:
    assert_allclose(move_corridor(50000.0, 0.01), (49500.0, 50500.0), rtol=1e-14)
    assert next_periodic_deadline(1_000, 300) == 1_200
    assert next_periodic_deadline(1_200, 300) == 1_500  # strictly after now
    assert next_periodic_deadline(1_000, 300, anchor_ns=50) == 1_250
    with pytest.raises(ValueError):
        move_corridor(1.0, 0.0)


def test_gamma_vega_solve_is_exact() -> None:
    g1, v1, g2, v2 = 3e-5, 90.0, 1e-5, 140.0
    q_true = (-7.0, 4.5)
    port_g = -(g1 * q_true[0] + g2 * q_true[1])
    port_v = -(v1 * q_true[0] + v2 * q_true[1])
    assert_allclose(gamma_vega_neutralise(port_g, port_v, g1, v1, g2, v2), q_true, rtol=1e-12)


def test_gamma_vega_with_black_greeks_neutralises_a_short_straddle() -> None:
    f, t = 50000.0, 30 / 365
    port_g = -2 * black_gamma(f, 50000.0, t, 0.55, True)  # short 1 call + 1 put
    port_v = -2 * black_vega(f, 50000.0, t, 0.55, True)
    legs = [(45000.0, 7 / 365, False), (55000.0, 90 / 365, True)]
    gs = [float(black_gamma(f, k, tt, 0.55, c)) for k, tt, c in legs]
    vs = [float(black_vega(f, k, tt, 0.55, c)) for k, tt, c in legs]
    q1, q2 = gamma_vega_neutralise(float(port_g), float(port_v), gs[0], vs[0], gs[1], vs[1])
    assert_allclose(port_g + q1 * gs[0] + q2 * gs[1], 0.0, atol=1e-12 * abs(float(port_g)))
    assert_allclose(port_v + q1 * vs[0] + q2 * vs[1], 0.0, atol=1e-12 * abs(float(port_v)))


def test_gamma_vega_collinear_raises() -> None:
    with pytest.raises(ValueError):
        gamma_vega_neutralise(1e-5, 10.0, 2e-5, 100.0, 4e-5, 200.0)
    with pytest.raises(ValueError):
        gamma_vega_neutralise(1e-5, 10.0, 0.0, 0.0, 4e-5, 200.0)
