"""Perpetual funding, accrued at the rates stored in the market store's ``funding`` table.

Sign convention (the venues' and :mod:`replay.model.schema`'s): a positive rate means **longs pay
shorts**.  Amounts returned here are cash *received* by the position holder, so a long position
with a positive rate gets a negative amount.

For ``q`` contracts (signed, + long) of contract size ``cs``, mark price ``M``, a rate ``r``
quoted per funding interval of ``I`` seconds, accrued over ``dt`` seconds::

    linear perp (USD):   payment = -q * cs * M * r * dt / I
    inverse perp (coin): payment = -q * cs / M * r * dt / I     (cs in USD, so q*cs/M is coin)

i.e. the rate applies to the position's notional in its settlement currency.  Deribit accrues
continuously (:func:`accrue`, piecewise constant between stored rate updates); Binance pays the
full interval at each funding time (:func:`discrete_payments`).  The simulated venue accrues
every perpetual continuously (:mod:`replay.venue.carry`), Deribit's way: on a Binance
perpetual a position held across a funding time for less than an interval pays that share of
the interval's rate, not all of it (the same over whole intervals).  References: Deribit and
Binance perpetual funding documentation; the inverse notional as in
:mod:`replay.venue.accounting`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from replay.model.orders import InstrumentSpec
from replay.units import NS


def notional_settlement(spec: InstrumentSpec, qty: float, mark_price: ArrayLike) -> ArrayLike:
    """Signed position notional in settlement currency: coin for inverse, USD for linear."""
    if spec.kind not in ("perp", "future"):
        raise ValueError(f"funding applies to perpetuals, not {spec.kind!r}")
    if spec.is_inverse:
        return qty * spec.contract_size / mark_price
    return qty * spec.contract_size * mark_price


def funding_payment(spec: InstrumentSpec, qty: float, mark_price: float, rate: float,
                    interval_s: float, dt_s: float) -> float:
    """Cash received over ``dt_s``: ``-notional * rate * dt_s / interval_s`` (see module doc)."""
    if not interval_s > 0:
        raise ValueError("interval_s must be positive")
    if qty == 0 or rate == 0 or dt_s == 0:
        return 0.0
    return -notional_settlement(spec, qty, mark_price) * rate * dt_s / interval_s


def index_payment(spec: InstrumentSpec, qty: float, mark_price: float, accrued: float) -> float:
    """Cash received for a change ``accrued`` of the funding index (the rates in force
    accrued over the time, ``sum r dt / interval``:
    :func:`replay.engine.state.accrued_rate`): ``-notional * accrued``, which is
    :func:`funding_payment` summed over the index's constant-rate pieces at one mark."""
    if qty == 0 or accrued == 0:
        return 0.0
    return -notional_settlement(spec, qty, mark_price) * accrued


def accrue(spec: InstrumentSpec, qty: float, t0_ns: int, t1_ns: int, rate_ts: ArrayLike,
           rates: ArrayLike, interval_s: ArrayLike, marks: ArrayLike,
           fallback_mark: float = math.nan) -> float:
    """Continuous accrual over ``[t0_ns, t1_ns)`` for a constant position ``qty``.

    The stored record ``i`` (time ``rate_ts[i]``, sorted ascending) sets the rate, interval and
    mark in force from ``rate_ts[i]`` until the next record.  Before the first record nothing
    accrues.  A NaN mark in a record falls back to ``fallback_mark``.
    """
    notional_settlement(spec, 0.0, 1.0)  # validates the instrument kind
    if t1_ns <= t0_ns or qty == 0:
        return 0.0
    ts = np.asarray(rate_ts, dtype=np.int64)
    if ts.size == 0:
        return 0.0
    r = np.asarray(rates, dtype=np.float64)
    iv = np.broadcast_to(np.asarray(interval_s, dtype=np.float64), ts.shape)
    m = np.broadcast_to(np.asarray(marks, dtype=np.float64), ts.shape)
    m = np.where(np.isfinite(m), m, fallback_mark)
    # segment i covers [max(ts[i], t0), min(ts[i+1], t1)); the record in force at t0 comes first
    first = max(int(np.searchsorted(ts, t0_ns, side="right")) - 1, 0)
    last = int(np.searchsorted(ts, t1_ns, side="left"))
    seg_ts = ts[first:last]
    if seg_ts.size == 0:
        return 0.0
    starts = np.maximum(seg_ts, t0_ns)
    ends = np.minimum(np.append(seg_ts[1:], t1_ns), t1_ns)
    dt_s = np.maximum(ends - starts, 0).astype(np.float64) / NS
    sl = slice(first, last)
    notional = notional_settlement(spec, qty, m[sl])
    return float(np.sum(-notional * r[sl] * dt_s / iv[sl]))


def discrete_payments(spec: InstrumentSpec, qty: float, t0_ns: int, t1_ns: int,
                      funding_ts: ArrayLike, rates: ArrayLike, marks: ArrayLike
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Full-interval payments at each funding time in ``(t0_ns, t1_ns]`` (Binance style).

    Returns ``(times, amounts)``; each amount is ``-notional(mark) * rate``.
    """
    ts = np.asarray(funding_ts, dtype=np.int64)
    r = np.asarray(rates, dtype=np.float64)
    m = np.broadcast_to(np.asarray(marks, dtype=np.float64), ts.shape)
    sel = (ts > t0_ns) & (ts <= t1_ns)
    notional = notional_settlement(spec, qty, m[sel])
    return ts[sel], -notional * r[sel]
