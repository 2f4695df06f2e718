import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from replay.model.orders import Order
from replay.venue.fills import (
    BookView,
    ConservativeQueue,
    DepthLadder,
    FillConfig,
    PriceBand,
    ProbabilisticQueue,
    RestingOrder,
    TradePrint,
    make_queue_model,
    match_on_arrival,
    rest,
)

BOOK = BookView(ts=1_000, bid_price=99.5, ask_price=100.0, bid_size=4.0, ask_size=2.0,
                tick_size=0.5)
LADDER = FillConfig(ladder=DepthLadder(spacing_ticks=2.0, size_multipliers=(1.0, 3.0)))


def buy(qty: float, **kw) -> Order:
    return Order(1, 7, 1, qty, decision_ts=900, **kw)


def sell(qty: float, **kw) -> Order:
    return Order(2, 7, -1, qty, decision_ts=900, **kw)


def test_market_order_within_touch_fills_at_touch() -> None:
    r = match_on_arrival(buy(1.5), BOOK, LADDER)
    assert r.rejection is None and r.remaining_qty == 0.0
    assert [(f.price, f.qty, f.liquidity, f.ts) for f in r.fills] == [(100.0, 1.5, "taker", 1000)]
    s = match_on_arrival(sell(3.0), BOOK, LADDER)
    assert [(f.price, f.qty, f.side) for f in s.fills] == [(99.5, 3.0, -1)]


def test_depth_walk_on_ladder_with_partials() -> None:
    # ladder: 2 @ 100, 2 @ 101 (2 ticks of 0.5 behind), 6 @ 102
    r = match_on_arrival(buy(7.0), BOOK, LADDER)
    assert [(f.price, f.qty, f.level) for f in r.fills] == [(100.0, 2.0, 0), (101.0, 2.0, 1),
                                                             (102.0, 3.0, 2)]
    assert_allclose(r.avg_price, (200 + 202 + 306) / 7, rtol=1e-14)
    assert r.remaining_qty == 0.0 and r.rejection is None
    # a sell walks down from the bid: 4 @ 99.5, 4 @ 98.5, 12 @ 97.5
    s = match_on_arrival(sell(10.0), BOOK, LADDER)
    assert [(f.price, f.qty) for f in s.fills] == [(99.5, 4.0), (98.5, 4.0), (97.5, 2.0)]


def test_depth_exhausted_reports_remainder_as_rejection() -> None:
    r = match_on_arrival(buy(20.0), BOOK, LADDER)
    assert_allclose(r.filled_qty, 10.0)
    assert_allclose(r.remaining_qty, 10.0)
    assert r.rejection is not None and r.rejection.reason == "no_liquidity"
    assert "depth exhausted" in r.rejection.detail and r.rejection.ts == 1000


def test_real_depth_overrides_ladder() -> None:
    book = BookView(ts=5, bid_price=99.5, ask_price=100.0, bid_size=4, ask_size=2, tick_size=0.5,
                    asks=((100.0, 2.0), (100.5, 1.0), (103.0, 10.0)))
    r = match_on_arrival(buy(5.0), book, LADDER)
    assert [(f.price, f.qty) for f in r.fills] == [(100.0, 2.0), (100.5, 1.0), (103.0, 2.0)]
    no_real = FillConfig(ladder=LADDER.ladder, use_real_depth=False)
    assert match_on_arrival(buy(5.0), book, no_real).fills[1].price == 101.0


def test_unknown_touch_size_uses_default() -> None:
    book = BookView(ts=5, bid_price=99.5, ask_price=100.0, tick_size=0.5)
    cfg = FillConfig(ladder=DepthLadder(size_multipliers=(), default_touch_size=3.0))
    r = match_on_arrival(buy(5.0), book, cfg)
    assert_allclose([r.filled_qty, r.remaining_qty], [3.0, 2.0])


def test_price_band_caps_market_order_walk() -> None:
    book = BookView(ts=1_000, bid_price=99.5, ask_price=100.0, bid_size=4.0, ask_size=2.0,
                    tick_size=0.5, mark_price=100.0)
    cfg = FillConfig(ladder=LADDER.ladder, band=PriceBand(fraction=0.015))  # edge 101.5
    r = match_on_arrival(buy(7.0), book, cfg)
    assert [(f.price, f.qty) for f in r.fills] == [(100.0, 2.0), (101.0, 2.0)]
    assert r.rejection.reason == "price_band" and r.remaining_qty == 3.0


