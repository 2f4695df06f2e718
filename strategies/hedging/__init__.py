"""Hedging strategies' pure building blocks: band formulas, triggers, and price corridors.

* :mod:`strategies.hedging.bands` - Whalley-Wilmott, Zakamouline, Leland, fixed band, move and
  periodic triggers, gamma/vega neutralisation;
* :mod:`strategies.hedging.corridor` - a delta band turned into an underlying price corridor;
* :mod:`strategies.hedging.registry` - the strategies themselves (engine consumers, one per
  Hydra ``strategy`` option; protocol in :mod:`strategies.hedging.delta`).
"""

from __future__ import annotations

from strategies.hedging.bands import (
    band_trade,
    gamma_vega_neutralise,
    leland_vol,
    move_corridor,
    next_periodic_deadline,
    whalley_wilmott_half_width,
    zakamouline_h0,
    zakamouline_h1,
    zakamouline_half_width,
    zakamouline_k,
    zakamouline_modified_vol,
)
from strategies.hedging.corridor import Corridor, delta_corridor
from strategies.hedging.registry import (
    STRATEGIES,
    DeltaBand,
    GammaVega,
    Hedger,
    Leland,
    MoveBased,
    NoHedge,
    Periodic,
    WhalleyWilmott,
    Zakamouline,
)

__all__ = [
    "STRATEGIES",
    "Corridor",
    "DeltaBand",
    "GammaVega",
    "Hedger",
    "Leland",
    "MoveBased",
    "NoHedge",
    "Periodic",
    "WhalleyWilmott",
    "Zakamouline",
    "band_trade",
    "delta_corridor",
    "gamma_vega_neutralise",
    "leland_vol",
    "move_corridor",
    "next_periodic_deadline",
    "whalley_wilmott_half_width",
    "zakamouline_h0",
    "zakamouline_h1",
    "zakamouline_half_width",
    "zakamouline_k",
    "zakamouline_modified_vol",
]
