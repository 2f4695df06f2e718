"""The synthetic option chain: Deribit-like listings, the true smile, and the quoted books.

Listings (all expiries settle at 08:00 UTC): dailies 3 days ahead, weeklies (Fridays) 4 weeks
ahead, monthlies (last Friday of the month) 3 months ahead, quarterlies (last Friday of Mar,
Jun, Sep, Dec) a year ahead.  An expiry is listed ``lead`` days before it settles (or at the
start of the market); its strikes are fixed at listing: a fine grid near the forward then
(the simulated path's spot at the listing instant) and a grid twice as coarse in the wings,
wider for longer expiries, like Deribit's.

The true smile is SSVI (J. Gatheral and A. Jacquier, "Arbitrage-free SVI volatility surfaces",
Quantitative Finance 14(1), 2014, eq. 4.1 with the power-law phi of eq. 4.5)::

    w(k, theta) = theta/2 (1 + rho phi k + sqrt((phi k + rho)^2 + 1 - rho^2)),
    phi(theta) = eta / (theta^gamma (1 + theta)^(1 - gamma)),   k = ln(K / F_T)

with ``theta`` the ATM total variance the model implies.  For Heston it is the expected
integrated variance (e.g. J. Gatheral, *The Volatility Surface*, Wiley 2006, ch. 3)
``theta(T) = theta_v T + (v - theta_v)(1 - exp(-kappa T)) / kappa``; Bates adds the jumps'
quadratic variation ``lambda T (mu_J^2 + delta_J^2)``; GBM gives ``sigma^2 T`` and a flat smile
(``eta = 0``), which is then exactly the model's implied vol.  The SSVI ``rho`` is the model's
rho.  ``eta (1 + |rho|) <= 2`` with ``gamma <= 1/2`` keeps the surface free of static
arbitrage (their Corollary 4.1 and Theorem 4.2).  This smile is the *truth* the mark uses and
is recorded in ``truth_params``.  For Heston and Bates only its ATM level follows the model:
its shape is SSVI's, not the model's own smile, which it misses by up to about 10 vol points in
short-dated wings (a 7-day 85 % put: 0.623 in SSVI against 0.527 in Heston at the default
parameters).  Away from the money the chain is therefore not priced at the fair value of the
simulated dynamics, and a study of hedging error there measures the model's mismatch too.

How the smile moves with spot.  By default (``smile_ssr`` unset) it stays at fixed moneyness
and its level follows the model's variance ``v``; with Heston's ``rho`` that variance moves
with spot, which gives an ATM vol move per unit ``ln S`` of about ``xi sqrt(T) / (eta sigma)``
ATM skews (the SSR of the default market, from ``dsigma/dv = 1/(2 sigma)``,
``E[dv | d ln S] = rho xi`` and SSVI's short-maturity skew ``rho eta / (2 sqrt(T))``).
A configured skew stickiness ratio ``R = smile_ssr`` (Bergomi, *Stochastic Volatility
Modeling*, 2016, ch. 9) makes the dynamics exactly that instead: the smile is evaluated at
``k + R ln(S / s0)`` (``s0`` the start price), so it moves in moneyness by ``1 - R`` of the
log-spot move, and its level follows ``PathBlock.smile_var``, the variance with its
spot-correlated part removed, so that the ATM vol moves by ``R`` ATM skews per unit ``ln S``
and otherwise independently of spot: ``R = 0`` is sticky moneyness, ``R = 1`` sticky strike,
``R = 2`` about local-vol-like.

Premiums are inverse (BTC): ``Black76_undiscounted(F, K, T, vol) / F``, rounded to Deribit
ticks (0.0001 BTC below 0.005 BTC, 0.0005 at or above).  Bids round down, asks up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa

from calibration.pricing.black import black_price
from replay.model.instruments import expiry_ns as _expiry_ns
from replay.synth.paths import NS_PER_S, YEAR_S, ModelParams, PathBlock, jump_variance

DAY_NS = 86_400 * NS_PER_S
#: quoting stops this long before settlement (the venue freezes the book for the fixing)
QUOTE_STOP_NS = 60 * NS_PER_S
#: (lead days before settlement when listed) per expiry family
LEAD_DAYS = {"daily": 3, "weekly": 28, "monthly": 92, "quarterly": 370}
_STEPS = (50.0, 100.0, 200.0, 250.0, 500.0, 1000.0, 2000.0, 2500.0, 5000.0, 10000.0, 20000.0)
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
TICK_UNIT = 1e-4  # BTC; prices are handled as integer multiples of it


@dataclass(frozen=True)
class ChainParams:
    """How the chain is listed and quoted."""

    inner_strikes: int = 24  # strikes in the fine near-the-money grid
    quote_rate_atm: float = 0.08  # book updates per second at the money
    quote_rate_wing: float = 1.0 / 300.0  # ... and far in the wings
    half_spread_vol: float = 0.004  # ATM half spread in vol (0.4 vol points)
    wing_spread: float = 0.6  # half spread grows by this factor per unit |z|
    short_spread: float = 0.5  # ... and by this / sqrt(days to expiry)
    one_sided_z: float = 2.5  # beyond |z| some wings show no bid
    one_sided_share: float = 0.5  # share of those wing instruments that show no bid
    smile_eta: float = 0.5
    smile_gamma: float = 0.5
    size_median: float = 8.0  # BTC contracts at the touch
    # How the smile moves with spot (module docstring): unset, at fixed moneyness with its
    # level following the variance; R, at a skew stickiness ratio of R (0 sticky moneyness,
    # 1 sticky strike)
    smile_ssr: float | None = None

    def validate(self, rho: float) -> None:
        if not 0 < self.smile_gamma <= 0.5 or self.smile_eta * (1 + abs(rho)) > 2:
            raise ValueError("SSVI needs 0 < gamma <= 1/2 and eta (1 + |rho|) <= 2 "
                             "to be free of static arbitrage")


@dataclass(frozen=True)
class Chain:
    """Listed options, one entry per instrument (sorted by expiry, strike, put before call)."""

    names: tuple[str, ...]
    expiry_ns: np.ndarray
    strike: np.ndarray
    is_call: np.ndarray
    listing_ns: np.ndarray
    ids: np.ndarray  # store instrument_id, filled once the definitions are written

    def with_ids(self, name_to_id: dict[str, int]) -> Chain:
        return replace(self, ids=np.array([name_to_id[n] for n in self.names], dtype=np.int32))


def _last_friday(year: int, month: int) -> date:
    nxt = date(year + month // 12, month % 12 + 1, 1)
    d = nxt - timedelta(days=1)
    return d - timedelta(days=(d.weekday() - 4) % 7)


def expiry_schedule(start_ns: int, end_ns: int) -> dict[int, int]:
    """``{expiry_ns: listing_ns}`` of every expiry live at some time in ``[start, end)``."""
    start = datetime.fromtimestamp(start_ns / NS_PER_S, UTC).date()
    end = datetime.fromtimestamp(end_ns / NS_PER_S, UTC).date()
    out: dict[int, int] = {}

    def add(d: date, family: str) -> None:
        exp = _expiry_ns(d.day, d.month, d.year)
        listing = max(start_ns, exp - LEAD_DAYS[family] * DAY_NS)
        if exp > start_ns + QUOTE_STOP_NS and listing < end_ns:
            out[exp] = min(out.get(exp, listing), listing)

    days = (end - start).days
    for i in range(days + LEAD_DAYS["daily"] + 2):
        add(start + timedelta(days=i), "daily")
    for i in range(days + LEAD_DAYS["weekly"] + 8):
        d = start + timedelta(days=i)
        if d.weekday() == 4:
            add(d, "weekly")
    for m in range(days // 28 + 5):
        y, mo = start.year + (start.month - 1 + m) // 12, (start.month - 1 + m) % 12 + 1
        add(_last_friday(y, mo), "monthly")
        if mo in (3, 6, 9, 12):
            add(_last_friday(y, mo), "quarterly")
    for m in range(days // 28 + 5, days // 28 + 16):
        y, mo = start.year + (start.month - 1 + m) // 12, (start.month - 1 + m) % 12 + 1
        if mo in (3, 6, 9, 12):
            add(_last_friday(y, mo), "quarterly")
    return dict(sorted(out.items()))


def strike_grid(f0: float, tau: float, vol: float, inner: int) -> np.ndarray:
    """Strikes for one expiry: a fine step within +-w/3 of ``f0`` (about ``inner`` strikes)
    and twice that step out to +-w in log-moneyness, ``w = 3.5 vol sqrt(tau)`` (capped)."""
    w = min(max(3.5 * vol * math.sqrt(max(tau, 1.0 / 365.0)), 0.05), 1.4)
    lo_in, hi_in = f0 * math.exp(-w / 3), f0 * math.exp(w / 3)
    step = next((s for s in _STEPS if (hi_in - lo_in) / s <= inner), _STEPS[-1])
    fine = np.arange(math.ceil(lo_in / step), math.floor(hi_in / step) + 1) * step
    coarse_step = 2 * step
    coarse = np.arange(math.ceil(f0 * math.exp(-w) / coarse_step),
                       math.floor(f0 * math.exp(w) / coarse_step) + 1) * coarse_step
    return np.unique(np.concatenate([fine, coarse[coarse > 0]]))


def option_name(exp_ns: int, strike: float, is_call: bool) -> str:
    d = datetime.fromtimestamp(exp_ns / NS_PER_S, UTC)
    return f"BTC-{d.day}{_MONTHS[d.month - 1]}{d.year % 100:02d}-{int(strike)}-{'C' if is_call else 'P'}"


def build_chain(start_ns: int, end_ns: int, p: ModelParams, ref_vol: float,
                cp: ChainParams, spot_at: Mapping[int, float] | None = None) -> Chain:
    """List every option live during the run, each expiry's strikes fixed at its listing:
    its grid (:func:`strike_grid`) spans the time from listing to expiry and is centred on
    the forward then, the spot at the listing instant ``spot_at[listing_ns]`` (the path's
    own; ``p.s0`` where it is not given, as for the expiries listed at the start)."""
    names, exps, strikes, calls, lists = [], [], [], [], []
    spot_at = spot_at or {}
    for exp, listing in expiry_schedule(start_ns, end_ns).items():
        tau = (exp - listing) / NS_PER_S / YEAR_S
        f0 = spot_at.get(listing, p.s0) * math.exp(p.basis * tau)
        for k in strike_grid(f0, tau, ref_vol, cp.inner_strikes):
            for c in (False, True):
                names.append(option_name(exp, k, c))
                exps.append(exp)
                strikes.append(k)
                calls.append(c)
                lists.append(listing)
    return Chain(tuple(names), np.array(exps, np.int64), np.array(strikes), np.array(calls),
                 np.array(lists, np.int64), np.full(len(names), -1, np.int32))


def instrument_defs(chain: Chain) -> pa.Table:
    """Instrument definitions, each stamped with its listing time."""
    n = len(chain.names)
    return pa.table({
        "ts_exchange": chain.listing_ns, "ts_recv": chain.listing_ns,
        "name": list(chain.names), "venue": ["synth"] * n, "kind": ["option"] * n,
        "underlying": ["BTC"] * n, "quote_currency": ["USD"] * n,
        "expiry_ns": chain.expiry_ns, "strike": chain.strike, "is_call": chain.is_call,
        "settlement": ["inverse"] * n, "contract_size": np.ones(n),
        "tick_size": np.full(n, TICK_UNIT),
    })


def atm_total_variance(model: str, p: ModelParams, v: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """theta(T): GBM ``sigma^2 T``; Heston ``theta_v T + (v - theta_v)(1 - e^{-kappa T})/kappa``;
    Bates adds ``lambda T (mu_J^2 + delta_J^2)`` (see the module docstring)."""
    if model == "gbm":
        return p.sigma**2 * tau
    return (p.theta * tau + (v - p.theta) * (-np.expm1(-p.kappa * tau)) / p.kappa
            + jump_variance(model, p) * tau)


def true_vol(model: str, p: ModelParams, cp: ChainParams, v: np.ndarray, tau: np.ndarray,
             k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SSVI implied vol at log-moneyness ``k`` and the standardized moneyness
    ``z = k / sqrt(theta)`` (see the module docstring for the formula)."""
    theta = atm_total_variance(model, p, v, tau)
    eta = 0.0 if model == "gbm" else cp.smile_eta
    rho = 0.0 if model == "gbm" else p.rho
    phi = eta / (theta**cp.smile_gamma * (1.0 + theta) ** (1.0 - cp.smile_gamma))
    w = 0.5 * theta * (1.0 + rho * phi * k + np.sqrt((phi * k + rho) ** 2 + 1.0 - rho * rho))
    return np.sqrt(w / tau), k / np.sqrt(theta)


