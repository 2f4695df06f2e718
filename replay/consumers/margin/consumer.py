"""The margin consumer: requirement, margin calls and liquidation over the replay.

Every ``every_s`` of market time, right after each fill the venue books, and at the end, it

1. brings the venue's books up to now (funding, expiry settlement: ``Carry.catch_up``);
2. values the account: equity = initial equity (``venue.initial_equity``; in coin it is
   revalued at the coin's USD price now) + the portfolio's PnL at the marker's prices;
3. computes the requirement of the configured model (``standard``: per position, or
   ``portfolio``: the risk-based scenarios) for the whole book (cross) and per isolation group
   (isolated), with any rule's parameters in force (:mod:`~replay.consumers.margin.rules`),
   and the free collateral of each mode (:mod:`~replay.consumers.margin.legs`);
4. journals a ``margin`` row;
5. in the configured ``mode``, when the free collateral over maintenance is negative it
   journals ``margin_call`` (once per episode).  When the call lasts ``grace_s`` of market time,
   or equity falls below ``liquidation_ratio`` x maintenance, the venue liquidates: the
   positions whose closing lowers the maintenance requirement most are closed one by one
   (whole positions, greedy) until the book's projected maintenance is covered, with market
   orders through the venue's normal fill path (the venue charges ``venue.liquidation_fee``
   on them).  Each is journaled as ``liquidation``.  Liquidated positions are gone from the
   venue's books, which is where every consumer reads its positions.

The breach statistics are computed after the run from the ``margin`` table
(:mod:`replay.analytics.breach`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from replay.consumers.margin.book import (
    ISOLATE_BY,
    book_legs,
    group_index,
    group_pnl,
    spot_move_since_fit,
    years_since_fit,
)
from replay.consumers.margin.legs import Legs, free_collateral, group_sum
from replay.consumers.margin.portfolio import (
    DYNAMICS,
    PMParams,
    portfolio_margin,
    surface_vol_after_move,
)
from replay.consumers.margin.standard import StandardParams, standard_margin
from replay.consumers.marker import coin_usd, mark_price
from replay.engine.wake import WakeCondition
from replay.errors import ConfigError
from replay.model.events import EventKind, register_kind
from replay.units import NS

MODELS = ("standard", "portfolio")
MODES = ("cross", "isolated")
WORST_N = 3

MARGIN = register_kind(EventKind("margin", "margin", (
    ("model", "str"), ("mode", "str"), ("reason", "str"), ("legs", "int"),
    ("initial_usd", "float"), ("maintenance_usd", "float"), ("equity_usd", "float"),
    ("usd_per_coin", "float"), ("initial_isolated_usd", "float"), ("maintenance_isolated_usd", "float"),
    ("free_cross_usd", "float"), ("free_isolated_usd", "float"),
    ("equity_over_mm", "float"), ("worst_scenario", "str"),  # binding (portfolio)
    *[(f"{c}_{n}", t) for n in range(1, WORST_N + 1)
      for c, t in (("scenario", "str"), ("pnl_usd", "float"))],
    ("params", "str"))))
MARGIN_CALL = register_kind(EventKind("margin_call", "margin_calls", (
    ("equity_usd", "float"), ("maintenance_usd", "float"), ("free_usd", "float"))))
LIQUIDATION = register_kind(EventKind("liquidation", "liquidations", (
    ("instrument_id", "int"), ("qty", "float"), ("equity_usd", "float"),
    ("maintenance_before_usd", "float"), ("maintenance_after_usd", "float"))))


@dataclass(frozen=True)
class Account:
    """One evaluation's view of the account: initial equity now (USD), PnL per isolation group
    (the last entry: fees and funding), equity, the open legs and their instrument ids, the
    number of groups and a rule's parameters in force."""

    e0: float
    pnl: np.ndarray
    equity: float
    legs: Legs
    ids: np.ndarray
    n_groups: int
    params: dict[str, float]
    moved: float  # the spot's move since the published surface's fit (book.spot_move_since_fit)
    since_fit: float  # years since that fit (book.years_since_fit)
    coin: bool = False  # coin collateral (venue.equity_currency): losses as coin x today's S


