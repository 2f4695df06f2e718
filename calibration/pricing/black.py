"""Undiscounted Black-76 prices and greeks, numpy-vectorized with broadcasting.

All functions take ``(forward, strike, t, vol, is_call)``; every argument may be a scalar or an
array and they broadcast against each other.  Prices are *undiscounted* (the forward measure
price divided by the discount factor), which is what an inverse (coin-margined) venue quotes
once the premium is multiplied by the forward.

Black-76 (F. Black, "The pricing of commodity contracts", J. Financial Economics 3, 1976)::

    d1 = (ln(F/K) + s^2/2) / s,   d2 = d1 - s,   s = vol * sqrt(t)
    C  = F N(d1) - K N(d2)
    P  = K N(-d2) - F N(-d1)

Greeks (all with respect to the forward F and undiscounted; see e.g. E. G. Haug, *The Complete
Guide to Option Pricing Formulas*, 2nd ed., 2007, ch. 1 and 2.2)::

    delta = N(d1)            (call)      N(d1) - 1        (put)
    gamma = n(d1) / (F s)
    vega  = F n(d1) sqrt(t)               per unit of vol (1.0 = 100 vol points)
    theta = -dV/dt = -F n(d1) vol / (2 sqrt(t))   per year of calendar time
    vanna = d2V/dF dvol = -n(d1) d2 / vol
    volga = d2V/dvol2   = vega d1 d2 / vol

At ``s = vol*sqrt(t) = 0`` (expiry or zero vol) prices are the intrinsic value and the greeks take
their limits for F != K (delta a step, the others zero).  Non-positive forward/strike, negative
time or vol, and NaN inputs give NaN.

Prices go through the normalised Black function below (Jäckel, "Let's be
rational", 2015), which keeps full relative accuracy for deep out-of-the-money options where
``F N(d1) - K N(d2)`` would cancel.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numpy.typing import ArrayLike
from scipy.special import ndtr

_INV_SQRT_2PI = 0.3989422804014327
_INV_SQRT2 = 0.7071067811865476
#: h + t below this uses the asymptotic expansion of the normalised Black function
_ASYMPTOTIC_H = -8.5
#: t = s/2 below this (and h + t above _ASYMPTOTIC_H) uses the small-t Taylor expansion
_SMALL_T = 0.21

#: 1 / ((k + 1)(k + 2)) for the small-t series (a multiply instead of a divide per term)
_INV_PAIR = np.array([1.0 / ((k + 1) * (k + 2)) for k in range(48)])

__all__ = ["black_price", "delta", "gamma", "greeks", "theta", "vanna", "vega", "volga"]


# --------------------------------------------------------------------------------------------
# Normalised Black function (numba scalar kernels, shared with calibration.pricing.iv)
# --------------------------------------------------------------------------------------------

@njit(cache=True, error_model="numpy")
def norm_cdf(z: float) -> float:
    """Standard normal CDF ``N(z) = erfc(-z/sqrt 2)/2`` (full relative accuracy in the tail)."""
    return 0.5 * math.erfc(-z * _INV_SQRT2)


@njit(cache=True, error_model="numpy")
def _acklam_tail(q: float) -> float:
    """Lower-tail branch of Acklam's approximation, in ``q = sqrt(-2 ln p)``."""
    return (((((-7.784894002430293e-03 * q - 3.223964580411365e-01) * q
                - 2.400758277161838e+00) * q - 2.549732539343734e+00) * q
              + 4.374664141464968e+00) * q + 2.938163982698783e+00) / \
        ((((7.784695709041462e-03 * q + 3.224671290700398e-01) * q
           + 2.445134137142996e+00) * q + 3.754408661907416e+00) * q + 1.0)


