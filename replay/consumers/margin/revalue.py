"""Full revaluation of option legs under the portfolio-margin scenarios: a numba kernel and
the readable numpy reference it must agree with (``tests/replay/consumers/margin``).

For leg ``i`` and scenario ``j`` (price move ``m_j``, vol state ``s_j``), with the leg's vol
after the move ``v_ij`` (``vol_moves[i, col[j]]`` when the caller gives the surface's vols at
the moved forwards, sticky moneyness; else, or where that is NaN, the leg's vol now: sticky
strike), the shocked vol ``v'_ij`` (:func:`shocked_vols`, formulas in
:mod:`replay.consumers.margin.portfolio`) and ``F' = F (1 + m_j)``::

    option:     pnl_ij = units_i (Black76(F', K_i, t_i, v'_ij) - mark_i)
    delta-one:  pnl_ij = units_i F_i m_j

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


def revalue_reference(is_option, forward, strike, t, is_call, units, mark, vol, vol_moves, col,
                      moves, state, *shock) -> tuple[np.ndarray, np.ndarray]:
    """The numpy reference: ``(n_legs, n_scenarios)`` PnL in USD (module docstring), and each
    leg's Black-76 forward delta at ``vol`` (``N(d1)``, minus 1 for a put; 1 for delta-one
    legs).  ``vol_moves`` is ``(n_legs, n_moves)`` or ``(n_legs, 0)`` (sticky strike), ``col``
    each scenario's column of it; ``shock`` is the argument tail of :func:`shocked_vols`."""
    f1 = forward[:, None] * (1.0 + moves[None, :])
    shape = f1.shape
    v = shocked_vols(_vol_after(vol, vol_moves, col), t, state, *shock)
    with np.errstate(all="ignore"):
        price = black_price(f1, np.broadcast_to(strike[:, None], shape),
                            np.broadcast_to(t[:, None], shape), v,
                            np.broadcast_to(is_call[:, None], shape))
        d = delta(forward, strike, t, vol, is_call)
    opt = is_option[:, None]
    pnl = np.where(opt, units[:, None] * (price - mark[:, None]),
                   (units * forward)[:, None] * moves[None, :])
    return pnl, np.where(is_option, d, 1.0)


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
def revalue(is_option, forward, strike, t, is_call, units, mark, vol, vol_moves, col, moves,
            state, up_range, down_range, min_up, min_vol, st_power, lt_power, min_dte
            ) -> tuple[np.ndarray, np.ndarray]:
    """The kernel: same arguments and results as :func:`revalue_reference`."""
    n, m = forward.size, moves.size
    out = np.empty((n, m))
    dlt = np.ones(n)
    lm = np.log1p(moves)
    sticky_strike = vol_moves.shape[1] == 0
    for i in range(n):
        f, k, call = forward[i], strike[i], is_call[i]
        if not is_option[i]:
            for j in range(m):
                out[i, j] = units[i] * f * moves[j]
            continue
        dlt[i] = _delta(f, k, t[i], vol[i], call)
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
            s = v * sq
            if not s > 0.0 or not f1 > 0.0:
                p = _black(f1, k, t[i], v, call)
            else:  # the logarithm shared across scenarios: ln(F'/K) = ln(F/K) + ln(1 + m)
                p = _black_x(x0 + lm[j], f1, k, s, call)
            out[i, j] = units[i] * (p - mark[i])
    return out, dlt
