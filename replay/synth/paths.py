"""Underlying processes of the synthetic market and the underlying events built on them.

The simulated state is the BTC index (spot) ``S``, its instantaneous variance ``v`` and the perp
funding rate ``f``.  They are simulated block by block on a fixed step grid: block ``k`` covers
``[t0 + k*B, t0 + (k+1)*B)`` and draws its random numbers from its own sub-stream, so a block's
content depends only on the seed, the block index and the state carried in from block ``k-1``.

Models (time in years, ACT/365).  The index drifts at the futures basis ``b``
(``ModelParams.basis``): ``E[S_T] = S_0 exp(b T) = F(T)``, the forward every future and
option of the chain is priced off (``chain.py``), so the synthetic market is priced fairly and
a short option earns no built-in carry.  ``S exp(-b t)`` is a martingale:

* ``gbm``: ``dS/S = b dt + sigma dW``; exact log-normal step.
* ``heston``: ``dS/S = b dt + sqrt(v) dW_S``, ``dv = kappa (theta - v) dt + xi sqrt(v) dW_v``,
  ``d<W_S, W_v> = rho dt``.  Stepped with the Quadratic-Exponential (QE) scheme of
  L. Andersen, "Simple and efficient simulation of the Heston stochastic volatility model",
  Journal of Computational Finance 11(3), 2008 (psi_c = 1.5, gamma1 = gamma2 = 1/2).
* ``bates``: Heston plus compound-Poisson log-normal jumps, D. Bates, "Jumps and stochastic
  volatility", Review of Financial Studies 9(1), 1996: ``ln J ~ N(mu_J, delta_J^2)`` at rate
  ``lambda``, compensated by the drift ``-lambda (exp(mu_J + delta_J^2/2) - 1)`` so that the
  jumps add no drift.

Funding is an Ornstein-Uhlenbeck rate per 8 h interval, stepped exactly:
``f' = m + (f - m) a + s_inf sqrt(1 - a^2) Z`` with ``a = exp(-kappa_f dt)``.
The perpetual trades at ``S (1 + f)`` (its premium over the index is what funding pays for).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

NS_PER_S = 1_000_000_000
YEAR_S = 365.0 * 86_400.0
MODELS = ("gbm", "heston", "bates")
PERP_TICK = 0.5  # USD, Deribit BTC-PERPETUAL
PERP_CONTRACT_USD = 10.0  # USD notional per perp contract (inverse)
FUNDING_INTERVAL_S = 8 * 3600.0
SMILE_VAR_FLOOR = 1e-4  # (1 vol point)^2
MAX_JUMPS_PER_YEAR = 8760.0


@dataclass(frozen=True)
class ModelParams:
    """True parameters of the underlying (annualized; the defaults look like BTC)."""

    s0: float = 95_000.0
    sigma: float = 0.50  # gbm volatility
    v0: float = 0.25  # heston/bates initial variance (50 % vol)
    kappa: float = 3.0  # variance mean reversion, per year
    theta: float = 0.25  # long-run variance
    xi: float = 1.0  # vol of variance
    rho: float = -0.3  # spot/variance correlation
    jump_intensity: float = 25.0  # bates jumps per year
    jump_mean: float = -0.02  # mean log jump
    jump_std: float = 0.04  # std of log jump
    basis: float = 0.05  # annual carry of the futures curve, F(T) = S exp(basis T), and the
    # index's drift
    funding_mean: float = 1e-4  # per 8 h interval (0.01 %)
    funding_std: float = 1e-4  # stationary std of the funding OU
    funding_half_life_h: float = 4.0

    def validate(self, model: str) -> None:
        if model not in MODELS:
            raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
        if self.s0 <= 0 or self.sigma <= 0 or self.v0 < 0 or self.theta <= 0:
            raise ValueError("s0, sigma and theta must be positive and v0 non-negative")
        if model != "gbm" and (self.kappa <= 0 or self.xi <= 0 or not -1 < self.rho < 1):
            raise ValueError("heston/bates need kappa > 0, xi > 0 and -1 < rho < 1")
        if self.jump_intensity < 0 or self.jump_std < 0 or self.funding_half_life_h <= 0:
            raise ValueError("jump_intensity, jump_std must be >= 0 and the half-life > 0")
        bad = [k for k, v in vars(self).items() if not math.isfinite(v)]
        if bad:  # NaN passes every comparison above
            raise ValueError(f"{', '.join(bad)} must be finite")
        if self.jump_intensity > MAX_JUMPS_PER_YEAR:
            raise ValueError(f"jump_intensity must be at most {MAX_JUMPS_PER_YEAR:g} a year "
                             "(a jump every hour); more overflows the price")

    def initial_variance(self, model: str) -> float:
        return self.sigma**2 if model == "gbm" else self.v0


@dataclass
class PathState:
    """What one block hands to the next (the processes are Markov in it)."""

    log_s: float
    v: float
    funding: float
    smile_v: float | None = None  # the smile-level variance (PathBlock.smile_var); v if unset


@dataclass(frozen=True)
class PathBlock:
    """Values at ``t0_ns + i*step_ns`` for ``i = 0..n`` (``n`` steps; index ``n`` is the
    state at the block end, i.e. index 0 of the next block)."""

    t0_ns: int
    step_ns: int
    spot: np.ndarray
    var: np.ndarray
    funding: np.ndarray
    #: the variance that sets the true smile's level when the smile's dynamics are configured
    #: (chain.py): ``var`` minus its spot-correlated part, ``dv - rho xi dx_c`` accumulated with
    #: ``dx_c`` the diffusive log-spot increment, so that its moves are uncorrelated with spot's
    smile_var: np.ndarray

    @property
    def n_steps(self) -> int:
        return self.spot.shape[0] - 1

    @property
    def t1_ns(self) -> int:
        return self.t0_ns + self.n_steps * self.step_ns

    def index(self, ts_ns: np.ndarray) -> np.ndarray:
        """Step index whose state is in force at ``ts_ns`` (piecewise-constant between steps)."""
        return np.clip((ts_ns - self.t0_ns) // self.step_ns, 0, self.n_steps - 1)

    def perp_mid(self) -> np.ndarray:
        return self.spot * (1.0 + self.funding)


@numba.njit(cache=True)
def _heston_qe(v0: float, kappa: float, theta: float, xi: float, rho: float, dt: float,
               zv: np.ndarray, zs: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Andersen (2008) QE step for v and the matching log-price increment (his eq. 33):
    ``dlnS = K0 + K1 v + K2 v' + sqrt(K3 v + K4 v') Z`` with gamma1 = gamma2 = 1/2."""
    n = zv.shape[0]
    v = np.empty(n + 1)
    dx = np.empty(n)
    v[0] = v0
    e = math.exp(-kappa * dt)
    c1 = xi * xi * e * (1.0 - e) / kappa
    c2 = theta * xi * xi * (1.0 - e) ** 2 / (2.0 * kappa)
    k0 = -rho * kappa * theta * dt / xi
    k1 = 0.5 * dt * (kappa * rho / xi - 0.5) - rho / xi
    k2 = 0.5 * dt * (kappa * rho / xi - 0.5) + rho / xi
    k3 = 0.5 * dt * (1.0 - rho * rho)
    for i in range(n):
        vi = v[i]
        m = theta + (vi - theta) * e
        psi = (vi * c1 + c2) / (m * m)
        if psi <= 1.5:
            r = 2.0 / psi
            b2 = r - 1.0 + math.sqrt(r) * math.sqrt(r - 1.0)
            a = m / (1.0 + b2)
            vn = a * (math.sqrt(b2) + zv[i]) ** 2
        else:
            p = (psi - 1.0) / (psi + 1.0)
            beta = (1.0 - p) / m
            vn = 0.0 if u[i] <= p else math.log((1.0 - p) / (1.0 - u[i])) / beta
        v[i + 1] = vn
        dx[i] = k0 + k1 * vi + k2 * vn + math.sqrt(max(k3 * (vi + vn), 0.0)) * zs[i]
    return v, dx


