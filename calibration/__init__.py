"""Calibration: Black-76 and greeks, implied volatility, forwards, smile models and surfaces."""

import os
from pathlib import Path

from calibration.jitcache import invalidate_stale

invalidate_stale(Path(__file__).parent)  # before any kernel loads from the numba cache
# The package's parallel kernels (a refit's SVI slices, large implied-vol batches) run short
# regions often.  OpenMP's threads spin after each region by default: a quick store's build
# burned 25 s of CPU for 13.6 s of wall (16 s passive), and two builds side by side took 41 s
# each instead of 16.  Read when numba loads its OpenMP layer, at the first parallel call; a
# value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
