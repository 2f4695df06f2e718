"""A book as the margin models see it, and the cross / isolated collateral arithmetic.

:class:`Legs` holds one entry per position as numpy arrays, so that every model evaluates the
whole book in a few vectorised calls.  ``units`` is the signed amount of the underlying a
position moves with:

* options: contracts x contract size (a BTC option of size 1 is 1 BTC of underlying);
* linear futures, perps and spot: contracts x contract size;
* inverse futures and perps (contract size in USD): ``q cs / M``, contracts x contract size
  over the mark ``M``, the coin notional at the mark.

**Value and currencies.**  A leg is valued as the venue's ledger values it
(:mod:`replay.venue.accounting`): ``value`` ``X`` is in the leg's settlement currency, coin
for an inverse leg and USD for a linear one, with ``F`` the leg's ``forward`` (its expiry
forward; a delta-one leg's mark ``M``), ``avg`` the position's average entry price
(``Position.avg_price``: harmonic for inverse contracts) and ``Black`` the Black-76 value per
unit at ``F`` (``mark``, USD at the forward)::

    inverse option:              X = units Black(F) / F          (the coin premium)
    linear option:               X = units Black(F)
    inverse future / perp:       X = q cs (1/avg - 1/M) = units (M/avg - 1)   (unrealised coin PnL)
    linear future / perp / spot: X = q cs (M - avg) = units (M - avg)

``spot`` is ``S``, the coin's USD price the ledger converts coin at (the underlying mid), so
an inverse option is worth ``units Black(F) / b`` USD with the basis ``b = F / S``
(``docs/architecture.md``, "Units and conventions").  Deribit's inverse contract
specifications (coin-settled options quoted in coin; inverse futures paying
``q cs (1/avg - 1/exit)`` coin) are the reference; :mod:`~replay.consumers.margin.revalue`
turns a change of ``X`` into the USD PnL of the collateral.

**Cross and isolated collateral.**  Each position belongs to a group (``group``): one per
position or per expiry.  With initial equity ``E0``, a requirement ``R_g`` and a PnL ``P_g``
per group, and ``R`` the requirement of the whole book, the free collateral is::

    cross:     E0 + sum_g P_g - R                one pool: the gains of one group cover another
    isolated:  E0 - sum_g max(0, R_g - P_g)      each group stands alone; a surplus stays in it

``R = sum_g R_g`` for standard margin (per position, additive) and ``R <= sum_g R_g`` for
portfolio margin (the worst loss of a sum is at most the sum of the worst losses), so isolated
free collateral is never above cross for the same positions (the triangle inequality), with
equality for standard margin when no group has a surplus.  :func:`free_collateral` computes
both.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

DAYS_PER_YEAR = 365.0


_FIELDS = ("units", "is_option", "strike", "t", "is_call", "forward", "vol", "mark", "group",
           "inverse", "value", "spot")


@dataclass(frozen=True)
class Legs:
    """One entry per position (all arrays of one length; see the module docstring)."""

    units: np.ndarray  # signed underlying units (inverse delta-one: coin notional at the mark)
    is_option: np.ndarray  # bool
    strike: np.ndarray  # USD; NaN for delta-one legs
    t: np.ndarray  # years to expiry; 0 for delta-one legs
    is_call: np.ndarray  # bool
    forward: np.ndarray  # USD per coin: the leg's expiry forward (delta-one: its mark M)
    vol: np.ndarray  # implied vol now (options); NaN for delta-one legs
    mark: np.ndarray  # Black-76 value per unit now at the forward, USD (options); 0 otherwise
    group: np.ndarray  # int, isolation group of each leg (all 0 under cross margin)
    inverse: np.ndarray  # bool: settled in coin
    value: np.ndarray  # X, settlement currency (module docstring)
    spot: np.ndarray  # S, USD per coin the ledger converts at

    def __len__(self) -> int:
        return int(self.units.size)

    @property
    def n_groups(self) -> int:
        return int(self.group.max()) + 1 if self.group.size else 0

    def with_groups(self, group: np.ndarray) -> Legs:
        return replace(self, group=np.asarray(group, dtype=np.int64))

    def subset(self, keep: np.ndarray) -> Legs:
        """The legs where ``keep`` (a boolean mask) is set."""
        return Legs(*(getattr(self, f)[keep] for f in _FIELDS))


def make_legs(units, forward, *, strike=None, t=None, is_call=None, vol=None, mark=None,
              group=None, inverse=None, entry=None, spot=None) -> Legs:
    """Build :class:`Legs` from array-likes; a leg with a finite ``strike`` is an option.

    ``inverse`` defaults to linear, ``spot`` to the forward, ``entry`` (a delta-one leg's
    average entry price) to its mark (no unrealised PnL); ``value`` follows from them (module
    docstring).

    >>> legs = make_legs([-1.0, 0.5], [50_000.0, 50_000.0], strike=[55_000.0, np.nan],
    ...                  t=[30 / 365, 0.0], is_call=[True, False], vol=[0.6, np.nan])
    >>> legs.is_option.tolist(), legs.n_groups
    ([True, False], 1)
    """
    units = np.atleast_1d(np.asarray(units, dtype=np.float64))
    n = units.size

    def arr(x, fill, dtype=np.float64):
        return np.full(n, fill, dtype=dtype) if x is None else \
            np.broadcast_to(np.asarray(x, dtype=dtype), (n,)).copy()

    strike_a = arr(strike, np.nan)
    is_option = np.isfinite(strike_a)
    fwd = arr(forward, np.nan)
    t_a = np.where(is_option, arr(t, 0.0), 0.0)
    call = arr(is_call, False, bool)
    vol_a = np.where(is_option, arr(vol, np.nan), np.nan)
    if mark is None:
        from calibration.pricing.black import black_price

        mark_a = np.zeros(n)
        if is_option.any():
            mark_a[is_option] = black_price(fwd[is_option], strike_a[is_option], t_a[is_option],
                                            vol_a[is_option], call[is_option])
    else:
        mark_a = np.where(is_option, arr(mark, 0.0), 0.0)
    inv = arr(inverse, False, bool)
    e = arr(entry, np.nan)
    avg = np.where(np.isfinite(e) & (e > 0), e, fwd)
    value = np.where(is_option, units * np.where(inv, mark_a / fwd, mark_a),
                     np.where(inv, units * (fwd / avg - 1.0), units * (fwd - avg)))
    spot_a = fwd.copy() if spot is None else arr(spot, np.nan)
    return Legs(units, is_option, strike_a, t_a, call, fwd, vol_a, mark_a,
                arr(group, 0, np.int64), inv, value, spot_a)


def group_sum(values: np.ndarray, group: np.ndarray, n_groups: int) -> np.ndarray:
    """Sum of ``values`` per group: shape ``(n_groups,)`` for a vector, ``(n_groups, m)`` for a
    ``(n_legs, m)`` matrix (per-leg scenario PnL)."""
    if values.ndim == 1:
        return np.bincount(group, weights=values, minlength=n_groups)
    if n_groups == 1:
        return values.sum(axis=0, keepdims=True)
    onehot = np.zeros((n_groups, group.size))
    onehot[group, np.arange(group.size)] = 1.0
    return onehot @ values


def free_collateral(equity0: float, requirement: np.ndarray, pnl: np.ndarray,
                    book_requirement: float | None = None) -> dict[str, float]:
    """Free collateral in each mode from per-group requirements and PnL (module docstring);
    ``book_requirement`` is the whole book's requirement ``R`` (default: the sum of the
    groups').

    >>> free_collateral(100.0, np.array([30.0, 10.0]), np.array([-20.0, 25.0]))
    {'cross': 65.0, 'isolated': 50.0}
    """
    req = np.asarray(requirement, dtype=float)
    pnl = np.asarray(pnl, dtype=float)
    book = float(req.sum()) if book_requirement is None else float(book_requirement)
    return {"cross": float(equity0 + pnl.sum() - book),
            "isolated": float(equity0 - np.maximum(req - pnl, 0.0).sum())}