def _params(cls: type, key: str, values: dict | None) -> Any:
    names = {f.name for f in fields(cls)}
    values = dict(values or {})
    bad = [k for k in values if k not in names]
    if bad:
        raise ConfigError(f"margin.{key}.{bad[0]}: unknown key; allowed keys: "
                          f"{', '.join(sorted(names))}")
    if "extended_moves" in values:
        values["extended_moves"] = tuple(float(x) for x in values["extended_moves"])
    return cls(**values)


class MarginConsumer:
    """``margin=standard|portfolio`` (module docstring; keys in docs/outputs.md)."""

    name = "margin"

    def __init__(self, model: str = "standard", mode: str = "cross",
                 isolate_by: str = "position", every_s: float = 60.0, grace_s: float = 300.0,
                 liquidation_ratio: float = 0.8, liquidate: bool = True,
                 flat_vol: float = 0.6, breach_horizon_s: float = 3600.0,
                 breach_p: float = 0.01, standard: dict | None = None,
                 portfolio: dict | None = None, rule: Any = None, venue: Any = None,
                 board: Any = None, forecasts: Any = None) -> None:
        from replay.model.config import check_choice

        self.model = check_choice("margin.model", model, MODELS)
        self.mode = check_choice("margin.mode", mode, MODES)
        self.isolate_by = check_choice("margin.isolate_by", isolate_by, ISOLATE_BY)
        self.every_ns = int(every_s * NS)
        self.grace_ns = int(grace_s * NS)
        self.liquidation_ratio, self.liquidate = float(liquidation_ratio), bool(liquidate)
        self.flat_vol = float(flat_vol)
        self.breach_horizon_s, self.breach_p = float(breach_horizon_s), float(breach_p)
        self.standard = _params(StandardParams, "standard", standard)
        self.portfolio = _params(PMParams, "portfolio", portfolio)
        check_choice("margin.portfolio.dynamics", self.portfolio.dynamics, DYNAMICS)
        if rule is not None and not callable(getattr(rule, "params", None)):
            raise ConfigError("margin.rule: needs a _target_ whose object has "
                              "params(ctx, surface, forecasts)")
        self.rule = rule
        if venue is None:
            raise ConfigError("margin: needs the run's venue")
        self.venue, self.board, self.forecasts = venue, board, forecasts
        venue.fill_listeners.append(self._after_fill)
        self.call_since: int | None = None  # market time the current margin call began
        self.pending_until: int | None = None  # liquidation orders in flight until then
        self.counts = {"margin_calls": 0, "liquidations": 0}
        self.after_fill = False  # the next wake is the one a fill asked for

    # -- wakes ----------------------------------------------------------------------------
    def on_start(self, ctx) -> WakeCondition:
        return WakeCondition(deadline=self._grid(ctx.now))

    def on_wake(self, ctx) -> WakeCondition:
        self.evaluate(ctx, "fill" if self.after_fill else ctx.reason)
        self.after_fill = False
        return WakeCondition(deadline=self._next(ctx.now))

    def on_finish(self, ctx) -> None:
        self.evaluate(ctx, "finish")

    def _grid(self, now: int) -> int:
        return (now // self.every_ns + 1) * self.every_ns

    def _next(self, now: int) -> int:
        due = [self._grid(now)]
        if self.call_since is not None and self.grace_ns:
            due.append(self.call_since + self.grace_ns)
        if self.pending_until is not None:
            due.append(self.pending_until + 1)
        return min(d for d in due if d > now)

    def _after_fill(self, vctx) -> None:
        """The venue booked a fill: evaluate right after it (1 ns later, so after the fill's
        own instant's events)."""
        self.after_fill = True
        vctx.set_wake(self.name, WakeCondition(deadline=vctx.now + 1))

    # -- the work -------------------------------------------------------------------------
    def evaluate(self, ctx, reason: str) -> None:
        venue = self.venue
        venue.carry.catch_up(ctx)
        pf, specs = venue.portfolio, venue.specs
        positions = pf.net_qty()
        held = sorted({*pf.positions})
        usd = coin_usd(ctx.market)
        if not math.isfinite(usd):
            return  # no price of the coin yet: nothing can be valued
        prices = {i: mark_price(ctx, specs[i], i, self.board) for i in positions}
        if any(not math.isfinite(p) for p in prices.values()):
            return
        mk = pf.mark(prices, usd)
        coin = venue.cfg.equity_currency == "coin"
        e0 = venue.cfg.initial_equity * (usd if coin else 1.0)
        groups = group_index(specs, held, self.isolate_by)
        n_groups = max(groups.values(), default=-1) + 1
        entry = {i: pf.positions[i].avg_price for i in positions}
        legs, ids = book_legs(ctx, specs, positions, self.board, usd, self.flat_vol, groups,
                              entry)
        # coin collateral: its coin PnL at today's price (USD booked at past prices is not it)
        equity = (venue.cfg.initial_equity + mk.total_coin) * usd if coin else e0 + mk.total_usd
        acct = Account(e0, group_pnl(mk, groups, n_groups, coin), equity, legs, ids,
                       n_groups, self._rule_params(ctx), spot_move_since_fit(ctx, self.board),
                       years_since_fit(ctx, self.board), coin)
        req = self.requirement(legs, n_groups, acct.params, acct.moved, acct.since_fit, coin)
        free_im, im_g = self._free(req, "im", acct)
        free_mm, mm_g = self._free(req, "mm", acct)
        mm_mode = req["mm"] if self.mode == "cross" else float(mm_g.sum())
        ratio = (free_mm[self.mode] + mm_mode) / mm_mode if mm_mode > 0 else math.nan
        worst = req["worst"]
        row: dict[str, Any] = {
            "model": self.model, "mode": self.mode, "reason": reason, "legs": len(legs),
            "initial_usd": req["im"], "maintenance_usd": req["mm"], "equity_usd": acct.equity,
            "usd_per_coin": usd,
            "initial_isolated_usd": float(im_g.sum()),
            "maintenance_isolated_usd": float(mm_g.sum()),
            "free_cross_usd": free_im["cross"], "free_isolated_usd": free_im["isolated"],
            "equity_over_mm": ratio, "worst_scenario": worst[0][0] if worst else "",
            "params": json.dumps(acct.params, sort_keys=True)}
        for n in range(WORST_N):
            name, value = worst[n] if n < len(worst) else ("", math.nan)
            row[f"scenario_{n + 1}"], row[f"pnl_usd_{n + 1}"] = name, value
        ctx.emit("margin", **row)
        self._calls(ctx, acct, free_mm[self.mode], ratio, mm_mode)

    @staticmethod
    def _free(req: dict, which: str, acct: Account) -> tuple[dict[str, float], np.ndarray]:
        """Free collateral over the ``im`` or ``mm`` requirement in each mode, and the
        per-group requirements (with the fees-and-funding pool's zero appended): cross
        against the whole book's requirement, isolated group by group
        (:mod:`~replay.consumers.margin.legs`)."""
        groups = np.append(req[f"{which}_groups"], 0.0)
        return free_collateral(acct.e0, groups, acct.pnl, req[which]), groups

    def _rule_params(self, ctx) -> dict[str, float]:
        if self.rule is None:
            return {}
        surf = self.board.surface if self.board is not None else None
        return {k: float(v) for k, v in self.rule.params(ctx, surf, self.forecasts).items()}

    def requirement(self, legs: Legs, n_groups: int, params: dict[str, float],
                    moved: float = 1.0, since_fit: float = 0.0, coin: bool = False) -> dict:
        """Initial and maintenance margin of the whole book and per group (USD), and the
        worst scenarios (name, PnL) of the whole book under portfolio margin; ``moved`` is the
        spot's move and ``since_fit`` the years since the surface's fit
        (:func:`surface_vol_after_move`); ``coin``: coin collateral, whose scenario losses are
        its coin losses at today's price (:mod:`~replay.consumers.margin.revalue`)."""
        if self.model == "standard":
            p = _with(self.standard, params)
            im, mm = standard_margin(legs, p)
            return {"im": float(im.sum()), "mm": float(mm.sum()),
                    "im_groups": group_sum(im, legs.group, n_groups),
                    "mm_groups": group_sum(mm, legs.group, n_groups), "worst": []}
        p = _with(self.portfolio, params)
        surf = self.board.surface if self.board is not None else None
        vam = surface_vol_after_move(surf, legs.t + since_fit, moved) \
            if surf is not None and len(legs) else None
        whole = portfolio_margin(legs.with_groups(np.zeros(len(legs), np.int64)), p, vam,
                                 coin=coin)
        per = portfolio_margin(legs, p, vam, coin=coin)
        im_g = np.zeros(n_groups)
        mm_g = np.zeros(n_groups)
        if len(legs):
            k = per.im.size
            im_g[:k], mm_g[:k] = per.im, per.mm
        im = float(whole.im[0]) if len(legs) else 0.0
        worst: list[tuple[str, float]] = []
        if len(legs):
            order = np.argsort(-whole.counted[0], kind="stable")[:WORST_N]
            labels = whole.scenarios.labels
            worst = [(labels[j], float(whole.pnl[0, j])) for j in order]
        return {"im": im, "mm": p.mm_factor * im, "im_groups": im_g, "mm_groups": mm_g,
                "worst": worst}

    def _calls(self, ctx, acct: Account, free_mm: float, ratio: float, mm: float) -> None:
        if free_mm >= 0 or not len(acct.legs):
            self.call_since = None
            return
        if self.call_since is None:
            self.call_since = ctx.now
            self.counts["margin_calls"] += 1
            ctx.emit("margin_call", equity_usd=acct.equity, maintenance_usd=mm, free_usd=free_mm)
        if not self.liquidate or (self.pending_until is not None and ctx.now <= self.pending_until):
            return
        if ctx.now - self.call_since >= self.grace_ns or (
                math.isfinite(ratio) and ratio < self.liquidation_ratio):
            self._liquidate(ctx, acct)

    def _liquidate(self, ctx, acct: Account) -> None:
        """Close whole positions, the one that lowers maintenance most first, until the
        projected free collateral over maintenance is not negative (closing at the mark
        leaves the PnL as it is)."""
        keep = np.ones(len(acct.legs), bool)

        def free_after(mask: np.ndarray) -> tuple[float, float]:
            r = self.requirement(acct.legs.subset(mask), acct.n_groups, acct.params, acct.moved,
                                 acct.since_fit, acct.coin)
            return self._free(r, "mm", acct)[0][self.mode], r["mm"]

        free, mm_now = free_after(keep)
        arrivals: list[int] = []
        while free < 0 and keep.any():
            best = None
            for j in np.flatnonzero(keep):
                trial = keep.copy()
                trial[j] = False
                f, m = free_after(trial)
                if best is None or f > best[0]:
                    best = (f, m, j)
            free, mm_after, j = best
            keep[j] = False
            iid = int(acct.ids[j])
            qty = -self.venue.position(iid)
            ctx.emit("liquidation", instrument_id=iid, qty=qty, equity_usd=acct.equity,
                     maintenance_before_usd=mm_now, maintenance_after_usd=mm_after)
            ctx.submit(iid, qty)
            # the pass's last arrival, not its last order's: with jitter an earlier order may
            # arrive later, and a fill before it re-liquidated its position (reversed, not closed)
            arrivals.append(ctx.last_arrival_ts)
            self.pending_until = max(arrivals)
            self.counts["liquidations"] += 1
            mm_now = mm_after

    # -- snapshots ------------------------------------------------------------------------
    def state_dict(self) -> dict:
        rule = self.rule.state_dict() if hasattr(self.rule, "state_dict") else None
        return {"call_since": self.call_since, "pending_until": self.pending_until,
                "counts": dict(self.counts), "after_fill": self.after_fill, "rule": rule}

    def load_state_dict(self, d: dict) -> None:
        self.call_since, self.pending_until = d["call_since"], d["pending_until"]
        self.counts, self.after_fill = dict(d["counts"]), d["after_fill"]
        if d["rule"] is not None:
            self.rule.load_state_dict(d["rule"])


def _with(p: Any, values: dict[str, float]) -> Any:
    """``p`` with a rule's values; a name the model does not have is a config error."""
    names = {f.name for f in fields(p)}
    bad = [k for k in values if k not in names]
    if bad:
        raise ConfigError(f"margin.rule: sets {bad[0]!r}, which {type(p).__name__} does not "
                          f"have; allowed: {', '.join(sorted(names))}")
    return replace(p, **values) if values else p