def smile_k(k: np.ndarray, spot, p: ModelParams, cp: ChainParams) -> np.ndarray:
    """Where the true smile is read for log-moneyness ``k`` at spot ``spot``:
    ``k + smile_ssr ln(spot / s0)`` (module docstring); ``k`` itself by default."""
    if not cp.smile_ssr:
        return k
    return k + cp.smile_ssr * np.log(np.asarray(spot, dtype=float) / p.s0)


def smile_var(block: PathBlock, cp: ChainParams) -> np.ndarray:
    """The variance that sets the true smile's level: the model's own by default, the
    spot-decorrelated one when the smile's dynamics are configured (module docstring)."""
    return block.var if cp.smile_ssr is None else block.smile_var


def _units_down(x: np.ndarray) -> np.ndarray:
    """Largest on-tick price <= x, in units of 0.0001 BTC (tick 5 units from 0.005 up)."""
    u = np.floor(x / TICK_UNIT + 1e-9)
    return np.where(u >= 50, np.floor(u / 5) * 5, u)


def _units_up(x: np.ndarray) -> np.ndarray:
    u = np.ceil(x / TICK_UNIT - 1e-9)
    return np.where(u > 50, np.ceil(u / 5) * 5, u)


def quote_rates(chain: Chain, idx: np.ndarray, block: PathBlock, model: str, p: ModelParams,
                cp: ChainParams, mult: float) -> np.ndarray:
    """Book updates per second per instrument: ``wing + (atm - wing) exp(-z^2/2)``, z taken
    at the block start, so at-the-money books refresh far more often than the wings."""
    t0 = block.t0_ns
    tau = np.maximum(chain.expiry_ns[idx] - t0, QUOTE_STOP_NS) / NS_PER_S / YEAR_S
    f = block.spot[0] * np.exp(p.basis * tau)
    _, z = true_vol(model, p, cp, np.full(idx.shape[0], smile_var(block, cp)[0]), tau,
                    smile_k(np.log(chain.strike[idx] / f), block.spot[0], p, cp))
    return mult * (cp.quote_rate_wing + (cp.quote_rate_atm - cp.quote_rate_wing)
                   * np.exp(-0.5 * z * z))


