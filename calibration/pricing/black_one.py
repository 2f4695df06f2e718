"""Black-76 price and greeks of one option, compiled.

A per-event caller (the PnL marker, for every option at every mark) would pay numpy's
per-call cost a dozen times for one option in :func:`calibration.pricing.black.greeks`.  The
formulas, units and limits are that module's (Black 1976; Haug 2007, ch. 1 and 2.2)::

    d1 = ln(F/K) / s + s/2,  d2 = d1 - s,  s = vol sqrt(t)
    delta = N(d1) (call), N(d1) - 1 (put);  gamma = n(d1) / (F s);  vega = F n(d1) sqrt(t)
    theta = -F n(d1) vol / (2 sqrt t);  vanna = -n(d1) d2 / vol;  volga = vega d1 d2 / vol

with the greeks other than delta 0 at ``s = 0`` and NaN for invalid inputs.  The numpy
:func:`~calibration.pricing.black.greeks` is the reference twin
(``tests/calibration/pricing/test_black_one.py``).

>>> [round(x, 6) for x in greeks_one(100.0, 100.0, 1.0, 0.2, True)[:3]]
[7.965567, 0.539828, 0.019848]
"""

from __future__ import annotations

import math

from numba import njit

from calibration.pricing.black import _INV_SQRT_2PI, _black_price_one, norm_cdf

#: the names of :func:`greeks_one`'s values, in order (the keys of ``black.greeks``)
GREEK_NAMES = ("price", "delta", "gamma", "vega", "theta", "vanna", "volga")


@njit(cache=True, error_model="numpy")
def greeks_one(f: float, k: float, t: float, vol: float, is_call: bool
               ) -> tuple[float, float, float, float, float, float, float]:
    """``(price, delta, gamma, vega, theta, vanna, volga)`` of one option (module docstring)."""
    nan = math.nan
    if not (0.0 < f < math.inf and 0.0 < k < math.inf and t >= 0.0 and vol >= 0.0):  # NaN: all fail
        return nan, nan, nan, nan, nan, nan, nan
    price = _black_price_one(f, k, t, vol, is_call)
    sqrt_t = math.sqrt(t)
    s = vol * sqrt_t
    x = math.log(f / k)
    if s == 0.0:  # the limits: d1 = d2 = +/-inf by the sign of ln(F/K), 0 at the money
        d1 = math.inf if x > 0.0 else (-math.inf if x < 0.0 else 0.0)
        delta = norm_cdf(d1) if is_call else -norm_cdf(-d1)
        return price, delta, 0.0, 0.0, 0.0, 0.0, 0.0
    d1 = x / s + 0.5 * s
    d2 = d1 - s
    pdf = _INV_SQRT_2PI * math.exp(-0.5 * d1 * d1)
    vega = f * pdf * sqrt_t
    return (price, norm_cdf(d1) if is_call else -norm_cdf(-d1), pdf / (f * s), vega,
            -f * pdf * vol / (2.0 * sqrt_t), -pdf * d2 / vol, vega * d1 * d2 / vol)