@numba.njit(cache=True)
def _ar1(x0: float, a: float, mean: float, scale: float, z: np.ndarray) -> np.ndarray:
    """Exact OU step on a regular grid: ``x' = mean + (x - mean) a + scale z``."""
    out = np.empty(z.shape[0] + 1)
    out[0] = x0
    for i in range(z.shape[0]):
        out[i + 1] = mean + (out[i] - mean) * a + scale * z[i]
    return out


def jump_variance(model: str, p: ModelParams) -> float:
    """The jumps' annualised variance rate, ``lambda (mu_J^2 + delta_J^2)`` for Bates (the
    expected squared log jump times the intensity: the jumps' share of the quadratic
    variation per year; Bates 1996, as in :func:`replay.synth.chain.atm_total_variance`),
    0 for the models without jumps."""
    return p.jump_intensity * (p.jump_mean**2 + p.jump_std**2) if model == "bates" else 0.0


def initial_state(model: str, p: ModelParams) -> PathState:
    v0 = p.initial_variance(model)
    return PathState(log_s=math.log(p.s0), v=v0, funding=p.funding_mean, smile_v=v0)


def simulate_block(model: str, p: ModelParams, state: PathState, t0_ns: int, n_steps: int,
                   step_ns: int, rng: np.random.Generator) -> tuple[PathBlock, PathState]:
    """Simulate one block of ``n_steps`` steps from ``state``; return it and the end state.

    The draws are taken in a fixed order (variance, price, uniforms, jumps, funding) whatever
    the model, so a block's numbers depend only on its sub-stream.
    """
    dt = step_ns / NS_PER_S / YEAR_S
    zv = rng.standard_normal(n_steps)
    zs = rng.standard_normal(n_steps)
    u = rng.random(n_steps)
    n_jumps = rng.poisson(p.jump_intensity * dt, n_steps)
    zj = rng.standard_normal(n_steps)
    zf = rng.standard_normal(n_steps)
    smile_v0 = state.v if state.smile_v is None else state.smile_v
    if model == "gbm":
        var = np.full(n_steps + 1, p.sigma**2)
        dx = -0.5 * p.sigma**2 * dt + p.sigma * math.sqrt(dt) * zs
        smile_var = var
    else:
        var, dx = _heston_qe(state.v, p.kappa, p.theta, p.xi, p.rho, dt, zv, zs, u)
        # cov(dv, dx_c) = rho xi v dt = rho xi var(dx_c): the residual moves independently of
        # spot; floored so that a long spot trend cannot drive it to zero
        smile_var = np.empty(n_steps + 1)
        smile_var[0] = smile_v0
        np.cumsum(np.diff(var) - p.rho * p.xi * dx, out=smile_var[1:])
        smile_var[1:] += smile_v0
        np.maximum(smile_var, SMILE_VAR_FLOOR, out=smile_var)
        if model == "bates":
            comp = p.jump_intensity * (math.exp(p.jump_mean + 0.5 * p.jump_std**2) - 1.0) * dt
            dx = dx - comp + n_jumps * p.jump_mean + np.sqrt(n_jumps) * p.jump_std * zj
    log_s = np.empty(n_steps + 1)
    log_s[0] = state.log_s
    # the drift enters the price alone: smile_var above takes the driftless increment
    np.cumsum(dx + p.basis * dt, out=log_s[1:])
    log_s[1:] += state.log_s
    kf = math.log(2.0) / (p.funding_half_life_h * 3600.0 / YEAR_S)
    a = math.exp(-kf * dt)
    funding = _ar1(state.funding, a, p.funding_mean, p.funding_std * math.sqrt(1.0 - a * a), zf)
    block = PathBlock(t0_ns, step_ns, np.exp(log_s), var, funding, smile_var)
    return block, PathState(float(log_s[-1]), float(var[-1]), float(funding[-1]),
                            float(smile_var[-1]))


