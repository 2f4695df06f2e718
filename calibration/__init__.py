"""Calibration: Black-76 and greeks, implied volatility, forwards, smile models and surfaces."""

from calibration.black import (
    black_price,
    delta,
    gamma,
    greeks,
    theta,
    vanna,
    vega,
    volga,
)
from calibration.forwards import ForwardEstimate, choose_forward, parity_forward, time_to_expiry
from calibration.inverse import coin_to_usd, premium_adjusted_delta, usd_to_coin
from calibration.iv import implied_vol

__all__ = [
    "ForwardEstimate",
    "black_price",
    "choose_forward",
    "coin_to_usd",
    "delta",
    "gamma",
    "greeks",
    "implied_vol",
    "parity_forward",
    "premium_adjusted_delta",
    "theta",
    "time_to_expiry",
    "usd_to_coin",
    "vanna",
    "vega",
    "volga",
]
