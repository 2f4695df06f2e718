"""The simulated venue's price band is centred on the venue's mark (the mid where the data has
none), as Deribit's is; the mark of an option is Black-76 at the venue's mark IV."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
from numpy.testing import assert_allclose

from calibration import black_price
from replay.engine.state import MarketView
from replay.model.config import VenueConfig
from replay.model.orders import REJECT_PRICE_BAND, InstrumentSpec, Order
from replay.units import NS
from replay.venue.simulator import SimulatedVenue, venue_mark

YEAR_NS = int(365 * 86_400 * NS)
OPT = InstrumentSpec(0, "option", "inverse", 1.0, 0.0001, strike=60_000.0,
                     expiry_ns=YEAR_NS // 4, is_call=True)
PERP = InstrumentSpec(1, "perp", "inverse", 10.0, 0.5)
F, IV = 61_000.0, 0.55


class _Market:
    """An option whose book shows only an ask, and a perpetual quoted around 61,000 whose
    funding feed marks it at 60,000."""

    now = 0
    bid = np.array([np.nan, 60_990.0])
    ask = np.array([0.1500, 61_010.0])
    bid_size = ask_size = np.array([5.0, 1e6])
    mark_price = np.array([np.nan, 60_000.0])
    funding_rate, funding_interval_s = np.array([np.nan, 0.0]), np.array([np.nan, 28_800.0])
    funding_ts = np.zeros(2, np.int64)
    funding_index_at_ts = np.zeros(2)
    funding_index = MarketView.funding_index
    venue_forward = np.array([F, np.nan])
    mark_iv = np.array([IV, np.nan])

    def mid(self, i: int) -> float:
        return 0.5 * (self.bid[i] + self.ask[i])

    def reference_price(self, i: int) -> float:
        return self.mid(i)

    def spot(self) -> float:
        return F


def _arrive(iid: int, qty: float) -> tuple[SimulatedVenue, list]:
    venue = SimulatedVenue(VenueConfig(price_band=0.05), {0: OPT, 1: PERP})
    events: list = []
    vctx = SimpleNamespace(now=0, market=_Market(),
                           emit=lambda kind, **kw: events.append((kind, kw)),
                           fill=lambda *a, **kw: events.append(("fill", a)))
    venue.on_arrival(Order(1, iid, 1 if qty > 0 else -1, abs(qty), "market", None, 0,
                           "hedger", 0), vctx)
    return venue, events


def test_an_option_is_marked_at_black_of_the_venue_mark_iv():
    m = _Market()
    want = float(black_price(F, OPT.strike, 0.25, IV, True)) / F  # inverse: coin per contract
    assert_allclose(venue_mark(OPT, 0, m), want, rtol=1e-12)
    assert venue_mark(PERP, 1, m) == 60_000.0
    m.mark_iv = np.array([np.nan, np.nan])
    assert math.isnan(venue_mark(OPT, 0, m))


def test_a_one_sided_book_is_still_banded_around_the_mark():
    """The option's mark is about 0.1155 BTC and it shows only an ask at 0.15: no mid, yet a
    market buy there is 30 % above the mark, beyond the 5 % band, and is refused."""
    _, events = _arrive(0, 1.0)
    assert [kw["reason"] for kind, kw in events if kind == "rejection"] == [REJECT_PRICE_BAND]
    assert not [e for e in events if e[0] == "fill"]


def test_the_band_is_centred_on_the_mark_not_the_mid():
    """The perpetual's ask (61,010) is 0.02 % above its mid but 1.7 % above its mark: inside a
    5 % band either way, so it fills; a 1 % band around the mark refuses it."""
    _, events = _arrive(1, 100.0)
    assert [e for e in events if e[0] == "fill"]
    venue = SimulatedVenue(VenueConfig(price_band=0.01), {0: OPT, 1: PERP})
    events = []
    vctx = SimpleNamespace(now=0, market=_Market(),
                           emit=lambda kind, **kw: events.append((kind, kw)),
                           fill=lambda *a, **kw: events.append(("fill", a)))
    venue.on_arrival(Order(1, 1, 1, 100.0, "market", None, 0, "hedger", 0), vctx)
    assert [kw["reason"] for kind, kw in events if kind == "rejection"] == [REJECT_PRICE_BAND]
