import json

import pytest
from numpy.testing import assert_allclose

from replay.model.orders import Fill, InstrumentSpec
from replay.venue.accounting import Portfolio, option_settlement_price

CALL = InstrumentSpec(1, "option", "inverse", 1.0, 0.0005, 50000.0, 0, True)
PUT = InstrumentSpec(2, "option", "inverse", 1.0, 0.0005, 50000.0, 0, False)
INV_PERP = InstrumentSpec(3, "perp", "inverse", 10.0, 0.5)
LIN_PERP = InstrumentSpec(4, "perp", "linear", 0.001, 0.1)
SPECS = {s.instrument_id: s for s in (CALL, PUT, INV_PERP, LIN_PERP)}
TOL = {"rtol": 1e-12, "atol": 1e-12}


def fill(iid: int, side: int, qty: float, price: float, fee: float = 0.0) -> Fill:
    return Fill(0, iid, 0, side, price, qty, "taker", fee)


def test_inverse_perp_pnl_coin_and_usd() -> None:
    p = Portfolio(SPECS)
    p.apply_fill(fill(3, 1, 1000, 50000.0), 50000.0)  # long 10000 USD = 0.2 BTC
    m = p.mark({3: 45000.0}, 45000.0)
    # 10000 * (1/50000 - 1/45000) = -0.0222... BTC; * 45000 = -1000 USD
    assert_allclose([m.unrealized_coin, m.unrealized_usd], [10000 * (1 / 50000 - 1 / 45000), -1000.0], **TOL)
    p.apply_fill(fill(3, -1, 1000, 55000.0), 55000.0)
    m = p.mark({}, 55000.0)
    # 10000 * (1/50000 - 1/55000) = 0.0181818 BTC, worth 1000 USD at 55000: 0.2 BTC * 5000 USD
    assert_allclose([m.realized_coin, m.realized_usd], [10000 * (1 / 50000 - 1 / 55000), 1000.0], **TOL)
    assert_allclose([m.unrealized_coin, m.hedge_usd, m.options_usd], [0.0, 1000.0, 0.0], **TOL)


def test_inverse_perp_average_entry_is_harmonic() -> None:
    p = Portfolio(SPECS)
    p.apply_fill(fill(3, 1, 1000, 50000.0), 50000.0)
    p.apply_fill(fill(3, 1, 1000, 40000.0), 40000.0)
    assert_allclose(p.positions[3].avg_price, 2000 / (1000 / 50000 + 1000 / 40000), **TOL)
    # closing at 50000: first lot earns 0, second lot 10000 (1/40000 - 1/50000) = 0.05 BTC
    p.apply_fill(fill(3, -1, 2000, 50000.0), 50000.0)
    assert_allclose(p.mark({}, 50000.0).realized_coin, 0.05, **TOL)


def test_coin_option_premium_accounting_with_fees() -> None:
    p = Portfolio(SPECS)
    p.apply_fill(fill(1, 1, 2, 0.05, fee=0.0006), 50000.0)  # 2500 USD per contract at entry
    m = p.mark({1: 0.06}, 55000.0)
    # coin: 2 (0.06 - 0.05) = 0.02; USD: 2 (0.06 * 55000 - 0.05 * 50000) = 1600
    assert_allclose([m.unrealized_coin, m.unrealized_usd], [0.02, 1600.0], **TOL)
    p.apply_fill(fill(1, -1, 2, 0.04, fee=0.0006), 60000.0)
    m = p.mark({}, 60000.0)
    assert_allclose([m.realized_coin, m.realized_usd], [-0.02, 2 * (2400 - 2500)], **TOL)
    assert_allclose([m.fees_coin, m.fees_usd], [0.0012, 0.0006 * 50000 + 0.0006 * 60000], **TOL)
    assert_allclose([m.total_coin, m.total_usd], [-0.0212, -200.0 - 66.0], **TOL)
    assert_allclose(m.options_usd, -200.0, **TOL)


