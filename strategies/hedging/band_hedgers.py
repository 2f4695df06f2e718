"""Band strategies: ``delta_band`` (fixed), ``whalley_wilmott`` and ``zakamouline``.

They hold the hedge while ``|target - hedge| <= H`` and wake when the underlying leaves the
corridor where that holds (:func:`strategies.hedging.corridor.delta_corridor`), or after
``max_wake_ns`` (time decay moves the delta and the band too).  The band formulas live in
:mod:`strategies.hedging.bands`; this module only feeds them the book's greeks.

For a book of several legs the utility-based bands need one time to expiry and one vol: the
gamma-weighted averages ``tau = sum |G_i| tau_i / sum |G_i|`` and
``sigma = sum |G_i| sigma_i / sum |G_i|`` (``G_i`` a leg's dollar-free gamma contribution),
exact for a single option and dominated by the legs that drive the hedging cost otherwise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from replay.model.config import check_choice
from strategies.base import require_positive
from strategies.greeks import BookLegs, delta_gamma, nan_to_num
from strategies.hedging.bands import (
    zakamouline_h0,
    zakamouline_h1,
    zakamouline_k,
    zakamouline_modified_vol,
)
from strategies.hedging.corridor_kernel import WHALLEY_WILMOTT, ZAKAMOULINE, BandWidth
from strategies.hedging.delta import Hedger, Width


def gamma_weighted(legs: BookLegs, *xs: np.ndarray) -> tuple[float, ...]:
    """``sum |G_i| x_i / sum |G_i|`` of each ``x`` with ``G_i`` each leg's gamma contribution
    at ``S`` (the legs' gammas evaluated once for all of them, by the lean Black-76 path)."""
    b = legs.basis
    gamma = delta_gamma(b * legs.spot, legs.strike, legs.t, legs.vol, legs.is_call, "gamma")
    g = np.abs(nan_to_num(gamma) * legs.weights(2))
    tot = float(g.sum())
    return tuple(float(np.mean(x)) if tot <= 0 else float(np.sum(g * x) / tot) for x in xs)


class DeltaBand(Hedger):
    """``delta_band``: a fixed band of ``band`` BTC around the full delta hedge.

    Hold while ``|-Delta - h| <= band``; on a breach trade back to the centre ``-Delta``
    (``rebalance: center``) or to the nearest edge (``edge``).  The corridor is the set of
    ``S`` around the spot where ``|Delta(S) + h| < band`` (Black-76 deltas, sticky strike).
    A fixed delta tolerance is the desk practice the utility bands refine (cf. Whalley and
    Wilmott 1997, whose band is the optimal such tolerance).
    """

    kind = "delta_band"

    def __init__(self, band: float = 0.1, rebalance: str = "center", **common: Any):
        super().__init__(**common)
        self.half_width = require_positive("strategy.band", band)
        self.rebalance = check_choice("strategy.rebalance", rebalance, ("center", "edge"))

    def band(self, ctx: Any, legs: BookLegs) -> Width:
        return self.half_width


class UtilityBand(Hedger):
    """Base of the utility-based bands (Whalley-Wilmott, Zakamouline): absolute risk aversion
    ``risk_aversion`` (per USD), proportional cost ``cost`` and rate ``r``; rebalance to the
    nearest edge of the band.

    The default ``risk_aversion`` of 1e-3 per USD gives a 10-lot short straddle on BTC bands
    of 0.07 (Zakamouline) to 0.26 BTC (Whalley-Wilmott) of delta
    (``conf/strategy/whalley_wilmott.yaml`` lists them), the scale of ``delta_band``'s 0.1;
    at 1 per USD they are a few thousandths and the hedger trades almost on every move."""

    rebalance = "edge"

    def __init__(self, risk_aversion: float = 1e-3, cost: float = 0.0005, r: float = 0.0,
                 **common: Any):
        super().__init__(**common)
        self.risk_aversion = require_positive("strategy.risk_aversion", risk_aversion)
        self.cost = require_positive("strategy.cost", cost)
        self.r = float(r)


class WhalleyWilmott(UtilityBand):
    """``whalley_wilmott``: the Whalley-Wilmott (1997) asymptotic no-transaction band.

    ``H(S) = (3/2 exp(-r (T-t)) lam S Gamma(S)^2 / gamma)^(1/3)`` around the Black-76 delta,
    rebalancing to the nearest edge; ``lam`` = ``cost`` (proportional, half-spread plus taker
    fee), ``gamma`` = ``risk_aversion`` (absolute, per USD), ``r`` the rate.  Formula:
    :func:`strategies.hedging.bands.whalley_wilmott_half_width` (A. E. Whalley and P. Wilmott,
    Mathematical Finance 7(3), 1997, 307-324).  ``Gamma(S)`` is re-evaluated along the
    corridor search, so the wake prices account for the band changing with ``S``.
    """

    kind = "whalley_wilmott"

    def band(self, ctx: Any, legs: BookLegs) -> Width:
        if not len(legs):
            return 0.0
        tau, = gamma_weighted(legs, legs.t)
        # whalley_wilmott_half_width's factors in its order of evaluation
        p1 = float(1.5 * np.exp(-self.r * np.float64(tau)) * self.cost)
        return BandWidth(WHALLEY_WILMOTT, p1, self.risk_aversion, legs)


class Zakamouline(UtilityBand):
    """``zakamouline``: Zakamouline's (2006) band around the delta at a modified vol.

    Centre: the Black-76 delta at ``sigma_m = sigma sqrt(1 -/+ K)`` (short/long gamma), with
    ``K = -4.76 lam^0.78 / tau^0.02 (exp(-r tau)/sigma)^0.25 (gamma S^2 |Gamma|)^0.15``;
    half-width ``H0 + H1`` with ``H0 = lam / (gamma S sigma^2 tau)`` and
    ``H1 = 1.12 lam^0.31 tau^0.05 (exp(-r tau)/sigma)^0.25 (|Gamma| / gamma)^0.5``; rebalance
    to the nearest edge.  Formulas: :mod:`strategies.hedging.bands` (``zakamouline_*``;
    V. I. Zakamouline, J. Economic Dynamics and Control 30(1), 2006, 1-25).  ``K`` is taken
    once per wake at the current ``S`` and applied to every leg's vol.
    """

    kind = "zakamouline"

    _terms: tuple[BookLegs, tuple[float, float, float]] | None = None

    def _book_terms(self, legs: BookLegs) -> tuple[float, float, float]:
        """Book gamma, gamma-weighted tau and vol (once per decision: the centre and the
        band both ask for the same legs)."""
        if self._terms is None or self._terms[0] is not legs:
            gamma = float(legs.gamma_fn()(legs.spot))
            self._terms = (legs, (gamma, *gamma_weighted(legs, legs.t, legs.vol)))
        return self._terms[1]

    def center_legs(self, legs: BookLegs) -> BookLegs:
        if not len(legs):
            return legs
        gamma, tau, sigma = self._book_terms(legs)
        k = zakamouline_k(gamma, legs.spot, self.cost, self.risk_aversion, sigma, tau, self.r)
        return legs.with_vol(zakamouline_modified_vol(legs.vol, k, short=gamma < 0))

    def band(self, ctx: Any, legs: BookLegs) -> Width:
        """``H(S) = H0(S) + H1(Gamma(S))``
        (:func:`~strategies.hedging.bands.zakamouline_half_width`) as
        ``c0 / S + c1 sqrt|Gamma(S)|``, the two terms' exact scalings, with ``c0`` and ``c1``
        taken once per decision: the corridor search evaluates the band at every probe."""
        if not len(legs):
            return 0.0
        _, tau, sigma = self._book_terms(legs)
        lam, ra, r = self.cost, self.risk_aversion, self.r
        c0 = float(zakamouline_h0(1.0, lam, ra, sigma, tau))
        c1 = float(zakamouline_h1(1.0, lam, ra, sigma, tau, r))
        return BandWidth(ZAKAMOULINE, c0, c1, legs)
