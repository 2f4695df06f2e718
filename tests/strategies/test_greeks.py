"""The book's greeks are the derivatives of the venue ledger's USD mark (``strategies.base``,
"Greeks"): checked by finite differences of :class:`replay.venue.accounting.Portfolio`'s
valuation, for inverse and linear options and for a book hedged with a dated inverse future."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from calibration.pricing.black import black_price
from replay.model.orders import Fill, InstrumentSpec
from replay.venue.accounting import Portfolio
from strategies.greeks import BookLegs
from strategies.hedge import contracts_delta, hedge_contracts

S0, K, T, VOL, BASIS = 100_000.0, 105_000.0, 30 / 365, 0.6, 1.05
OPTION, FUTURE = 1, 2


def option_price(settlement: str, s: float, vol: float = VOL, t: float = T) -> float:
    """The option's price in its own currency with the forward ``BASIS s``: Black-76, divided
    by the forward when inverse (as Deribit quotes a coin premium)."""
    f = BASIS * s
    usd = float(black_price(f, K, t, vol, True))
    return usd / f if settlement == "inverse" else usd


def ledger_usd(settlement: str, contracts: float, s: float, future: float = 0.0, **bumps
               ) -> float:
    """The ledger's USD PnL of ``contracts`` options (and ``future`` inverse-future contracts
    of 10 USD, priced at ``BASIS s``) bought at ``S0``'s prices, marked at ``s`` with the coin
    worth ``s`` USD."""
    specs = {OPTION: InstrumentSpec(OPTION, "option", settlement, 1.0, strike=K, expiry_ns=1,
                                    is_call=True),
             FUTURE: InstrumentSpec(FUTURE, "future", "inverse", 10.0, expiry_ns=1)}
    book = Portfolio(specs)
    for iid, qty, px in ((OPTION, contracts, option_price(settlement, S0)),
                         (FUTURE, future, BASIS * S0)):
        if qty:
            book.apply_fill(Fill(0, iid, 0, 1 if qty > 0 else -1, px, abs(qty), "taker"), S0)
    mark = book.mark({OPTION: option_price(settlement, s, **bumps), FUTURE: BASIS * s}, s)
    return mark.total_usd


def legs(settlement: str, contracts: float) -> BookLegs:
    one = np.ones(1)
    return BookLegs(np.array([OPTION]), contracts * one, K * one, T * one, VOL * one,
                    np.array([True]), BASIS * one, S0, inverse=np.array([settlement == "inverse"]))


@pytest.mark.parametrize("settlement", ["inverse", "linear"])
def test_greeks_are_the_ledger_marks_derivatives(settlement: str) -> None:
    g, h = legs(settlement, -10.0).greeks(), 1.0
    mark = lambda s, **b: ledger_usd(settlement, -10.0, s, **b)  # noqa: E731
    assert_allclose(g.delta, (mark(S0 + h) - mark(S0 - h)) / (2 * h), rtol=1e-6)
    assert_allclose(g.gamma, (mark(S0 + 100) - 2 * mark(S0) + mark(S0 - 100)) / 100 ** 2,
                    rtol=1e-4)
    dv = 1e-5
    assert_allclose(g.vega, (mark(S0, vol=VOL + dv) - mark(S0, vol=VOL - dv)) / (2 * dv),
                    rtol=1e-6)
    dt = 1e-6
    assert_allclose(g.theta, -(mark(S0, t=T + dt) - mark(S0, t=T - dt)) / (2 * dt), rtol=1e-5)
    assert_allclose(g.value_usd, -10.0 * option_price(settlement, S0)
                    * (S0 if settlement == "inverse" else 1.0), rtol=1e-12)


def test_a_future_hedged_inverse_book_is_flat_in_the_ledger() -> None:
    """Ten short inverse calls hedged with a dated inverse future at a 5 % basis leave no
    delta in the ledger's USD PnL; hedged at ``q b dV/dF`` they are over-hedged by
    ``q (b - 1) dV/dF``, about 0.27 BTC here."""
    delta = legs("inverse", -10.0).greeks().delta
    price, h = BASIS * S0, 1.0

    def left(book_delta: float) -> float:
        n = hedge_contracts(book_delta, price, 10.0, inverse=True)
        assert_allclose(contracts_delta(n, price, 10.0, True), -book_delta, rtol=1e-12)
        up, down = (ledger_usd("inverse", -10.0, S0 + d, n) for d in (h, -h))
        return (up - down) / (2 * h)

    assert abs(left(delta)) < 1e-6 * abs(delta)
    assert_allclose(left(BASIS * delta), -(BASIS - 1.0) * delta, rtol=1e-6)
    assert abs((BASIS - 1.0) * delta) > 0.25


def test_an_expiry_beyond_the_surfaces_slices_takes_its_venue_forward() -> None:
    """Slices at 7 and 60 days: an expiry between them reads the surface's forward, rolled
    with the spot; one expiring in 5 hours (too short to be fitted) or at 300 days reads its
    venue forward.  Before, both took the nearest slice's forward held flat (on real Deribit
    data 6.5 and 121 bp off the venue's, moving a 5-hour ATM call's delta from 0.62 to
    0.65)."""
    from types import SimpleNamespace

    from calibration.models.svi import SVIParams
    from calibration.surface import SmileSlice, Surface
    from strategies.board import SurfaceBoard
    from strategies.greeks import expiry_forward

    day, year = 86_400 * 10**9, 365 * 86_400 * 10**9
    p = SVIParams(0.004, 0.05, -0.3, 0.0, 0.2)
    surf = Surface([SmileSlice("svi", p, 7 * day, 7 * day / year, 100_500.0, -0.3, 0.3),
                    SmileSlice("svi", p, 60 * day, 60 * day / year, 102_000.0, -0.5, 0.5)], 0)
    board = SurfaceBoard(surf, 0, spot=100_000.0)
    venue = {1: 100_010.0, 2: 101_000.0, 3: 106_000.0}
    expiry = {1: 5 * 3_600 * 10**9, 2: 30 * day, 3: 300 * day}
    ctx = SimpleNamespace(market=SimpleNamespace(venue_forward=venue))
    got = {i: expiry_forward(ctx, expiry[i], 100_100.0, board, i) for i in venue}
    assert got[1] == venue[1] and got[3] == venue[3]
    assert got[2] == pytest.approx(float(surf.forward_expiry(expiry[2])) * 1.001, rel=1e-12)
