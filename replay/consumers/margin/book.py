"""The venue's book as the margin models see it: :class:`~replay.consumers.margin.legs.Legs`
built from the run's one ledger (the venue's portfolio), the market and the published surface.

Per open position:

* **options**: the underlying units ``qty x contract size``; the forward of the expiry (the
  published surface's as fitted, moved with spot since the fit; else the venue's forward of
  the expiry; else the coin's USD price); the vol (the surface's at the strike, read for the
  expiry as fitted, :meth:`~calibration.surface.Surface.iv_expiry`; else the venue's mark IV;
  else the option's own mid IV; else ``flat_vol``), and the value at that vol;
* **futures, perpetuals, spot**: the underlying units (inverse contracts: USD notional / price)
  at the instrument's reference price ``M``, and the position's average entry price (the
  ledger's ``Position.avg_price``), from which the unrealised PnL ``X`` follows;
* every leg: whether it is inverse (coin-settled) and the coin's USD price ``S`` (``usd``) the
  ledger converts at (:mod:`~replay.consumers.margin.legs` for the values).

Isolation groups (``isolate_by``): ``position`` (each instrument alone) or ``expiry`` (options
and futures of one expiry together; each perpetual alone).  The PnL of each group is the
realised plus unrealised PnL of its instruments, closed ones included; fees and funding form a
pool of their own with no requirement (:func:`group_pnl`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from calibration.pricing.forwards import time_to_expiry
from calibration.pricing.iv import implied_vol
from replay.consumers.margin.legs import Legs, make_legs
from replay.consumers.marker import coin_usd

ISOLATE_BY = ("position", "expiry")


def group_key(spec, isolate_by: str) -> tuple[str, int]:
    """The isolation group an instrument belongs to."""
    if isolate_by == "expiry" and spec.expiry_ns is not None and spec.kind in ("option", "future"):
        return ("expiry", int(spec.expiry_ns))
    return ("position", int(spec.instrument_id))


def group_index(specs: Mapping, iids, isolate_by: str) -> dict[int, int]:
    """Group number (0, 1, ... in key order) of each instrument of ``iids``."""
    keys = {i: group_key(specs[i], isolate_by) for i in iids}
    order = {k: n for n, k in enumerate(sorted(set(keys.values())))}
    return {i: order[k] for i, k in keys.items()}


def spot_move_since_fit(ctx, board) -> float:
    """``S / S_fit``: the spot now over the spot the published surface was fitted at (1 when
    either is unknown).  The surface's forwards are moved by it to today's."""
    s = coin_usd(ctx.market)
    fit = board.spot if board is not None else math.nan
    return s / fit if math.isfinite(s) and s > 0 and math.isfinite(fit) and fit > 0 else 1.0


def years_since_fit(ctx, board) -> float:
    """Years from the published surface's fit to now (0 without a surface): what a leg's
    time to expiry adds to give its maturity as fitted."""
    surf = board.surface if board is not None else None
    return surf.years_since_fit(ctx.now) if surf is not None else 0.0


def option_forward(ctx, board, expiry_ns: int, usd: float) -> float:
    """The forward of one expiry by the precedence of the module docstring."""
    surf = board.surface if board is not None else None
    if surf is not None:
        f = float(surf.forward_expiry(expiry_ns)) * spot_move_since_fit(ctx, board)
        if math.isfinite(f) and f > 0:
            return f
    f = float(ctx.market.expiry_forward(int(expiry_ns)))
    return f if math.isfinite(f) and f > 0 else usd


def book_legs(ctx, specs: Mapping, positions: Mapping[int, float], board, usd: float,
              flat_vol: float, groups: Mapping[int, int],
              entry: Mapping[int, float] | None = None) -> tuple[Legs, np.ndarray]:
    """:class:`Legs` of the open positions (expired options left out) and their instrument
    ids, in id order; ``groups`` maps an instrument to its isolation group, ``entry`` a
    delta-one position to its average entry price (missing: entered at the mark)."""
    m, now = ctx.market, ctx.now
    ids = np.array(sorted(i for i, q in positions.items()
                          if q != 0 and not (specs[i].is_option and specs[i].expiry_ns <= now)),
                   dtype=np.int64)
    n = ids.size
    units, fwd = np.zeros(n), np.zeros(n)
    strike, t, vol = np.full(n, np.nan), np.zeros(n), np.full(n, np.nan)
    call = np.zeros(n, bool)
    inverse = np.array([bool(specs[i].is_inverse) for i in ids.tolist()], dtype=bool)
    avg = np.array([float((entry or {}).get(i, math.nan)) for i in ids.tolist()])
    fwd_of: dict[int, float] = {}
    for j, i in enumerate(ids.tolist()):
        spec, q = specs[i], positions[i]
        if spec.is_option:
            t[j] = float(time_to_expiry(now, spec.expiry_ns))
            e = int(spec.expiry_ns)
            if e not in fwd_of:
                fwd_of[e] = option_forward(ctx, board, e, usd)
            fwd[j], strike[j], call[j] = fwd_of[e], spec.strike, bool(spec.is_call)
            units[j] = q * spec.contract_size
        else:
            px = float(m.reference_price(i))
            fwd[j] = px
            units[j] = q * spec.contract_size / px if spec.is_inverse else q * spec.contract_size
    opt = np.isfinite(strike)
    if opt.any():
        vol[opt] = _option_vols(ctx, specs, board, ids[opt], strike[opt], t[opt], fwd[opt],
                                call[opt], flat_vol)
    legs = make_legs(units, fwd, strike=strike, t=t, is_call=call, vol=vol,
                     group=np.array([groups[i] for i in ids.tolist()], dtype=np.int64),
                     inverse=inverse, entry=np.where(opt, np.nan, avg), spot=usd)
    return legs, ids


def _option_vols(ctx, specs, board, ids, strike, t, fwd, call, flat_vol) -> np.ndarray:
    surf = board.surface if board is not None else None
    vol = np.full(ids.size, np.nan)
    if surf is not None:
        with np.errstate(all="ignore"):
            # each option at its own expiry's fitted vol (sticky expiry, as the marker)
            expiry = np.array([specs[int(i)].expiry_ns for i in ids], dtype=np.int64)
            vol = np.asarray(surf.iv_expiry(strike, expiry), dtype=float).reshape(ids.size)
    m = ctx.market
    for j in np.flatnonzero(~(np.isfinite(vol) & (vol > 0))):
        i = int(ids[j])
        v = float(m.mark_iv[i])
        if not (math.isfinite(v) and v > 0):
            mid = float(m.mid(i))
            usd_mid = mid * fwd[j] if specs[i].is_inverse else mid
            v = float(implied_vol(usd_mid, fwd[j], strike[j], t[j], bool(call[j])))
        vol[j] = v if math.isfinite(v) and v > 0 else flat_vol
    return vol


def group_pnl(mark, groups: Mapping[int, int], n_groups: int, coin: bool = False
              ) -> np.ndarray:
    """USD PnL per group from a :class:`~replay.venue.accounting.PortfolioMark`, plus a last
    entry for fees and funding (module docstring); with ``coin`` (coin collateral), the
    coin PnL valued at the mark's coin price, as the collateral is."""
    out = np.zeros(n_groups + 1)
    usd = mark.usd_per_coin
    for i, p in mark.by_instrument.items():
        out[groups[i]] += (p.realized_coin + p.unrealized_coin) * usd if coin \
            else p.realized_usd + p.unrealized_usd
    out[-1] = (mark.funding_coin - mark.fees_coin) * usd if coin \
        else mark.funding_usd - mark.fees_usd
    return out
