"""Full revaluation of the legs under the portfolio-margin scenarios: a numba kernel and the
readable numpy reference it must agree with (``tests/replay/consumers/margin``).

For leg ``i`` and scenario ``j`` (price move ``m_j``, vol state ``s_j``), with the leg's vol
after the move ``v_ij`` (``vol_moves[i, col[j]]`` when the caller gives the surface's vols at
the moved forwards, sticky moneyness; else, or where that is NaN, the leg's vol now: sticky
strike) and the shocked vol ``v'_ij`` (:func:`shocked_vols`, formulas in
:mod:`replay.consumers.margin.portfolio`), the forward and the coin's price move together,
``F' = F (1 + m_j)`` and ``S' = S (1 + m_j)`` (the basis ``F / S`` held).  The leg's value
``X`` in its settlement currency (:mod:`replay.consumers.margin.legs`) changes by::

    inverse option:         dX = units (Black76(F', K, t, v') / F' - mark / F)
    linear option:          dX = units (Black76(F', K, t, v') - mark)
    inverse future / perp:  dX = units m / (1 + m)       (= q cs (1/M - 1/M'), units = q cs / M)
    linear future / perp:   dX = units F m

and the scenario PnL is the change of the collateral that the venue's ledger books
(:mod:`replay.venue.accounting`), in today's USD::

    USD collateral   inverse:  S (1 + m) dX + S m X      (= X' S' - X S: coin value at S')
                     linear:   dX
    coin collateral  inverse:  S dX                      (coin, at today's S, like the equity)
                     linear:   (dX - m X) / (1 + m)      (= (X' / S' - X / S) S)

Deribit computes the risk vector of a coin-margined account in coin (its "Portfolio Margin"
knowledge-base page), which is the coin-collateral line scaled by today's ``S``.  An inverse
option under USD collateral gives ``units (Black76(F') - Black76(F)) / b`` with ``b = F / S``;
an inverse future ``q cs S m / avg``.

Each leg's delta is the derivative of its PnL in ``m`` at ``m = 0`` (vol unchanged), USD per
unit relative move (what the delta shock scales).  With ``N`` the Black-76 forward delta
(``N(d1)``, minus 1 for a put) and ``g = d(dX)/dm``::

    g:  inverse option units (N - mark / F);  linear option units N F;
        inverse future units;                 linear future units F
    delta:  USD collateral  inverse S (g + X),  linear g
            coin collateral inverse S g,        linear g - X

Black (1976), undiscounted: ``C = F N(d1) - K N(d2)``, ``P = K N(-d2) - F N(-d1)``,
``d1 = (ln(F/K) + v^2 t / 2) / (v sqrt t)``, ``d2 = d1 - v sqrt t``.  The kernel evaluates
``N`` with ``erfc`` (``N(x) = erfc(-x / sqrt 2) / 2``), accurate to a few ulps relative in
both tails; the reference uses the project's Black-76 (:func:`calibration.black_price`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from calibration.pricing.black import black_price, delta

DAYS_PER_YEAR = 365.0
UP, SAME, DOWN = 1, 0, -1


def shocked_vols(vol: np.ndarray, t: np.ndarray, state: np.ndarray, up_range: float,
                 down_range: float, min_up: float, min_vol: float, st_power: float,
                 lt_power: float, min_dte: float) -> np.ndarray:
    """Each leg's vol under each scenario's vol state; ``vol`` is ``(n_legs, n_scenarios)``
    (the vol after the move, before the shock), ``t`` per leg in years, ``state`` per
    scenario."""
    dte = np.maximum(t * DAYS_PER_YEAR, min_dte)
    power = np.where(dte < 30.0, st_power, lt_power)
    scale = ((30.0 / dte) ** power)[:, None]
    up = np.maximum(vol * (1.0 + up_range * scale), min_up)
    down = np.maximum(vol * (1.0 - down_range * scale), min_vol)
    return np.where(state[None, :] == UP, up, np.where(state[None, :] == DOWN, down, vol))


def _vol_after(vol: np.ndarray, vol_moves: np.ndarray, col: np.ndarray) -> np.ndarray:
    if vol_moves.shape[1] == 0:
        return np.broadcast_to(vol[:, None], (vol.size, col.size))
    v = vol_moves[:, col]
    return np.where(np.isfinite(v), v, vol[:, None])


def revalue_reference(is_option, inverse, forward, strike, t, is_call, units, mark, value, spot,
                      vol, vol_moves, col, moves, state, coin, *shock
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The numpy reference: ``(n_legs, n_scenarios)`` PnL in today's USD and each leg's delta
    (USD per unit relative move), both as the module docstring; ``coin`` is the collateral's
    currency.  ``vol_moves`` is ``(n_legs, n_moves)`` or ``(n_legs, 0)`` (sticky strike),
    ``col`` each scenario's column of it; ``shock`` is the argument tail of
    :func:`shocked_vols`."""
    m = moves[None, :]
    f1 = forward[:, None] * (1.0 + m)
    shape = f1.shape
    v = shocked_vols(_vol_after(vol, vol_moves, col), t, state, *shock)
    with np.errstate(all="ignore"):
        price = black_price(f1, np.broadcast_to(strike[:, None], shape),
                            np.broadcast_to(t[:, None], shape), v,
                            np.broadcast_to(is_call[:, None], shape))
        n_d = delta(forward, strike, t, vol, is_call)
        mark_c = mark / forward
    u, inv, x, s = units[:, None], inverse[:, None], value[:, None], spot[:, None]
    dx_opt = np.where(inv, u * (price / f1 - mark_c[:, None]), u * (price - mark[:, None]))
    dx_d1 = np.where(inv, u * m / (1.0 + m), u * forward[:, None] * m)
    dx = np.where(is_option[:, None], dx_opt, dx_d1)
    g = np.where(is_option, np.where(inverse, units * (n_d - mark_c), units * n_d * forward),
                 np.where(inverse, units, units * forward))
    if coin:
        pnl = np.where(inv, s * dx, (dx - m * x) / (1.0 + m))
        dlt = np.where(inverse, spot * g, g - value)
    else:
        pnl = np.where(inv, s * (1.0 + m) * dx + s * m * x, dx)
        dlt = np.where(inverse, spot * (g + value), g)
    return pnl, dlt


