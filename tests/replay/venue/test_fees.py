import math

import pytest
from numpy.testing import assert_allclose

from replay.model.orders import Fill, InstrumentSpec
from replay.venue.fees import DERIBIT_FEES, FeeSchedule, VenueFees, apply_fees, fee, notional

BTC_OPT = InstrumentSpec(1, "option", "inverse", 1.0, 0.0001, 60000.0, 0, True)
BTC_PERP = InstrumentSpec(2, "perp", "inverse", 10.0, 0.5)
USDT_PERP = InstrumentSpec(3, "perp", "linear", 0.001, 0.1)
USDC_OPT = InstrumentSpec(4, "option", "linear", 0.01, 1.0, 60000.0, 0, False)


def test_deribit_option_fee_per_contract_when_cap_does_not_bind() -> None:
    # 5 contracts at 0.05 BTC: 0.0003*5 = 0.0015 < 12.5% * 0.05 * 5 = 0.03125
    f = fee(DERIBIT_FEES.option, BTC_OPT, "taker", 5, 0.05)
    assert_allclose(f, 0.0015, rtol=1e-12)


def test_deribit_option_fee_cap_binds_for_cheap_options() -> None:
    # 10 contracts at 0.001 BTC: 0.003 per-contract fee vs cap 0.125 * 0.001 * 10 = 0.00125
    f = fee(DERIBIT_FEES.option, BTC_OPT, "maker", 10, 0.001)
    assert_allclose(f, 0.00125, rtol=1e-12)
    # break-even premium 0.0003 / 0.125 = 0.0024 BTC
    assert_allclose(fee(DERIBIT_FEES.option, BTC_OPT, "taker", 1, 0.0024), 0.0003, rtol=1e-12)


def test_an_option_contract_of_a_tenth_of_a_coin_pays_a_tenth_of_the_fee() -> None:
    """Per-contract option fees are quoted for a contract of one unit of the underlying
    (Deribit: 0.03 % of the underlying); before, a 0.1-coin contract paid the whole 0.0003."""
    small = InstrumentSpec(5, "option", "inverse", 0.1, 0.0001, 60000.0, 0, True)
    assert_allclose(fee(DERIBIT_FEES.option, small, "taker", 5, 0.05), 0.00015, rtol=1e-12)
    # the cap scales with the contract too: 12.5 % of 10 * 0.1 * 0.001 coin
    assert_allclose(fee(DERIBIT_FEES.option, small, "maker", 10, 0.001), 0.000125, rtol=1e-12)
    assert fee(DERIBIT_FEES.option, BTC_OPT, "taker", 5, 0.05) == 0.0003 * 5  # cs 1: as quoted


def test_inverse_perp_taker_bps_in_coin_and_zero_maker() -> None:
    # 1000 contracts * 10 USD at 50000 = 0.2 BTC notional; 5 bps -> 0.0001 BTC
    assert_allclose(fee(DERIBIT_FEES.perp, BTC_PERP, "taker", 1000, 50000.0), 1e-4, rtol=1e-12)
    assert fee(DERIBIT_FEES.perp, BTC_PERP, "maker", 1000, 50000.0) == 0.0


def test_linear_notionals_and_rebates() -> None:
    sched = FeeSchedule(maker_bps=-1.0, taker_bps=4.0)
    # 2000 * 0.001 BTC at 60000 = 120000 USD; 4 bps = 48 USD; -1 bp rebate = -12 USD
    assert_allclose(fee(sched, USDT_PERP, "taker", 2000, 60000.0), 48.0, rtol=1e-12)
    assert_allclose(fee(sched, USDT_PERP, "maker", 2000, 60000.0), -12.0, rtol=1e-12)
    # linear option: bps on the underlying notional, cap on the USD premium
    opt = FeeSchedule(taker_bps=3.0, premium_cap_fraction=0.125)
    assert_allclose(notional(USDC_OPT, 100, 500.0, 60000.0), 60000.0, rtol=1e-12)
    assert_allclose(fee(opt, USDC_OPT, "taker", 100, 500.0, 60000.0), 18.0, rtol=1e-12)
    # cap: 0.125 * 100 contracts * 0.01 * 10 USD = 1.25 USD < 18 USD
    assert_allclose(fee(opt, USDC_OPT, "taker", 100, 10.0, 60000.0), 1.25, rtol=1e-12)
    with pytest.raises(ValueError):
        fee(opt, USDC_OPT, "taker", 100, 10.0)


def test_a_linear_option_pays_its_per_contract_share_of_the_underlying_in_usd() -> None:
    """The per-contract rate is a share of the underlying (0.0003: 0.03 %): a USDC option
    pays it on the underlying's USD value, as an inverse one pays it in coin.  Before, a
    linear option paid 0.0003 USD a contract."""
    inverse = fee(DERIBIT_FEES.option, BTC_OPT, "taker", 2, 0.05)
    linear = fee(DERIBIT_FEES.option, USDC_OPT, "taker", 200, 3_000.0, 60_000.0)
    assert_allclose(inverse * 60_000.0, linear, rtol=1e-12)  # 200 x 0.01 = 2 coins of each
    assert_allclose(linear, 0.0003 * 200 * 0.01 * 60_000.0, rtol=1e-12)
    # the cap binds on a cheap one: 12.5 % of 200 x 0.01 x 10 USD
    assert_allclose(fee(DERIBIT_FEES.option, USDC_OPT, "taker", 200, 10.0, 60_000.0), 2.5,
                    rtol=1e-12)
    with pytest.raises(ValueError, match="underlying price"):
        fee(DERIBIT_FEES.option, USDC_OPT, "taker", 200, 3_000.0)


def test_apply_fees_sets_each_fill_fee() -> None:
    fills = (Fill(1, 1, 0, 1, 0.001, 10, "taker"), Fill(1, 1, 0, 1, 0.05, 5, "taker", level=1))
    out = apply_fees(fills, DERIBIT_FEES, BTC_OPT)
    assert_allclose([f.fee for f in out], [0.00125, 0.0015], rtol=1e-12)
    with pytest.raises(ValueError):
        VenueFees().for_instrument(InstrumentSpec(9, "index"))
    assert math.isclose(fee(DERIBIT_FEES.option, BTC_OPT, "taker", 0, 0.05), 0.0)