@njit(cache=True, error_model="numpy")
def inverse_norm_cdf(p: float) -> float:
    """Approximate ``N^{-1}(p)``, relative error about 1.2e-9.

    P. J. Acklam's rational approximations (central region and the two tails, 2003).  Only used
    for initial guesses, which the Householder iterations then polish to machine precision.
    """
    if not p > 0.0:
        return -math.inf
    if p >= 1.0:
        return math.inf
    if p < 0.02425:
        return _acklam_tail(math.sqrt(-2.0 * math.log(p)))
    if p > 0.97575:
        return -inverse_norm_cdf(1.0 - p)
    q = p - 0.5
    r = q * q
    return (((((-3.969683028665376e+01 * r + 2.209460984245205e+02) * r
                - 2.759285104469687e+02) * r + 1.383577518672690e+02) * r
              - 3.066479806614716e+01) * r + 2.506628277459239e+00) * q / \
        (((((-5.447609879822406e+01 * r + 1.615858368580409e+02) * r
            - 1.556989798598866e+02) * r + 6.680131188771972e+01) * r
          - 1.328068155288572e+01) * r + 1.0)


@njit(cache=True, error_model="numpy")
def inverse_norm_cdf_of_log(log_p: float) -> float:
    """``N^{-1}(exp(log_p))`` for ``log_p <= 0`` without forming tiny p in the lower tail."""
    if log_p < -3.7191135190148895:  # ln(0.02425)
        return _acklam_tail(math.sqrt(-2.0 * log_p))
    return inverse_norm_cdf(math.exp(log_p))


@njit(cache=True, error_model="numpy")
def _asymptotic_otm(h: float, t: float) -> tuple[float, float]:
    """``(b, b')`` for ``h + t << 0`` from the asymptotic series of the Mills ratio.

    With ``Y(z) = N(z)/n(z)`` one has (Jäckel 2015, eq. (2.3))
    ``b = exp(-(h^2+t^2)/2)/sqrt(2 pi) * [Y(h+t) - Y(h-t)]`` and, for z -> -inf
    (Abramowitz & Stegun 26.2.12), ``Y(z) = sum_n c_n z^-(2n+1)``, ``c_n = (-1)^(n+1) (2n-1)!!``.
    With ``p = 1/(h+t)``, ``q = 1/(h-t)`` each difference is taken without cancellation as
    ``p^m - q^m = (p - q) P_m``, ``P_m = sum_j p^j q^(m-1-j)`` (all terms positive), and
    ``p - q = -2t / ((h+t)(h-t))``.  The prefactor is the normalised vega ``b'``.
    """
    u = h + t
    v = h - t
    p = 1.0 / u
    q = 1.0 / v
    q2 = q * q
    pm = p  # p^m for m = 1
    big_p = 1.0  # P_1
    c = -1.0
    total = c * big_p
    prev = abs(total)
    for n in range(1, 64):
        m = 2 * n - 1
        # P_{m+2} = p^{m+1} + q p^m + q^2 P_m
        big_p = pm * p + q * pm + q2 * big_p
        pm = pm * p * p
        c = -c * m
        term = c * big_p
        a = abs(term)
        if a > prev:  # the asymptotic series started to diverge: stop at its smallest term
            break
        total += term
        if a < 1e-17 * abs(total):
            break
        prev = a
    vega = _INV_SQRT_2PI * math.exp(-0.5 * (h * h + t * t))
    return max(vega * (-2.0 * t / (u * v)) * total, 0.0), vega


@njit(cache=True, error_model="numpy")
def _small_t_otm(h: float, t: float) -> tuple[float, float]:
    """``(b, b')`` for small ``t = s/2`` by the Taylor series of ``Y(h+t) - Y(h-t)`` in t.

    ``Y(h+t) - Y(h-t) = 2 sum_{k odd} Y^(k)(h) t^k / k!`` with ``Y = N/n``, ``Y' = 1 + h Y``
    and ``Y^(k) = h Y^(k-1) + (k-1) Y^(k-2)`` (from ``n'(z) = -z n(z)``), which replaces the
    cancelling difference ``N(h+t) e^{x/2} - N(h-t) e^{-x/2}`` near the money (Jäckel 2015,
    section 3, writes the same expansion out to order t^12).  Carried as ``Z_k = n(h) Y^(k)``
    (``Z_0 = N(h)``, ``Z_1 = n(h) + h N(h)``) so that ``b = 2 e^{-t^2/2} sum_{k odd} Z_k
    t^k/k!`` and ``b' = n(h) e^{-t^2/2}``.
    """
    pdf = _INV_SQRT_2PI * math.exp(-0.5 * h * h)
    zkm2 = norm_cdf(h)
    zkm1 = pdf + h * zkm2
    t2 = t * t
    power = t  # t^k / k!
    total = zkm1 * t
    k = 1
    while k < 41:
        z_even = h * zkm1 + k * zkm2  # Z_{k+1}
        z_odd = h * z_even + (k + 1) * zkm1  # Z_{k+2}
        power *= t2 * _INV_PAIR[k]
        term = z_odd * power
        total += term
        if abs(term) <= 1e-17 * total:
            break
        zkm2 = z_even
        zkm1 = z_odd
        k += 2
    damp = math.exp(-0.5 * t2)
    return max(2.0 * damp * total, 0.0), pdf * damp