def _lognormal_size(rng: np.random.Generator, n: int, median: float, sd: float,
                    lot: float) -> np.ndarray:
    """Sizes rounded to the venue lot, at least one lot."""
    x = np.exp(np.log(median) + sd * rng.standard_normal(n))
    return np.maximum(np.round(x / lot), 1.0) * lot


def perp_book(block: PathBlock, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Perp top of book at every step around the mid: a spread of 1 tick most of the time
    (2-4 ticks occasionally), the bid the tick within half a tick of ``mid - spread / 2``, so
    that ``bid <= mid <= ask`` (flooring ``mid - spread / 2`` put the mid above the ask at
    about half the steps of a 1-tick book); sizes in contracts of 10 USD."""
    n = block.n_steps
    mid = block.perp_mid()[:n]
    spread = 1 + rng.choice(4, size=n, p=[0.85, 0.09, 0.04, 0.02])
    bid = np.floor(mid / PERP_TICK - spread / 2.0 + 0.5) * PERP_TICK
    return {
        "ts_exchange": block.t0_ns + np.arange(n, dtype=np.int64) * block.step_ns,
        "bid_price": bid,
        "ask_price": bid + spread * PERP_TICK,
        "bid_size": _lognormal_size(rng, n, 3000.0, 1.0, 1.0),
        "ask_size": _lognormal_size(rng, n, 3000.0, 1.0, 1.0),
    }


def index_ticks(block: PathBlock, every_s: float = 1.0) -> dict[str, np.ndarray]:
    """The index (spot) published every ``every_s`` seconds, as a quote with bid = ask."""
    every = int(every_s * NS_PER_S)
    first = -(-block.t0_ns // every) * every
    ts = np.arange(first, block.t1_ns, every, dtype=np.int64)
    px = np.round(block.spot[block.index(ts)], 2)
    nan = np.full(ts.shape[0], np.nan)
    return {"ts_exchange": ts, "bid_price": px, "ask_price": px, "bid_size": nan,
            "ask_size": nan}


def funding_prints(block: PathBlock, every_s: float = 60.0) -> dict[str, np.ndarray]:
    """The current funding rate (per 8 h interval) published every ``every_s`` seconds."""
    every = int(every_s * NS_PER_S)
    first = -(-block.t0_ns // every) * every
    ts = np.arange(first, block.t1_ns, every, dtype=np.int64)
    i = block.index(ts)
    return {
        "ts_exchange": ts,
        "funding_rate": block.funding[i],
        "interval_s": np.full(ts.shape[0], FUNDING_INTERVAL_S),
        "mark_price": np.round(block.perp_mid()[i], 2),
        "index_price": np.round(block.spot[i], 2),
    }