def test_short_option_settles_at_intrinsic() -> None:
    p = Portfolio(SPECS)
    p.apply_fill(fill(1, -1, 1, 0.05), 50000.0)
    p.apply_fill(fill(2, -1, 1, 0.04), 50000.0)
    assert_allclose(p.settle(1, 60000.0), 10000 / 60000, **TOL)
    assert p.settle(2, 60000.0) == 0.0
    m = p.mark({}, 60000.0)
    # call: -(1/6 - 0.05) coin, -(10000 - 2500) USD; put keeps its premium: 0.04 coin, 2000 USD
    assert_allclose(m.realized_coin, -(10000 / 60000 - 0.05) + 0.04, **TOL)
    assert_allclose(m.realized_usd, -7500.0 + 2000.0, **TOL)
    assert p.net_qty() == {}
    assert_allclose(option_settlement_price(PUT, 40000.0), 0.25, **TOL)
    with pytest.raises(ValueError):
        option_settlement_price(INV_PERP, 1.0)


def test_linear_flip_through_zero_and_coin_conversion() -> None:
    p = Portfolio(SPECS)
    p.apply_fill(fill(4, 1, 2000, 100.0), 100.0)  # 2 units long at 100
    p.apply_fill(fill(4, -1, 5000, 110.0), 110.0)  # close 2 (+20 USD), open 3 short at 110
    pos = p.positions[4]
    assert_allclose([pos.qty, pos.avg_price], [-3000, 110.0], **TOL)
    m = p.mark({4: 105.0}, 105.0)
    assert_allclose([m.realized_usd, m.realized_coin], [20.0, 20.0 / 110.0], **TOL)
    assert_allclose([m.unrealized_usd, m.unrealized_coin], [15.0, 15.0 / 105.0], **TOL)


def test_funding_and_totals() -> None:
    p = Portfolio(SPECS)
    p.apply_fill(fill(3, -1, 100, 50000.0, fee=1e-6), 50000.0)
    p.apply_funding(3, 2e-5, 50000.0)
    p.apply_funding(4, -3.0, 50000.0)
    m = p.mark({3: 50000.0}, 50000.0)
    assert_allclose([m.funding_coin, m.funding_usd], [2e-5 - 3.0 / 50000, 1.0 - 3.0], **TOL)
    assert_allclose(m.total_usd, m.realized_usd + m.unrealized_usd - m.fees_usd + m.funding_usd, **TOL)
    assert_allclose(m.total_usd, -0.05 + 1.0 - 3.0, **TOL)


def test_state_dict_round_trip_through_json() -> None:
    p = Portfolio(SPECS)
    p.apply_fill(fill(1, 1, 3, 0.05, fee=0.0009), 50000.0)
    p.apply_fill(fill(3, -1, 700, 51000.0), 51000.0)
    p.apply_fill(fill(3, 1, 200, 49000.0), 49000.0)
    p.apply_funding(3, 1e-5, 49000.0)
    state = json.loads(json.dumps(p.state_dict()))
    q = Portfolio(SPECS)
    q.load_state_dict(state)
    marks = {1: 0.055, 3: 48000.0}
    assert q.mark(marks, 48000.0) == p.mark(marks, 48000.0)
    with pytest.raises(KeyError):
        Portfolio({}).load_state_dict(state)
    with pytest.raises(KeyError):
        p.mark({1: 0.05}, 48000.0)  # open perp without a mark
    with pytest.raises(ValueError):
        p.apply_fill(fill(1, 1, 1, 0.05), 0.0)


def test_instrument_spec_from_store_row() -> None:
    row = {"instrument_id": 5, "kind": "option", "settlement": "inverse", "contract_size": 1.0,
           "tick_size": 0.0005, "strike": 90000.0, "expiry_ns": 1_766_736_000_000_000_000,
           "is_call": True, "name": "BTC-26DEC25-90000-C"}
    spec = InstrumentSpec.from_row(row)
    assert (spec.instrument_id, spec.strike, spec.is_call, spec.is_option) == (5, 90000.0, True, True)
    perp = InstrumentSpec.from_row({"instrument_id": 6, "kind": "perp", "settlement": "inverse",
                                    "contract_size": 10.0, "tick_size": 0.5,
                                    "strike": float("nan"), "expiry_ns": None, "is_call": None})
    assert perp.strike is None and perp.expiry_ns is None and perp.is_inverse_delta_one
    with pytest.raises(ValueError):
        InstrumentSpec(7, "swap")
    with pytest.raises(ValueError):
        InstrumentSpec(7, "perp", "quanto")
