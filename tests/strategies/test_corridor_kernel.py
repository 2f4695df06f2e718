"""The compiled corridor search of a hedger's book against its reference twin, the Python
search (:func:`strategies.hedging.corridor.delta_corridor`) on the same functions: the same
corridor to the bit, on random books, bands, hedges and rebalancing rules; and the band
shapes against the formulas of :mod:`strategies.hedging.bands`."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from strategies.greeks import BookLegs
from strategies.hedging.bands import (
    whalley_wilmott_half_width,
    zakamouline_h0,
    zakamouline_h1,
)
from strategies.hedging.corridor_kernel import (
    CONSTANT,
    WHALLEY_WILMOTT,
    ZAKAMOULINE,
    BandWidth,
    book_corridor,
    book_corridor_python,
)

SPOT = 95_000.0


def random_legs(rng: np.random.Generator, vol_shift: float = 0.0, smile: bool = False
                ) -> BookLegs:
    n = int(rng.integers(1, 5))
    return BookLegs(
        np.arange(n), rng.choice([-1.0, 1.0], n) * rng.uniform(0.5, 20.0, n),
        SPOT * np.exp(rng.uniform(-0.3, 0.3, n)), rng.uniform(1 / 365, 0.25, n),
        rng.uniform(0.3, 1.2, n) + vol_shift, rng.random(n) < 0.5,
        1.0 + rng.uniform(-0.01, 0.02, n), SPOT,
        dvol_dlnf=rng.normal(0.0, 0.3, n) if smile else None, inverse=rng.random(n) < 0.5)


def random_width(rng: np.random.Generator, legs: BookLegs):
    kind = int(rng.integers(0, 3))
    if kind == CONSTANT:
        return float(rng.uniform(0.01, 2.0))
    if kind == ZAKAMOULINE:
        return BandWidth(ZAKAMOULINE, float(rng.uniform(10.0, 1e4)),
                         float(rng.uniform(0.1, 30.0)), legs)
    return BandWidth(WHALLEY_WILMOTT, float(rng.uniform(1e-4, 1e-3)),
                     float(rng.uniform(1e-4, 1.0)), legs)


@pytest.mark.parametrize("seed", range(6))
def test_compiled_corridor_is_the_python_search_to_the_bit(seed):
    rng = np.random.default_rng(seed)
    checked = bounded = 0
    for _ in range(150):
        legs = random_legs(rng, smile=bool(rng.random() < 0.3))
        # the centre's vols differ from the band's legs (a modified vol, as Zakamouline's)
        center = legs.with_vol(legs.vol * rng.uniform(0.9, 1.1))
        if legs.dvol_dlnf is not None:
            center = center.with_vol_moves(legs.dvol_dlnf)
        width = random_width(rng, legs)
        inverse = bool(rng.random() < 0.7)
        offset = float(rng.normal(0.0, 0.3))  # the hedge a little off the book's delta
        book = center.delta(SPOT)
        contracts_cs = -(book + offset) * SPOT if inverse else -(book + offset)
        args = (center, SPOT, contracts_cs, 1.0 + float(rng.uniform(-1e-3, 1e-3)), inverse,
                width, float(rng.uniform(0.0, 0.05)), bool(rng.random() < 0.5))
        got, want = book_corridor(*args), book_corridor_python(*args)
        assert got == want, (seed, args)
        checked += 1
        bounded += got[0] < SPOT < got[1]
    assert checked == 150 and bounded > 50  # most are real corridors, not breaches


def test_premium_adjusted_books_take_the_python_search():
    rng = np.random.default_rng(7)
    legs = random_legs(rng)
    pa = BookLegs(legs.instrument_id, legs.qty, legs.strike, legs.t, legs.vol, legs.is_call,
                  legs.basis, SPOT, premium_adjusted=True, inverse=legs.inverse)
    args = (pa, SPOT, -pa.delta(SPOT) * SPOT, 1.0, True, 0.3, 0.01, False)
    assert book_corridor(*args) == book_corridor_python(*args)


def test_band_shapes_are_the_band_formulas():
    rng = np.random.default_rng(3)
    legs = random_legs(rng)
    s = SPOT * np.exp(np.linspace(-0.2, 0.2, 41))
    gamma = legs.gamma_fn()(s)
    lam, ra, sigma, tau, r = 5e-4, 0.01, 0.6, 0.05, 0.02
    c0 = float(zakamouline_h0(1.0, lam, ra, sigma, tau))
    c1 = float(zakamouline_h1(1.0, lam, ra, sigma, tau, r))
    assert_allclose(BandWidth(ZAKAMOULINE, c0, c1, legs)(s),
                    zakamouline_h0(s, lam, ra, sigma, tau)
                    + zakamouline_h1(gamma, lam, ra, sigma, tau, r), rtol=1e-13)
    p1 = float(1.5 * np.exp(-r * np.float64(tau)) * lam)
    assert_allclose(BandWidth(WHALLEY_WILMOTT, p1, ra, legs)(s),
                    whalley_wilmott_half_width(gamma, s, lam, ra, r, tau), rtol=1e-14)
    assert_allclose(BandWidth(CONSTANT, 0.25)(s), np.full(s.shape, 0.25), rtol=0)
