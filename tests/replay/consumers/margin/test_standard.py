"""Standard margin against hand-computed values, and the cross / isolated collateral rule."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from replay.consumers.margin import PMParams, make_legs, portfolio_margin, standard_margin
from replay.consumers.margin.legs import free_collateral, group_sum
from replay.consumers.margin.standard import StandardParams
from tests.replay.consumers.margin import _ledger as lg

S = 50_000.0


def _one(units, strike, call, mark):
    legs = make_legs([units], [S], strike=[strike], t=[0.1], is_call=[call], mark=[mark])
    im, mm = standard_margin(legs)
    return float(im[0]), float(mm[0])


def test_short_call_out_and_in_the_money():
    # OTM by 10 % of S: IM = max(0.15 - 0.10, 0.10) S + mark = 0.10 * 50000 + 800
    assert_allclose(_one(-2.0, 55_000.0, True, 800.0), (2 * 5_800.0, 2 * (3_750.0 + 800.0)),
                    rtol=1e-15)
    # OTM by 2 %: 0.13 S + mark; ITM: no OTM reduction, 0.15 S + mark
    assert_allclose(_one(-1.0, 51_000.0, True, 2_000.0), (8_500.0, 5_750.0), rtol=1e-15)
    assert_allclose(_one(-1.0, 45_000.0, True, 6_000.0), (13_500.0, 9_750.0), rtol=1e-15)


def test_short_put_including_the_maintenance_floor():
    # OTM by 4 %: IM = 0.11 S + mark; MM = max(0.075, 0.075 * 0.02) S + mark
    assert_allclose(_one(-1.0, 48_000.0, False, 1_000.0), (6_500.0, 4_750.0), rtol=1e-15)
    # deep ITM, mark 3 coin: MM = max(0.075, 0.075 * 3) S + mark = 0.225 S + mark is above
    # the IM formula's 0.15 S + mark, so IM = MM
    im, mm = _one(-1.0, 200_000.0, False, 3 * S)
    assert_allclose(mm, 0.075 * 3 * S + 3 * S, rtol=1e-15)
    assert im == mm


def test_long_options_need_their_premium_and_futures_their_rates():
    assert _one(3.0, 55_000.0, True, 700.0) == (2_100.0, 2_100.0)
    legs = make_legs([-4.0], [S])  # short 4 BTC of perpetual
    im, mm = standard_margin(legs, StandardParams(future_im=0.03, future_mm=0.015))
    assert_allclose((im[0], mm[0]), (0.03 * 4 * S, 0.015 * 4 * S), rtol=1e-15)


def test_free_collateral_isolated_never_above_cross():
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 8))
        req = rng.uniform(0, 1e4, n)
        pnl = rng.normal(0, 1e4, n)
        f = free_collateral(5e4, req, pnl)
        assert f["isolated"] <= f["cross"] + 1e-9
        if (req - pnl >= 0).all():  # no group has a surplus: the modes agree
            assert_allclose(f["isolated"], f["cross"], rtol=1e-12)


@pytest.mark.parametrize("model", ["standard", "portfolio"])
def test_isolated_requirement_at_least_cross(model):
    """Per-position groups against one pool, for the same random books: standard margin is
    additive (equal), portfolio margin sub-additive (isolated >= cross)."""
    rng = np.random.default_rng(2)
    for _ in range(30):
        n = int(rng.integers(2, 10))
        strike = np.where(rng.random(n) < 0.8, S * np.exp(rng.normal(0, 0.15, n)), np.nan)
        legs = make_legs(rng.normal(0, 3, n), np.full(n, S), strike=strike,
                         t=rng.uniform(1, 90, n) / 365, is_call=rng.random(n) < 0.5,
                         vol=rng.uniform(0.4, 1.0, n))
        iso = legs.with_groups(np.arange(n))
        if model == "standard":
            im, _ = standard_margin(legs)
            assert_allclose(group_sum(standard_margin(iso)[0], iso.group, n).sum(), im.sum(),
                            rtol=1e-12)
        else:
            cross = portfolio_margin(legs, PMParams()).im[0]
            assert portfolio_margin(iso, PMParams()).im.sum() >= cross * (1 - 1e-12)


def test_inverse_legs_are_deribits_coin_formulas_at_the_coin_price():
    """At a 5 % basis (F = 1.05 S): an inverse option's requirement is Deribit's coin formula
    times the coin's price S, its premium ``Black(F) / F`` coin; a linear one's the same
    formula in USD at F.  Futures: the rate times the coin notional at the mark, times S
    (inverse) or the rate times the notional at the mark (linear).  Before, inverse legs were
    converted at F: 5 % too much."""
    s, f = lg.S, lg.F
    px = lg.prices(s)
    call_c, put_c = px[lg.INV_CALL], px[lg.INV_PUT]
    otm_call, otm_put = max(65_000.0 - f, 0.0), max(f - 55_000.0, 0.0)
    mm_put_c = max(0.075, 0.075 * put_c) + put_c
    want = {  # per position, (IM, MM) in USD
        lg.INV_CALL: ((max(0.15 - otm_call / f, 0.10) + call_c) * s, (0.075 + call_c) * s),
        lg.INV_PUT: (2 * max(max(0.15 - otm_put / f, 0.10) + put_c, mm_put_c) * s,
                     2 * mm_put_c * s),
        lg.INV_FUT: (0.02 * 3.0 * s, 0.01 * 3.0 * s),  # 3 BTC at the future's mark
        lg.INV_PERP: (0.02 * 0.5 * s, 0.01 * 0.5 * s),  # 0.5 BTC at the perp's mark
        lg.LIN_CALL: (3 * (max(0.15 - otm_call / f, 0.10) * f + px[lg.LIN_CALL]),
                      3 * (0.075 * f + px[lg.LIN_CALL])),
        lg.LIN_FUT: (0.02 * 2.0 * f, 0.01 * 2.0 * f),
    }
    pf = lg.ledger([(lg.INV_CALL, -1.0, s), (lg.INV_PUT, -2.0, s),
                    (lg.INV_FUT, -3.0 * f / 10.0, s), (lg.INV_PERP, 0.5 * s / 10.0, s),
                    (lg.LIN_CALL, -3.0, s), (lg.LIN_FUT, 2.0, s)])
    im, mm = standard_margin(lg.legs_of(pf))
    ids = sorted(pf.net_qty())
    assert set(ids) == set(want)
    assert_allclose(im, [want[i][0] for i in ids], rtol=1e-12)
    assert_allclose(mm, [want[i][1] for i in ids], rtol=1e-12)
    # a long inverse option needs its premium, in USD at S
    im_long, mm_long = standard_margin(lg.legs_of(lg.ledger([(lg.INV_CALL, 2.0, s)])))
    assert_allclose((im_long[0], mm_long[0]), (2 * call_c * s,) * 2, rtol=1e-12)
