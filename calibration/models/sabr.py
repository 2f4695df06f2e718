"""SABR smile per expiry with Hagan's lognormal implied-vol expansion.

Hagan, Kumar, Lesniewski and Woodward (2002), "Managing smile risk", Wilmott Magazine,
eq. (2.17a): with ``x = ln(F/K)`` and ``(FK)^((1-beta)/2) = P``::

    sigma_B(K) = alpha / (P * (1 + (1-beta)^2/24 x^2 + (1-beta)^4/1920 x^4))
                 * z / chi(z)
                 * (1 + ((1-beta)^2/24 alpha^2/P^2 + rho beta nu alpha/(4 P)
                         + (2 - 3 rho^2)/24 nu^2) T)
    z      = nu/alpha * P * x
    chi(z) = ln((sqrt(1 - 2 rho z + z^2) + z - rho) / (1 - rho))

with ``z / chi(z) -> 1`` at the money (a series ``1 - rho z/2 + (2 - 3 rho^2) z^2/12`` is used
for small ``|z|``).

Convention: ``beta`` is fixed by configuration, default ``beta = 1`` (lognormal backbone, the
usual choice for crypto where the forward moves in percent; ``alpha`` is then the ATM vol
level).  ``(alpha, rho, nu)`` are calibrated per slice by ``scipy.optimize.least_squares`` on
the loss of :mod:`calibration.loss`, with optional Tikhonov regularisation towards the
previous parameters.  The expansion is asymptotic: its wings grow faster than Lee's bound
allows far from the money, which the arbitrage checks report on their grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calibration.loss import FitData, LossConfig, residuals

DEFAULT_BETA = 1.0


@dataclass(frozen=True)
class SABRParams:
    alpha: float
    rho: float
    nu: float
    beta: float = DEFAULT_BETA

    def to_array(self) -> np.ndarray:
        return np.array([self.alpha, self.rho, self.nu, self.beta])

    @staticmethod
    def from_array(x: np.ndarray) -> SABRParams:
        return SABRParams(float(x[0]), float(x[1]), float(x[2]),
                          float(x[3]) if len(x) > 3 else DEFAULT_BETA)


def sabr_iv(strike: np.ndarray, forward: float, t: float, p: SABRParams) -> np.ndarray:
    """Hagan (2002) lognormal implied vol; see the module docstring."""
    K = np.asarray(strike, dtype=float)
    F = float(forward)
    b1 = 1.0 - p.beta
    x = np.log(F / K)
    P = (F * K) ** (0.5 * b1)
    denom = P * (1.0 + b1 ** 2 / 24.0 * x ** 2 + b1 ** 4 / 1920.0 * x ** 4)
    z = p.nu / p.alpha * P * x
    r = p.rho
    small = np.abs(z) < 1e-6
    zs = np.where(small, 1.0, z)
    chi = np.log((np.sqrt(1.0 - 2.0 * r * zs + zs * zs) + zs - r) / (1.0 - r))
    zx = np.where(small, 1.0 - 0.5 * r * z + (2.0 - 3.0 * r * r) / 12.0 * z * z, zs / chi)
    corr = 1.0 + (b1 ** 2 / 24.0 * p.alpha ** 2 / P ** 2 + 0.25 * r * p.beta * p.nu * p.alpha / P
                  + (2.0 - 3.0 * r * r) / 24.0 * p.nu ** 2) * t
    return p.alpha / denom * zx * corr


def sabr_total_variance(k: np.ndarray, forward: float, t: float, p: SABRParams) -> np.ndarray:
    """``w(k) = sigma_B(F e^k)^2 t``."""
    return sabr_iv(forward * np.exp(np.asarray(k, dtype=float)), forward, t, p) ** 2 * t


def sabr_derivatives(k: np.ndarray, forward: float, t: float, p: SABRParams, h: float = 1e-4
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(w, w', w'')`` by central differences in ``k`` (step ``h``; the expansion is smooth,
    the truncation error is ``O(h^2)``, about 1e-8 relative)."""
    k = np.asarray(k, dtype=float)
    w0 = sabr_total_variance(k, forward, t, p)
    wp = sabr_total_variance(k + h, forward, t, p)
    wm = sabr_total_variance(k - h, forward, t, p)
    return w0, (wp - wm) / (2 * h), (wp - 2 * w0 + wm) / (h * h)


@dataclass(frozen=True)
class SABRFit:
    params: SABRParams
    loss: float
    n_eval: int


def fit_sabr(d: FitData, forward: float, loss_cfg: LossConfig, beta: float = DEFAULT_BETA,
             warm: SABRParams | None = None, lam: float = 0.0, n_starts: int = 1,
             anchor: SABRParams | None = None) -> SABRFit:
    """Calibrate ``(alpha, rho, nu)`` of one slice with ``beta`` fixed, starting at ``warm``
    (else cold from the ATM vol and ``n_starts`` skews), with Tikhonov weight ``lam`` towards
    ``anchor`` (default ``warm``).

    Bounds: ``alpha > 0``, ``|rho| <= 0.999``, ``0 < nu <= 20``.
    """
    K = forward * np.exp(d.k)
    anchor = (anchor if anchor is not None else warm) if lam > 0 else None

    def resid(x: np.ndarray) -> np.ndarray:
        p = SABRParams(x[0], x[1], x[2], beta)
        r = residuals(sabr_iv(K, forward, d.t, p), d, loss_cfg)
        if anchor is None:
            return r
        scale = np.array([max(anchor.alpha, 1e-8), 1.0, max(anchor.nu, 1e-3)])
        pen = np.sqrt(lam) * (x - anchor.to_array()[:3]) / scale
        return np.concatenate([r, pen])

    atm_iv = float(np.interp(0.0, d.k, d.mid)) if d.k.min() <= 0 <= d.k.max() \
        else float(d.mid[np.argmin(np.abs(d.k))])
    alpha0 = atm_iv * forward ** (1.0 - beta)
    starts = []
    if warm is not None:
        starts.append(np.array([warm.alpha, warm.rho, warm.nu]))
    if warm is None or n_starts > 1:
        for rho0 in np.linspace(-0.3, 0.3, max(n_starts - len(starts), 1)):
            starts.append(np.array([alpha0, rho0, 1.0]))
    lo = np.array([1e-8, -0.999, 1e-6])
    hi = np.array([np.inf, 0.999, 20.0])
    # imported here: scipy.optimize takes 85 ms to import, which every process that only
    # evaluates surfaces (a cached run, a sweep job) would pay
    from scipy.optimize import least_squares

    best = None
    nev = 0
    for x0 in starts:
        sol = least_squares(resid, np.clip(x0, lo + 1e-9, np.minimum(hi - 1e-9, 1e6)),
                            bounds=(lo, hi), xtol=1e-10, ftol=1e-10, max_nfev=500)
        nev += int(sol.nfev)
        if best is None or sol.cost < best.cost:
            best = sol
    return SABRFit(SABRParams(*best.x, beta), float(2.0 * best.cost), nev)
