"""The calibration consumer: runs a :class:`calibration.scheme.CalibrationScheme` inside a replay.

At each wake it assembles a :class:`calibration.quotes.QuoteSnapshot` from the market state as
of ``ctx.now`` (option bid/ask in coin, the venue forward of each expiry, the venue mark IV and
quote ages), lets the scheme decide whether to refit, journals the outcome and publishes the
surface on a :class:`strategies.board.SurfaceBoard`-like object that strategies read.

Between refits it also scores the current surface out of sample on the fresh quotes, so the
run's ``calibration`` metrics match :func:`calibration.scheme.replay_snapshots`.

``every`` (docs/outputs.md ``calibration.every``) says when to wake:

* a market-time interval: ``"1s"``, ``"250ms"``, ``"5min"``, ``"1h"`` (or a number of seconds);
* a quote-update count: ``"500q"`` (wake after 500 option quote updates);
* ``"quality:X"``: check every ``check_s`` seconds and refit when more than X % of fresh
  two-sided mids fall outside the current surface's bid/ask band.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from calibration.loss import LossConfig
from calibration.quality import aggregate, calibration_quote_rows, oos_errors
from calibration.quotes import build_snapshot
from calibration.scheme import CalibrationScheme, SchemeConfig
from calibration.scheme import parse_every as scheme_parse_every
from replay.engine.wake import WakeCondition
from replay.errors import ConfigError
from replay.model.config import check_choice
from replay.units import NS


def parse_every(every: Any, check_s: float) -> tuple[int | None, int | None, float | None]:
    """``calibration.every`` (grammar: :func:`calibration.scheme.parse_every`) as the
    consumer's wake rule: (deadline interval ns, quote count, quality trigger pct).  A quality
    trigger is checked every ``check_s`` market seconds."""
    try:
        rule = scheme_parse_every(every)
    except ValueError as e:
        raise ConfigError(f"calibration.every: {e}") from None
    if not rule:
        raise ConfigError("calibration.every: 'always' has no meaning in a replay; use an "
                          "interval like '1s', a quote count like '500q', or 'quality:10'")
    if "quality_trigger_pct" in rule:
        return int(round(check_s * NS)), None, rule["quality_trigger_pct"]
    return rule.get("every_ns"), rule.get("every_quotes"), None


class CalibrationConsumer:
    """Refits the implied-vol surface at its wake-ups and publishes it.

    Keyword arguments mirror :class:`calibration.scheme.SchemeConfig` (``model``, ``warm_start``,
    ``lam``, ``n_starts``, ``fallback``, ``max_rmse_vol_pts``, ``sabr_beta``, ``loss``) plus
    ``every`` (see the module docstring), ``check_s``, ``stale_s`` (quotes older than this are
    flagged stale), ``max_quote_rows`` (cap on ``calibration_quotes`` rows per fit; 0 = all)
    and ``check_parity`` (also estimate the put-call parity forward where the venue gives one,
    to record their disagreement; about a millisecond per expiry, so off by default).
    """

    name = "calibration"

    def __init__(self, model: str = "svi", every: Any = "60s", warm_start: bool = True,
                 lam: float = 0.0, n_starts: int = 1, fallback: str = "last_good",
                 max_rmse_vol_pts: float = 10.0, sabr_beta: float = 1.0,
                 loss: dict | None = None, check_s: float = 10.0, stale_s: float = 600.0,
                 max_quote_rows: int = 0, check_parity: bool = False, board: Any = None):
        check_choice("calibration.model", model, ("svi", "essvi", "sabr"))
        check_choice("calibration.fallback", fallback, ("last_good", "publish"))
        every_ns, every_q, quality = parse_every(every, check_s)
        try:
            loss_cfg = LossConfig(**(loss or {}))
            cfg = SchemeConfig(model=model, loss=loss_cfg, warm_start=warm_start, lam=lam,
                               n_starts=n_starts, every_ns=every_ns if quality is None else None,
                               every_quotes=every_q, quality_trigger_pct=quality,
                               fallback=fallback, max_rmse_vol_pts=max_rmse_vol_pts,
                               sabr_beta=sabr_beta)
        except TypeError as e:
            raise ConfigError(f"calibration.loss: {e}; allowed keys: "
                              f"{', '.join(LossConfig.__dataclass_fields__)}") from None
        except ValueError as e:
            raise ConfigError(f"calibration: {e}") from None
        self.scheme = CalibrationScheme(cfg)
        self.wake_ns, self.wake_quotes = every_ns, every_q
        self.stale_ns = int(stale_s * NS)
        self.max_quote_rows = int(max_quote_rows)
        self.check_parity = bool(check_parity)
        self.board = board
        self._options: np.ndarray | None = None
        self.qualities: list = []
        self.oos: list = []
        self.fallbacks = 0
        self.skipped = 0

    # -- consumer protocol ------------------------------------------------------------
    def on_start(self, ctx) -> WakeCondition:
        return self._next(ctx)

    def _option_ids(self, ctx) -> np.ndarray:
        # derived from the instruments, not state: a resumed run never calls on_start
        if self._options is None:
            self._options = ctx.instruments.ids_of_kind("option")
        return self._options

    def on_wake(self, ctx) -> WakeCondition:
        snap = self.snapshot(ctx)
        current = self.board.surface if self.board is not None else self.scheme.last_good
        if current is not None and self.scheme.last_fit_ns is not None:
            # out of sample: only quotes updated since the surface was fitted
            fresh = self.snapshot(ctx, since=self.scheme.last_fit_ns)
            if fresh.slices:
                self.oos.append(oos_errors(current, fresh))
        self.scheme.note_quotes(snap.n_quotes)
        if snap.slices and self.scheme.should_refit(snap):
            self._refit(ctx, snap)
        return self._next(ctx)

    def state_dict(self) -> dict:
        b = self.board
        published = None if b is None or b.surface is None else (
            "last_good" if b.surface is self.scheme.last_good else "last_fitted")
        return {"scheme": self.scheme.state_dict(), "fallbacks": self.fallbacks,
                "skipped": self.skipped,
                "board": None if b is None else {"published": published, "ts": b.ts,
                                                 "spot": b.spot},
                "qualities": [asdict(q) for q in self.qualities],
                "oos": [asdict(o) for o in self.oos]}

    def load_state_dict(self, d: dict) -> None:
        from calibration.quality import FitQuality, OOSError

        self.scheme.load_state_dict(d["scheme"])
        self.fallbacks, self.skipped = d["fallbacks"], d["skipped"]
        self.qualities = [FitQuality(**q) for q in d["qualities"]]
        self.oos = [OOSError(**o) for o in d["oos"]]
        if self.board is not None and d.get("board") is not None:
            bd = d["board"]
            surface = getattr(self.scheme, bd["published"]) if bd["published"] else None
            self.board.publish(surface, bd["ts"], bd["spot"])

    # -- work -------------------------------------------------------------------------
    def _next(self, ctx) -> WakeCondition:
        if self.wake_quotes is not None:
            opts = self._option_ids(ctx)
            ids = tuple(int(i) for i in opts) if len(opts) else None
            return WakeCondition(quote_count=self.wake_quotes, instruments=ids)
        return WakeCondition(deadline=(ctx.now // self.wake_ns + 1) * self.wake_ns)

    def snapshot(self, ctx, since: int | None = None):
        """The option quotes as of ``ctx.now`` (live, unexpired options only; with ``since``,
        only those quoted after it)."""
        m, inst = ctx.market, ctx.instruments
        ids = self._option_ids(ctx)
        ids = ids[inst.expiry_ns[ids] > ctx.now]
        if since is not None:
            ids = ids[m.quote_ts[ids] > since]
        return build_snapshot(
            ctx.now, inst.expiry_ns[ids], inst.strike[ids], inst.is_call[ids] == 1,
            m.bid[ids], m.ask[ids], m.venue_forward[ids], mark_iv=m.mark_iv[ids],
            stale=np.asarray(m.quote_age(ids)) > self.stale_ns, instrument=inst.name[ids].tolist(),
            parity=self.check_parity)

    def _refit(self, ctx, snap) -> None:
        r = self.scheme.refit(snap)
        if r.quality is not None:
            published = len(r.surface.violations) if r.surface is not None else 0
            self.qualities.append(replace(r.quality, arb_violations=published))
        if r.fitted is None:
            self.skipped += 1  # no expiry had enough usable quotes: nothing was fitted
        else:
            self.fallbacks += int(r.fell_back)
        if self.board is not None and r.surface is not None:
            self.board.publish(r.surface, ctx.now, ctx.market.underlying_mid())
        fitted = r.fitted
        if fitted is None:
            ctx.emit("surface_fit", model=[self.scheme.config.model], expiry=[0], t=[np.nan],
                     forward=[np.nan], params=["{}"], n_quotes=[0], rmse_vol_pts=[np.nan],
                     inside_spread_pct=[np.nan], fit_ms=[r.fit_ms], arb_violations=[0],
                     published=[False], reason=[r.reason or "no fit"])
            return
        q = r.quality
        n = len(fitted.slices)
        nq = {sl.expiry_ns: int(u.size) for sl, u in zip(snap.slices, r.used)}
        ctx.emit("surface_fit",
                 model=[s.model for s in fitted.slices], expiry=[s.expiry_ns for s in fitted.slices],
                 t=[s.t for s in fitted.slices], forward=[s.forward for s in fitted.slices],
                 params=[json.dumps([float(x) for x in asdict(s.params).values()])
                         for s in fitted.slices],
                 n_quotes=[nq.get(s.expiry_ns, 0) for s in fitted.slices],
                 rmse_vol_pts=[q.rmse_vol_pts] * n, inside_spread_pct=[q.inside_spread_pct] * n,
                 fit_ms=[r.fit_ms] * n, arb_violations=[len(r.violations)] * n,
                 published=[not r.fell_back] * n, reason=[r.reason] * n)
        rows = calibration_quote_rows(fitted, snap, r.used)
        if self.max_quote_rows and len(rows["strike"]) > self.max_quote_rows:
            rows = {k: v[: self.max_quote_rows] for k, v in rows.items()}
        if len(rows["strike"]):
            ctx.emit("calibration_quotes", **{k: v for k, v in rows.items() if k != "ts"})

    def metrics(self) -> dict:
        out = aggregate(self.qualities, self.oos)
        out["fallbacks"] = self.fallbacks
        out["skipped_no_quotes"] = self.skipped
        return out
