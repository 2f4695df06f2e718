"""The simulated venue the engine calls at each order's arrival: latency, fills, fees, accounting.

It glues the small pure models together (:mod:`~replay.venue.latency`, :mod:`~replay.venue.fills`,
:mod:`~replay.venue.fees`, :mod:`~replay.venue.accounting`) and owns the run's
:class:`~replay.venue.accounting.Portfolio`: the run's one ledger.  Consumers read their positions
from it (``ctx.position``), funding and expiry settlement are booked into it by the venue's own
consumer (:class:`~replay.venue.carry.Carry`), and PnL in coin and USD is a fold over the
journaled executions, funding and settlements (:func:`replay.venue.fold.fold_portfolio`).

Book at arrival: the top of book of the instrument as of the arrival instant.  Sources without
sizes (Deribit summaries) get ``default_size`` option contracts (``hedge_default_size`` for
other instruments) at the touch, and every book is extended by the configured depth ladder.  A hedge instrument that has no quotes of its own
(the real Deribit data has no perp tape) is quoted around its reference price
(``MarketView.reference_price``: the venue forward) with ``hedge_half_spread_bps`` each side.

Negotiated trades: limit orders of the consumers in ``venue.negotiated_consumers`` (the books)
fill whole at their limit as maker, because they model trades whose price was agreed (taking
the other side of a printed trade; an RFQ at mid).

Liquidations: orders of the consumers in ``venue.liquidation_consumers`` (the margin
consumer) fill like any other and pay ``venue.liquidation_fee`` x notional
(:func:`replay.venue.fees.notional`) on top of the trading fee.

Passive orders: any other limit order that does not cross on arrival rests with the venue's
:class:`~replay.venue.passive.PassiveOrders` (a consumer the venue owns, ``venue.consumers``)
and fills as the configured queue model (``venue.queue``) says, or expires after
``venue.passive_ttl_s``.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from calibration.pricing.black_one import greeks_one
from calibration.pricing.forwards import time_to_expiry
from replay.model.config import VenueConfig, check_choice
from replay.model.events import EventKind, register_kind
from replay.model.orders import REJECT_EXPIRED, Fill, InstrumentSpec
from replay.units import NS
from replay.venue.accounting import Portfolio
from replay.venue.carry import Carry
from replay.venue.fees import FeeSchedule, VenueFees, apply_fees, notional
from replay.venue.fills import (
    BookView,
    DepthLadder,
    FillConfig,
    MatchResult,
    PriceBand,
    make_queue_model,
    match_on_arrival,
    rest,
)
from replay.venue.latency import LatencyModel
from replay.venue.passive import PassiveOrders

REJECTION = register_kind(EventKind("rejection", "rejections", (
    ("order_id", "int"), ("instrument_id", "int"), ("qty", "float"), ("reason", "str"),
    ("detail", "str"))))
EXECUTION = register_kind(EventKind("execution", "executions", (
    ("order_id", "int"), ("instrument_id", "int"), ("qty", "float"), ("price", "float"),
    ("fee", "float"), ("liquidity", "str"), ("level", "int"), ("arrival_mid", "float"),
    ("usd_per_coin", "float"), ("fee_usd", "float"), ("slippage_usd", "float"))))


def venue_mark(spec: InstrumentSpec, iid: int, m) -> float:  # noqa: ANN001 - a MarketView
    """The venue's mark of ``iid`` in its price currency, the price band's reference; NaN when
    the data has none (the band is then centred on the mid).

    * an option: Black-76 at the venue's mark IV and forward of its expiry, as Deribit marks
      options (``Black(F, K, T, mark_iv) / F`` when inverse);
    * a perpetual: the funding feed's mark price;
    * anything else: NaN."""
    if spec.kind == "perp":
        return float(m.mark_price[iid])
    if not spec.is_option:
        return math.nan
    f, vol = float(m.venue_forward[iid]), float(m.mark_iv[iid])
    t = float(time_to_expiry(m.now, spec.expiry_ns))
    px = greeks_one(f, spec.strike, t, vol, spec.is_call)[0]  # NaN for any NaN input
    return px / f if spec.is_inverse else px


def fees_from_config(cfg: VenueConfig) -> VenueFees:
    hedge = FeeSchedule(maker_bps=cfg.hedge_maker_bps, taker_bps=cfg.hedge_taker_bps)
    option = FeeSchedule(maker_per_contract=cfg.option_fee_per_contract,
                         taker_per_contract=cfg.option_fee_per_contract,
                         premium_cap_fraction=cfg.option_fee_cap)
    return VenueFees(option=option, future=hedge, perp=hedge, spot=hedge)


class SimulatedVenue:
    """Engine venue: ``latency_ns(rng)`` for new orders and ``on_arrival(order, vctx)``."""

    def __init__(self, cfg: VenueConfig, specs: dict[int, InstrumentSpec]):
        check_choice("venue.jitter", cfg.jitter, ("none", "uniform", "exponential"))
        check_choice("venue.queue", cfg.queue, ("conservative", "probabilistic"))
        check_choice("venue.equity_currency", cfg.equity_currency, ("usd", "coin"))
        self.cfg = cfg
        self.specs = specs
        self.latency = LatencyModel(int(cfg.latency_ms * 1e6), int(cfg.jitter_ms * 1e6),
                                    cfg.jitter)
        self.fees = fees_from_config(cfg)
        mult = tuple([1.0] * max(int(cfg.depth_levels) - 1, 0)) if cfg.depth_levels > 1 else ()
        self.fill_cfg = FillConfig(
            ladder=DepthLadder(spacing_ticks=cfg.depth_step_ticks,
                               size_multipliers=tuple(m * cfg.depth_size_multiplier for m in mult),
                               default_touch_size=cfg.default_size),
            band=PriceBand(fraction=cfg.price_band))
        self.passive = PassiveOrders(self, make_queue_model(cfg.queue, self.fill_cfg.ladder),
                                     int(cfg.passive_ttl_s * NS))
        self.carry = Carry(self, cfg.funding_every_s)
        #: consumers the engine runs for the venue (after the user's)
        self.consumers = (self.passive, self.carry)
        self.portfolio = Portfolio(specs)
        #: fill-vs-mid cost paid so far, USD, split as the attribution needs it
        self.slippage_usd = {"option": 0.0, "hedge": 0.0}
        #: called with the VenueContext after an order's fills are booked (the margin
        #: consumer re-evaluates the requirement then)
        self.fill_listeners: list = []

    # -- engine hooks -----------------------------------------------------------------
    def latency_ns(self, rng: np.random.Generator) -> int:
        return self.latency.arrival_ts(0, rng)

    def position(self, iid: int) -> float:
        """Contracts held, signed (the engine's ``ctx.position``)."""
        pos = self.portfolio.positions.get(int(iid))
        return 0.0 if pos is None else pos.qty

    def positions(self) -> dict[int, float]:
        return self.portfolio.net_qty()

    def entry_price(self, iid: int) -> float:
        """The position's average entry price (the engine's ``ctx.entry_price``); NaN flat."""
        pos = self.portfolio.positions.get(int(iid))
        return math.nan if pos is None or pos.qty == 0 else pos.avg_price

    def book(self, iid: int, m) -> BookView:
        """Top of book of ``iid`` as of now, with documented defaults where data is missing."""
        spec = self.specs[iid]
        bid, ask = float(m.bid[iid]), float(m.ask[iid])
        if not (math.isfinite(bid) or math.isfinite(ask)) and not spec.is_option:
            ref = float(m.reference_price(iid))
            if math.isfinite(ref):
                h = ref * self.cfg.hedge_half_spread_bps * 1e-4
                bid, ask = ref - h, ref + h
        bs, as_ = float(m.bid_size[iid]), float(m.ask_size[iid])
        d = self.cfg.default_size if spec.is_option else self.cfg.hedge_default_size
        return BookView(ts=m.now, bid_price=bid, ask_price=ask,
                        bid_size=bs if math.isfinite(bs) else d,
                        ask_size=as_ if math.isfinite(as_) else d,
                        tick_size=spec.tick_size or 0.0, mark_price=venue_mark(spec, iid, m))

    def on_arrival(self, order, vctx) -> None:
        m = vctx.market
        iid = order.instrument_id
        side = order.side
        expiry = self.specs[iid].expiry_ns
        if expiry is not None and expiry <= vctx.now:
            # its last quotes are stale and its settlement value known: nothing trades it now
            vctx.emit("rejection", order_id=order.order_id, instrument_id=iid,
                      qty=side * order.qty, reason=REJECT_EXPIRED,
                      detail=f"expired at {expiry}, arrived at {vctx.now}")
            return
        book = self.book(iid, m)
        if order.kind == "limit" and order.tag in self.cfg.negotiated_consumers:
            res = MatchResult((Fill(order.id, iid, vctx.now, side, order.limit_price, order.qty,
                                    "maker"),), 0.0)
        else:
            res = match_on_arrival(order, book, self.fill_cfg, ts=vctx.now)
        self.book_fills(order, res.fills, book.mid, vctx)
        if res.rejection is not None:
            r = res.rejection
            vctx.emit("rejection", order_id=order.order_id, instrument_id=iid,
                      qty=side * res.remaining_qty, reason=r.reason, detail=r.detail)
        elif res.rests:
            self.passive.add(order, rest(order, res, book, vctx.now, self.fill_cfg.ladder),
                             res.fills, vctx)

    def book_fills(self, order, fills, mid: float, vctx) -> None:
        """Charge fees, book ``fills`` of ``order`` (the portfolio; the engine journals the fill) and
        journal one ``execution`` each, with its cost against ``mid``."""
        iid = order.instrument_id
        spec = self.specs[iid]
        if fills and spec.kind == "perp":
            # the position held so far pays its funding before it changes
            self.carry.accrue_funding(vctx)
        usd = float(vctx.market.spot())
        booked = apply_fees(fills, self.fees, spec, underlying_price=usd)
        if order.tag in self.cfg.liquidation_consumers:
            booked = tuple(replace(f, fee=f.fee + self.cfg.liquidation_fee * notional(
                spec, f.qty, f.price, usd)) for f in booked)
        for f in booked:
            signed = f.side * f.qty
            vctx.fill(order, signed, f.price, f.fee, spec.contract_size)
            self.portfolio.apply_fill(f, usd)
            fee_usd = f.fee * usd if spec.is_inverse else f.fee
            cost = self.cost_usd(spec, signed, f.price, mid, usd)
            self.slippage_usd["option" if spec.is_option else "hedge"] += cost
            vctx.emit("execution", order_id=order.order_id, instrument_id=iid, qty=signed,
                      price=f.price, fee=f.fee, liquidity=f.liquidity, level=f.level,
                      arrival_mid=mid, usd_per_coin=usd, fee_usd=fee_usd, slippage_usd=cost)
        if booked:
            if spec.expiry_ns is not None and spec.expiry_ns > vctx.now:
                # settled at its expiry, which may come before the carry's next wake
                vctx.set_wake(self.carry.name, self.carry.next_wake(vctx.now))
            for listener in self.fill_listeners:
                listener(vctx)

    @staticmethod
    def cost_usd(spec: InstrumentSpec, signed_qty: float, price: float, mid: float,
                 usd_per_coin: float) -> float:
        """What trading at ``price`` instead of ``mid`` cost, in USD (positive = paid)."""
        if not math.isfinite(mid):
            return 0.0
        if spec.is_option:
            per = (price - mid) * spec.contract_size
            return signed_qty * (per * usd_per_coin if spec.is_inverse else per)
        if spec.is_inverse:  # USD-sized contracts: cost in coin = cs*(1/mid - 1/price) per contract
            return signed_qty * spec.contract_size * (1.0 / mid - 1.0 / price) * usd_per_coin
        return signed_qty * (price - mid) * spec.contract_size

    # -- snapshots --------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"portfolio": self.portfolio.state_dict(), "slippage_usd": dict(self.slippage_usd)}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        self.portfolio.load_state_dict(d["portfolio"])
        self.slippage_usd = dict(d["slippage_usd"])


def specs_from_store(instruments_table) -> dict[int, InstrumentSpec]:
    """``InstrumentSpec`` per instrument id from the store's ``instruments`` Arrow table."""
    out = {}
    for row in instruments_table.to_pylist():
        kind = row["kind"] if row["kind"] in ("option", "future", "perp", "spot") else "spot"
        out[int(row["instrument_id"])] = InstrumentSpec.from_row({**row, "kind": kind})
    return out


__all__ = ["SimulatedVenue", "fees_from_config", "specs_from_store"]
