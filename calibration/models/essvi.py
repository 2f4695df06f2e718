"""eSSVI surface, calibrated slice by slice with no-arbitrage constraints between slices.

Model (Gatheral and Jacquier 2014, "Arbitrage-free SVI volatility surfaces", SSVI; extended
to a maturity-dependent correlation by Hendriks and Martini 2019, "The extended SSVI
volatility surface")::

    w(k) = theta/2 * (1 + rho phi k + sqrt((phi k + rho)^2 + 1 - rho^2)),   phi = psi / theta

per slice ``(theta, rho, psi)``: ``theta`` the ATM total variance, ``rho`` the skew,
``psi = theta phi`` the ATM variance slope scale (wing slopes of ``w`` are
``psi (1 -/+ rho) / 2``).

Conditions imposed (hard, through the parametrisation of the optimiser's variables):

* butterfly (Gatheral and Jacquier 2014, Theorem 4.2, written in ``psi``; Hendriks and
  Martini 2019, Section 2): ``psi (1 + |rho|) < 4`` and ``psi^2 (1 + |rho|) <= 4 theta``.
  The first is also Lee's wing bound (slopes of ``w`` at most 2).
* calendar between consecutive slices ``1 -> 2`` (``T1 < T2``), following the sequential
  scheme of Corbetta, Cohort, Laachir and Martini 2019 ("Robust calibration and
  arbitrage-free interpolation of SSVI slices"):

  - ``theta2 >= theta1`` (ATM total variance non-decreasing);
  - ``psi2 (1 + rho2) >= psi1 (1 + rho1)`` and ``psi2 (1 - rho2) >= psi1 (1 - rho1)``, i.e.
    ``|rho2 psi2 - rho1 psi1| <= psi2 - psi1`` (both wing slopes non-decreasing; necessary,
    Hendriks and Martini 2019);
  - ``psi2 / theta2 <= psi1 / theta1`` (``phi`` non-increasing, as in SSVI's power-law
    ``phi``).  Together with the two conditions above this rules out crossing; it is
    stronger than the exact characterisation of Hendriks and Martini (2019, Prop. 3.1, as
    corrected by Pasquazzi 2023) and much simpler to impose.  Every fitted surface is also
    checked numerically by :mod:`calibration.arbitrage`.

Calibration: each slice minimises the loss of :mod:`calibration.loss` (vol points) plus an
optional Tikhonov term ``lam * |(theta, rho, psi) - previous|^2`` (normalised by
``(theta_prev, 1, psi_prev)``) with ``scipy.optimize.least_squares`` over unconstrained
variables ``x`` mapped onto the feasible set::

    theta = theta_lo + exp(x0),   rho = 0.999 tanh(x1),
    psi   = psi_lo + (psi_hi - psi_lo) * logistic(x2)

where ``[psi_lo, psi_hi]`` is the feasible interval given ``theta``, ``rho`` and the previous
slice.  Where that interval would be empty, ``rho`` is first moved towards the previous slice's
until it is not (:func:`feasible_rho`), so every point the optimiser can reach satisfies the
conditions above: admissibility never depends on the optimiser converging.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from calibration.loss import FitData, LossConfig, residuals

RHO_MAX = 0.999
BUTTERFLY_MARGIN = 1e-9


@dataclass(frozen=True)
class ESSVIParams:
    theta: float
    rho: float
    psi: float

    def to_array(self) -> np.ndarray:
        return np.array([self.theta, self.rho, self.psi])

    @staticmethod
    def from_array(x: np.ndarray) -> ESSVIParams:
        return ESSVIParams(float(x[0]), float(x[1]), float(x[2]))


def essvi_total_variance(k: np.ndarray, p: ESSVIParams) -> np.ndarray:
    """``w(k) = (theta + rho psi k + sqrt((psi k + theta rho)^2 + theta^2 (1 - rho^2))) / 2``
    (the module formula multiplied out)."""
    k = np.asarray(k, dtype=float)
    return 0.5 * (p.theta + p.rho * p.psi * k
                  + np.sqrt((p.psi * k + p.theta * p.rho) ** 2 + p.theta ** 2 * (1 - p.rho ** 2)))


def essvi_derivatives(k: np.ndarray, p: ESSVIParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(w, w', w'')``: with ``u = phi k + rho``, ``R = sqrt(u^2 + 1 - rho^2)``,
    ``w' = psi/2 (rho + u/R)`` and ``w'' = psi phi (1 - rho^2) / (2 R^3)``."""
    k = np.asarray(k, dtype=float)
    phi = p.psi / p.theta
    u = phi * k + p.rho
    R = np.sqrt(u * u + 1.0 - p.rho ** 2)
    w = 0.5 * p.theta * (1.0 + p.rho * phi * k + R)
    return w, 0.5 * p.psi * (p.rho + u / R), 0.5 * p.psi * phi * (1.0 - p.rho ** 2) / R ** 3


