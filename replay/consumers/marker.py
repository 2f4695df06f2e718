"""Marks and the per-step PnL attribution, as one consumer.

Every ``every_s`` of market time, at each held option's expiry instant, and at the end of the
run the marker

1. brings the venue's books up to now (:meth:`replay.venue.carry.Carry.catch_up`: funding
   accrued, expired options settled; the venue books both, the marker only asks);
2. marks every position at mid (options without a two-sided book at the surface price) and
   journals ``pnl`` (totals in USD and coin, as docs/outputs.md asks).  With ``mark="surface"``
   options are marked to the calibrated surface instead (mark-to-model, mid when no surface
   is published): quoted mids jump with spreads, ticks and stale books, and on a short book
   that noise, not hedging error, would dominate the step PnL a hedging study measures;
3. explains the step's USD PnL by a second-order Taylor expansion in the Black-76 greeks of
   the option positions held at the start of the step (Bennett, *Trading Volatility*, 2014,
   ch. 6; Taleb, *Dynamic Hedging*, 1997, for vanna/volga)::

       dV ~ delta dF + 1/2 gamma dF^2 + vega dsigma + theta dt + vanna dF dsigma
            + 1/2 volga dsigma^2

   in the coin's USD price ``S`` the portfolio values at, per option at its implied vol
   ``sigma`` (surface IV, sticky strike; the option's own mid IV when no surface is
   published) and its own expiry forward ``F = b S``, the basis ``b`` held over the step
   (the published surface's ``F(t) / S`` at its fit, else the venue's forward of the
   expiry, else 1).  A coin premium is ``Black(F) / F``, so an inverse option's USD value is
   ``V(S) = Black(b S) / b`` and its greeks in ``S`` are Black's at ``F`` with
   ``dV/dS = Delta_F``, ``d2V/dS2 = b Gamma_F``, ``d2V/dS dsigma = Vanna_F`` and vega,
   theta and volga divided by ``b`` (greeks at ``F = S`` left 7 % of a 90-day option's
   delta and gamma PnL in the residual at a 3 % basis); a linear option's USD premium is
   ``V(S) = Black(b S)`` itself, so ``dV/dS = b Delta_F``, ``d2V/dS2 = b^2 Gamma_F``,
   ``d2V/dS dsigma = b Vanna_F`` and vega, theta and volga are Black's.  The basis moves
   too, at each refit (a new fitted forward) or with the venue's forward: ``basis`` is its
   part of the same second-order expansion,

       dV/db db + d2V/dS db dS db + d2V/dsigma db dsigma db + 1/2 d2V/db2 db^2

   with, for an inverse option, ``dV/db = (F Delta_F - Black) / b^2``,
   ``d2V/dS db = F Gamma_F / b``, ``d2V/dsigma db = (F Vanna_F - Vega_F) / b^2`` and
   ``d2V/db2 = (F^2 Gamma_F - 2 F Delta_F + 2 Black) / b^3``, and for a linear one
   ``F Delta_F / b``, ``Delta_F + F Gamma_F``, ``F Vanna_F / b`` and ``(F / b)^2 Gamma_F``
   (``S`` held in the ``b`` derivatives; without the cross terms a refit's basis move left
   a term of the size of the gamma bucket in the residual).  The hedge's PnL is pure delta.
   Fees, funding and slippage (the fill-vs-mid cost journaled by the venue) are their own
   buckets, and ``residual`` is the step PnL minus everything explained, so the buckets
   sum to the total exactly.
"""

from __future__ import annotations

import math

import numpy as np

from calibration.pricing.black_one import GREEK_NAMES, greeks_one
from calibration.pricing.forwards import time_to_expiry
from calibration.pricing.iv import implied_vol
from replay.engine.wake import WakeCondition
from replay.model.events import EventKind, register_kind
from replay.units import NS
from replay.venue.simulator import venue_mark

