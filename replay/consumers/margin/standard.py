"""Standard (per-position) margin, Deribit style: initial and maintenance requirement of each leg.

Per unit of underlying, with ``S`` the leg's underlying price (its expiry forward), ``mark``
the option's value in USD and ``mark_c = mark / S`` the same in coin (Deribit quotes inverse
options in coin and states its formulas in coin; here both sides are multiplied by ``S``):

* **short call**::

      IM = max(0.15 - OTM / S, 0.10) S + mark        OTM = max(K - S, 0)
      MM = 0.075 S + mark

* **short put**::

      MM = max(0.075, 0.075 mark_c) S + mark
      IM = max(max(0.15 - OTM / S, 0.10) S + mark, MM)   OTM = max(S - K, 0)

* **long option**: the premium only, ``IM = MM = mark``: the option's value backs the option
  and nothing else (the premium was paid in full, and the long option's value is not
  collateral for other positions);
* **futures and perpetuals**: ``IM = im_rate |units| S`` and ``MM = mm_rate |units| S``.

A position of ``units`` (negative: short) needs ``|units|`` times these.

Source: Deribit's published margin formulas for BTC options (knowledge base, "Margin
calculations", standard margin; 0.15 / 0.10 / 0.075 are the rates shown there).  The
futures rates default to Deribit's base rates for BTC futures, 2 % initial and 1 %
maintenance; the venue raises them with position size, which is left out here.  All rates
are config (:class:`StandardParams`); check the venue's current figures before relying on
them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from replay.consumers.margin.legs import Legs


@dataclass(frozen=True)
class StandardParams:
    """The rates of the module docstring (fractions of the underlying price)."""

    im_base: float = 0.15  # short options: initial rate before the OTM reduction
    im_min: float = 0.10  # short options: initial rate floor
    mm_rate: float = 0.075  # short options: maintenance rate
    future_im: float = 0.02
    future_mm: float = 0.01


def standard_margin(legs: Legs, p: StandardParams = StandardParams()
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Initial and maintenance margin of each leg, USD (module docstring).

    >>> from replay.consumers.margin.legs import make_legs
    >>> legs = make_legs([-1.0], [50_000.0], strike=[60_000.0], t=[0.1], is_call=[True],
    ...                  mark=[1_000.0])
    >>> im, mm = standard_margin(legs)
    >>> float(im[0]), float(mm[0])        # max(0.15 - 10000/50000, 0.1) S + mark; 0.075 S + mark
    (6000.0, 4750.0)
    """
    s, k, mark = legs.forward, legs.strike, legs.mark
    n = np.abs(legs.units)
    with np.errstate(invalid="ignore"):
        otm = np.where(legs.is_call, np.maximum(k - s, 0.0), np.maximum(s - k, 0.0))
        im_short = np.maximum(p.im_base - otm / s, p.im_min) * s + mark
        mm_call = p.mm_rate * s + mark
        mm_put = np.maximum(p.mm_rate, p.mm_rate * mark / s) * s + mark
    mm_short = np.where(legs.is_call, mm_call, mm_put)
    im_short = np.where(legs.is_call, im_short, np.maximum(im_short, mm_put))
    short = legs.units < 0
    im_opt = np.where(short, im_short, mark)
    mm_opt = np.where(short, mm_short, mark)
    im = np.where(legs.is_option, im_opt, p.future_im * s)
    mm = np.where(legs.is_option, mm_opt, p.future_mm * s)
    return n * im, n * mm
