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

# The public names load their modules (and numba) when first used, so that importing the
# package, as ``replay`` does for its numba cache, costs nothing.
_EXPORTS = {
    **dict.fromkeys(("black_price", "delta", "gamma", "greeks", "theta", "vanna", "vega",
                     "volga"), "calibration.pricing.black"),
    **dict.fromkeys(("ForwardEstimate", "choose_forward", "parity_forward", "time_to_expiry"),
                    "calibration.pricing.forwards"),
    **dict.fromkeys(("coin_to_usd", "premium_adjusted_delta", "usd_to_coin"),
                    "calibration.pricing.inverse"),
    "implied_vol": "calibration.pricing.iv",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'calibration' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
