"""Books: what is being hedged.  Each is an engine consumer, Hydra-instantiable by ``_target_``.

* :class:`~strategies.books.fixed.FixedBook` (``book=fixed``): option positions opened once, as soon as the market is
  quoted, at the market or with limit orders at mid.
* :class:`~strategies.books.market_maker.MarketMakerBook` (``book=market_maker``): takes the other side of the historical
  option trades, within a size cap and an instrument filter, at the traded price.

**Expiry.**  Books hold their options to expiry; settling them is the venue's job (it is the
run's one ledger): :class:`replay.venue.carry.Carry` closes every expired position at
intrinsic value against the settlement index and journals one ``settlement`` event each.
"""


from strategies.books.fixed import STRUCTURES, FixedBook, strike_by_delta
from strategies.books.market_maker import MarketMakerBook

__all__ = ["STRUCTURES", "FixedBook", "MarketMakerBook", "strike_by_delta"]
