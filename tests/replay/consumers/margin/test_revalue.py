"""The scenario revaluation's currencies against the venue's ledger: for inverse options, an
inverse future at a 5 % basis, an inverse perp entered far from its mark and linear legs, under
USD and coin collateral, the portfolio margin's scenario PnL is the change of the ledger's
value at the moved prices and its delta the ledger's delta.

Before, every leg was revalued as linear in USD at its forward: an inverse option's PnL was
``b = F / S`` times the ledger's (5 % here), an inverse future's too, a perp entered at 50,000
and marked at 60,000 had delta ``q cs / M`` instead of the ledger's ``q cs / avg``, and coin
collateral lost USD instead of coin."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from calibration.pricing.black import delta
from replay.consumers.margin import PMParams, portfolio_margin
from tests.replay.consumers.margin._ledger import (
    BASIS,
    INV_CALL,
    INV_FUT,
    INV_PERP,
    INV_PUT,
    LIN_CALL,
    LIN_FUT,
    LIN_PERP,
    SPECS,
    VOL,
    F,
    S,
    T,
    ledger,
    ledger_change,
    ledger_delta,
    legs_of,
    prices,
)

#: no vol shock, so every scenario (extended ones included) is a pure price move the ledger
#: can be marked at
NO_VOL_SHOCK = PMParams(volatility_range_up=0.0, volatility_range_down=0.0,
                        min_volatility_for_shock_up=0.0, min_volatility=0.0)


def _hedge() -> float:
    """Perp contracts that offset 10 short inverse calls' ledger delta: the calls' USD value
    ``-10 Black(F) / b`` moves by ``-10 N(d1)`` per unit of S; ``n`` perp contracts of 10 USD
    by ``n 10 / S``."""
    return 10.0 * float(delta(F, 65_000.0, T, VOL, True)) * S / 10.0


BOOKS = {
    "inverse options": [(INV_CALL, -10.0, 58_000.0), (INV_PUT, 4.0, 61_000.0)],
    "inverse future at a 5% basis": [(INV_FUT, 10 * F / 10.0, S)],
    "inverse perp entered far from the mark": [(INV_PERP, -50_000.0, 50_000.0)],
    "inverse calls hedged with the perp": [(INV_CALL, -10.0, S), (INV_PERP, _hedge(), S)],
    "linear legs": [(LIN_CALL, -3.0, 59_000.0), (LIN_FUT, 2.0, 52_000.0),
                    (LIN_PERP, -1.0, 66_000.0)],
    "everything": [(INV_CALL, -10.0, 58_000.0), (INV_PUT, 4.0, 61_000.0),
                   (INV_FUT, 20_000.0, 57_000.0), (INV_PERP, -30_000.0, 50_000.0),
                   (LIN_CALL, -3.0, 59_000.0), (LIN_FUT, 2.0, 52_000.0),
                   (LIN_PERP, -1.0, 66_000.0)],
}


@pytest.mark.parametrize("coin", [False, True], ids=["usd", "coin"])
@pytest.mark.parametrize("book", list(BOOKS))
@pytest.mark.parametrize("reference", [False, True], ids=["kernel", "reference"])
def test_scenario_pnl_is_the_change_of_the_ledgers_value(book, coin, reference):
    pf = ledger(BOOKS[book])
    res = portfolio_margin(legs_of(pf), NO_VOL_SHOCK, reference=reference, coin=coin)
    want = ledger_change(pf, res.scenarios.moves, coin)
    assert np.abs(want).max() > 1_000.0  # the scenarios do move the book
    assert_allclose(res.pnl[0], want, rtol=1e-9, atol=1e-9 * S)


@pytest.mark.parametrize("coin", [False, True], ids=["usd", "coin"])
@pytest.mark.parametrize("book", list(BOOKS))
def test_delta_is_the_ledgers_delta(book, coin):
    """``delta_usd``, the delta shock's input, is ``d PnL / d move``: the ledger's delta in the
    coin's price times S (a finite difference of ``Portfolio.mark``)."""
    pf = ledger(BOOKS[book])
    for reference in (False, True):
        res = portfolio_margin(legs_of(pf), PMParams(), reference=reference, coin=coin)
        assert_allclose(res.delta_usd[0], ledger_delta(pf, coin), rtol=1e-6, atol=1e-3)


def test_a_ledger_delta_neutral_hedge_has_no_delta_shock():
    """Short calls hedged with the perp to the ledger's delta: under USD collateral the
    delta shock is nil (it charged ``0.1 x 0.16 x 15,527`` USD before: the calls' delta
    counted at F, the perp's at S)."""
    res = portfolio_margin(legs_of(ledger(BOOKS["inverse calls hedged with the perp"])))
    assert abs(res.delta_usd[0]) < 1e-6 * S


@pytest.mark.parametrize("coin", [False, True], ids=["usd", "coin"])
def test_short_inverse_option_contingency_is_in_coin_at_s(coin):
    """``short_option_contingency`` is a coin amount per coin option (Deribit), in USD at S;
    a linear option's is at F."""
    pf = ledger([(INV_CALL, -10.0, S), (LIN_CALL, -3.0, S)])
    legs = legs_of(pf)
    base = portfolio_margin(legs, PMParams(), coin=coin).im[0]
    with_c = portfolio_margin(legs, PMParams(short_option_contingency=0.01), coin=coin).im[0]
    assert_allclose(with_c - base, 0.01 * (10.0 * S + 3.0 * F), rtol=1e-12)


def test_inverse_legs_carry_the_coin_price_and_their_settlement_value():
    """The legs' values: an inverse option's coin premium, an inverse perp's unrealised coin
    PnL ``q cs (1/avg - 1/M)`` (``units = q cs / M``), a linear future's USD PnL."""
    pf = ledger(BOOKS["everything"])
    legs = legs_of(pf)
    ids = sorted(pf.net_qty())
    mk = pf.mark(prices(S), S)
    for j, i in enumerate(ids):
        spec, by = SPECS[i], mk.by_instrument[i]
        assert legs.inverse[j] == spec.is_inverse and legs.spot[j] == S
        if not spec.is_option:  # the ledger's unrealised PnL in the settlement currency
            want = by.unrealized_coin if spec.is_inverse else by.unrealized_usd
            assert_allclose(legs.value[j], want, rtol=1e-12)
    j = ids.index(INV_CALL)
    assert_allclose(legs.forward[j] / legs.spot[j], BASIS, rtol=1e-15)
    assert_allclose(legs.value[j] * S, -10.0 * legs.mark[j] / BASIS, rtol=1e-12)
