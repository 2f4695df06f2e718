"""Calibration: Black-76 and greeks, implied volatility, forwards, smile models and surfaces."""

from pathlib import Path

from calibration.jitcache import invalidate_stale

invalidate_stale(Path(__file__).parent)  # before any kernel loads from the numba cache

from calibration.pricing.black import (  # noqa: E402
    black_price,
    delta,
    gamma,
    greeks,
    theta,
    vanna,
    vega,
    volga,
)
from calibration.pricing.forwards import (  # noqa: E402
    ForwardEstimate,
    choose_forward,
    parity_forward,
    time_to_expiry,
)
from calibration.pricing.inverse import coin_to_usd, premium_adjusted_delta, usd_to_coin  # noqa: E402
from calibration.pricing.iv import implied_vol  # noqa: E402

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