@njit(cache=True, error_model="numpy")
def normalised_black_otm_vega(x: float, s: float) -> tuple[float, float]:
    """Normalised out-of-the-money call and its vega, ``(b(x, s), db/ds)``, for x <= 0.

    ``b = e^{x/2} N(h+t) - e^{-x/2} N(h-t)``, ``db/ds = exp(-(h^2+t^2)/2)/sqrt(2 pi)`` with
    ``h = x/s``, ``t = s/2``: P. Jäckel, "Let's be rational", Wilmott (2015) 40-53, eq. (2.1).
    Three regimes keep the relative accuracy: the asymptotic expansion for ``h + t < -8.5``
    (accurate to a few 1e-15 there), the small-t expansion for ``t < 0.21``, and the direct
    form otherwise (where the cancellation is bounded by a small factor).  The worst case,
    about 1e-12 relative, is the small-t expansion near ``h = -8.5``, where the rounding of
    ``h`` itself is amplified by ``h^4`` in ``1 + h N(h)/n(h)``; the implied vol is not hurt
    because its sensitivity to b is ``1/h^2`` smaller there.
    """
    if s <= 0.0:
        return 0.0, 0.0
    h = x / s
    t = 0.5 * s
    if h + t < _ASYMPTOTIC_H:
        return _asymptotic_otm(h, t)
    if t < _SMALL_T:
        return _small_t_otm(h, t)
    e = math.exp(0.5 * x)
    b = max(e * norm_cdf(h + t) - norm_cdf(h - t) / e, 0.0)
    return b, _INV_SQRT_2PI * math.exp(-0.5 * (h * h + t * t))


@njit(cache=True, error_model="numpy")
def normalised_black_otm(x: float, s: float) -> float:
    """Normalised out-of-the-money call ``b(x, s)``, x <= 0 (see ``normalised_black_otm_vega``)."""
    return normalised_black_otm_vega(x, s)[0]


@njit(cache=True, error_model="numpy")
def normalised_intrinsic(x: float, theta: float) -> float:
    """``max(theta (e^{x/2} - e^{-x/2}), 0) = max(2 theta sinh(x/2), 0)``."""
    if theta * x <= 0.0:
        return 0.0
    return abs(2.0 * math.sinh(0.5 * x))


@njit(cache=True, error_model="numpy")
def normalised_black(x: float, s: float, theta: float) -> float:
    """Normalised Black ``b(x, s, theta) = theta [e^{x/2} N(theta d1) - e^{-x/2} N(theta d2)]``.

    ``d1,2 = x/s +- s/2``; undiscounted price ``= sqrt(F K) b(ln(F/K), vol sqrt(t), +-1)``.
    In-the-money values are intrinsic plus the out-of-the-money counterpart
    (``b(x,s,theta) = b(-x,s,-theta)`` and put-call parity), Jäckel (2015) section 2.
    """
    return normalised_intrinsic(x, theta) + normalised_black_otm(-abs(x), s)


@njit(cache=True, error_model="numpy")
def _black_price_one(f: float, k: float, t: float, vol: float, is_call: bool) -> float:
    # NaN fails every comparison, so this one test also rejects NaN inputs
    if not (0.0 < f < math.inf and 0.0 < k < math.inf and t >= 0.0 and vol >= 0.0):
        return math.nan
    s = vol * math.sqrt(t)
    if math.isnan(s):  # inf * 0
        return math.nan
    b = normalised_black(math.log(f / k), s, 1.0 if is_call else -1.0)
    return math.sqrt(f) * math.sqrt(k) * b


