"""Portfolio (risk-based) margin, Deribit PM style: the book fully revalued under stress scenarios.

**Standard risk vector** (27 scenarios).  The underlying moves by each of ``n_moves`` evenly
spaced fractions of ``[-price_range, +price_range]`` (9 points, zero included), and each
option's vol is shocked up, left, or shocked down, with ``DTE`` its days to expiry (floored at
``min_dte_days``) and the power ``short_term_vega_power`` when ``DTE < 30``, else
``long_term_vega_power``::

    vol_up   = max(vol (1 + volatility_range_up   (30 / DTE)^power), min_volatility_for_shock_up)
    vol_down = max(vol (1 - volatility_range_down (30 / DTE)^power), min_volatility)

**Extended table** (8 scenarios): large moves (``extended_moves``, default -66 % ... +500 %),
vol shocked up only.  It exists for large far-out-of-the-money shorts, which the +-16 % table
cannot see.  Only a fraction of each extended loss ``L`` counts, and a dampener keeps small
extended losses from dominating::

    counted = extended_table_factor * (price_range / |move|) * L^2 / (L + extended_dampener)

Deribit publishes the parameters (the fraction, the dampener) but not this function; the form
above is this project's: it scales an extended loss back to the standard range, and counts a
loss well below ``extended_dampener`` (USD) at almost nothing and one well above it almost in
full.  A large short call loses about ``|move|`` times its underlying notional ``N`` in the
largest up-move, so its requirement never falls far below ``price_range x N`` however far out
of the money it is, which is the extended table's purpose.

**Revaluation.**  Every option is repriced with Black-76 at the shocked forward
``F (1 + move)`` and the shocked vol, the coin's price moving with it (``S (1 + move)``, the
basis held); each leg's change of value in its settlement currency (coin for inverse legs) is
turned into the change of the collateral the venue's ledger books, in USD or in coin
(``venue.equity_currency``; coin amounts reported at today's coin price, like the equity),
formulas in :mod:`replay.consumers.margin.revalue`.  Deribit states the risk vector of a
coin-margined account in coin ("Portfolio Margin" knowledge-base page); an inverse option
under USD collateral moves by ``units (Black(F') - Black(F)) / b``, ``b = F / S``, and not by
``units (Black(F') - Black(F))``.  The vol before the shock depends on the surface dynamics
(``dynamics``):

* ``sticky_moneyness`` (default): the smile moves with the forward, so after the move the
  option's vol is the surface's vol at its new log-moneyness ``ln(K / (F_fit (1 + move)))``,
  ``F_fit`` the surface's own forward of the expiry (the leg's forward before the spot moved
  since the fit, :func:`surface_vol_after_move`);
* ``sticky_strike``: each strike keeps its vol.

Scenario PnL is the sum of the legs' changes, each option revalued from ``V_now``, its model
value at the current surface vol, so the zero-move, unchanged-vol scenario is exactly 0.

**Requirement**::

    IM = max(0, worst standard loss, worst counted extended loss)
         + max_delta_shock * price_range * |delta_usd|              (delta shock)
         + short_option_contingency * sum_short_options |units| P
    MM = mm_factor * IM

``delta_usd`` is the sum of the legs' first-order PnL per unit move, ``d pnl / d move`` at 0
(:mod:`~replay.consumers.margin.revalue`: an inverse option's is ``units N(d1) S`` under USD
collateral, a delta-neutral book by the ledger's marks has none).  ``P`` converts the
contingency, a fraction of the underlying per short contract, which for a coin-margined
option is a coin amount (Deribit states its charges on inverse options in coin): ``S`` for an
inverse option, ``F`` for a linear one.  The delta shock allows for the book's delta drifting over the
liquidation horizon (a hedge rebalanced late): ``max_delta_shock`` of the first-order PnL of a
full-range move of the net delta.

Defaults (:class:`PMParams`) follow Deribit's published BTC portfolio-margin parameters
(the "Portfolio Margin" page of Deribit's knowledge base and its margin-parameters table):
``price_range`` 0.16 in 9 buckets, ``volatility_range_up`` 0.5, ``volatility_range_down`` 0.25,
``min_volatility_for_shock_up`` 0.5, short- and long-term vega power 0.3 and 0.13,
``max_delta_shock`` 0.1, ``extended_table_factor`` 1, ``extended_dampener`` 100000 and
``mm_factor`` 0.8.  ``min_dte_days``, ``min_volatility`` and ``short_option_contingency`` are
this project's (a floor against ``(30 / 0)^power``, a floor on a shocked-down vol, and an
optional per-contract add-on, 0 by default).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from replay.consumers.margin.legs import Legs, group_sum
from replay.consumers.margin.revalue import DOWN, SAME, UP, revalue, revalue_reference

DYNAMICS = ("sticky_moneyness", "sticky_strike")
#: ``vol_after_move(strike, moved_forward) -> vol``, arrays of shape ``(n_options, n_moves)``
VolAfterMove = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PMParams:
    """Portfolio-margin parameters (module docstring for each and its source)."""

    price_range: float = 0.16
    n_moves: int = 9
    volatility_range_up: float = 0.5
    volatility_range_down: float = 0.25
    min_volatility_for_shock_up: float = 0.5
    short_term_vega_power: float = 0.3
    long_term_vega_power: float = 0.13
    max_delta_shock: float = 0.1
    extended_moves: tuple[float, ...] = (-0.66, -0.33, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0)
    extended_table_factor: float = 1.0
    extended_dampener: float = 100_000.0
    mm_factor: float = 0.8
    short_option_contingency: float = 0.0
    min_dte_days: float = 1.0
    min_volatility: float = 0.01
    dynamics: str = "sticky_moneyness"

    def with_values(self, **kw: float) -> PMParams:
        return replace(self, **kw)

    def shock_args(self) -> tuple[float, ...]:
        """The vol-shock parameters in the order :mod:`~replay.consumers.margin.revalue` takes."""
        return (self.volatility_range_up, self.volatility_range_down,
                self.min_volatility_for_shock_up, self.min_volatility,
                self.short_term_vega_power, self.long_term_vega_power, self.min_dte_days)


@dataclass(frozen=True)
class Scenarios:
    """The scenario columns: price move and vol state of each, and which are extended;
    ``unique_moves[inverse]`` is ``moves``."""

    moves: np.ndarray
    vol_state: np.ndarray
    extended: np.ndarray  # bool
    unique_moves: np.ndarray
    inverse: np.ndarray

    @property
    def labels(self) -> list[str]:
        names = {UP: "vol up", SAME: "vol same", DOWN: "vol down"}
        return [f"{'ext ' if e else ''}{m:+.0%} {names[int(v)]}"
                for m, v, e in zip(self.moves, self.vol_state, self.extended)]


@lru_cache(maxsize=64)
def scenarios(p: PMParams) -> Scenarios:
    """27 standard scenarios (moves x {up, same, down}) then the extended ones (vol up).

    >>> sc = scenarios(PMParams())
    >>> len(sc.moves), int(sc.extended.sum()), sc.labels[0]
    (35, 8, '-16% vol up')
    """
    std = np.linspace(-p.price_range, p.price_range, p.n_moves)
    moves = np.concatenate([np.repeat(std, 3), np.asarray(p.extended_moves, dtype=float)])
    states = np.concatenate([np.tile([UP, SAME, DOWN], std.size),
                             np.full(len(p.extended_moves), UP)]).astype(np.int64)
    ext = np.concatenate([np.zeros(3 * std.size, bool), np.ones(len(p.extended_moves), bool)])
    uniq, inv = np.unique(moves, return_inverse=True)
    inv = inv.astype(np.int64)
    for a in (moves, states, ext, uniq, inv):
        a.flags.writeable = False  # shared by every evaluation with these parameters
    return Scenarios(moves, states, ext, uniq, inv)


def leg_scenario_pnl(legs: Legs, p: PMParams, sc: Scenarios,
                     vol_after_move: VolAfterMove | None = None, reference: bool = False,
                     coin: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """PnL (today's USD) of each leg under each scenario, shape ``(n_legs, n_scenarios)``, and
    each leg's delta (USD per unit relative move), with coin collateral when ``coin``
    (:mod:`~replay.consumers.margin.revalue`).

    ``vol_after_move(strike, forward)`` gives option vols at the moved forwards: the surface's
    vol at each strike's new moneyness.  It is used under ``sticky_moneyness``; without it (no
    surface), or under ``sticky_strike``, each option keeps ``legs.vol``.  ``reference=True``
    revalues with the numpy reference instead of the kernel (the tests compare the two)."""
    if p.dynamics == "sticky_moneyness" and vol_after_move is not None:
        fu = legs.forward[:, None] * (1.0 + sc.unique_moves[None, :])
        with np.errstate(invalid="ignore"):
            vol_moves = np.ascontiguousarray(vol_after_move(
                np.broadcast_to(legs.strike[:, None], fu.shape), fu))
    else:
        vol_moves = np.empty((len(legs), 0))
    fn = revalue_reference if reference else revalue
    return fn(legs.is_option, legs.inverse, legs.forward, legs.strike, legs.t, legs.is_call,
              legs.units, legs.mark, legs.value, legs.spot, legs.vol, vol_moves, sc.inverse,
              sc.moves, sc.vol_state, bool(coin), *p.shock_args())


def surface_vol_after_move(surface, t: np.ndarray, moved: float = 1.0) -> VolAfterMove:
    """Sticky-moneyness vols from a fitted surface (:class:`calibration.surface.Surface`) for
    option legs whose maturities at the surface's fit are ``t`` (years: the time to expiry now
    plus the years since the fit, as the legs' own vols are read,
    :meth:`~calibration.surface.Surface.iv_expiry`): the vol at ``k = ln(K / (F' / moved))``
    at that maturity (:meth:`~calibration.surface.Surface.total_variance_rows`).

    ``moved`` is the spot's move since the fit (``S / S_fit``), by which the legs' forwards
    ``F`` are today's and not the surface's own: the legs are valued at the surface's vol of
    their strike, ``ln(K / F_fit)`` with ``F_fit = F / moved``, so the moneyness of a scenario
    is measured from ``F_fit`` too, and the zero move gives back every leg's own vol."""
    tt = np.maximum(np.asarray(t, dtype=float), 1e-12)

    def vol(strike: np.ndarray, forward: np.ndarray) -> np.ndarray:
        w = surface.total_variance_rows(np.log(strike * moved / forward), tt)
        return np.sqrt(np.maximum(w, 0.0) / tt[:, None])

    return vol


def counted_losses(pnl: np.ndarray, sc: Scenarios, p: PMParams) -> np.ndarray:
    """Loss (positive) each scenario contributes to the requirement: the standard ones as they
    are, the extended ones scaled and dampened (module docstring).  ``pnl`` is
    ``(..., n_scenarios)``."""
    loss = np.maximum(-pnl, 0.0)
    ext = sc.extended
    if ext.any():
        frac = p.extended_table_factor * p.price_range / np.abs(sc.moves[ext])
        le = loss[..., ext]
        loss[..., ext] = frac * le * le / (le + p.extended_dampener)
    return loss


@dataclass(frozen=True)
class PMResult:
    """Per group: initial and maintenance margin, the binding scenario and the scenario PnL."""

    im: np.ndarray
    mm: np.ndarray
    worst: np.ndarray  # index of the binding scenario per group (-1: none loses)
    pnl: np.ndarray  # (n_groups, n_scenarios), USD
    counted: np.ndarray  # (n_groups, n_scenarios): the loss each scenario counts, USD
    scenarios: Scenarios
    delta_usd: np.ndarray  # per group: d pnl / d move at 0, USD (the delta shock's input)


def portfolio_margin(legs: Legs, p: PMParams = PMParams(),
                     vol_after_move: VolAfterMove | None = None, reference: bool = False,
                     coin: bool = False) -> PMResult:
    """Portfolio margin of each group of ``legs`` (one group: the whole book); ``coin``: the
    collateral is coin (``venue.equity_currency``), its losses valued at today's price.

    >>> from replay.consumers.margin.legs import make_legs
    >>> r = portfolio_margin(make_legs([1.0], [50_000.0]))   # long 1 BTC of perp
    >>> round(float(r.im[0]), 6), r.scenarios.labels[int(r.worst[0])]  # 16 % + delta shock
    (8800.0, '-16% vol up')
    """
    sc = scenarios(p)
    g = legs.n_groups
    leg_pnl, dlt = leg_scenario_pnl(legs, p, sc, vol_after_move, reference, coin)
    pnl = group_sum(leg_pnl, legs.group, g)
    loss = counted_losses(pnl, sc, p)
    worst_loss = loss.max(axis=1) if g else np.zeros(0)
    worst = np.where(worst_loss > 0, loss.argmax(axis=1) if g else 0, -1)
    delta_usd = group_sum(dlt, legs.group, g)
    short_opt = np.where(legs.is_option & (legs.units < 0),
                         -legs.units * np.where(legs.inverse, legs.spot, legs.forward), 0.0)
    im = (worst_loss + p.max_delta_shock * p.price_range * np.abs(delta_usd)
          + p.short_option_contingency * group_sum(short_opt, legs.group, g))
    return PMResult(im, p.mm_factor * im, worst, pnl, loss, sc, delta_usd)
