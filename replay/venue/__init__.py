"""Simulated venue: pure, engine-agnostic building blocks.

The engine delivers each order at its arrival time ``decision_ts + latency`` together with the
book as of arrival; these modules turn that into fills, fees, rejections, funding and PnL:

* :mod:`replay.model.orders` - instrument specs, orders, fills, rejections;
* :mod:`replay.venue.latency` - constant latency per venue plus seeded jitter;
* :mod:`replay.venue.fills` - marketable orders (touch, depth walk, bands) and queue models;
* :mod:`replay.venue.fees` - maker/taker fees with Deribit's option fee cap;
* :mod:`replay.venue.funding` - perpetual funding accrual;
* :mod:`replay.venue.accounting` - inverse/linear positions and PnL in coin and USD.
"""

from __future__ import annotations

from replay.model.orders import Fill, InstrumentSpec, Order, Rejection
from replay.venue.accounting import Portfolio, PortfolioMark, option_settlement_price
from replay.venue.fees import DERIBIT_FEES, NO_FEES, FeeSchedule, VenueFees, apply_fees, fee
from replay.venue.fills import (
    BookView,
    ConservativeQueue,
    DepthLadder,
    FillConfig,
    MatchResult,
    PriceBand,
    ProbabilisticQueue,
    RestingOrder,
    TradePrint,
    make_queue_model,
    match_on_arrival,
    rest,
)
from replay.venue.funding import accrue, discrete_payments, funding_payment
from replay.venue.latency import LatencyModel, VenueLatencies

__all__ = [
    "DERIBIT_FEES",
    "NO_FEES",
    "BookView",
    "ConservativeQueue",
    "DepthLadder",
    "FeeSchedule",
    "Fill",
    "FillConfig",
    "InstrumentSpec",
    "LatencyModel",
    "MatchResult",
    "Order",
    "Portfolio",
    "PortfolioMark",
    "PriceBand",
    "ProbabilisticQueue",
    "Rejection",
    "RestingOrder",
    "TradePrint",
    "VenueFees",
    "VenueLatencies",
    "accrue",
    "apply_fees",
    "discrete_payments",
    "fee",
    "funding_payment",
    "make_queue_model",
    "match_on_arrival",
    "option_settlement_price",
    "rest",
]