@njit(parallel=True, cache=True, error_model="numpy")
def _black_price_parallel(f: np.ndarray, k: np.ndarray, t: np.ndarray, vol: np.ndarray,
                          is_call: np.ndarray) -> np.ndarray:
    out = np.empty(f.size)
    for i in prange(f.size):
        out[i] = _black_price_one(f[i], k[i], t[i], vol[i], is_call[i])
    return out


@njit(cache=True, error_model="numpy")
def _black_price_serial(f: np.ndarray, k: np.ndarray, t: np.ndarray, vol: np.ndarray,
                        is_call: np.ndarray) -> np.ndarray:
    out = np.empty(f.size)
    for i in range(f.size):
        out[i] = _black_price_one(f[i], k[i], t[i], vol[i], is_call[i])
    return out


#: arrays at least this long are spread over the numba threads (waking the pool costs more
#: than a smile's worth of work)
PARALLEL_MIN = 4096


_SCALARS = (float, int, bool, np.floating, np.integer, np.bool_)


def _all_scalars(*values: object) -> bool:
    return all(isinstance(v, _SCALARS) for v in values)


def flat_broadcast(*arrays: tuple[ArrayLike, type]) -> tuple[tuple[int, ...], list[np.ndarray]]:
    """Broadcast ``(value, dtype)`` pairs; return the shape and C-contiguous writeable 1-d arrays.

    Writeable and contiguous always, so the numba kernels see one array type (a read-only or
    strided view would compile, and cache, another specialisation).
    """
    converted = [np.asarray(a, dtype=d) for a, d in arrays]
    shape = np.broadcast_shapes(*(a.shape for a in converted))
    flats = []
    for a in converted:
        flat = (a if a.shape == shape else np.broadcast_to(a, shape)).ravel()
        if not (flat.flags.writeable and flat.flags.c_contiguous):
            flat = flat.copy()
        flats.append(flat)
    return shape, flats


def _prepare(forward: ArrayLike, strike: ArrayLike, t: ArrayLike, vol: ArrayLike,
             is_call: ArrayLike) -> tuple[np.ndarray, ...]:
    f, k, tt, v, c = np.broadcast_arrays(
        np.asarray(forward, dtype=np.float64), np.asarray(strike, dtype=np.float64),
        np.asarray(t, dtype=np.float64), np.asarray(vol, dtype=np.float64),
        np.asarray(is_call, dtype=bool))
    bad = ~((f > 0) & (f < np.inf) & (k > 0) & (k < np.inf) & (tt >= 0) & (v >= 0))  # NaN: bad
    return f, k, tt, v, c, bad