YEAR_NS = 365.0 * 86400 * NS
#: the ``pnl`` block of metrics.json (docs/outputs.md)
PNL_KEYS = ("total_usd", "total_coin", "options_usd", "hedge_usd", "fees_usd",
            "funding_usd", "slippage_usd", "step_std_usd", "hedge_fees_usd", "hedge_slippage_usd")
BUCKETS = ("delta", "gamma", "vega", "theta", "vanna", "volga", "basis", "funding", "fees",
           "slippage", "residual")

#: the vega bucket split by how the smile moved (:func:`vega_split`)
VEGA_SPLIT = ("level", "skew", "curvature")

ATTRIBUTION = register_kind(EventKind("attribution", "attribution",
                                      tuple((b, "float") for b in BUCKETS) + (("total", "float"),)))


class PnLMarker:
    """Consumer that marks and attributes (see the module docstring)."""

    name = "pnl"

    def __init__(self, venue, board=None, every_s: float = 60.0, mark: str = "mid"):
        from replay.model.config import check_choice

        self.venue, self.board = venue, board
        self.mark_options = check_choice("report.pnl_mark", mark, ("mid", "surface"))
        self.every_ns = int(every_s * NS)
        self.prev: dict | None = None  # state at the last mark
        self.totals = dict.fromkeys(BUCKETS, 0.0)
        self.vega_split = dict.fromkeys(VEGA_SPLIT, 0.0)  # metrics only, not journaled

    def on_start(self, ctx) -> WakeCondition:
        # the zero state before anything is held: the first step then explains the first PnL
        self.prev = {"ts": ctx.now, "total": 0.0, "hedge": 0.0, "fees": 0.0, "funding": 0.0,
                     "slippage": 0.0, "hedge_slippage": 0.0, "opt": {}}
        return self._next(ctx, (ctx.now // self.every_ns + 1) * self.every_ns)

    def on_wake(self, ctx) -> WakeCondition:
        self.mark(ctx)
        return self._next(ctx, (ctx.now // self.every_ns + 1) * self.every_ns)  # grid stays anchored

    def _next(self, ctx, grid: int) -> WakeCondition:
        """The next grid time, or an earlier expiry of a held option (marked right after the
        venue settles it)."""
        return WakeCondition(deadline=min([grid, *self.venue.carry.held_expiries(ctx.now)]))

    def on_finish(self, ctx) -> None:
        self.mark(ctx)

    # -- the work -----------------------------------------------------------------------
    def mark(self, ctx) -> None:
        pf, m = self.venue.portfolio, ctx.market
        self.venue.carry.catch_up(ctx)
        ids = sorted(pf.net_qty())
        prices = {i: self._price(ctx, i) for i in ids}
        usd = coin_usd(m)
        if not math.isfinite(usd) or any(not math.isfinite(p) for p in prices.values()):
            return  # nothing sensible to mark yet (no underlying seen)
        mk = pf.mark(prices, usd)
        ctx.emit("pnl", total_usd=mk.total_usd, total_coin=mk.total_coin,
                 options_usd=mk.options_usd, hedge_usd=mk.hedge_usd,
                 fees_usd=-mk.fees_usd, funding_usd=mk.funding_usd)
        now_state = self._state(ctx, ids, mk)
        if self.prev is not None:
            self._attribute(ctx, self.prev, now_state)
        self.prev = now_state

    def _price(self, ctx, iid: int) -> float:
        return mark_price(ctx, self.venue.specs[iid], iid, self.board, self.mark_options)

    def _state(self, ctx, ids: list[int], mk) -> dict:
        """What the next step's explain needs: per option (F, sigma, t, greeks, the smile's
        shape at its maturity) and totals.  The surface is read once for all the options."""
        m, specs = ctx.market, self.venue.specs
        opts = [i for i in ids if specs[i].is_option]
        st = {"ts": ctx.now, "total": mk.total_usd, "hedge": mk.hedge_usd,
              "fees": -mk.fees_usd, "funding": mk.funding_usd,
              "slippage": -sum(self.venue.slippage_usd.values()),
              "hedge_slippage": -self.venue.slippage_usd["hedge"], "opt": {}}
        if not opts:
            return st
        strike = np.array([float(specs[i].strike) for i in opts])
        expiry = np.array([specs[i].expiry_ns for i in opts], dtype=np.int64)
        t = time_to_expiry(ctx.now, expiry)
        sigma, atm, skew, fwd = np.full((4, len(opts)), math.nan)
        surf = self.board.surface if self.board is not None else None
        live = t > 0
        if surf is not None and live.any():
            # the published smile of the option's expiry, as fitted (Surface.at_expiries):
            # the forward, the option's vol, the ATM vol and skew d sigma / dk
            _, fwd[live], sigma[live], atm[live], skew[live] = surf.at_expiries(
                strike[live], expiry[live]).T
        net = self.venue.portfolio.net_qty()
        fit_spot = self.board.spot if surf is not None else math.nan
        f = coin_usd(m)
        for j, i in enumerate(opts):
            spec, tj, sg = specs[i], float(t[j]), float(sigma[j])
            b = _basis(float(fwd[j]) / fit_spot, float(m.venue_forward[i]) / f)
            if not math.isfinite(sg):  # a coin premium is Black(F) / F: invert it at F
                black = float(m.mid(i)) * (b * f if spec.is_inverse else 1.0)
                sg = float(np.asarray(implied_vol(black, b * f, spec.strike, tj,
                                                  spec.is_call)))
            g = _greeks_in_spot(greeks_one(b * f, float(spec.strike), tj, sg,
                                           bool(spec.is_call)), b, spec.is_inverse, b * f) \
                if tj > 0 and math.isfinite(sg) else None
            st["opt"][i] = {"F": f, "b": b, "sigma": sg, "t": tj,
                            "n": net.get(i, 0.0) * spec.contract_size, "g": g,
                            "atm": float(atm[j]), "skew": float(skew[j]),
                            "k": math.log(spec.strike / fwd[j]) if live[j] else math.nan}
        return st

    def _attribute(self, ctx, a: dict, b: dict) -> None:
        out = attribute_step(a, b, coin_usd(ctx.market))
        for k in BUCKETS:
            self.totals[k] += out[k]
        for k, v in vega_split(a, b).items():
            self.vega_split[k] += v
        ctx.emit("attribution", total=b["total"] - a["total"], **out)

    def state_dict(self) -> dict:
        return {"prev": self.prev, "totals": self.totals, "vega_split": self.vega_split}

    def load_state_dict(self, d: dict) -> None:
        self.prev, self.totals = d["prev"], dict(d["totals"])
        self.vega_split = dict(d.get("vega_split") or dict.fromkeys(VEGA_SPLIT, 0.0))


def attribute_step(a: dict, b: dict, level: float) -> dict[str, float]:
    """One step's USD PnL explained by the second-order Taylor expansion of the module
    docstring: ``a`` and ``b`` are the marker's states at the step's start and end (per option
    ``F``, ``sigma``, ``t``, units held ``n`` and greeks; totals), ``level`` the underlying
    level now (:func:`coin_usd`), for an option held at ``a`` but gone at ``b`` (expired,
    closed).
    Returns the buckets of :data:`BUCKETS`; ``residual`` makes them sum to the total.

    >>> s = {"ts": 0, "total": 0.0, "hedge": 0.0, "hedge_slippage": 0.0, "fees": 0.0,
    ...      "funding": 0.0, "slippage": 0.0, "opt": {}}
    >>> attribute_step(s, {**s, "ts": 60 * NS, "total": 5.0, "hedge": 5.0}, 1e5)["delta"]
    5.0
    """
    out = dict.fromkeys(BUCKETS, 0.0)
    dt = (b["ts"] - a["ts"]) / YEAR_NS
    for i, o in a["opt"].items():
        g = o["g"]
        if g is None:
            continue
        o1 = b["opt"].get(i)
        f1 = o1["F"] if o1 else level
        s1 = o1["sigma"] if o1 else o["sigma"]
        dF = f1 - o["F"]
        ds = s1 - o["sigma"] if math.isfinite(s1) else 0.0
        n = o["n"]
        db = (o1["b"] if o1 else o["b"]) - o["b"]
        out["basis"] += n * (g["basis"] + g["basis_spot"] * dF + g["basis_vol"] * ds
                             + 0.5 * g["basis2"] * db) * db
        out["delta"] += n * g["delta"] * dF
        out["gamma"] += n * 0.5 * g["gamma"] * dF * dF
        out["vega"] += n * g["vega"] * ds
        out["theta"] += n * g["theta"] * dt
        out["vanna"] += n * g["vanna"] * dF * ds
        out["volga"] += n * 0.5 * g["volga"] * ds * ds
    # The hedge's mark-to-mid PnL already contains its spread cost, which the slippage
    # bucket reports; add it back so that it is counted once.
    out["delta"] += (b["hedge"] - a["hedge"]) - (b["hedge_slippage"] - a["hedge_slippage"])
    for k in ("fees", "funding", "slippage"):
        out[k] = b[k] - a[k]
    total = b["total"] - a["total"]
    out = {k: (v if math.isfinite(v) else 0.0) for k, v in out.items()}
    out["residual"] = total - sum(v for k, v in out.items() if k != "residual")
    return out


def coin_usd(m) -> float:
    """The coin's USD price the portfolio is valued at, the one the venue books fills at
    (``MarketView.spot``); NaN before any.  It is also the underlying level the
    explain expands in, so that the Taylor terms describe the same valuation as the PnL; the
    basis to each expiry's forward is held fixed over a step (venue forwards on slowly
    updated wing quotes lag the underlying, and expanding in them leaves a larger
    residual)."""
    return float(m.spot())


def mark_price(ctx, spec, iid: int, board=None, mode: str = "mid") -> float:
    """The price instrument ``iid`` is marked at (the portfolio's price currency): its mid; an
    option at the published surface's price when ``mode="surface"`` or when it has no
    two-sided book, else (no surface: ``calibration=none``) at the venue's own mark
    (:func:`replay.venue.simulator.venue_mark`: Black-76 at its mark IV); else the reference
    price (``MarketView.reference_price``).  Without the venue's mark, an option held while
    its book was one-sided had no price, and every mark of the run was dropped.

    The surface price is the explain's valuation (module docstring): Black-76 at the
    surface's vol of the strike and at ``F = b S``, the surface's forward moved with the
    coin's price since the fit, in coin (``/ F``) for an inverse option.  Priced at the fit's
    own forward, the coin premium stood still while the coin moved between refits, and the
    step PnL carried a move the greeks did not explain."""
    m = ctx.market
    model = spec.is_option and board is not None and board.surface is not None
    mid = float(m.mid(iid))
    if model and (mode == "surface" or not math.isfinite(mid)):
        surf, t = board.surface, float(time_to_expiry(ctx.now, spec.expiry_ns))
        move = coin_usd(m) / board.spot  # NaN without a fit spot: the fit's forward
        f = float(surf.forward_expiry(spec.expiry_ns)) * (
            move if math.isfinite(move) and move > 0 else 1.0)
        vol = float(surf.iv_expiry(np.array([spec.strike]), np.array([spec.expiry_ns]))[0])
        px = greeks_one(f, float(spec.strike), t, vol, bool(spec.is_call))[0]
        px = px / f if spec.is_inverse else px
        if math.isfinite(px):
            return px
    if math.isfinite(mid):
        return mid
    if spec.is_option:
        px = venue_mark(spec, iid, m)
        if math.isfinite(px):
            return px
    return float(m.reference_price(iid))


def vega_split(a: dict, b: dict) -> dict[str, float]:
    """The step's vega bucket, ``sum n vega (sigma_1 - sigma_0)`` over the options held at
    the start, split by how each expiry's smile moved: with ``sigma_ATM`` and the ATM skew
    ``S = d sigma / dk`` of the published surface at the option's maturity and ``k`` its
    log-moneyness at the start,

        level = n vega (sigma_ATM,1 - sigma_ATM,0)            (a parallel shift)
        skew  = n vega (S_1 - S_0) k                          (a rotation about the money)
        curvature = n vega (sigma_1 - sigma_0) - level - skew  (convexity and the rest)

    so the three sum to the vega bucket exactly.  Without a surface at either end the whole
    move counts as level.

    >>> g = {"vega": 100.0}
    >>> o0 = {"n": 1.0, "g": g, "sigma": 0.50, "atm": 0.48, "skew": -0.2, "k": 0.1}
    >>> o1 = {"sigma": 0.52, "atm": 0.49, "skew": -0.1}
    >>> {k: round(v, 6) for k, v in vega_split({"opt": {1: o0}}, {"opt": {1: o1}}).items()}
    {'level': 1.0, 'skew': 1.0, 'curvature': 0.0}
    """
    out = dict.fromkeys(VEGA_SPLIT, 0.0)
    for i, o in a["opt"].items():
        g = o["g"]
        o1 = b["opt"].get(i)
        if g is None or o1 is None or not math.isfinite(o1["sigma"]):
            continue
        nv = o["n"] * g["vega"]
        total = nv * (o1["sigma"] - o["sigma"])
        shape = [o.get(k, math.nan) for k in ("atm", "skew", "k")] + \
            [o1.get(k, math.nan) for k in ("atm", "skew")]
        if not all(math.isfinite(x) for x in shape):
            out["level"] += total
            continue
        atm0, skew0, k0, atm1, skew1 = shape
        level, skew = nv * (atm1 - atm0), nv * (skew1 - skew0) * k0
        out["level"] += level
        out["skew"] += skew
        out["curvature"] += total - level - skew
    return out


def _basis(*candidates: float) -> float:
    """The first finite positive ratio of an option's forward to the coin's price, else 1."""
    return next((b for b in candidates if math.isfinite(b) and b > 0), 1.0)


def _greeks_in_spot(black: tuple, b: float, inverse: bool = True, forward: float = math.nan
                    ) -> dict[str, float]:
    """The greeks in ``S`` of ``V(S) = Black(b S) / b`` (an inverse option), or of
    ``V(S) = Black(b S)`` (a linear one), from Black's at ``F = b S`` (``forward``), and
    those in the basis ``b`` at ``S`` held (module docstring): ``basis`` ``dV/db``,
    ``basis_spot`` ``d2V/dS db``, ``basis_vol`` ``d2V/dsigma db`` and ``basis2``
    ``d2V/db2``."""
    g = dict(zip(GREEK_NAMES, black))
    f = forward
    f_delta, f2_gamma, f_vanna = g["delta"] * f, g["gamma"] * f * f, g["vanna"] * f
    if not inverse:
        return {**g, "delta": g["delta"] * b, "gamma": g["gamma"] * b * b,
                "vanna": g["vanna"] * b, "basis": f_delta / b,
                "basis_spot": g["delta"] + g["gamma"] * f, "basis_vol": f_vanna / b,
                "basis2": f2_gamma / (b * b)}
    return {"price": g["price"] / b, "delta": g["delta"], "gamma": g["gamma"] * b,
            "vega": g["vega"] / b, "theta": g["theta"] / b, "vanna": g["vanna"],
            "volga": g["volga"] / b, "basis": (f_delta - g["price"]) / (b * b),
            "basis_spot": g["gamma"] * f / b, "basis_vol": (f_vanna - g["vega"]) / (b * b),
            "basis2": (f2_gamma - 2.0 * f_delta + 2.0 * g["price"]) / (b * b * b)}

