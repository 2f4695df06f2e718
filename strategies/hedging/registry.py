"""The hedging strategies, one name per Hydra ``strategy`` option (``_target_`` here):

=================  ==========================================================
option             class
=================  ==========================================================
``none``           :class:`strategies.hedging.delta.NoHedge`
``periodic``       :class:`strategies.hedging.delta.Periodic`
``delta_band``     :class:`strategies.hedging.band_hedgers.DeltaBand`
``move_based``     :class:`strategies.hedging.delta.MoveBased`
``whalley_wilmott`` :class:`strategies.hedging.band_hedgers.WhalleyWilmott`
``zakamouline``    :class:`strategies.hedging.band_hedgers.Zakamouline`
``leland``         :class:`strategies.hedging.delta.Leland`
``gamma_vega``     :class:`strategies.hedging.gamma_vega.GammaVega`
=================  ==========================================================

The protocol they share is :class:`strategies.hedging.delta.Hedger`.
"""

from __future__ import annotations

from strategies.hedging.band_hedgers import DeltaBand, WhalleyWilmott, Zakamouline
from strategies.hedging.delta import Hedger, NoHedge, Periodic
from strategies.hedging.gamma_vega import GammaVega
from strategies.hedging.rule_hedgers import Leland, MoveBased

#: Hydra option name -> class
STRATEGIES: dict[str, type[Hedger]] = {
    "none": NoHedge, "periodic": Periodic, "delta_band": DeltaBand, "move_based": MoveBased,
    "whalley_wilmott": WhalleyWilmott, "zakamouline": Zakamouline, "leland": Leland,
    "gamma_vega": GammaVega,
}

__all__ = ["STRATEGIES", "DeltaBand", "GammaVega", "Hedger", "Leland", "MoveBased", "NoHedge",
           "Periodic", "WhalleyWilmott", "Zakamouline"]