def _d1_d2(f: np.ndarray, k: np.ndarray, tt: np.ndarray, v: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        sqrt_t = np.sqrt(tt)
        s = v * sqrt_t
        x = np.log(f / k)
        d1 = x / s + 0.5 * s
        # s == 0: d1 = d2 = +/-inf by the sign of ln(F/K) (0 at the money)
        zero = s == 0
        if np.any(zero):
            d1 = np.where(zero, np.where(x > 0, np.inf, np.where(x < 0, -np.inf, 0.0)), d1)
        d2 = d1 - s
    return d1, d2, s, sqrt_t


def black_price(forward: ArrayLike, strike: ArrayLike, t: ArrayLike, vol: ArrayLike,
                is_call: ArrayLike) -> np.ndarray:
    """Undiscounted Black-76 price ``C = F N(d1) - K N(d2)``, ``P = K N(-d2) - F N(-d1)``.

    Evaluated as ``sqrt(F K) * b(x, s, theta)`` with the normalised Black function ``b`` of
    Jäckel ("Let's be rational", Wilmott 2015, eq. (2.1)), ``x = ln(F/K)``, ``s = vol sqrt(t)``,
    so deep out-of-the-money prices keep full relative accuracy.  Returns an array of the
    broadcast shape (a 0-d array for scalar inputs); NaN for invalid inputs.
    """
    if _all_scalars(forward, strike, t, vol, is_call):  # per-event callers: skip the arrays
        return np.asarray(_black_price_one(float(forward), float(strike), float(t), float(vol),
                                           bool(is_call)))
    shape, flats = flat_broadcast((forward, np.float64), (strike, np.float64), (t, np.float64),
                                  (vol, np.float64), (is_call, np.bool_))
    kernel = _black_price_parallel if flats[0].size >= PARALLEL_MIN else _black_price_serial
    return kernel(*flats).reshape(shape)


def delta(forward: ArrayLike, strike: ArrayLike, t: ArrayLike, vol: ArrayLike,
          is_call: ArrayLike) -> np.ndarray:
    """Forward delta dV/dF: ``N(d1)`` for a call, ``N(d1) - 1`` for a put (Black 1976)."""
    f, k, tt, v, c, bad = _prepare(forward, strike, t, vol, is_call)
    d1, _, _, _ = _d1_d2(f, k, tt, v)
    out = np.where(c, ndtr(d1), -ndtr(-d1))
    return np.where(bad, np.nan, out)


def gamma(forward: ArrayLike, strike: ArrayLike, t: ArrayLike, vol: ArrayLike,
          is_call: ArrayLike) -> np.ndarray:
    """Forward gamma d2V/dF2 = ``n(d1) / (F vol sqrt(t))``, same for calls and puts."""
    return greeks(forward, strike, t, vol, is_call)["gamma"]


def vega(forward: ArrayLike, strike: ArrayLike, t: ArrayLike, vol: ArrayLike,
         is_call: ArrayLike) -> np.ndarray:
    """Vega dV/dvol = ``F n(d1) sqrt(t)`` per unit of vol (divide by 100 for per vol point):
    :func:`greeks`' ``vega`` to the bit, without the other greeks (a refit may weigh by it)."""
    f, k, tt, v, _, bad = _prepare(forward, strike, t, vol, is_call)
    d1, _, s, sqrt_t = _d1_d2(f, k, tt, v)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        vg = np.where(s == 0, 0.0, f * (_INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)) * sqrt_t)
    return np.where(bad, np.nan, vg)


def theta(forward: ArrayLike, strike: ArrayLike, t: ArrayLike, vol: ArrayLike,
          is_call: ArrayLike) -> np.ndarray:
    """Theta = -dV/dt = ``-F n(d1) vol / (2 sqrt(t))`` per year (undiscounted, so no r V term)."""
    return greeks(forward, strike, t, vol, is_call)["theta"]


def vanna(forward: ArrayLike, strike: ArrayLike, t: ArrayLike, vol: ArrayLike,
          is_call: ArrayLike) -> np.ndarray:
    """Vanna d2V/dF dvol = ``-n(d1) d2 / vol``."""
    return greeks(forward, strike, t, vol, is_call)["vanna"]


def volga(forward: ArrayLike, strike: ArrayLike, t: ArrayLike, vol: ArrayLike,
          is_call: ArrayLike) -> np.ndarray:
    """Volga (vomma) d2V/dvol2 = ``vega d1 d2 / vol``."""
    return greeks(forward, strike, t, vol, is_call)["volga"]


def greeks(forward: ArrayLike, strike: ArrayLike, t: ArrayLike, vol: ArrayLike,
           is_call: ArrayLike) -> dict[str, np.ndarray]:
    """Price and all greeks at once, sharing d1/d2.

    Keys: ``price, delta, gamma, vega, theta, vanna, volga`` (formulae in the module docstring).
    Where ``vol sqrt(t) == 0`` the greeks other than delta are 0 (their limit for F != K).
    """
    f, k, tt, v, c, bad = _prepare(forward, strike, t, vol, is_call)
    d1, d2, s, sqrt_t = _d1_d2(f, k, tt, v)
    zero = s == 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        pdf = _INV_SQRT_2PI * np.exp(-0.5 * d1 * d1)
        g = np.where(zero, 0.0, pdf / (f * s))
        vg = f * pdf * sqrt_t
        th = np.where(zero, 0.0, -f * pdf * v / (2.0 * sqrt_t))
        va = np.where(zero, 0.0, -pdf * d2 / v)
        vo = np.where(zero, 0.0, vg * d1 * d2 / v)
        vg = np.where(zero, 0.0, vg)
    out = {
        "price": black_price(f, k, tt, v, c),
        "delta": np.where(c, ndtr(d1), -ndtr(-d1)),
        "gamma": g, "vega": vg, "theta": th, "vanna": va, "volga": vo,
    }
    return {name: np.where(bad, np.nan, arr) for name, arr in out.items()}
