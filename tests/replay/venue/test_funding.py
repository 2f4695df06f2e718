import numpy as np
import pytest
from numpy.testing import assert_allclose

from replay.model.orders import InstrumentSpec
from replay.venue.funding import accrue, discrete_payments, funding_payment

NS = 1_000_000_000
H = 3600 * NS
INV_PERP = InstrumentSpec(1, "perp", "inverse", 10.0, 0.5)
LIN_PERP = InstrumentSpec(2, "perp", "linear", 0.001, 0.1)


def test_longs_pay_when_rate_positive_linear() -> None:
    # 1000 * 0.001 BTC = 1 BTC at 50000 USD; 0.01% per 8h, held 8h -> long pays 5 USD
    assert_allclose(funding_payment(LIN_PERP, 1000, 50000.0, 1e-4, 8 * 3600, 8 * 3600), -5.0,
                    rtol=1e-12)
    assert_allclose(funding_payment(LIN_PERP, -1000, 50000.0, 1e-4, 8 * 3600, 8 * 3600), 5.0,
                    rtol=1e-12)
    # negative rate: shorts pay; half an interval accrues half
    assert_allclose(funding_payment(LIN_PERP, -1000, 50000.0, -1e-4, 8 * 3600, 4 * 3600), -2.5,
                    rtol=1e-12)


def test_inverse_perp_funding_in_coin() -> None:
    # 5000 contracts * 10 USD = 50000 USD = 1 BTC at 50000; rate 0.0002 per 8h over 8h
    assert_allclose(funding_payment(INV_PERP, 5000, 50000.0, 2e-4, 8 * 3600, 8 * 3600), -2e-4,
                    rtol=1e-12)
    # the same USD notional at a higher mark is fewer coins: 50000 USD at 62500 = 0.8 BTC
    assert_allclose(funding_payment(INV_PERP, -5000, 62500.0, 2e-4, 8 * 3600, 8 * 3600), 1.6e-4,
                    rtol=1e-12)


def test_accrue_piecewise_constant_rates() -> None:
    # records at 0h (r=1e-4, mark 50000), 2h (r=-2e-4, mark 40000), 10h (r=3e-4, mark 60000)
    ts = np.array([0, 2 * H, 10 * H])
    rates = np.array([1e-4, -2e-4, 3e-4])
    marks = np.array([50000.0, 40000.0, 60000.0])
    q = 1000.0  # 1 BTC linear
    got = accrue(LIN_PERP, q, 1 * H, 11 * H, ts, rates, 8 * 3600.0, marks)
    # [1h,2h): -1*50000*1e-4*1/8; [2h,10h): -1*40000*(-2e-4)*8/8; [10h,11h): -1*60000*3e-4/8
    want = -50000 * 1e-4 / 8 + 40000 * 2e-4 - 60000 * 3e-4 / 8
    assert_allclose(got, want, rtol=1e-12)
    # splitting the window does not change the total
    parts = sum(accrue(LIN_PERP, q, a, b, ts, rates, 8 * 3600.0, marks)
                for a, b in [(1 * H, 3 * H), (3 * H, 10 * H), (10 * H, 11 * H)])
    assert_allclose(parts, want, rtol=1e-12)
    # nothing before the first record, nothing for a flat position
    assert accrue(LIN_PERP, q, -5 * H, 0, ts, rates, 8 * 3600.0, marks) == 0.0
    assert accrue(LIN_PERP, 0.0, 0, 5 * H, ts, rates, 8 * 3600.0, marks) == 0.0


def test_accrue_inverse_uses_mark_fallback() -> None:
    ts = np.array([0])
    got = accrue(INV_PERP, 5000, 0, 8 * H, ts, [1e-4], 8 * 3600.0, [np.nan], fallback_mark=50000.0)
    assert_allclose(got, -1e-4, rtol=1e-12)


def test_discrete_payments_binance_style() -> None:
    ts = np.array([0, 8 * H, 16 * H])
    times, amounts = discrete_payments(LIN_PERP, -2000, 0, 16 * H, ts, [1e-4, 2e-4, -1e-4],
                                       [50000.0, 50000.0, 40000.0])
    assert list(times) == [8 * H, 16 * H]
    assert_allclose(amounts, [2 * 50000 * 2e-4, -2 * 40000 * 1e-4], rtol=1e-12)


def test_funding_rejects_options() -> None:
    with pytest.raises(ValueError):
        funding_payment(InstrumentSpec(3, "option", "inverse", 1.0), 1, 1.0, 1e-4, 1.0, 1.0)
