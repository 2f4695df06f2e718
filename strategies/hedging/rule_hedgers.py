"""Hedgers with a rule of their own on top of :class:`~strategies.hedging.delta.Hedger`:
``leland`` (periodic, at Leland's cost-adjusted vol) and ``move_based`` (rehedge once the
underlying has moved a fixed fraction)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from replay.units import NS
from strategies.base import require_positive
from strategies.greeks import BookLegs
from strategies.hedging.bands import leland_vol, move_corridor
from strategies.hedging.corridor import Corridor
from strategies.hedging.delta import Hedger, Periodic


class Leland(Periodic):
    """``leland``: periodic rehedging to the delta at Leland's adjusted vol.

    ``sigma_L^2 = sigma^2 (1 + s sqrt(2/pi) k / (sigma sqrt(dt)))``, ``k`` the round-trip
    proportional cost, ``dt = period`` in years (:func:`strategies.hedging.bands.leland_vol`;
    H. E. Leland, J. Finance 40(5), 1985).  Leland prices one option; for a book the sign is
    the book's: ``s = +1`` when its gamma is negative (net short options), ``-1`` when
    positive, every leg adjusted alike (Hoggard, Whalley and Wilmott, "Hedging option
    portfolios in the presence of transaction costs", Adv. Futures Options Res. 7, 1994), as
    :class:`~strategies.hedging.band_hedgers.Zakamouline` does.  A leg-by-leg sign would hedge
    a gamma-free book (long calls against short puts: a synthetic forward, delta 1 a
    contract at any vol) to another delta.  Long gamma with a Leland number above 1 has no
    solution (the adjusted variance is negative); the vol is then clipped at 0, the limit of
    the formula, and the delta becomes the payoff's step.
    """

    kind = "leland"

    def __init__(self, cost: float = 0.001, **periodic: Any):
        super().__init__(**periodic)
        self.cost = float(cost)

    def center_legs(self, legs: BookLegs) -> BookLegs:
        if not len(legs):
            return legs
        dt = self.period_ns / (365.0 * 86400.0 * NS)
        short = float(legs.gamma_fn()(legs.spot)) < 0.0
        return legs.with_vol(leland_vol(legs.vol, self.cost, dt, short=short))


class MoveBased(Hedger):
    """``move_based``: rehedge to the full delta once ``|S / S_ref - 1| >= move_pct``.

    ``S_ref`` is the underlying at the last rehedge; the wake corridor is
    ``[S_ref (1 - p), S_ref (1 + p)]`` (:func:`strategies.hedging.bands.move_corridor`).  A
    change of the book (new or closed legs) also triggers a rehedge, since it moves the delta
    without any price move.  ``max_wake_ns`` wakes re-check only these two triggers.
    """

    kind = "move_based"

    def __init__(self, move_pct: float = 0.005, **common: Any):
        super().__init__(**common)
        self.move_pct = require_positive("strategy.move_pct", move_pct)
        self.ref_spot = math.nan
        self.signature: tuple = ()

    @staticmethod
    def _sig(legs: BookLegs) -> tuple:
        return tuple(zip(legs.instrument_id.tolist(), np.round(legs.qty, 12).tolist()))

    def acts(self, ctx: Any, legs: BookLegs, spot: float) -> bool:
        if not math.isfinite(self.ref_spot) or self._sig(legs) != self.signature:
            return True
        # the corridor's own numbers: the engine wakes outside them, and a test of the ratio
        # can differ from them by an ulp (a wake with no rehedge, then one at every quote)
        lo, hi = move_corridor(self.ref_spot, self.move_pct)
        return not lo <= spot <= hi

    def rehedged(self, ctx: Any, spot: float, legs: BookLegs) -> None:
        self.ref_spot, self.signature = spot, self._sig(legs)

    def move_trigger(self, ctx: Any, spot: float) -> Corridor:
        lo, hi = move_corridor(self.ref_spot if math.isfinite(self.ref_spot) else spot,
                               self.move_pct)
        return Corridor(lo, hi)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "ref_spot": self.ref_spot, "signature": self.signature}

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self.ref_spot, self.signature = d["ref_spot"], tuple(d["signature"])