@njit(cache=True, error_model="numpy")
def _black_x(x: float, f: float, k: float, s: float, call: bool) -> float:
    """Black-76 from ``x = ln(F/K)`` and ``s = vol sqrt(t) > 0`` (``N`` through ``erfc``)."""
    d1 = x / s + 0.5 * s
    d2 = d1 - s
    r2 = 0.7071067811865476
    if call:
        return f * 0.5 * math.erfc(-d1 * r2) - k * 0.5 * math.erfc(-d2 * r2)
    return k * 0.5 * math.erfc(d2 * r2) - f * 0.5 * math.erfc(d1 * r2)


@njit(cache=True, error_model="numpy")
def _black(f: float, k: float, t: float, v: float, call: bool) -> float:
    if not (f > 0.0 and k > 0.0):
        return math.nan
    s = v * math.sqrt(t)
    if not s > 0.0:
        return max(f - k, 0.0) if call else max(k - f, 0.0)
    return _black_x(math.log(f / k), f, k, s, call)


@njit(cache=True, error_model="numpy")
def _delta(f: float, k: float, t: float, v: float, call: bool) -> float:
    s = v * math.sqrt(t)
    if not s > 0.0:
        x = 1.0 if f > k else (0.5 if f == k else 0.0)
    else:
        x = 0.5 * math.erfc(-(math.log(f / k) / s + 0.5 * s) * 0.7071067811865476)
    return x if call else x - 1.0


@njit(cache=True, error_model="numpy")
def _to_usd(dx: float, x: float, s: float, m: float, inverse: bool, coin: bool) -> float:
    """A change ``dx`` of a leg's value ``x`` as the collateral's PnL in today's USD."""
    if coin:
        return s * dx if inverse else (dx - m * x) / (1.0 + m)
    return s * (1.0 + m) * dx + s * m * x if inverse else dx


@njit(cache=True, error_model="numpy")
def revalue(is_option, inverse, forward, strike, t, is_call, units, mark, value, spot, vol,
            vol_moves, col, moves, state, coin, up_range, down_range, min_up, min_vol,
            st_power, lt_power, min_dte) -> tuple[np.ndarray, np.ndarray]:
    """The kernel: same arguments and results as :func:`revalue_reference`."""
    n, m = forward.size, moves.size
    out = np.empty((n, m))
    dlt = np.empty(n)
    lm = np.log1p(moves)
    sticky_strike = vol_moves.shape[1] == 0
    for i in range(n):
        f, k, call, inv, u, x, s0 = (forward[i], strike[i], is_call[i], inverse[i], units[i],
                                     value[i], spot[i])
        if not is_option[i]:
            for j in range(m):
                dx = u * moves[j] / (1.0 + moves[j]) if inv else u * f * moves[j]
                out[i, j] = _to_usd(dx, x, s0, moves[j], inv, coin)
            g = u if inv else u * f
        else:
            mark_c = mark[i] / f
            nd = _delta(f, k, t[i], vol[i], call)
            g = u * (nd - mark_c) if inv else u * nd * f
            dte = max(t[i] * DAYS_PER_YEAR, min_dte)
            scale = (30.0 / dte) ** (st_power if dte < 30.0 else lt_power)
            sq = math.sqrt(t[i])
            x0 = math.log(f / k) if f > 0.0 and k > 0.0 else math.nan
            for j in range(m):
                v = vol[i] if sticky_strike else vol_moves[i, col[j]]
                if not math.isfinite(v):
                    v = vol[i]
                if state[j] == UP:
                    v = max(v * (1.0 + up_range * scale), min_up)
                elif state[j] == DOWN:
                    v = max(v * (1.0 - down_range * scale), min_vol)
                f1 = f * (1.0 + moves[j])
                sv = v * sq
                if not sv > 0.0 or not f1 > 0.0:
                    p = _black(f1, k, t[i], v, call)
                else:  # the logarithm shared across scenarios: ln(F'/K) = ln(F/K) + ln(1 + m)
                    p = _black_x(x0 + lm[j], f1, k, sv, call)
                dx = u * (p / f1 - mark_c) if inv else u * (p - mark[i])
                out[i, j] = _to_usd(dx, x, s0, moves[j], inv, coin)
        if coin:
            dlt[i] = s0 * g if inv else g - x
        else:
            dlt[i] = s0 * (g + x) if inv else g
    return out, dlt