def test_price_band_rejects_limit_and_touch_outside_band() -> None:
    book = BookView(ts=1, bid_price=99.5, ask_price=100.0, bid_size=4, ask_size=2, mark_price=97.0)
    cfg = FillConfig(band=PriceBand(fraction=0.02))  # band [95.06, 98.94]
    r = match_on_arrival(buy(1.0, kind="limit", limit_price=99.0), book, cfg)
    assert r.rejection.reason == "price_band" and not r.fills and r.remaining_qty == 1.0
    m = match_on_arrival(buy(1.0), book, cfg)  # the ask itself is beyond the band edge
    assert m.rejection.reason == "price_band" and not m.fills
    # beyond the band on the passive side a limit order rests (it cannot trade through it)
    for low in (buy(1.0, kind="limit", limit_price=94.0),
                Order(2, 7, -1, 1.0, kind="limit", limit_price=101.0)):
        rest = match_on_arrival(low, book, cfg)
        assert rest.rests and rest.rejection is None and not rest.fills
    # the absolute floor widens the band for cheap instruments
    wide = FillConfig(band=PriceBand(fraction=0.02, absolute=5.0))
    assert match_on_arrival(buy(1.0), book, wide).remaining_qty == 0.0


def test_no_liquidity_and_invalid_rejections() -> None:
    empty = BookView(ts=3, bid_price=99.0)
    r = match_on_arrival(buy(1.0), empty)
    assert r.rejection.reason == "no_liquidity" and r.rejection.detail == "empty book side"
    bad = match_on_arrival(buy(0.0), BOOK)
    assert bad.rejection.reason == "invalid_order"
    # a limit order into an empty side is not marketable: it rests, no rejection
    lim = match_on_arrival(buy(1.0, kind="limit", limit_price=98.0), empty)
    assert lim.rests and lim.rejection is None and lim.remaining_qty == 1.0


def test_marketable_limit_fills_then_rests_remainder() -> None:
    order = buy(7.0, kind="limit", limit_price=101.0)
    r = match_on_arrival(order, BOOK, LADDER)
    assert [(f.price, f.qty) for f in r.fills] == [(100.0, 2.0), (101.0, 2.0)]
    assert r.rests and r.remaining_qty == 3.0 and r.rejection is None
    resting = rest(order, r, BOOK, arrival_ts=1_000)
    assert resting.remaining == 3.0 and resting.queue_ahead == 0.0  # improves the 99.5 bid


def test_queue_ahead_on_arrival() -> None:
    at_touch = buy(1.0, kind="limit", limit_price=99.5)
    r = match_on_arrival(at_touch, BOOK)
    assert rest(at_touch, r, BOOK, 1_000).queue_ahead == 4.0
    with pytest.raises(ValueError):
        rest(buy(1.0), match_on_arrival(buy(1.0), BOOK), BOOK, 1_000)


def _resting(price: float = 99.0, qty: float = 2.0, ahead: float = 3.0) -> RestingOrder:
    return RestingOrder(buy(qty, kind="limit", limit_price=price), price, qty, 1_000, ahead)


def test_conservative_fills_only_on_later_trade_through() -> None:
    q = ConservativeQueue()
    r0 = _resting()
    same, f = q.on_trade(r0, TradePrint(2_000, 99.0, 50.0, -1), None)  # at the level
    assert f is None and same == r0
    same, f = q.on_trade(r0, TradePrint(1_000, 98.0, 5.0, -1), None)  # not after arrival
    assert f is None
    left, f = q.on_trade(r0, TradePrint(2_000, 98.5, 1.5, -1), None)
    assert (f.price, f.qty, f.liquidity, f.ts) == (99.0, 1.5, "maker", 2_000)
    assert left.remaining == 0.5
    done, f2 = q.on_trade(left, TradePrint(3_000, 98.0, 9.0, 1), None)
    assert done is None and f2.qty == 0.5


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(99.0, 120.0), st.floats(0.1, 100.0),
                          st.sampled_from([-1, 0, 1])), max_size=30))
def test_conservative_never_fills_without_trade_through(trades) -> None:
    q = ConservativeQueue()
    r = _resting()
    for i, (price, size, side) in enumerate(trades):
        r, f = q.on_trade(r, TradePrint(2_000 + i, price, size, side), None)
        assert f is None


