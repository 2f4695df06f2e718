"""Inverse (coin-margined) option conventions.

On Deribit-style inverse options the premium is quoted and paid in the coin (BTC, ETH) while
the payoff is defined in USD: a call pays ``max(S_T - K, 0) / S_T`` coin.  Under the forward
measure, the coin premium is the undiscounted Black-76 USD price divided by the forward::

    V_coin = V_usd / F,        V_usd = black_price(F, K, t, vol, is_call)

(see e.g. Deribit's contract specification for inverse options, and docs/architecture.md: "premium in BTC
= undiscounted Black-76 price / F").
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from calibration.pricing.black import black_price, delta

__all__ = ["coin_to_usd", "premium_adjusted_delta", "usd_to_coin"]


def coin_to_usd(premium_coin: ArrayLike, forward: ArrayLike) -> np.ndarray:
    """Undiscounted USD price of an inverse option: ``V_usd = V_coin * F``.

    ``forward`` is the forward (future) of the option's expiry, not the spot index, because the
    coin premium is ``V_usd / F`` under the forward measure.
    """
    return np.asarray(premium_coin, dtype=np.float64) * np.asarray(forward, dtype=np.float64)


def usd_to_coin(price_usd: ArrayLike, forward: ArrayLike) -> np.ndarray:
    """Coin premium of an inverse option from its undiscounted USD price: ``V_coin = V_usd / F``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(price_usd, dtype=np.float64) / np.asarray(forward, dtype=np.float64)


def premium_adjusted_delta(forward: ArrayLike, strike: ArrayLike, t: ArrayLike, vol: ArrayLike,
                           is_call: ArrayLike) -> np.ndarray:
    """Delta of an inverse option in coin terms: ``Delta_pa = N(d1) [- 1 for puts] - V_usd / F``.

    Derivation: the position is worth ``V_coin = V_usd(F) / F`` coin, i.e. ``V_coin * F`` USD
    with the premium itself held in coin.  Hedging in the coin, the number of coins to hold
    against one option is ``F * dV_coin/dF = F (V'_usd / F - V_usd / F^2) = V'_usd - V_usd/F``:
    the Black delta minus the premium expressed in coin (the premium-adjusted delta of FX
    markets, cf. U. Wystup, *FX Options and Structured Products*, 2006, section 1.2.3).
    Equivalently, the USD delta of a position whose premium is held in coin is
    ``dV_usd/dF - V_usd/F``.  Undiscounted; NaN for invalid inputs like ``black_price``.
    """
    v_usd = black_price(forward, strike, t, vol, is_call)
    with np.errstate(divide="ignore", invalid="ignore"):
        return delta(forward, strike, t, vol, is_call) - v_usd / np.asarray(forward, dtype=np.float64)
