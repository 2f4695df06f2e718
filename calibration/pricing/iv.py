"""Implied volatility of undiscounted Black-76 prices, "Let's be rational" style, in numba.

Reference: P. Jäckel, "Let's be rational", Wilmott (2015) 40-53 (the algorithm), and
R. Delbourgo and J. Gregory, "Shape preserving piecewise rational interpolation", SIAM J. Sci.
Stat. Comput. 6 (1985) (the rational cubic).

In normalised terms ``x = ln(F/K)``, ``s = vol sqrt(t)``, ``beta = price / sqrt(F K)`` and
``b(x, s, theta)`` the normalised Black function (``calibration.pricing.black.normalised_black``).
The inversion:

1. subtract the intrinsic value and map to an out-of-the-money call with ``x <= 0``
   (``b(x,s,theta) = iota + b(-|x|, s, +1)``); the price must lie in ``[0, e^{x/2})``;
2. the inflection point ``s_c = sqrt(2|x|)`` of ``s -> b`` and the tangents there give the
   points ``s_l = s_c - b_c/b'_c`` and ``s_u = s_c + (e^{x/2} - b_c)/b'_c`` that split the price
   range into four branches; in the two middle branches ``s(beta)`` is a rational cubic
   interpolant; in the lowest branch the rational cubic interpolates the map
   ``f(beta) = 2 pi |x| / sqrt(27) N(-|x|/(sqrt(3) s))^3`` (the leading behaviour of b as
   s -> 0) and in the highest the map ``f(beta) = N(-s/2)`` (behaviour as beta -> e^{x/2});
3. Householder iterations of order 3,
   ``s += nu (1 + eta nu / 2) / (1 + nu (eta + tau nu / 6))`` with ``nu = -g/g'``,
   ``eta = g''/g'``, ``tau = g'''/g'``, on the objective ``g(s) = 1/ln b(s) - 1/ln beta`` in the
   lowest branch, ``g(s) = ln((e^{x/2} - beta)/(e^{x/2} - b(s)))`` in the highest (above half
   the maximum) and ``g(s) = b(s) - beta`` in between.  With ``b''/b' = x^2/s^3 - s/4`` and
   ``b'''/b' = (b''/b')^2 - 3 x^2/s^4 - 1/4`` two iterations reach machine precision.

Conventions: a price at intrinsic (including a zero out-of-the-money price) gives vol 0; a
price below intrinsic, at or above the upper bound (F for a call, K for a put), a NaN input,
non-positive F, K or t, or a negative price give NaN.  "At" allows 8 ulps of the bound (at
intrinsic, of the larger of F and K, whose rounding ``|F - K|`` carries), so that rounding
cannot turn an exact intrinsic quote into NaN or a spurious vol, nor a quote at the upper
bound into a huge vol.  Nothing raises for a single element.

Execution: one scalar kernel per element; arrays of ``PARALLEL_MIN`` elements or more are
spread over numba's threads (``prange``), smaller ones (a smile, a snapshot) run on the
calling thread, because waking the thread pool costs more than a few hundred inversions.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numpy.typing import ArrayLike

from calibration.pricing.black import (
    PARALLEL_MIN,
    _all_scalars,
    flat_broadcast,
    inverse_norm_cdf,
    inverse_norm_cdf_of_log,
    norm_cdf,
    normalised_black_otm_vega,
    normalised_intrinsic,
)

__all__ = ["implied_vol", "normalised_implied_vol"]

_EPS = 2.220446049250313e-16
_TINY = 2.2250738585072014e-308
_INV_SQRT_2PI = 0.3989422804014327
_SQRT_2PI = 2.5066282746310002
_SQRT3 = 1.7320508075688772
_LOWER_C = 1.2091995761561452  # 2 pi / sqrt(27)
#: iterations after the rational guess (Jäckel 2015: two reach machine precision)
N_ITERATIONS = 2
#: relative step after which a further iteration cannot change the result (see the loop)
_SETTLED = 1e-5
#: tolerance, in ulps of the bound, for prices at intrinsic or at the upper bound
_BOUND_ULPS = 8.0


@njit(cache=True, error_model="numpy")
def _rational_cubic(x: float, x_l: float, x_r: float, y_l: float, y_r: float,
                    d_l: float, d_r: float, r: float) -> float:
    """Delbourgo-Gregory rational cubic on ``[x_l, x_r]`` with end values and slopes, s in [0,1]:

    ``f = [y_r s^3 + (r y_r - h d_r) s^2 (1-s) + (r y_l + h d_l) s (1-s)^2 + y_l (1-s)^3]
    / [1 + (r - 3) s (1-s)]``, ``h = x_r - x_l``; r = 3 is the cubic Hermite, r -> inf linear.
    """
    h = x_r - x_l
    if not abs(h) > 0.0:
        return 0.5 * (y_l + y_r)
    s = (x - x_l) / h
    om = 1.0 - s
    if r >= 1e15:  # numerically linear
        return y_r * s + y_l * om
    num = (y_r * s * s * s + (r * y_r - h * d_r) * s * s * om + (r * y_l + h * d_l) * s * om * om
           + y_l * om * om * om)
    return num / (1.0 + (r - 3.0) * s * om)


@njit(cache=True, error_model="numpy")
def _min_control(d_l: float, d_r: float, delta: float) -> float:
    """Smallest r keeping the rational cubic monotone and convex/concave like its data.

    Monotone: ``r >= (d_l + d_r)/delta``; convex or concave: ``r >= (d_r - d_l)/(d_r - delta)``
    and ``r >= (d_r - d_l)/(delta - d_l)`` (Delbourgo and Gregory 1985), delta the secant slope.
    """
    r = 0.0
    if delta != 0.0 and d_l * delta >= 0.0 and d_r * delta >= 0.0:
        r = max(r, (d_l + d_r) / delta)
    if (delta - d_l) * (d_r - delta) > 0.0:
        r = max(r, (d_r - d_l) / (d_r - delta), (d_r - d_l) / (delta - d_l))
    return r


@njit(cache=True, error_model="numpy")
def _control_fit_left(x_l: float, x_r: float, y_l: float, y_r: float, d_l: float,
                      d_r: float, dd_l: float) -> float:
    """r making the second derivative at ``x_l`` equal ``dd_l``, clipped to the shape bound.

    From the expansion of the interpolant at s = 0:
    ``r = (h dd_l / 2 + d_r - d_l) / (delta - d_l)``, ``delta = (y_r - y_l)/h``.
    """
    h = x_r - x_l
    delta = (y_r - y_l) / h
    den = delta - d_l
    r = (0.5 * h * dd_l + d_r - d_l) / den if den != 0.0 else 1e16
    r_min = _min_control(d_l, d_r, delta)
    if not r > r_min:
        r = r_min
    return min(r, 1e16)


@njit(cache=True, error_model="numpy")
def _control_fit_right(x_l: float, x_r: float, y_l: float, y_r: float, d_l: float,
                       d_r: float, dd_r: float) -> float:
    """r matching the second derivative ``dd_r`` at ``x_r``:
    ``r = (h dd_r / 2 - (d_l - d_r)) / (d_r - delta)`` (mirror image of the left fit)."""
    h = x_r - x_l
    delta = (y_r - y_l) / h
    den = d_r - delta
    r = (0.5 * h * dd_r + d_r - d_l) / den if den != 0.0 else 1e16
    r_min = _min_control(d_l, d_r, delta)
    if not r > r_min:
        r = r_min
    return min(r, 1e16)


@njit(cache=True, error_model="numpy")
def _householder(nu: float, eta: float, tau: float) -> float:
    """Householder(3) step factor: ``(1 + eta nu / 2) / (1 + nu (eta + tau nu / 6))``."""
    return (1.0 + 0.5 * eta * nu) / (1.0 + nu * (eta + tau * nu / 6.0))


@njit(cache=True, error_model="numpy")
def _lower_map(x: float, s: float, bp: float) -> tuple[float, float, float]:
    """``f = c |x| N(-z)^3``, ``z = |x|/(sqrt(3) s)``, ``c = 2 pi/sqrt(27)`` and df/dbeta, d2f/dbeta2.

    With ``y = z^2``: ``df/dbeta = 2 pi y N(-z)^2 e^{y + s^2/8}`` and
    ``d2f/dbeta2 = (df/dbeta) / b' [2 z n(z)/(s N(-z)) - 2 (y + 1)/s + s/4]``.
    """
    ax = abs(x)
    z = ax / (_SQRT3 * s)
    y = z * z
    big_n = norm_cdf(-z)
    f = _LOWER_C * ax * big_n * big_n * big_n
    # one exponential: with b' = e^{-3y/2 - s^2/8}/sqrt(2 pi), e^{y + s^2/8} = e^{-y/2}/(sqrt(2 pi) b')
    e_half = math.exp(-0.5 * y)
    fp = _SQRT_2PI * y * big_n * big_n * e_half / bp
    small_n = e_half / _SQRT_2PI
    fpp = fp / bp * (2.0 * z * small_n / (s * big_n) - 2.0 * (y + 1.0) / s + 0.25 * s)
    return f, fp, fpp


@njit(cache=True, error_model="numpy")
def _upper_map(x: float, s: float) -> tuple[float, float, float]:
    """``f = N(-s/2)``, ``df/dbeta = -e^{h^2/2}/2``, ``d2f/dbeta2 = sqrt(pi/2) h^2/s e^{h^2 + s^2/8}``."""
    w = (x / s) ** 2
    f = norm_cdf(-0.5 * s)
    fp = -0.5 * math.exp(0.5 * w)
    fpp = 1.2533141373155003 * w / s * math.exp(w + 0.125 * s * s)
    return f, fp, fpp


@njit(cache=True, error_model="numpy")
def normalised_implied_vol(beta: float, x: float, theta: float, n_iter: int) -> float:
    """Normalised implied vol ``s`` with ``b(x, s, theta) = beta`` (Jäckel 2015, sections 3-5).

    Returns 0 at intrinsic, NaN below intrinsic or at/above the maximum ``e^{|x|/2}`` after
    reduction; see the module docstring for the branches and objectives.
    """
    if not (beta >= 0.0) or not (abs(x) < math.inf):
        return math.nan
    iota = normalised_intrinsic(x, theta)
    beta = beta - iota
    x = -abs(x)
    b_max = math.exp(0.5 * x)
    # a few ulps of tolerance at both bounds: a price quoted exactly at intrinsic (or at F / K)
    # must not flip to NaN (or a huge vol) because the normalisation rounded the other way.
    # An in-the-money price |F - K| + time value carries the rounding of the larger of F and
    # K, e^{|x|/2} = iota + b_max once normalised, and iota its own: a time value within
    # that of either side is none
    if iota > 0.0 and abs(beta) <= _BOUND_ULPS * _EPS * (2.0 * iota + b_max):
        return 0.0
    if beta < 0.0:
        return math.nan
    if not beta < b_max * (1.0 - _BOUND_ULPS * _EPS):
        return math.nan
    if beta < _TINY:  # zero or denormal time value: no resolvable vol
        return 0.0
    s_c = math.sqrt(-2.0 * x)
    # at s_c: h = -t, so h^2 + t^2 = |x| and b = e^{x/2}/2 - e^{-x/2} N(-s_c); for small |x| this
    # loses about -log10(s_c) digits, harmless in an interpolation node
    v_c = _INV_SQRT_2PI * b_max
    b_c = max(0.5 * b_max - norm_cdf(-s_c) / b_max, 0.0)
    s_left = 0.0
    s_right = math.inf
    branch = 1  # 0 lower, 1 middle, 2 upper
    if beta < b_c:
        s_l = s_c - b_c / v_c
        b_l, v_l = normalised_black_otm_vega(x, s_l)
        if beta < b_l:
            f_l, fp_l, fpp_l = _lower_map(x, s_l, v_l)
            r = _control_fit_right(0.0, b_l, 0.0, f_l, 1.0, fp_l, fpp_l)
            f = _rational_cubic(beta, 0.0, b_l, 0.0, f_l, 1.0, fp_l, r)
            if not f > 0.0:  # round-off at extreme |x|: quadratic through f(0)=0, f'(0)=1
                u = beta / b_l
                f = (f_l * u + b_l * (1.0 - u)) * u
            # invert f = c |x| N(-z)^3: z = -N^{-1}((f / (c |x|))^{1/3}), s = |x| / (sqrt(3) z)
            z = -inverse_norm_cdf_of_log(math.log(f / (_LOWER_C * abs(x))) / 3.0)
            s = abs(x) / (_SQRT3 * z)
            s_right = s_l
            branch = 0
        else:
            r = _control_fit_right(b_l, b_c, s_l, s_c, 1.0 / v_l, 1.0 / v_c, 0.0)
            s = _rational_cubic(beta, b_l, b_c, s_l, s_c, 1.0 / v_l, 1.0 / v_c, r)
            s_left = s_l
            s_right = s_c
    else:
        s_u = s_c + (b_max - b_c) / v_c if v_c > 0.0 else s_c
        b_u, v_u = normalised_black_otm_vega(x, s_u)
        if beta <= b_u:
            r = _control_fit_left(b_c, b_u, s_c, s_u, 1.0 / v_c, 1.0 / v_u, 0.0)
            s = _rational_cubic(beta, b_c, b_u, s_c, s_u, 1.0 / v_c, 1.0 / v_u, r)
            s_left = s_c
            s_right = s_u
        else:
            f_u, fp_u, fpp_u = _upper_map(x, s_u)
            f = -1.0
            if abs(fpp_u) < 1e150:
                r = _control_fit_left(b_u, b_max, f_u, 0.0, fp_u, -0.5, fpp_u)
                f = _rational_cubic(beta, b_u, b_max, f_u, 0.0, fp_u, -0.5, r)
            if not f > 0.0:  # quadratic through f(b_u), f(b_max) = 0, f'(b_max) = -1/2
                hh = b_max - b_u
                u = (beta - b_u) / hh
                f = (f_u * (1.0 - u) + 0.5 * hh * u) * (1.0 - u)
            s = -2.0 * inverse_norm_cdf(f)
            s_left = s_u
            if beta > 0.5 * b_max:
                branch = 2
    if not (s > 0.0 and s < math.inf):
        s = 0.5 * (s_left + s_right) if s_right < math.inf else 2.0 * s_left + 1.0
    ln_beta = math.log(beta) if branch == 0 else 0.0
    for _ in range(n_iter):
        b, bp = normalised_black_otm_vega(x, s)
        if b > beta and s < s_right:
            s_right = s
        elif b < beta and s > s_left:
            s_left = s
        xs = x / s
        eta = xs * xs / s - 0.25 * s  # b''/b'
        tau = eta * eta - 3.0 * (xs / s) ** 2 - 0.25  # b'''/b'
        if branch == 0:
            if not (b > 0.0 and bp > 0.0):
                ds = 0.5 * (s_left + s_right) - s
            else:
                ln_b = math.log(b)
                u = bp / b
                nu = (ln_beta - ln_b) * ln_b / ln_beta / u
                eta_g = eta - u * (1.0 + 2.0 / ln_b)
                tau_g = (tau + 2.0 * u * u * (1.0 + 3.0 / ln_b * (1.0 + 1.0 / ln_b))
                         - 3.0 * eta * u * (1.0 + 2.0 / ln_b))
                ds = nu * _householder(nu, eta_g, tau_g)
        elif branch == 2:
            if not (b < b_max and bp > 0.0):
                ds = 0.5 * (s_left + s_right) - s if s_right < math.inf else s
            else:
                w = b_max - b
                gp = bp / w
                nu = -math.log((b_max - beta) / w) / gp
                ds = nu * _householder(nu, eta + gp, tau + gp * (2.0 * gp + 3.0 * eta))
        else:
            if not bp > 0.0:
                ds = 0.5 * (s_left + s_right) - s if s_right < math.inf else s
            else:
                nu = (beta - b) / bp
                ds = nu * _householder(nu, eta, tau)
        ds = max(-0.5 * s, ds)
        s_new = s + ds
        if abs(ds) > 64.0 * _EPS * s and not (s_left < s_new < s_right) and s_right < math.inf:
            s_new = 0.5 * (s_left + s_right)  # a real step out of the bracket: bisect instead
        # Householder(3) converges with order 4: after a step of relative size d the error is
        # of order d^4, so a step below _SETTLED already lands at machine precision
        if abs(s_new - s) <= _SETTLED * s:
            s = s_new
            break
        s = s_new
    return s


@njit(cache=True, error_model="numpy")
def _implied_vol_one(p: float, f: float, k: float, tt: float, is_call: bool, n_iter: int) -> float:
    # NaN fails every comparison, so this one test also rejects NaN inputs
    if p >= 0.0 and 0.0 < f < math.inf and 0.0 < k < math.inf and 0.0 < tt < math.inf:
        beta = p / (math.sqrt(f) * math.sqrt(k))
        theta = 1.0 if is_call else -1.0
        return normalised_implied_vol(beta, math.log(f / k), theta, n_iter) / math.sqrt(tt)
    return math.nan


@njit(parallel=True, cache=True, error_model="numpy")
def _implied_vol_parallel(price: np.ndarray, forward: np.ndarray, strike: np.ndarray,
                          t: np.ndarray, is_call: np.ndarray, n_iter: int) -> np.ndarray:
    out = np.empty(price.size)
    for i in prange(price.size):
        out[i] = _implied_vol_one(price[i], forward[i], strike[i], t[i], is_call[i], n_iter)
    return out


@njit(cache=True, error_model="numpy")
def _implied_vol_serial(price: np.ndarray, forward: np.ndarray, strike: np.ndarray,
                        t: np.ndarray, is_call: np.ndarray, n_iter: int) -> np.ndarray:
    out = np.empty(price.size)
    for i in range(price.size):
        out[i] = _implied_vol_one(price[i], forward[i], strike[i], t[i], is_call[i], n_iter)
    return out


def implied_vol(price: ArrayLike, forward: ArrayLike, strike: ArrayLike, t: ArrayLike,
                is_call: ArrayLike, n_iter: int = N_ITERATIONS, *,
                parallel_min: int = PARALLEL_MIN) -> np.ndarray:
    """Black-76 implied volatility of undiscounted prices, numpy-vectorized with broadcasting.

    Inverts ``price = black_price(forward, strike, t, vol, is_call)`` by Jäckel's "Let's be
    rational" (Wilmott 2015): ``vol = s / sqrt(t)`` with ``b(ln(F/K), s, theta) =
    price / sqrt(F K)``.  Returns a float64 array of the broadcast shape: 0.0 where the price
    equals intrinsic, NaN where it is below intrinsic, at or above the upper bound (F for a
    call, K for a put), negative or NaN, and where F, K or t is NaN or non-positive.
    Arrays of ``parallel_min`` elements or more are spread over numba's threads (the values
    do not depend on it).
    """
    if _all_scalars(price, forward, strike, t, is_call):  # per-event callers: skip the arrays
        return np.asarray(_implied_vol_one(float(price), float(forward), float(strike), float(t),
                                           bool(is_call), int(n_iter)))
    shape, flats = flat_broadcast((price, np.float64), (forward, np.float64),
                                  (strike, np.float64), (t, np.float64), (is_call, np.bool_))
    # waking the thread pool costs more than a small slice (a smile has tens of quotes)
    kernel = _implied_vol_parallel if flats[0].size >= parallel_min else _implied_vol_serial
    return kernel(*flats, int(n_iter)).reshape(shape)