def essvi_wing_slopes(p: ESSVIParams) -> tuple[float, float]:
    """Asymptotic slopes of ``w`` as ``k -> -inf`` and ``k -> +inf``."""
    return 0.5 * p.psi * (1.0 - p.rho), 0.5 * p.psi * (1.0 + p.rho)


def psi_bounds(theta: float, rho: float, prev: ESSVIParams | None) -> tuple[float, float]:
    """Feasible ``[psi_lo, psi_hi]`` for a slice at ``(theta, rho)`` after slice ``prev``."""
    a = 1.0 + abs(rho)
    hi = min(4.0 * (1.0 - BUTTERFLY_MARGIN) / a, np.sqrt(4.0 * theta / a))
    lo = 0.0
    if prev is not None:
        lo = max(prev.psi * (1.0 + prev.rho) / (1.0 + rho), prev.psi * (1.0 - prev.rho) / (1.0 - rho))
        hi = min(hi, prev.psi * theta / prev.theta)
    return lo, hi


def is_admissible(p: ESSVIParams, prev: ESSVIParams | None, tol: float = 1e-10) -> bool:
    """All the conditions of the module docstring, with a relative tolerance."""
    if not (p.theta > 0 and abs(p.rho) < 1 and p.psi > 0):
        return False
    if prev is not None and p.theta < prev.theta * (1 - tol):
        return False
    lo, hi = psi_bounds(p.theta, p.rho, prev)
    return lo * (1 - tol) <= p.psi <= hi * (1 + tol)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + np.exp(-x)) if x >= 0 else np.exp(x) / (1.0 + np.exp(x))


def _logit(p: float) -> float:
    p = min(max(p, 1e-9), 1 - 1e-9)
    return float(np.log(p / (1 - p)))


def feasible_rho(theta: float, rho: float, prev: ESSVIParams | None) -> float:
    """``rho`` itself when ``psi_bounds(theta, rho, prev)`` is non-empty, else the point
    nearest ``rho`` on the segment towards ``prev.rho`` where it is (bisection).

    ``prev.rho`` is always feasible for ``theta >= prev.theta`` when ``prev`` is admissible:
    there ``lo = psi_prev`` while each term of ``hi`` is at least ``psi_prev`` (butterfly and
    Lee bounds of ``prev``, ``sqrt(4 theta/(1+|rho|)) >= sqrt(4 theta_prev/(1+|rho|))`` and
    ``psi_prev theta / theta_prev >= psi_prev``).  So every decoded point is admissible by
    construction, whatever path the optimiser takes.
    """
    lo, hi = psi_bounds(theta, rho, prev)
    if prev is None or hi >= lo:
        return rho
    ok, bad = 0.0, 1.0  # fractions of the way from prev.rho to rho
    for _ in range(60):
        mid = 0.5 * (ok + bad)
        lo, hi = psi_bounds(theta, prev.rho + mid * (rho - prev.rho), prev)
        if hi >= lo:
            ok = mid
        else:
            bad = mid
    return prev.rho + ok * (rho - prev.rho)


def _decode(x: np.ndarray, theta_lo: float, prev: ESSVIParams | None
            ) -> tuple[ESSVIParams, float]:
    theta = theta_lo + float(np.exp(np.clip(x[0], -60.0, 5.0)))
    rho = feasible_rho(theta, RHO_MAX * float(np.tanh(x[1])), prev)
    lo, hi = psi_bounds(theta, rho, prev)
    gap = max(lo - hi, 0.0)
    psi = lo + max(hi - lo, 0.0) * _sigmoid(float(x[2]))
    return ESSVIParams(theta, rho, max(psi, 1e-12)), gap


def _encode(p: ESSVIParams, theta_lo: float, prev: ESSVIParams | None) -> np.ndarray:
    x0 = np.log(max(p.theta - theta_lo, 1e-12 * max(p.theta, 1e-12)))
    rho = float(np.clip(p.rho, -RHO_MAX * 0.999, RHO_MAX * 0.999))
    x1 = np.arctanh(rho / RHO_MAX)
    lo, hi = psi_bounds(max(p.theta, theta_lo), rho, prev)
    x2 = _logit((p.psi - lo) / (hi - lo)) if hi > lo else 0.0
    return np.array([x0, x1, x2])


