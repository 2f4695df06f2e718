"""Margin and the risk engine: pure margin models and the consumer that runs them over a replay.

* :mod:`~replay.consumers.margin.legs` - the book as arrays; cross and isolated collateral;
* :mod:`~replay.consumers.margin.standard` - Deribit-style standard margin per position;
* :mod:`~replay.consumers.margin.portfolio` - risk-based portfolio margin (scenarios);
* :mod:`~replay.consumers.margin.revalue` - the scenario revaluation kernel and its reference;
* :mod:`~replay.consumers.margin.rules` - parameters set from the market as the replay runs;
* :mod:`~replay.consumers.margin.book` - legs from the venue's portfolio and the surface;
* :mod:`~replay.consumers.margin.consumer` - requirement, margin calls, liquidation.
"""

from replay.consumers.margin.consumer import MarginConsumer
from replay.consumers.margin.legs import Legs, free_collateral, make_legs
from replay.consumers.margin.portfolio import PMParams, portfolio_margin
from replay.consumers.margin.rules import ImpliedMove, SurfaceVariability
from replay.consumers.margin.standard import StandardParams, standard_margin

__all__ = ["ImpliedMove", "Legs", "MarginConsumer", "PMParams", "StandardParams",
           "SurfaceVariability", "free_collateral", "make_legs", "portfolio_margin",
           "standard_margin"]
