"""The hedging-strategy protocol (:class:`Hedger`) and the strategies without a delta band:
``none``, ``periodic``, ``move_based`` and ``leland``.

Every strategy is an engine consumer.  At each wake it

1. forgets the orders the venue has processed (:class:`strategies.base.PendingOrders`);
2. takes the option legs held (:func:`strategies.base.book_legs`) and their delta ``D`` from
   the configured delta source, and the delta ``h`` of the hedge held plus orders in flight;
3. asks the strategy for its *target* hedge delta (``-D``, or ``-D`` at a modified vol), its
   band half-width ``H`` (BTC; none for the rehedge-to-delta strategies) and whether it acts;
4. trades ``band_trade(target, h, H)`` (to the band centre, or to its nearest edge for the
   utility-based bands) converted into hedge contracts, if that is at least ``min_trade``
   contracts, with market orders that reach the venue ``latency_ns`` later;
5. journals a ``hedge_decision`` and states its next wake: its own deadline and/or an
   underlying corridor (from the band via :func:`strategies.hedging.corridor.delta_corridor`,
   or the move trigger), combined with ``now + max_wake_ns`` so that time decay is tracked.

Because a trade smaller than ``min_trade`` contracts, or than half a ``lot`` (it rounds to no
lot), is never sent (:meth:`Hedger.min_contracts`; ``m`` BTC: its delta, the larger of buying
and selling it), a band strategy's corridor is widened
to where a trade becomes possible: ``H + m`` when it rebalances to the edge, ``max(H, m)``
when it rebalances to the centre; else a breach too small to send would wake it at every
underlying update.  While no option is held and no
hedge is on, strategies poll every ``idle_wake_ns`` (a book's first fills cannot wake them).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from calibration.pricing.smile_delta import DELTA_MODELS
from replay.consumers.forecast.forecasters import FORECASTERS, ORACLES
from replay.engine.wake import WakeCondition
from replay.errors import ConfigError
from replay.model.config import check_choice
from replay.units import NS
from strategies.base import require_positive
from strategies.board import SurfaceBoard
from strategies.dynamics import SmileTracker, with_delta_model
from strategies.greeks import DELTA_SOURCES, BookLegs, book_legs
from strategies.hedge import (
    current_hedge,
    delta_after,
    instrument_price,
    is_inverse_delta_one,
    resolve_hedge,
    spot_of,
    trade_for,
)
from strategies.hedging.bands import band_trade, next_periodic_deadline
from strategies.hedging.corridor import Corridor
from strategies.hedging.corridor_kernel import book_corridor, book_corridor_python
from strategies.pending import PendingOrders

Width = float | Callable[[np.ndarray], np.ndarray] | None
#: ``strategy.hedge_vol``: the vol of the deltas, gammas and bands: the published surface's
#: (with ``delta_source``), ``flat_vol``, or the latest ``strategy.forecast`` forecast (flat
#: across strikes; the surface's vols until the first forecast)
HEDGE_VOLS = ("surface", "flat", "forecast")


class Hedger:
    """Base of the hedging strategies (the protocol in the module docstring).

    Common config: ``hedge`` (``perp``/``future``/``spot``), ``delta_source``
    (``surface``/``flat``/``premium_adjusted``), ``flat_vol``, ``latency_ns`` (order latency;
    None: the venue's latency model),
    ``min_trade`` (contracts), ``lot`` (orders are rounded to multiples of it; 0: no
    rounding; 1 for the Deribit perpetual), ``max_wake_ns`` (longest sleep),
    ``idle_wake_ns`` (poll while nothing is held), ``underlying`` (name prefix of the
    hedge), ``hedge_vol`` (:data:`HEDGE_VOLS`) with ``forecast`` (a forecaster's name),
    ``forecasts`` (the :class:`~replay.consumers.forecast.ForecastBoard`; injected by the run
    with ``forecast=all``), ``delta_model`` (``sticky_strike``, the default;
    ``sticky_moneyness``; ``ssr`` with ``ssr`` a number or ``measured``; ``min_variance``:
    Hull-White; the measured ones from :class:`~strategies.dynamics.SmileTracker` over
    ``dynamics_horizon_s`` pairs in a ``dynamics_window_s`` window), ``board`` (the
    :class:`~strategies.base.SurfaceBoard` the calibration publishes to; injected by the run).
    """

    kind = "hedger"
    rebalance = "center"  # or "edge"
    #: the corridor by the compiled search (:mod:`strategies.hedging.corridor_kernel`) where
    #: it applies; False: by the Python search, its reference twin
    compiled_corridor = True
    caps_wake = True  # combine the own deadline/corridor with now + max_wake_ns

    def __init_subclass__(cls, **kw: Any) -> None:
        # subclasses take their own keys plus ``**common``; publish the full keyword list so
        # that config checks (replay.model.plugins.instantiate_checked) see every accepted key
        super().__init_subclass__(**kw)
        own = [p for p in inspect.signature(cls.__init__).parameters.values()
               if p.kind is not p.VAR_KEYWORD]
        names = {p.name for p in own}
        base = [p for p in inspect.signature(cls.__mro__[1]).parameters.values()
                if p.name not in names]
        cls.__signature__ = inspect.Signature(
            [p.replace(kind=p.KEYWORD_ONLY) for p in own[1:] + base])

    def __init__(self, name: str = "hedger", hedge: str = "perp", delta_source: str = "surface",
                 flat_vol: float = 0.6, latency_ns: int | None = None, min_trade: float = 1.0,
                 max_wake_ns: int = 60 * NS, idle_wake_ns: int = NS, underlying: str = "BTC",
                 lot: float = 0.0, hedge_vol: str = "surface", forecast: str = "garch",
                 delta_model: str = "sticky_strike", ssr: Any = "measured",
                 dynamics_horizon_s: float = 300.0, dynamics_window_s: float = 86400.0,
                 board: SurfaceBoard | None = None, forecasts: Any = None):
        self.name = name
        self.hedge = check_choice("strategy.hedge", hedge, ("perp", "future", "spot"))
        self.delta_source = check_choice("strategy.delta_source", delta_source, DELTA_SOURCES)
        self.hedge_vol = check_choice("strategy.hedge_vol", hedge_vol, HEDGE_VOLS)
        if self.hedge_vol == "forecast" and forecasts is None:
            raise ConfigError("strategy.hedge_vol: 'forecast' needs forecasts (forecast=all)")
        self.forecast = check_choice("strategy.forecast", forecast, FORECASTERS + ORACLES)
        self.forecasts = forecasts
        self.delta_model = check_choice("strategy.delta_model", delta_model, DELTA_MODELS)
        if ssr != "measured" and not (isinstance(ssr, int | float) and math.isfinite(ssr)):
            raise ConfigError(f"strategy.ssr: {ssr!r} must be a number or 'measured'")
        self.ssr = ssr
        self.tracker = SmileTracker(dynamics_horizon_s, dynamics_window_s)
        self.flat_vol = require_positive("strategy.flat_vol", flat_vol)
        self.latency_ns = None if latency_ns is None else int(latency_ns)
        self.min_trade = float(min_trade)
        self.lot = float(lot)
        self.max_wake_ns = int(require_positive("strategy.max_wake_ns", max_wake_ns))
        self.idle_wake_ns = int(require_positive("strategy.idle_wake_ns", idle_wake_ns))
        self.underlying = underlying
        self.board = board
        self.hedge_id = -1
        self.pending = PendingOrders()
        self.n_decisions = 0
        self._options: list[int] | None = None

    # -- hooks for the strategies -------------------------------------------------------
    def center_legs(self, legs: BookLegs) -> BookLegs:
        """Legs whose delta is the band centre (a modified vol for Leland/Zakamouline)."""
        return legs

    def band(self, ctx: Any, legs: BookLegs) -> Width:
        """Band half-width in BTC, a constant or a function of ``S``; None: no band."""
        return None

    def acts(self, ctx: Any, legs: BookLegs, spot: float) -> bool:
        """Whether this wake may trade (the band still decides how much)."""
        return True

    def own_deadline(self, ctx: Any) -> int | None:
        return None

    def move_trigger(self, ctx: Any, spot: float) -> Corridor | None:
        return None

    def option_trades(self, ctx: Any, legs: BookLegs) -> dict[int, float]:
        """Option orders (contracts per instrument) before the delta step (gamma/vega)."""
        return {}

    def rehedged(self, ctx: Any, spot: float, legs: BookLegs) -> None:
        """Called after a wake that was allowed to trade (whether or not it had to)."""

    # -- consumer protocol ----------------------------------------------------------------
    def on_start(self, ctx: Any) -> WakeCondition | None:
        self.hedge_id = resolve_hedge(ctx.instruments, self.hedge, ctx.now, self.underlying)
        return WakeCondition(deadline=ctx.now + self.idle_wake_ns)

    def on_wake(self, ctx: Any) -> WakeCondition | None:
        return self.decide(ctx)

    def state_dict(self) -> dict:
        out = {"hedge_id": self.hedge_id, "pending": list(self.pending.orders),
               "n_decisions": self.n_decisions}
        if self.delta_model != "sticky_strike":
            out["tracker"] = self.tracker.state_dict()
        return out

    def load_state_dict(self, d: dict) -> None:
        self.hedge_id = d["hedge_id"]
        self.pending = PendingOrders(list(d["pending"]))
        self.n_decisions = d["n_decisions"]
        if "tracker" in d:
            self.tracker.load_state_dict(d["tracker"])

    # -- the decision ---------------------------------------------------------------------
    def legs(self, ctx: Any) -> BookLegs:
        if self._options is None:  # static: the store's instruments do not change in a run
            self._options = {int(i) for i in ctx.instruments.ids_of_kind("option")}
        held, pending = ctx.positions(), self.pending.by_instrument()
        # the options held or in flight, in instrument order (the greeks sum in that order)
        pos = {i: held.get(i, 0.0) for i in sorted(held.keys() | pending.keys())
               if i in self._options}
        for i, q in pending.items():
            if i in pos:
                pos[i] += q
        # the legs of the delta_source (premium-adjusted or not), then the vols hedge_vol asks
        legs = book_legs(ctx, pos, self.delta_source, self.board, self.flat_vol)
        v = float(self.flat_vol) if self.hedge_vol == "flat" else self.forecast_vol()
        if v is not None and len(legs):
            legs = legs.with_vol(np.full(len(legs), v))
        if self.delta_model != "sticky_strike":
            surf = self.board.surface if self.board is not None else None
            legs = with_delta_model(legs, surf, self.delta_model, self.ssr, self.tracker,
                                    ctx.now)
        return legs

    @property
    def vol_source(self) -> str:
        """The ``delta_source`` of the legs' vols: ``flat`` when ``hedge_vol`` is."""
        return "flat" if self.hedge_vol == "flat" else self.delta_source

    def forecast_vol(self) -> float | None:
        """The forecast vol every leg takes when ``hedge_vol="forecast"``; None otherwise and
        before the first forecast (the legs then keep the surface's vols)."""
        if self.hedge_vol != "forecast":
            return None
        v = self.forecasts.vol(self.forecast)
        return v if math.isfinite(v) and v > 0 else None

    def min_contracts(self) -> float:
        """The smallest order sent: ``min_trade`` contracts, and at least half a ``lot``,
        rounded up to a whole number of lots (a need that rounds to fewer is not sent)."""
        q = max(self.min_trade, self.lot / 2)
        return math.ceil(q / self.lot - 1e-9) * self.lot if self.lot > 0 else q

    def hedge_price(self, ctx: Any, spot: float) -> float:
        return instrument_price(ctx, self.hedge_id, spot)

    @property
    def _coin_view(self) -> bool:
        """Whether deltas hedge the coin PnL (``premium_adjusted``), not the USD one."""
        return self.delta_source == "premium_adjusted"

    def _entry(self, ctx: Any, price: float) -> float:
        """The price the hedge position held counts at (:mod:`strategies.base`, "Hedge
        instruments"): the venue's entry price; ``price`` in the coin view or without one."""
        avg = math.nan if self._coin_view else ctx.entry_price(self.hedge_id)
        return avg if math.isfinite(avg) and avg > 0 else price

    def decide(self, ctx: Any) -> WakeCondition | None:
        now = ctx.now
        self.pending.prune(now, ctx.reason)
        self.hedge_id, roll_at = current_hedge(ctx, self.hedge_id, self.hedge, self.underlying)
        if roll_at is not None and roll_at <= now + (self.latency_ns or 0) + 1:
            # an order would reach the future at or after its expiry (the venue refuses it;
            # with the venue's own latency, drawn per order, only the expiry instant is
            # known): the hedge waits for the roll, just after the venue settles it
            return WakeCondition(deadline=max(roll_at, now + 1))
        spot = spot_of(ctx)
        if not (math.isfinite(spot) and spot > 0):
            return WakeCondition(deadline=now + self.idle_wake_ns)
        legs = self.legs(ctx)
        extra = self.option_trades(ctx, legs) if len(legs) else {}
        if extra:
            for iid, q in extra.items():
                ctx.emit("book_order", book=self.name, reason="gamma_vega", instrument_id=iid,
                         qty=q, price=math.nan, ref_price=math.nan, ref_size=math.nan,
                         ref_side=0, ref_ts=now)
                ctx.submit(iid, q, latency_ns=self.latency_ns)
                self.pending.add(ctx.last_arrival_ts, iid, q)
            legs = self.legs(ctx)
        price = self.hedge_price(ctx, spot)
        position, pending = ctx.position(self.hedge_id), self.pending.qty(self.hedge_id)
        held = position + pending
        inst = ctx.instruments
        cs = float(inst.contract_size[self.hedge_id])
        inverse = is_inverse_delta_one(inst, self.hedge_id)
        current = delta_after(position, self._entry(ctx, price), pending, price, cs, inverse)
        # once the orders in flight fill: held at the entry price that gives it that delta
        avg = held * cs / current if inverse and held and current else price
        if not len(legs) and held == 0.0:
            return WakeCondition(deadline=now + self.idle_wake_ns)
        center = self.center_legs(legs)
        # the deltas by the same function as the corridor's (only delta is needed here)
        book_delta = legs.delta(spot)
        target = -(book_delta if center is legs else center.delta(spot))
        width = self.band(ctx, legs)
        h_now = 0.0 if width is None else float(np.asarray(
            width(np.array([spot]))[0] if callable(width) else width))
        # the smallest order sent (contracts) and its delta, the larger of buying and
        # selling it: an inverse contract that reduces the position moves its delta by
        # cs / avg, one that adds to it by cs / price
        q_min = self.min_contracts()
        m = max(abs(delta_after(held, avg, q, price, cs, inverse) - current)
                for q in (q_min, -q_min))
        acts = self.acts(ctx, legs, spot)
        trade = band_trade(target, current, h_now, self.rebalance) if acts else 0.0
        contracts = trade_for(trade, held, avg, price, cs, inverse)
        if self.lot > 0:
            contracts = round(contracts / self.lot) * self.lot
            trade = delta_after(held, avg, contracts, price, cs, inverse) - current
        if abs(contracts) >= q_min * (1 - 1e-12) and contracts != 0.0:
            ctx.submit(self.hedge_id, contracts, latency_ns=self.latency_ns)
            self.pending.add(ctx.last_arrival_ts, self.hedge_id, contracts)
        else:
            trade, contracts = 0.0, 0.0
        if acts:
            self.rehedged(ctx, spot, legs)
        corridor = self._corridor(ctx, center, spot, held + contracts, current + trade,
                                  price / spot, width, m)
        deadline = self.own_deadline(ctx)
        if self.caps_wake or deadline is None:
            cap = now + self.max_wake_ns
            deadline = cap if deadline is None else min(deadline, cap)
        deadline = deadline if roll_at is None or roll_at <= now else min(deadline, roll_at)
        self.n_decisions += 1
        ctx.emit("hedge_decision", strategy=self.kind, reason=ctx.reason, spot=spot,
                 book_delta=book_delta, target_delta=target, current_hedge=current,
                 band_lo=target - h_now, band_hi=target + h_now, trade_delta=trade,
                 instrument_id=self.hedge_id, contracts=contracts,
                 corridor_lo=math.nan if corridor is None else corridor.lo,
                 corridor_hi=math.nan if corridor is None else corridor.hi,
                 next_deadline=deadline)
        return WakeCondition(deadline=deadline,
                             corridor=None if corridor is None else (corridor.lo, corridor.hi))

    def _corridor(self, ctx: Any, center: BookLegs, spot: float, contracts: float,
                  hedge_delta: float, price_ratio: float, width: Width, m: float
                  ) -> Corridor | None:
        """The band as an underlying corridor: ``|D(S) + h(S)| < H(S)`` with ``h(S)`` the
        delta of the hedge once the trade is done: ``hedge_delta``, constant in ``S`` (a
        linear contract; an inverse one in USD, ``n cs / avg``), or in the coin view, for an
        inverse contract, ``n cs / P`` of ``contracts`` at price ``price_ratio * S``."""
        trig = self.move_trigger(ctx, spot)
        if trig is not None or width is None:
            return trig
        inst = ctx.instruments
        moves = self._coin_view and is_inverse_delta_one(inst, self.hedge_id)
        search = book_corridor if self.compiled_corridor else book_corridor_python
        lo, hi = search(center, spot,
                        contracts * float(inst.contract_size[self.hedge_id]) if moves
                        else hedge_delta, price_ratio, moves, width, m,
                        self.rebalance == "edge")
        return Corridor(lo, hi)


class NoHedge(Hedger):
    """``none``: holds no hedge and never wakes (one ``hedge_decision`` at start).  It never
    trades (``trades = False``), so a run without a book leaves it out: ``book=none
    strategy=none`` is a calibration-only replay."""

    kind = "none"
    trades = False

    def on_start(self, ctx: Any) -> WakeCondition | None:
        ctx.emit("hedge_decision", strategy=self.kind, reason="start", spot=math.nan,
                 book_delta=math.nan, target_delta=math.nan, current_hedge=0.0,
                 band_lo=math.nan, band_hi=math.nan, trade_delta=0.0, instrument_id=-1,
                 contracts=0.0, corridor_lo=math.nan, corridor_hi=math.nan, next_deadline=-1)
        return None


class Periodic(Hedger):
    """``periodic``: rehedge to the full delta at ``anchor + k period_ns``.

    ``hedge = -Delta`` at each ``t_k = k Dt`` (Black-76 delta from the configured source);
    the schedule is :func:`strategies.hedging.bands.next_periodic_deadline`.  The discrete
    hedging error has std ``~ sqrt(pi/4) vega sigma / sqrt(N)`` for ``N`` rebalances (E. Derman
    and M. Kamal, "When you cannot hedge continuously", Goldman Sachs QS note, 1999).
    """

    kind = "periodic"
    caps_wake = False

    def __init__(self, period_ns: int = 60 * NS, anchor_ns: int = 0, **common: Any):
        super().__init__(**common)
        self.period_ns = int(require_positive("strategy.period_ns", period_ns))
        self.anchor_ns = int(anchor_ns)

    def on_start(self, ctx: Any) -> WakeCondition | None:
        super().on_start(ctx)
        return WakeCondition(deadline=self.own_deadline(ctx))

    def own_deadline(self, ctx: Any) -> int:
        return next_periodic_deadline(ctx.now, self.period_ns, self.anchor_ns)

    def decide(self, ctx: Any) -> WakeCondition | None:
        cond = super().decide(ctx)
        # Stay on the grid, but keep the base class's idle polls while nothing is held, so
        # that a new book is hedged when it appears (at inception, as Derman-Kamal assume)
        # rather than up to a whole period later.
        grid = self.own_deadline(ctx)
        deadline = grid if cond is None or cond.deadline is None else min(cond.deadline, grid)
        return WakeCondition(deadline=deadline,
                             corridor=None if cond is None else cond.corridor)
