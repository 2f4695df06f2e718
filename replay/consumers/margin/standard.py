"""Standard (per-position) margin, Deribit style: initial and maintenance requirement of each leg.

Per unit of underlying, with ``F`` the leg's underlying price (its expiry forward),
``mark`` its Black-76 value at ``F`` in USD and ``mark_c = mark / F`` the same in coin (the
coin premium of an inverse option).  Deribit states its formulas in coin, for a
coin-margined (inverse) contract:

* **short call**::

      IM_c = max(0.15 - OTM / F, 0.10) + mark_c        OTM = max(K - F, 0)
      MM_c = 0.075 + mark_c

* **short put**::

      MM_c = max(0.075, 0.075 mark_c) + mark_c
      IM_c = max(max(0.15 - OTM / F, 0.10) + mark_c, MM_c)   OTM = max(F - K, 0)

* **long option**: the premium only, ``IM_c = MM_c = mark_c``: the option's value backs the
  option and nothing else (the premium was paid in full, and the long option's value is not
  collateral for other positions);
* **futures and perpetuals**: ``IM_c = im_rate`` and ``MM_c = mm_rate`` per coin of notional
  at the mark (an inverse position's ``|units| = |q| cs / M``).

In USD, an inverse leg's coin amount is converted at the coin's price ``S`` (``spot``, as the
venue's ledger converts it), ``IM = IM_c S``: for an option the rates times ``S`` plus its USD
value ``mark / b`` (``b = F / S``).  A linear (USD-settled) leg applies the same formulas with
the rates times ``F`` and its USD value ``mark`` (``IM = IM_c F``; futures: rate x
``|units| M``).  A position of ``units`` (negative: short) needs ``|units|`` times these.

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
    # the formulas below are the coin ones times F; an inverse leg's coin is worth S, not F
    n = np.abs(legs.units) * np.where(legs.inverse, legs.spot / s, 1.0)
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