@dataclass(frozen=True)
class ESSVIFit:
    params: ESSVIParams
    loss: float
    n_eval: int
    feasible: bool


def atm_total_variance(d: FitData) -> float:
    """Market ATM total variance by linear interpolation of mid total variance at ``k = 0``."""
    w = d.mid ** 2 * d.t
    if d.k.min() <= 0.0 <= d.k.max():
        return float(np.interp(0.0, d.k, w))
    return float(w[np.argmin(np.abs(d.k))])


def fit_essvi_slice(d: FitData, loss_cfg: LossConfig, prev_slice: ESSVIParams | None = None,
                    warm: ESSVIParams | None = None, lam: float = 0.0, n_starts: int = 1,
                    anchor: ESSVIParams | None = None) -> ESSVIFit:
    """Fit one slice given the fitted previous (shorter) slice ``prev_slice``.

    ``warm``: this expiry's parameters from the previous fit, used as the start; otherwise
    cold starts from the market ATM variance and ``n_starts`` skews.  ``anchor`` (default
    ``warm``) is the Tikhonov anchor when ``lam > 0``.
    """
    t = d.t
    theta_lo = prev_slice.theta if prev_slice is not None else 0.0
    anchor = (anchor if anchor is not None else warm) if lam > 0 else None
    pen_scale = None if anchor is None else np.array([max(anchor.theta, 1e-12), 1.0,
                                                      max(anchor.psi, 1e-12)])

    def resid(x: np.ndarray) -> np.ndarray:
        p, gap = _decode(x, theta_lo, prev_slice)
        w = essvi_total_variance(d.k, p)
        r = residuals(np.sqrt(np.maximum(w, 1e-300) / t), d, loss_cfg)
        extra = [1e3 * gap / max(p.psi, 1e-6)]
        if anchor is not None:
            extra += list(np.sqrt(lam) * (p.to_array() - anchor.to_array()) / pen_scale)
        return np.concatenate([r, extra])

    starts: list[np.ndarray] = []
    if warm is not None:
        starts.append(_encode(warm, theta_lo, prev_slice))
    if warm is None or n_starts > 1:
        th0 = max(atm_total_variance(d), theta_lo * 1.0001 + 1e-10)
        n_cold = max(n_starts - len(starts), 1)
        for rho0 in np.linspace(-0.3, 0.3, n_cold) if n_cold > 1 else [0.0]:
            lo, hi = psi_bounds(th0, rho0, prev_slice)
            psi0 = 0.5 * (lo + hi) if hi > lo else hi
            starts.append(_encode(ESSVIParams(th0, float(rho0), max(psi0, 1e-8)), theta_lo,
                                  prev_slice))
    # imported here: scipy.optimize takes 85 ms to import, which every process that only
    # evaluates surfaces (a cached run, a sweep job) would pay
    from scipy.optimize import least_squares

    best = None
    nev = 0
    for x0 in starts:
        # "lm" needs at least as many residuals as variables: a penalty row makes sure
        sol = least_squares(resid, x0, method="lm" if d.n >= 2 else "trf", xtol=1e-10,
                            ftol=1e-10, max_nfev=400)
        nev += int(sol.nfev)
        if best is None or sol.cost < best.cost:
            best = sol
    p, _ = _decode(best.x, theta_lo, prev_slice)
    # ``gap`` is round-off only here (feasible_rho); admissibility is judged with its tolerance
    return ESSVIFit(p, float(2.0 * best.cost), nev, is_admissible(p, prev_slice))


def fit_essvi_surface(data: list[FitData], loss_cfg: LossConfig,
                      warm: list[ESSVIParams | None] | None = None, lam: float = 0.0,
                      n_starts: int = 1) -> list[ESSVIFit]:
    """Fit the slices in increasing ``t`` (``data`` must be sorted), each constrained by the
    previous fitted one (Corbetta et al. 2019, sequential scheme)."""
    out: list[ESSVIFit] = []
    prev = None
    for i, d in enumerate(data):
        f = fit_essvi_slice(d, loss_cfg, prev, None if warm is None else warm[i], lam, n_starts)
        out.append(f)
        prev = f.params
    return out
