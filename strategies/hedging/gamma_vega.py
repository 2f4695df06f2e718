"""``gamma_vega``: neutralise the book's gamma and vega with two listed options, then hedge the
remaining delta with the hedge instrument, on a periodic schedule."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from replay.model.config import check_choice
from strategies.greeks import NS_PER_YEAR, BookLegs, expiry_forward, leg_vols
from strategies.hedging.bands import gamma_vega_neutralise
from strategies.hedging.delta import Periodic
from strategies.listed import choose_expiry, expiry_days, nearest_strike, options_at


class GammaVega(Periodic):
    """Gamma-vega neutral hedging with two listed options, then delta hedging.

    At each period: with ``Gamma_p``, ``Vega_p`` the book's gamma and vega (every option held,
    including the hedge options bought so far) and ``g_j``, ``v_j`` those of one contract of
    hedge option ``j``, buy ``(q1, q2)`` solving

        ``[[g1, g2], [v1, v2]] @ [q1, q2] = [-Gamma_p, -Vega_p]``

    (:func:`strategies.hedging.bands.gamma_vega_neutralise`; J. Hull, *Options, Futures and
    Other Derivatives*, ch. 19), then trade the hedge instrument to the delta of the book plus
    those options.  The hedge options are, per ``expiry_1`` and ``expiry_2``
    (``nearest``/``nearest_monthly``/days), the strike nearest the forward of that expiry:
    the call, the put, or the out-of-the-money one (``right: call|put|otm``).  They are chosen
    once and re-chosen when one expires within ``roll_ns``.  Option orders smaller than
    ``option_min_trade`` contracts are not sent.  Under Black-76 an option's gamma/vega ratio
    is ``1 / (F^2 sigma t)`` whatever the strike, so the two expiries must differ: when the
    system is (nearly) singular no option is traded and only the delta is hedged.
    """

    kind = "gamma_vega"

    def __init__(self, expiry_1: Any = "nearest", expiry_2: Any = 30, right: str = "otm",
                 option_min_trade: float = 0.1, roll_ns: int = 3600 * 10**9, **periodic: Any):
        super().__init__(**periodic)
        self.expiry_1, self.expiry_2 = expiry_1, expiry_2
        expiry_days("strategy.expiry_1", expiry_1)
        expiry_days("strategy.expiry_2", expiry_2)
        self.right = check_choice("strategy.right", right, ("call", "put", "otm"))
        self.option_min_trade = float(option_min_trade)
        self.roll_ns = int(roll_ns)
        self.hedge_options: tuple[int, int] | None = None

    def _pick(self, ctx: Any, spec: Any, key: str, spot: float, exclude: int = -1) -> int:
        inst = ctx.instruments
        e = choose_expiry(inst, ctx.now, spec, self.underlying, min_ns=self.roll_ns, key=key)
        fwd = expiry_forward(ctx, e, spot, self.board)
        calls, puts = (options_at(inst, e, True, ctx.now, self.underlying),
                       options_at(inst, e, False, ctx.now, self.underlying))
        if self.right == "otm":
            # the listed strike nearest the forward, then its out-of-the-money side
            both = np.concatenate([calls, puts])
            k = float(inst.strike[nearest_strike(inst, both, fwd)])
            is_call = k >= fwd
        else:
            is_call = self.right == "call"
        ids = calls if is_call else puts
        ids = ids[ids != exclude]
        return nearest_strike(inst, ids, fwd)

    def choose(self, ctx: Any, spot: float) -> tuple[int, int]:
        o1 = self._pick(ctx, self.expiry_1, "strategy.expiry_1", spot)
        o2 = self._pick(ctx, self.expiry_2, "strategy.expiry_2", spot, exclude=o1)
        return o1, o2

    def option_trades(self, ctx: Any, legs: BookLegs) -> dict[int, float]:
        inst, now, spot = ctx.instruments, ctx.now, legs.spot
        if (self.hedge_options is None
                or min(inst.expiry_ns[list(self.hedge_options)]) <= now + self.roll_ns):
            self.hedge_options = self.choose(ctx, spot)
        ids = np.array(self.hedge_options, dtype=np.int64)
        port = legs.greeks()
        strike = inst.strike[ids].astype(np.float64)
        t = (inst.expiry_ns[ids] - now).astype(np.float64) / NS_PER_YEAR
        fwd = np.array([expiry_forward(ctx, int(inst.expiry_ns[i]), spot, self.board, int(i))
                        for i in ids])
        # the book's own vol rule (Hedger.legs), so that both sides' greeks agree
        v = self.forecast_vol()
        vols = leg_vols(self.board, strike, inst.expiry_ns[ids], self.vol_source,
                        self.flat_vol) if v is None \
            else np.full(len(ids), v)
        one = BookLegs(ids, inst.contract_size[ids].astype(np.float64), strike, t, vols,
                       inst.is_call[ids] == 1, fwd / spot, spot,
                       self.delta_source == "premium_adjusted",
                       inverse=inst.settlement[ids] == "inverse")
        g = one.per_unit()
        gam = one.weights(2) * g["gamma"]
        veg = one.weights(0) * g["vega"]
        try:
            q1, q2 = gamma_vega_neutralise(port.gamma, port.vega, gam[0], veg[0], gam[1], veg[1])
        except ValueError:
            return {}
        out = {}
        for iid, q in zip(ids.tolist(), (q1, q2)):
            if math.isfinite(q) and abs(q) >= self.option_min_trade:
                out[int(iid)] = float(q)
        return out

    def state_dict(self) -> dict:
        return {**super().state_dict(), "hedge_options": self.hedge_options}

    def load_state_dict(self, d: dict) -> None:
        super().load_state_dict(d)
        self.hedge_options = None if d["hedge_options"] is None else tuple(d["hedge_options"])
