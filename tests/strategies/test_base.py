"""strategies.base: greeks of the book, delta sources, hedge instrument and conversions.

The helpers at the top (a hand-built market and a stand-in for the engine's Context) are
shared by the other strategy tests.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from calibration.models.svi import SVIParams
from calibration.pricing.black import black_price, greeks
from calibration.surface import SmileSlice, Surface
from replay.engine.state import (
    F_ASK,
    F_BID,
    NEVER,
    Instruments,
    MarketState,
    MarketView,
)
from replay.errors import ConfigError
from strategies.board import SurfaceBoard
from strategies.greeks import NS_PER_YEAR, book_greeks, book_legs, delta_gamma
from strategies.listed import choose_expiry, is_monthly
from strategies.pending import PendingOrders
from tests.replay.engine.toys import HeldPositions

NS = 1_000_000_000
T0 = 1_765_152_000 * NS  # 2025-12-08 00:00 UTC, a Monday
E1 = 1_765_526_400 * NS  # 2025-12-12 08:00 UTC, a Friday (weekly)
E2 = 1_766_736_000 * NS  # 2025-12-26 08:00 UTC, the last Friday of December (monthly)
FUT = E2
SPOT = 100_000.0
STRIKES = (80_000.0, 90_000.0, 95_000.0, 100_000.0, 105_000.0, 110_000.0, 120_000.0)
FLAT = 0.6


def instrument_rows() -> list[dict]:
    """index 0, perp 1 (inverse, 10 USD), future 2 (inverse, 10 USD), spot 3 (linear, 1 BTC),
    then calls and puts of E1 and E2 (inverse, 1 BTC)."""
    rows = [{"name": "BTC-USD", "kind": "index", "settlement": "inverse", "contract_size": 1.0},
            {"name": "BTC-PERPETUAL", "kind": "perp", "settlement": "inverse",
             "contract_size": 10.0},
            {"name": "BTC-26DEC25", "kind": "future", "settlement": "inverse",
             "contract_size": 10.0, "expiry_ns": FUT},
            {"name": "BTC_USDC", "kind": "spot", "settlement": "linear", "contract_size": 1.0}]
    for e, tag in ((E1, "12DEC25"), (E2, "26DEC25")):
        for k in STRIKES:
            for cp in "CP":
                rows.append({"name": f"BTC-{tag}-{int(k)}-{cp}", "kind": "option",
                             "settlement": "inverse", "contract_size": 1.0, "expiry_ns": e,
                             "strike": k, "is_call": cp == "C"})
    return rows


def make_instruments() -> Instruments:
    rows = instrument_rows()
    return Instruments(
        name=np.array([r["name"] for r in rows], object),
        kind=np.array([r["kind"] for r in rows], object),
        expiry_ns=np.array([r.get("expiry_ns", NEVER) for r in rows], np.int64),
        strike=np.array([r.get("strike", np.nan) for r in rows]),
        is_call=np.array([-1 if "is_call" not in r else int(r["is_call"]) for r in rows], np.int8),
        settlement=np.array([r["settlement"] for r in rows], object),
        contract_size=np.array([r["contract_size"] for r in rows]))


def option_id(inst: Instruments, expiry: int, strike: float, is_call: bool) -> int:
    m = (inst.expiry_ns == expiry) & (inst.strike == strike) & (inst.is_call == int(is_call))
    return int(np.flatnonzero(m)[0])


class FakeCtx:
    """The parts of :class:`replay.engine.runtime.Context` consumers use, on a hand-set market."""

    def __init__(self, now: int = T0 + 3600 * NS, spot: float = SPOT, half_spread: float = 0.5,
                 vol: float = FLAT):
        self.instruments = make_instruments()
        self.state = MarketState.empty(len(self.instruments), 1)
        self.now, self.reason = int(now), "deadline"
        self.held: dict[int, float] = {}
        #: average entry prices (as the venue's ledger keeps them; a position a test sets
        #: without one was entered at the mid now)
        self.entry: dict[int, float] = {}
        self.events: list[tuple[str, dict]] = []
        self.orders: list[dict] = []
        self.vol = vol
        self.set_spot(spot, half_spread)

    @property
    def market(self) -> MarketView:
        return MarketView(self.state, self.instruments, self.now)

    def set_spot(self, spot: float, half_spread: float = 0.5) -> None:
        f = self.state.fstate
        inst = self.instruments
        f[0, F_BID] = f[0, F_ASK] = spot
        for i in (1, 2, 3):
            f[i, F_BID], f[i, F_ASK] = spot - half_spread, spot + half_spread
        opts = inst.ids_of_kind("option")
        t = (inst.expiry_ns[opts] - self.now) / NS_PER_YEAR
        mid = black_price(spot, inst.strike[opts], t, self.vol, inst.is_call[opts] == 1) / spot
        f[opts, F_BID], f[opts, F_ASK] = mid * 0.99, mid * 1.01
        self.state.clock[0] = self.now

    def position(self, iid: int) -> float:
        return self.held.get(int(iid), 0.0)

    def positions(self) -> dict[int, float]:
        return {i: q for i, q in self.held.items() if q != 0}

    def entry_price(self, iid: int) -> float:
        if not self.position(iid):
            return math.nan
        return self.entry.get(int(iid), float(self.market.mid(int(iid))))

    def emit(self, kind: str, **fields) -> int:
        self.events.append((kind, fields))
        return len(self.events) - 1

    def submit(self, iid: int, qty: float, *, limit_price: float = math.nan,
               latency_ns: int | None = None) -> int:
        self.last_arrival_ts = self.now + (latency_ns or 0)
        self.orders.append({"instrument_id": int(iid), "qty": float(qty), "limit": limit_price,
                            "arrival": self.last_arrival_ts})
        return len(self.orders) - 1

    def fill_all(self) -> None:
        """Every order sent so far fills (the venue processed them)."""
        for o in self.orders:
            iid, q = o["instrument_id"], o["qty"]
            old, px = self.position(iid), float(self.market.mid(iid))
            if old == 0 or old * (old + q) < 0:
                self.entry[iid] = px
            elif abs(old + q) > abs(old):  # harmonic for an inverse perp/future, as the ledger
                avg = self.entry_price(iid)
                inverse = self.instruments.settlement[iid] == "inverse" \
                    and self.instruments.kind[iid] in ("perp", "future")
                self.entry[iid] = (abs(old) + abs(q)) / (abs(old) / avg + abs(q) / px) \
                    if inverse else (abs(old) * avg + abs(q) * px) / (abs(old) + abs(q))
            self.held[iid] = old + q
        self.orders = []

    def decisions(self) -> list[dict]:
        return [f for k, f in self.events if k == "hedge_decision"]


def build_store(path, start: int, seconds: int, spot_fn=None, trades=(), quote_every_s: float = 1.0,
                vol: float = FLAT) -> dict[str, int]:
    """A store with the instruments above: index and perp quotes every 100 ms (mid
    ``spot_fn(seconds_since_start)``, perp spread 1 USD), option quotes every
    ``quote_every_s`` (Black-76 at ``vol``, +-1 %), and ``trades``: rows ``(ts, name, price,
    size, side)`` of option trades.  Returns name -> instrument_id."""
    import pyarrow as pa

    from replay.store import open_store

    rows = instrument_rows()
    n = len(rows)
    defs = pa.table({
        "ts_exchange": pa.array([start] * n, pa.int64()),
        "ts_recv": pa.array([start] * n, pa.int64()),
        "name": [r["name"] for r in rows], "venue": ["test"] * n, "kind": [r["kind"] for r in rows],
        "underlying": ["BTC"] * n, "quote_currency": ["USD"] * n,
        "expiry_ns": pa.array([r.get("expiry_ns") for r in rows], pa.int64()),
        "strike": pa.array([r.get("strike") for r in rows], pa.float64()),
        "is_call": pa.array([r.get("is_call") for r in rows], pa.bool_()),
        "settlement": [r["settlement"] for r in rows],
        "contract_size": [r["contract_size"] for r in rows], "tick_size": [0.5] * n})
    spot_fn = spot_fn or (lambda s: SPOT + 0.0 * s)
    with open_store(path, read_only=False) as st:
        ids = st.ensure_instruments(defs)
        index, perp = ids["BTC-USD"], ids["BTC-PERPETUAL"]
        ts = start + np.arange(1, seconds * 10 + 1, dtype=np.int64) * (NS // 10)
        mid = np.asarray(spot_fn((ts - start) / NS), dtype=np.float64)
        k = ts.size
        st.append_ordered("underlying_quotes", pa.table({
            "ts_exchange": np.repeat(ts, 2), "ts_recv": np.repeat(ts, 2),
            "instrument_id": np.tile(np.array([index, perp], np.int32), k),
            "bid_price": np.stack([mid, mid - 0.5], 1).ravel(),
            "ask_price": np.stack([mid, mid + 0.5], 1).ravel(),
            "bid_size": np.full(2 * k, 1e6), "ask_size": np.full(2 * k, 1e6)}))
        opt = [(ids[r["name"]], r) for r in rows if r["kind"] == "option"]
        qts = start + np.arange(1, int(seconds / quote_every_s) + 1, dtype=np.int64) * int(
            quote_every_s * NS)
        q_ts, q_id, q_bid, q_ask = [], [], [], []
        for t in qts:
            s = float(spot_fn((t - start) / NS))
            for iid, r in opt:
                tt = (r["expiry_ns"] - t) / NS_PER_YEAR
                if tt <= 0:
                    continue
                p = float(black_price(s, r["strike"], tt, vol, r["is_call"])) / s
                q_ts.append(t), q_id.append(iid), q_bid.append(p * 0.99), q_ask.append(p * 1.01)
        st.append_ordered("option_quotes", pa.table({
            "ts_exchange": pa.array(q_ts, pa.int64()), "ts_recv": pa.array(q_ts, pa.int64()),
            "instrument_id": pa.array(q_id, pa.int32()), "bid_price": q_bid, "ask_price": q_ask,
            "bid_size": [50.0] * len(q_ts), "ask_size": [50.0] * len(q_ts)}))
        if trades:
            tr = sorted(trades)
            st.append_ordered("option_trades", pa.table({
                "ts_exchange": pa.array([x[0] for x in tr], pa.int64()),
                "ts_recv": pa.array([x[0] for x in tr], pa.int64()),
                "instrument_id": pa.array([ids[x[1]] for x in tr], pa.int32()),
                "price": [float(x[2]) for x in tr], "size": [float(x[3]) for x in tr],
                "side": pa.array([x[4] for x in tr], pa.int8())}))
    return ids


class LimitOrTouchVenue(HeldPositions):
    """Test venue: a limit order fills whole at its limit (the market maker's assigned
    fills), a market order at the touch as of arrival.  It keeps the positions (the venue is
    the run's ledger: ``ctx.position`` asks it)."""

    def on_arrival(self, order, vctx) -> None:
        iid = order.instrument_id
        px = order.limit_price
        if px is None:
            px = vctx.market.ask[iid] if order.side > 0 else vctx.market.bid[iid]
        if math.isfinite(px):
            self.book(order, vctx, float(px))


def journal_table(path, table: str):
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.sql(f"SELECT * FROM {table} ORDER BY seq").df()
    finally:
        con.close()


def flat_surface(vol: float, ts: int, forward: float = SPOT) -> Surface:
    """A surface with a flat smile (SVI with b = 0) at ``vol`` for E1 and E2."""
    sl = []
    for e in (E1, E2):
        t = (e - ts) / NS_PER_YEAR
        sl.append(SmileSlice("svi", SVIParams(vol * vol * t, 0.0, 0.0, 0.0, 0.1), e, t, forward,
                             -1.0, 1.0))
    return Surface(sl, ts_ns=ts)


# -- tests -----------------------------------------------------------------------------------
def test_book_greeks_of_one_leg_match_black76():
    ctx = FakeCtx()
    iid = option_id(ctx.instruments, E1, 105_000.0, True)
    ctx.held[iid] = -3.0
    g = book_greeks(ctx, None, "flat", None, FLAT)
    t = (E1 - ctx.now) / NS_PER_YEAR
    ref = greeks(SPOT, 105_000.0, t, FLAT, True)
    for name in ("delta", "gamma", "vega", "theta", "vanna", "volga"):
        assert_allclose(getattr(g, name), -3.0 * float(ref[name]), rtol=1e-12, err_msg=name)
    assert_allclose(g.value_usd, -3.0 * float(ref["price"]), rtol=1e-12)


def test_premium_adjusted_delta_differs_by_premium_over_forward():
    ctx = FakeCtx()
    iid = option_id(ctx.instruments, E2, 95_000.0, False)
    ctx.held[iid] = 2.0
    black = book_greeks(ctx, None, "flat", None, FLAT)
    pa = book_greeks(ctx, None, "premium_adjusted", None, FLAT)
    t = (E2 - ctx.now) / NS_PER_YEAR
    premium_over_f = float(black_price(SPOT, 95_000.0, t, FLAT, False)) / SPOT
    assert premium_over_f > 0.01  # a visible effect, not a rounding difference
    assert_allclose(black.delta - pa.delta, 2.0 * premium_over_f, rtol=1e-12)


def test_surface_source_uses_published_vol_and_forward():
    ctx = FakeCtx()
    iid = option_id(ctx.instruments, E2, 110_000.0, True)
    ctx.held[iid] = 1.0
    board = SurfaceBoard()
    assert_allclose(book_greeks(ctx, None, "surface", board, FLAT).delta,
                    book_greeks(ctx, None, "flat", None, FLAT).delta, rtol=1e-12)
    board.publish(flat_surface(0.8, ctx.now, forward=101_000.0), ctx.now)
    legs = book_legs(ctx, None, "surface", board, FLAT)
    assert_allclose(legs.vol, [0.8], rtol=1e-9)
    assert_allclose(legs.forward, [101_000.0], rtol=1e-12)
    t = (E2 - ctx.now) / NS_PER_YEAR
    # an inverse leg: delta q dV/dF, its coin premium converted at the spot (strategies.base)
    want = float(greeks(101_000.0, 110_000.0, t, 0.8, True)["delta"])
    assert_allclose(legs.greeks().delta, want, rtol=1e-9)
    # a board that knows the spot at fit time rolls the forward with the market
    board.publish(flat_surface(0.8, ctx.now, forward=101_000.0), ctx.now, spot=99_000.0)
    assert_allclose(book_legs(ctx, None, "surface", board, FLAT).forward,
                    [101_000.0 * SPOT / 99_000.0], rtol=1e-12)


def test_legs_keep_their_expirys_fitted_vol_and_forward_between_refits():
    """Six hours after a fit, an E2 leg is valued at E2's slice as fitted.  Read at the time
    left, the surface blended E2's slice (0.5, forward 102,000) with E1's (0.9, 101,000):
    0.5025 and a forward 18 USD lower before the fix."""
    ctx = FakeCtx()
    fit_ns = ctx.now - 6 * 3600 * NS
    sl = [SmileSlice("svi", SVIParams(v * v * (e - fit_ns) / NS_PER_YEAR, 0.0, 0.0, 0.0, 0.1),
                     e, (e - fit_ns) / NS_PER_YEAR, f, -1.0, 1.0)
          for e, v, f in ((E1, 0.9, 101_000.0), (E2, 0.5, 102_000.0))]
    board = SurfaceBoard()
    board.publish(Surface(sl, ts_ns=fit_ns), fit_ns)
    ctx.held[option_id(ctx.instruments, E2, 110_000.0, True)] = 1.0
    legs = book_legs(ctx, None, "surface", board, FLAT)
    assert_allclose(legs.vol, [0.5], rtol=1e-12)
    assert_allclose(legs.forward, [102_000.0], rtol=1e-12)


def test_lean_delta_and_gamma_match_black76():
    f = np.array([90_000.0, 100_000.0, 130_000.0])
    k = np.array([100_000.0, 95_000.0, 80_000.0])
    t, v = np.array([0.01, 0.2, 1.5]), np.array([0.9, 0.5, 0.3])
    for call in (True, False):
        c = np.full(3, call)
        ref = greeks(f, k, t, v, c)
        assert_allclose(delta_gamma(f, k, t, v, c, "delta"), ref["delta"], rtol=1e-13, atol=1e-15)
        assert_allclose(delta_gamma(f, k, t, v, c, "gamma"), ref["gamma"], rtol=1e-12)


def test_expired_legs_are_left_out():
    ctx = FakeCtx(now=E1 + NS)
    ctx.held[option_id(ctx.instruments, E1, 100_000.0, True)] = 5.0
    assert book_greeks(ctx, None, "flat", None, FLAT).delta == 0.0


def test_expiry_choice():
    ctx = FakeCtx()
    inst = ctx.instruments
    assert not is_monthly(E1) and is_monthly(E2)
    assert choose_expiry(inst, ctx.now, "nearest") == E1
    assert choose_expiry(inst, ctx.now, "nearest_monthly") == E2
    assert choose_expiry(inst, ctx.now, 15) == E2
    assert choose_expiry(inst, ctx.now, "3") == E1
    assert choose_expiry(inst, E1 - NS, "nearest", min_ns=3600 * NS) == E2
    with pytest.raises(ConfigError, match="nearest_monthly"):
        choose_expiry(inst, ctx.now, "soon")


def test_pending_orders_follow_engine_timer_order():
    p = PendingOrders()
    p.add(100, 1, 5.0)
    p.add(200, 1, -2.0)
    p.prune(100, "corridor")  # a condition wake at 100 precedes the arrival at 100
    assert p.qty(1) == 3.0
    p.prune(100, "deadline")  # a deadline at 100 follows it
    assert p.qty(1) == -2.0
    p.prune(201, "quote_count")
    assert p.by_instrument() == {}
