"""Hedging bands and triggers: pure functions, one formula each.

Common symbols (all numpy-vectorised, broadcasting):

* ``S``      underlying (or forward) price, USD;
* ``Gamma``  gamma of the position being hedged, d2V/dS2, in underlying units per USD
  (sum over legs of contracts x contract size x per-unit gamma);
* ``lam``    proportional transaction cost lambda: cost of trading ``n`` units is ``lam S |n|``
  (half-spread plus taker fee, as a fraction);
* ``gamma_ra`` the hedger's absolute risk aversion gamma (exponential utility), per USD;
* ``r``      interest rate, ``tau = T - t`` time to expiry in years;
* ``sigma``  volatility, a fraction per sqrt(year).

Band half-widths are in underlying units, the same units as the position's delta; the hedger
leaves its hedge alone while ``|delta_target - hedge| <= H``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "band_trade",
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


def whalley_wilmott_half_width(gamma: ArrayLike, spot: ArrayLike, lam: ArrayLike,
                               gamma_ra: ArrayLike, r: ArrayLike = 0.0,
                               tau: ArrayLike = 0.0) -> np.ndarray:
    """Whalley-Wilmott asymptotic no-transaction band half-width.

    ``H = ( 3/2 * exp(-r (T-t)) * lam * S * Gamma^2 / gamma_ra )^(1/3)``

    The optimal hedge stays within ``Delta +/- H`` of the Black-Scholes delta; on a breach it
    trades back to the nearest edge (:func:`band_trade` with ``to="edge"``).  The discount
    factor ``exp(-r (T-t))`` comes from the utility being over terminal wealth.  Reference:
    A. E. Whalley and P. Wilmott, "An asymptotic analysis of an optimal hedging model for
    option pricing with transaction costs", Mathematical Finance 7(3), 1997, 307-324.
    """
    g, s, k, ra = (np.asarray(x, dtype=np.float64) for x in (gamma, spot, lam, gamma_ra))
    disc = np.exp(-np.asarray(r, dtype=np.float64) * np.asarray(tau, dtype=np.float64))
    return np.cbrt(1.5 * disc * k * s * g * g / ra)


def zakamouline_k(gamma: ArrayLike, spot: ArrayLike, lam: ArrayLike, gamma_ra: ArrayLike,
                  sigma: ArrayLike, tau: ArrayLike, r: ArrayLike = 0.0) -> np.ndarray:
    """Zakamouline's volatility adjustment (K <= 0).

    ``K = -4.76 * lam^0.78 / tau^0.02 * (exp(-r tau) / sigma)^0.25 * (gamma_ra S^2 |Gamma|)^0.15``

    Reference: V. I. Zakamouline, "European option pricing and hedging with both fixed and
    proportional transaction costs", J. Economic Dynamics and Control 30(1), 2006, 1-25
    (the fitted approximation of the utility-based hedge, proportional costs only).
    """
    g, s, k, ra, v, tt, rr = (np.asarray(x, dtype=np.float64)
                              for x in (gamma, spot, lam, gamma_ra, sigma, tau, r))
    return (-4.76 * k ** 0.78 / tt ** 0.02 * (np.exp(-rr * tt) / v) ** 0.25
            * (ra * s * s * np.abs(g)) ** 0.15)


def zakamouline_modified_vol(sigma: ArrayLike, k: ArrayLike, short: ArrayLike = True
                             ) -> np.ndarray:
    """Zakamouline's modified volatility for the band centre.

    ``sigma_m = sigma * sqrt(1 - K)`` for a short option position and
    ``sigma_m = sigma * sqrt(1 + K)`` for a long one, with ``K`` from :func:`zakamouline_k`
    (K <= 0, so a writer hedges with a higher vol, as in Leland).  Clipped at zero.
    Reference: Zakamouline (2006), as in :func:`zakamouline_k`.
    """
    v, kk = np.asarray(sigma, dtype=np.float64), np.asarray(k, dtype=np.float64)
    sign = np.where(np.asarray(short, dtype=bool), -1.0, 1.0)
    return v * np.sqrt(np.maximum(1.0 + sign * kk, 0.0))


def zakamouline_h0(spot: ArrayLike, lam: ArrayLike, gamma_ra: ArrayLike, sigma: ArrayLike,
                   tau: ArrayLike) -> np.ndarray:
    """Zakamouline's gamma-independent band term ``H0 = lam / (gamma_ra S sigma^2 tau)``.

    Reference: Zakamouline (2006), as in :func:`zakamouline_k`.
    """
    s, k, ra, v, tt = (np.asarray(x, dtype=np.float64) for x in (spot, lam, gamma_ra, sigma, tau))
    return k / (ra * s * v * v * tt)


def zakamouline_h1(gamma: ArrayLike, lam: ArrayLike, gamma_ra: ArrayLike, sigma: ArrayLike,
                   tau: ArrayLike, r: ArrayLike = 0.0) -> np.ndarray:
    """Zakamouline's gamma band term.

    ``H1 = 1.12 * lam^0.31 * tau^0.05 * (exp(-r tau) / sigma)^0.25 * (|Gamma| / gamma_ra)^0.5``

    Reference: Zakamouline (2006), as in :func:`zakamouline_k`.
    """
    g, k, ra, v, tt, rr = (np.asarray(x, dtype=np.float64)
                           for x in (gamma, lam, gamma_ra, sigma, tau, r))
    return 1.12 * k ** 0.31 * tt ** 0.05 * (np.exp(-rr * tt) / v) ** 0.25 * np.sqrt(np.abs(g) / ra)


def zakamouline_half_width(gamma: ArrayLike, spot: ArrayLike, lam: ArrayLike,
                           gamma_ra: ArrayLike, sigma: ArrayLike, tau: ArrayLike,
                           r: ArrayLike = 0.0) -> np.ndarray:
    """Zakamouline band half-width ``H0 + H1``, around the delta computed with ``sigma_m``.

    The hedge is kept within ``Delta(sigma_m) +/- (H0 + H1)`` and rebalanced to the nearest
    edge.  ``Gamma`` is the position gamma at the *unmodified* vol ``sigma``.
    Reference: Zakamouline (2006), as in :func:`zakamouline_k`.
    """
    return zakamouline_h0(spot, lam, gamma_ra, sigma, tau) + zakamouline_h1(
        gamma, lam, gamma_ra, sigma, tau, r)


def leland_vol(sigma: ArrayLike, k: ArrayLike, dt: ArrayLike, short: ArrayLike = True
               ) -> np.ndarray:
    """Leland's transaction-cost adjusted volatility.

    ``sigma_L^2 = sigma^2 * (1 + s * sqrt(2/pi) * k / (sigma sqrt(dt)))``

    with ``k`` the round-trip proportional cost, ``dt`` the (fixed) rehedging interval in
    years and ``s = +1`` for a short option position, ``-1`` for a long one (clipped at zero).
    The bracket's second term is the Leland number.  Reference: H. E. Leland, "Option pricing
    and replication with transactions costs", J. Finance 40(5), 1985, 1283-1301.
    """
    v, kk, d = (np.asarray(x, dtype=np.float64) for x in (sigma, k, dt))
    sign = np.where(np.asarray(short, dtype=bool), 1.0, -1.0)
    leland_number = math.sqrt(2.0 / math.pi) * kk / (v * np.sqrt(d))
    return v * np.sqrt(np.maximum(1.0 + sign * leland_number, 0.0))


def band_trade(target_delta: float, hedge_delta: float, half_width: float,
               to: str = "edge") -> float:
    """Hedge adjustment for a band: 0 inside ``|target - hedge| <= H``, else back into it.

    ``to="edge"`` (Whalley-Wilmott, Zakamouline: the utility-optimal rebalance) trades the
    hedge to the nearest band edge ``target -/+ H``; ``to="center"`` (a plain fixed delta band)
    trades it to ``target``.  Returns the change in ``hedge_delta``.
    """
    gap = target_delta - hedge_delta
    if abs(gap) <= half_width:
        return 0.0
    if to == "center":
        return gap
    if to == "edge":
        return gap - math.copysign(half_width, gap)
    raise ValueError(f"to must be 'edge' or 'center', got {to!r}")


def move_corridor(ref_price: float, pct: float) -> tuple[float, float]:
    """Move-based trigger: wake once ``|S / S_ref - 1| >= pct``, i.e. outside this corridor."""
    if not pct > 0:
        raise ValueError("pct must be positive")
    return ref_price * (1.0 - pct), ref_price * (1.0 + pct)


def next_periodic_deadline(now_ns: int, period_ns: int, anchor_ns: int = 0) -> int:
    """Periodic rehedge: the first ``anchor + k * period`` strictly after ``now``."""
    if period_ns <= 0:
        raise ValueError("period_ns must be positive")
    return anchor_ns + ((now_ns - anchor_ns) // period_ns + 1) * period_ns


def gamma_vega_neutralise(port_gamma: float, port_vega: float, gamma_1: float, vega_1: float,
                          gamma_2: float, vega_2: float, rcond: float = 1e-12
                          ) -> tuple[float, float]:
    """Quantities ``(q1, q2)`` of two listed options that zero the portfolio's gamma and vega.

    Solves the 2x2 system
    ``[[g1, g2], [v1, v2]] @ [q1, q2] = [-Gamma_p, -Vega_p]``
    (Hull, *Options, Futures and Other Derivatives*, ch. 19, "gamma and vega neutrality").
    The delta of the result (portfolio plus ``q1``, ``q2``) is then hedged with the underlying.
    Raises ``ValueError`` when the two options' (gamma, vega) vectors are nearly collinear
    (reciprocal condition number below ``rcond``), where no stable solution exists.
    """
    a = np.array([[gamma_1, gamma_2], [vega_1, vega_2]], dtype=np.float64)
    b = -np.array([port_gamma, port_vega], dtype=np.float64)
    if not np.all(np.isfinite(a)) or not np.all(np.isfinite(b)):
        raise ValueError("greeks must be finite")
    # scale rows so that gamma (tiny) and vega (large) numbers weigh alike in the condition
    scale = np.max(np.abs(a), axis=1, keepdims=True)
    if np.any(scale == 0):
        raise ValueError("an option pair with zero gamma or zero vega cannot neutralise both")
    a_s, b_s = a / scale, b / scale[:, 0]
    if 1.0 / np.linalg.cond(a_s) < rcond:
        raise ValueError("the two options' gamma/vega vectors are (nearly) collinear")
    q = np.linalg.solve(a_s, b_s)
    return float(q[0]), float(q[1])