def test_probabilistic_reproducible_with_seed() -> None:
    q = make_queue_model("probabilistic")
    # prints at our level only: a trade-through would fill us and put us at the front,
    # after which every print reaches us for certain (no draw left to differ)
    trades = [TradePrint(2_000 + i, 99.0, 0.7, -1) for i in range(12)]

    def run(seed: int) -> list[tuple[int, float]]:
        rng, r, out = np.random.default_rng(seed), _resting(qty=4.0, ahead=6.0), []
        for t in trades:
            if r is None:
                break
            r, f = q.on_trade(r, t, rng)
            if f is not None:
                out.append((f.ts, f.qty))
        return out

    assert run(11) == run(11)
    assert any(run(s) != run(11) for s in range(12, 20))


def test_probabilistic_fill_rate_matches_probability() -> None:
    # one print of v=8 at our level, Q=30 ahead, q=10 ours: p = 8 / 40 = 0.2
    q, rng, n = ProbabilisticQueue(), np.random.default_rng(5), 20_000
    r0 = _resting(qty=10.0, ahead=30.0)
    hits = 0
    for _ in range(n):
        left, f = q.on_trade(r0, TradePrint(2_000, 99.0, 8.0, -1), rng)
        if f is not None:
            hits += 1
            assert f.qty == 8.0 and left.queue_ahead == 0.0
        else:
            assert left.queue_ahead == 22.0  # the print ate queue ahead of us
    # binomial standard error sqrt(0.2*0.8/20000) = 0.00283; allow 5 of them
    assert_allclose(hits / n, 0.2, atol=5 * 0.00283)


def test_probabilistic_certain_cases_and_quote_updates() -> None:
    q = ProbabilisticQueue()
    # a same-side aggressor at our price cannot hit a resting buy
    r0 = _resting(ahead=0.0)
    assert q.on_trade(r0, TradePrint(2_000, 99.0, 5.0, 1), None)[1] is None
    # nothing ahead and the print covers us: p = 1, no draw needed
    left, f = q.on_trade(r0, TradePrint(2_000, 99.0, 5.0, -1), None)
    assert left is None and f.qty == 2.0
    # trade-through always fills
    _, f = q.on_trade(_resting(ahead=100.0), TradePrint(2_000, 98.0, 1.0, -1), None)
    assert f.qty == 1.0
    # cancels ahead shrink the queue estimate; a growing level does not
    book = BookView(ts=1_500, bid_price=99.0, ask_price=99.5, bid_size=1.0, ask_size=1.0)
    assert q.on_quote(_resting(ahead=3.0), book).queue_ahead == 1.0
    grown = BookView(ts=1_500, bid_price=99.0, ask_price=99.5, bid_size=9.0, ask_size=1.0)
    assert q.on_quote(_resting(ahead=3.0), grown).queue_ahead == 3.0
    hidden = BookView(ts=1_500, bid_price=99.5, ask_price=100.0, bid_size=0.5, ask_size=1.0)
    assert q.on_quote(_resting(ahead=3.0), hidden).queue_ahead == 3.0
    with pytest.raises(ValueError):
        make_queue_model("fifo")
    assert math.isnan(BookView(ts=0).reference())


def test_probabilistic_at_the_front_every_print_at_our_level_reaches_us() -> None:
    """Nothing ahead (we improved the touch, or a fill put us at the front): a print smaller
    than our order fills its size for certain; it filled with probability v / q before, an
    expected v^2 / q (ten 1-lot prints on a 10-lot bid filled 1 to 3 lots)."""
    q, rng = ProbabilisticQueue(), np.random.default_rng(0)
    r = _resting(qty=10.0, ahead=0.0)
    for i in range(10):
        r, f = q.on_trade(r, TradePrint(2_000 + i, 99.0, 1.0, -1), rng)
        assert f is not None and f.qty == 1.0
    assert r is None


def test_order_validation() -> None:
    with pytest.raises(ValueError):
        Order(1, 7, 0, 1.0)
    with pytest.raises(ValueError):
        Order(1, 7, 1, 1.0, kind="limit")
    with pytest.raises(ValueError):
        Order(1, 7, 1, 1.0, kind="stop")
    assert sell(2.5).signed_qty == -2.5