def stable_share(expiry_ns: np.ndarray, strike: np.ndarray, is_call: np.ndarray) -> np.ndarray:
    """A number in ``[0, 1)`` fixed per option by its expiry, strike and right alone (the
    SplitMix64 finaliser of their packed bits; Steele, Lea and Flood, "Fast splittable
    pseudorandom number generators", OOPSLA 2014), so that which far-wing books are
    one-sided is the same in every run: keyed on the option's position in the chain, it
    changed when a longer run listed more options, and a shorter run was not a prefix of a
    longer one with the same seed."""
    with np.errstate(over="ignore"):
        z = (np.asarray(expiry_ns, np.int64).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
             ^ np.round(np.asarray(strike, np.float64) * 100.0).astype(np.uint64) << np.uint64(1)
             ^ np.asarray(is_call, bool).astype(np.uint64))
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def books(chain: Chain, idx: np.ndarray, ts: np.ndarray, block: PathBlock, model: str,
          p: ModelParams, cp: ChainParams, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Top of book of options ``idx`` at times ``ts`` (one row each).

    Half spread in vol: ``h = h0 (1 + a|z|) (1 + b / sqrt(days to expiry)) U(0.8, 1.25)``;
    bid = price at ``vol - h`` rounded down to tick, ask = price at ``vol + h`` rounded up and
    at least one tick above the bid.  No bid when it rounds to zero, and for a fixed share of
    far-wing instruments (chosen per instrument so a book does not flicker).  ``bid_iv`` and
    ``ask_iv`` are the vols the quote was made from (before tick rounding); ``mark_price`` is
    the unrounded true-smile premium and ``underlying_price`` the expiry's forward
    ``S exp(basis T)``.
    """
    n = idx.shape[0]
    step = block.index(ts)
    spot, v = block.spot[step], smile_var(block, cp)[step]
    tau = (chain.expiry_ns[idx] - ts) / NS_PER_S / YEAR_S
    fwd = spot * np.exp(p.basis * tau)
    strike, is_call = chain.strike[idx], chain.is_call[idx]
    vol, z = true_vol(model, p, cp, v, tau, smile_k(np.log(strike / fwd), spot, p, cp))
    h = (cp.half_spread_vol * (1 + cp.wing_spread * np.abs(z))
         * (1 + cp.short_spread / np.sqrt(tau * 365.0)) * rng.uniform(0.8, 1.25, n))
    bid_iv = np.maximum(vol - h, 0.2 * vol)
    ask_iv = vol + h
    bid_u = _units_down(black_price(fwd, strike, tau, bid_iv, is_call) / fwd)
    ask_u = _units_up(black_price(fwd, strike, tau, ask_iv, is_call) / fwd)
    ask_u = np.maximum(ask_u, np.where(bid_u >= 50, bid_u + 5, bid_u + 1))
    no_bid = (bid_u <= 0) | ((np.abs(z) > cp.one_sided_z)
                             & (stable_share(chain.expiry_ns[idx], strike, is_call)
                                < cp.one_sided_share))
    bid = np.where(no_bid, np.nan, bid_u / 1e4)
    sizes = np.exp(np.log(cp.size_median) + 0.8 * rng.standard_normal((2, n)))
    sizes = np.maximum(np.round(sizes, 1), 0.1)
    return {
        "instrument_id": chain.ids[idx], "ts_exchange": ts,
        "bid_price": bid, "ask_price": ask_u / 1e4,
        "bid_size": np.where(no_bid, np.nan, sizes[0]), "ask_size": sizes[1],
        "bid_iv": np.where(no_bid, np.nan, bid_iv), "ask_iv": ask_iv,
        "mark_price": black_price(fwd, strike, tau, vol, is_call) / fwd, "mark_iv": vol,
        "underlying_price": fwd, "spot": spot,
    }


def active(chain: Chain, t0: int, t1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Instruments quoted at some time in ``[t0, t1)`` and their quoting window there."""
    stop = chain.expiry_ns - QUOTE_STOP_NS
    idx = np.flatnonzero((chain.listing_ns < t1) & (stop > t0))
    return idx, np.maximum(chain.listing_ns[idx], t0), np.minimum(stop[idx], t1)


def quote_updates(chain: Chain, block: PathBlock, model: str, p: ModelParams, cp: ChainParams,
                  rng: np.random.Generator, mult: float) -> dict[str, np.ndarray]:
    """Book updates of one block: per instrument a Poisson number of updates at uniform times
    within its quoting window (``quote_rates``), each a fresh top of book (``books``)."""
    idx, lo, hi = active(chain, block.t0_ns, block.t1_ns)
    rates = quote_rates(chain, idx, block, model, p, cp, mult)
    counts = rng.poisson(rates * (hi - lo) / NS_PER_S)
    rows = np.repeat(idx, counts)
    lo_r, span = np.repeat(lo, counts), np.repeat(hi - lo, counts)
    ts = lo_r + (rng.random(rows.shape[0]) * span).astype(np.int64)
    out = books(chain, rows, ts, block, model, p, cp, rng)
    del out["spot"]
    out["open_interest"] = np.full(rows.shape[0], np.nan)
    return out
