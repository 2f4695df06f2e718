"""Calibration schemes: when to refit, how to refit, and what to publish.

A :class:`CalibrationScheme` is a plain object whose whole state is explicit
(:meth:`state_dict` / :meth:`load_state_dict`): the previous parameters per expiry and their
time to expiry (warm start and Tikhonov anchor), the last good surface (the fallback), the
time of the last fit and the quote updates seen since.  The engine calls :meth:`should_refit`
at its wake-ups and :meth:`refit` when it says so; :func:`replay_snapshots` does the same over
recorded snapshots without an engine.

Refit policy (``SchemeConfig``):

1. fit every expiry, shortest first, with the configured model and loss, warm-started from
   the previous parameters of that expiry when ``warm_start`` (cold otherwise), with Tikhonov
   weight ``lam`` towards them, re-dated to the time to expiry now (the same vol smile,
   :func:`calibration.surface.rescaled`) (SVI: every expiry in one parallel call,
   :func:`calibration.models.svi_batch.fit_svi_rows`, before the calendar passes).  An expiry
   whose fit inputs are bit-identical to those of its last fit (no quote of it updated since,
   :func:`calibration.loss.fit_inputs_digest`) is *carried over*: its last fitted slice is
   kept, re-dated to the current time to expiry (:func:`calibration.surface.redated`), not
   refitted; SABR always refits, and so does an expiry last held by calendar rows (its
   neighbours may have moved).  eSSVI carries its calendar constraints itself.  SVI slices
   are kept calendar-free by exact rows in their inner QPs
   (:mod:`calibration.models.calendar_rows`): shortest first, a slice below the previous
   expiry where that one is quoted (or below an earlier one where only that one is quoted)
   is refitted above it (a floor); then longest first, one above the next expiry where either
   is quoted (typically its extrapolated wing) is refitted under it (a ceiling), started from
   its own fit and, if no slice near that meets the rows, from each neighbour's.  Rows no
   slice can meet leave it crossing, for the check to report;
2. a fit *fails* when it is not finite, its in-sample RMSE exceeds ``max_rmse_vol_pts``, or the
   surface has arbitrage violations; on failure the failing expiries are refitted cold with
   ``max(n_starts, 3)`` starts (multi-start);
3. if the surface still fails, the scheme publishes the last good surface and journals why
   (``fallback="last_good"``); with no good surface yet, or ``fallback="publish"``, it
   publishes the new surface with its violations attached, never silently.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from calibration.arbitrage import Violation, calendar_points
from calibration.every import parse_every
from calibration.loss import FitBatch, FitData, LossConfig, fit_batch, fit_inputs_digest
from calibration.models.calendar_rows import calendar_floor, ceiling_pass, floors_needed
from calibration.models.essvi import ESSVIParams, fit_essvi_slice
from calibration.models.sabr import SABRParams, fit_sabr
from calibration.models.svi import SVIParams, fit_svi
from calibration.models.svi_batch import fit_svi_rows
from calibration.quality import (
    FitQuality,
    OOSError,
    aggregate,
    fit_quality,
    fresh_oos_errors,
    fresh_outside_band_pct,
)
from calibration.quotes import MIN_QUOTES, QuoteSnapshot
from calibration.surface import MODELS, SmileSlice, Surface, param_values, redated, rescaled

FALLBACKS = ("last_good", "publish")


@dataclass(frozen=True)
class SchemeConfig:
    """How and when a scheme refits.  Triggers: any of ``every_ns`` (market time since the
    last fit), ``every_quotes`` (quote updates since the last fit) and ``quality_trigger_pct``
    (more than this percent of the mids updated since the last fit outside the current
    surface's bid/ask band) fires a refit; with none set, every call refits."""

    model: str = "svi"
    loss: LossConfig = field(default_factory=LossConfig)
    warm_start: bool = True
    lam: float = 0.0
    n_starts: int = 1
    every_ns: int | None = None
    every_quotes: int | None = None
    quality_trigger_pct: float | None = None
    fallback: str = "last_good"
    max_rmse_vol_pts: float = 10.0
    sabr_beta: float = 1.0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {self.fallback!r}")
        if self.lam < 0 or self.n_starts < 1:
            raise ValueError("lam must be >= 0 and n_starts >= 1")

    @staticmethod
    def from_dict(d: dict) -> SchemeConfig:
        """From a plain mapping (a Hydra ``calibration`` group); ``loss`` may be a dict, and
        ``every`` (``calibration.every``) is parsed by :func:`calibration.every.parse_every`."""
        d = dict(d)
        if isinstance(d.get("loss"), dict):
            d["loss"] = LossConfig(**d["loss"])
        if d.get("every") is not None:
            d.update(parse_every(d.pop("every")))
        known = set(SchemeConfig.__dataclass_fields__)
        return SchemeConfig(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True, eq=False)
class FitResult:
    ts_ns: int
    surface: Surface | None  # what is published (the new surface or the last good one)
    fitted: Surface | None  # what this refit produced
    params: dict  # expiry_ns -> parameter tuple of the fitted slices
    fit_ms: float
    quality: FitQuality | None
    violations: tuple[Violation, ...]
    fell_back: bool
    reason: str  # "" when the new surface is published cleanly
    used: tuple[np.ndarray, ...]  # per snapshot slice, quote positions used in the fit
    carried: frozenset[int] = frozenset()  # expiries whose last fitted slice was kept


class CalibrationScheme:
    def __init__(self, config: SchemeConfig) -> None:
        self.config = config
        self.prev_params: dict[int, tuple] = {}
        self.prev_t: dict[int, float] = {}  # expiry_ns -> the time to expiry of prev_params
        self.last_good: Surface | None = None
        self.last_fitted: Surface | None = None
        self.last_fit_ns: int | None = None
        self.quotes_since_fit = 0
        self.inputs: dict[int, bytes] = {}  # expiry_ns -> fit_inputs_digest of its last fit

    # ------------------------------------------------------------------ when
    def note_quotes(self, n_updates: int) -> None:
        self.quotes_since_fit += int(n_updates)

    def should_refit(self, snapshot: QuoteSnapshot) -> bool:
        c = self.config
        current = self.last_good or self.last_fitted
        if current is None or self.last_fit_ns is None:
            return True
        if c.every_ns is None and c.every_quotes is None and c.quality_trigger_pct is None:
            return True
        if c.every_ns is not None and snapshot.ts_ns - self.last_fit_ns >= c.every_ns:
            return True
        if c.every_quotes is not None and self.quotes_since_fit >= c.every_quotes:
            return True
        if c.quality_trigger_pct is not None:
            pct = fresh_outside_band_pct(current, snapshot, self.last_fit_ns)
            return pct > c.quality_trigger_pct
        return False

    # ------------------------------------------------------------------ how
    def _fit_slice(self, d: FitData, fwd: float, prev_slice, prev, warm: bool, n_starts: int,
                   floor: tuple[np.ndarray, np.ndarray] | None = None,
                   ceiling: tuple[np.ndarray, np.ndarray] | None = None):
        """One expiry: ``prev`` (its last parameters) is the start when ``warm`` and the
        Tikhonov anchor whenever ``lam > 0``; ``floor`` and ``ceiling`` (SVI only) are calendar
        rows to meet.  Returns the parameters, or ``None`` when the rows cannot be met."""
        c = self.config
        lam = c.lam if prev is not None else 0.0
        if c.model == "svi":
            p = None if prev is None else SVIParams(*prev)
            (fk, fw), (ck, cw) = floor or (None, None), ceiling or (None, None)
            f = fit_svi(d.k, d.mid, d.t, d.weight, d.bid, d.ask, prev=p, lam=lam, warm=warm,
                        band=c.loss.band, mid_weight=c.loss.mid_weight, n_starts=n_starts,
                        floor_k=fk, floor_w=fw, ceil_k=ck, ceil_w=cw)
            return f.params if f.feasible else None
        if c.model == "essvi":
            p = None if prev is None else ESSVIParams(*prev)
            f = fit_essvi_slice(d, c.loss, prev_slice, p if warm else None, lam, n_starts,
                                anchor=p)
        else:
            p = None if prev is None else SABRParams(*prev)
            f = fit_sabr(d, fwd, c.loss, c.sabr_beta, p if warm else None, lam, n_starts,
                         anchor=p)
        return f.params

    def _plan(self, i: int, sl, d: FitData, prev_slice, cold: set[int], last: dict
              ) -> tuple[bytes, SmileSlice | None, tuple | None, bool, int]:
        """Slice ``i``'s inputs digest and either its carried-over slice (the same inputs as
        its last fit, and not to be refitted cold; re-dated to the snapshot's time to expiry,
        :func:`redated`; SABR, whose smile is not one of total variance alone, is refitted)
        or how to fit it: ``(digest, carried, prev, warm, n_starts)``."""
        c, e = self.config, sl.expiry_ns
        digest = fit_inputs_digest(d, sl.forward, prev_slice)
        if i not in cold and e in last and self.inputs.get(e) == digest and c.model != "sabr":
            return digest, redated(last[e], sl.t), None, False, c.n_starts
        prev = self.prev_params.get(e)
        # in total variance, an anchor fitted a day before pulled an unchanged smile up (an
        # SVI warm start reads only m and sigma, which the re-dating keeps: with lam = 0, skip)
        if prev is not None and self.prev_t[e] != sl.t and (c.lam > 0 or c.model != "svi"):
            prev = rescaled(c.model, prev, sl.t / self.prev_t[e])
        return (digest, None, prev, c.warm_start and i not in cold and prev is not None,
                c.n_starts if i not in cold else max(c.n_starts, 3))

    def _svi_fits(self, batch: FitBatch, todo: dict[int, tuple]) -> dict[int, SVIParams]:
        """SVI fits of the slices ``todo`` (position: prev, warm, n_starts) of ``batch``, in
        one parallel call."""
        c, n = self.config, len(batch)
        prev, lam = np.zeros((n, 5)), np.zeros(n)
        warm, n_starts = np.zeros(n, dtype=bool), np.ones(n, dtype=np.int64)
        for i, (p, w, ns) in todo.items():
            if p is not None:
                prev[i], lam[i], warm[i] = p, c.lam, w
            n_starts[i] = ns
        fits = fit_svi_rows(batch.off, batch.k, batch.mid, batch.bid, batch.ask, batch.weight,
                            batch.t, prev, lam, warm, n_starts, np.fromiter(todo, np.int64),
                            band=c.loss.band, mid_weight=c.loss.mid_weight)
        return {i: f.params for i, f in zip(todo, fits)}  # feasible: no floor

    def _fit_all(self, snapshot: QuoteSnapshot, batch: FitBatch, data: list[FitData | None],
                 cold: set[int]) -> tuple[list[SmileSlice], dict[int, bytes], frozenset[int]]:
        """The slices of one refit, the digest of each one's inputs and the expiries
        carried over; ``cold`` (snapshot positions) are refitted cold, never carried."""
        c = self.config
        out: list[SmileSlice] = []
        digests: dict[int, bytes] = {}
        carried: set[int] = set()
        held: set[int] = set()  # refitted to meet calendar rows
        last = {s.expiry_ns: s for s in self.last_fitted.slices} if self.last_fitted else {}
        live = [(i, sl, d) for i, (sl, d) in enumerate(zip(snapshot.slices, data))
                if d is not None]
        k_lo, k_hi = batch.k_lo.tolist(), batch.k_hi.tolist()
        k_check = calendar_points([k_lo[i] for i, _, _ in live], [k_hi[i] for i, _, _ in live])

        def smile(i: int, sl, params) -> SmileSlice:
            return SmileSlice(c.model, params, sl.expiry_ns, sl.t, sl.forward, k_lo[i], k_hi[i])

        # SVI slices are independent until their calendar rows, so they are planned and fitted
        # at once, in parallel, and each one's need of a floor measured in one pass;
        # an eSSVI slice's fit depends on the expiry before it; SABR's are fitted one by one
        plans = {i: self._plan(i, sl, d, None, cold, last) for i, sl, d in live} \
            if c.model == "svi" else {}
        first: dict[int, SmileSlice] = {}
        if plans:
            fitted = self._svi_fits(batch, {i: plans[i][2:] for i, _, _ in live
                                            if plans[i][1] is None})
            first = {i: plans[i][1] or smile(i, sl, fitted[i]) for i, sl, _ in live}
            below = floors_needed(list(first.values()), k_check)
        prev_slice = None
        for pos, (i, sl, d) in enumerate(live):
            e = sl.expiry_ns
            digest, sm, prev, warm, n_starts = plans.get(i) or self._plan(i, sl, d, prev_slice,
                                                                         cold, last)
            digests[e] = digest
            if sm is not None:
                carried.add(e)
            sm = first.get(i) or sm or smile(i, sl, self._fit_slice(d, sl.forward, prev_slice,
                                                                    prev, warm, n_starts))
            # measured above and found clean, with no slice refitted since: no floor
            floor = calendar_floor(out, sm, k_check, measured=not (held or below[pos])) \
                if plans and out else None
            if floor is not None:
                # SVI slices are independent: refit this one above the previous expiry, from
                # the crossing fit (also the Tikhonov anchor: change it only where needed)
                above = self._fit_slice(d, sl.forward, None, tuple(sm.params.to_array()),
                                        True, max(n_starts, 3), floor)
                if above is not None:
                    sm = replace(sm, params=above)
                    held.add(e)
            prev_slice = sm.params if c.model == "essvi" else None
            out.append(sm)
        if plans:
            def under(pos: int, floor, ceiling):
                # warm from the crossing fit, one start; where no slice near it meets the rows
                # (a wild fit of a thin expiry between two close ones), from each neighbour
                # (then also the Tikhonov anchor): its shape, shifted, fits between them
                _, sl, d = live[pos]
                fits = (self._fit_slice(d, sl.forward, None, tuple(s.params.to_array()), True,
                                        c.n_starts, floor, ceiling)
                        for s in (out[pos], out[pos + 1], *out[pos - 1:pos]))
                return next((params for params in fits if params is not None), None)

            held.update(out[p].expiry_ns for p in ceiling_pass(out, k_check, under))
        # no digest for a held slice: it is refitted next time (its neighbours may move)
        return out, {e: d for e, d in digests.items() if e not in held}, frozenset(carried - held)

    def refit(self, snapshot: QuoteSnapshot) -> FitResult:
        c = self.config
        t0 = time.perf_counter_ns()
        batch = fit_batch(snapshot, c.loss)
        data = [batch.data(i) if batch.size(i) >= MIN_QUOTES else None
                for i in range(len(batch))]
        used = tuple(d.index if d is not None else np.zeros(0, dtype=np.int64) for d in data)
        if not any(d is not None for d in data):
            return self._publish(snapshot, None, used, t0, "no slice with enough quotes")
        slices, digests, carried = self._fit_all(snapshot, batch, data, cold=set())
        surf = Surface(slices, snapshot.ts_ns)
        q = fit_quality(surf, snapshot, used, 0.0, self.last_fitted)
        if not self._ok(surf, q):
            bad = self._failing(snapshot, surf, q)
            slices, rd, rc = self._fit_all(snapshot, batch, data, cold=bad)
            retry = Surface(slices, snapshot.ts_ns)
            rq = fit_quality(retry, snapshot, used, 0.0, self.last_fitted)
            if self._score(retry, rq) < self._score(surf, q):
                surf, q, digests, carried = retry, rq, rd, rc
        self.inputs = digests
        return self._publish(snapshot, surf, used, t0, "", q, carried)

    def _ok(self, surf: Surface, q: FitQuality) -> bool:
        return surf.arbitrage_free and self._rmse_ok(q)

    def _rmse_ok(self, q: FitQuality) -> bool:
        return bool(np.isfinite(q.rmse_vol_pts) and q.rmse_vol_pts <= self.config.max_rmse_vol_pts)

    @staticmethod
    def _score(surf: Surface, q: FitQuality) -> tuple:
        return (len(surf.violations), q.rmse_vol_pts if np.isfinite(q.rmse_vol_pts) else np.inf)

    def _failing(self, snapshot: QuoteSnapshot, surf: Surface, q: FitQuality) -> set[int]:
        """Positions (in the snapshot) of the slices to refit cold: those with violations
        (a calendar violation, reported at the later slice, blames both: the later one dips
        under the earlier one, or the earlier one's wing rises over it), or all when the RMSE
        is too high."""
        if not self._rmse_ok(q):
            return set(range(len(snapshot.slices)))
        cal = {round(v.expiry_t, 12) for v in surf.violations if v.kind == "calendar"}
        ts = {round(v.expiry_t, 12) for v in surf.violations} | {  # slices by maturity
            round(a.t, 12) for a, b in zip(surf.slices, surf.slices[1:]) if round(b.t, 12) in cal}
        return {i for i, sl in enumerate(snapshot.slices) if round(sl.t, 12) in ts}

    def _publish(self, snapshot: QuoteSnapshot, surf: Surface | None,
                 used: tuple[np.ndarray, ...], t0: int, reason: str,
                 q: FitQuality | None = None, carried: frozenset[int] = frozenset()
                 ) -> FitResult:
        c = self.config
        fit_ms = (time.perf_counter_ns() - t0) / 1e6
        self.last_fit_ns = snapshot.ts_ns
        self.quotes_since_fit = 0
        if surf is None:
            return FitResult(snapshot.ts_ns, self.last_good, None, {}, fit_ms, None, (),
                             self.last_good is not None, reason, used)
        q = replace(q, fit_ms=fit_ms)
        params = {s.expiry_ns: param_values(s.params) for s in surf.slices}
        published, fell_back = surf, False
        if not self._ok(surf, q):
            why = (f"{len(surf.violations)} arbitrage violation(s)" if surf.violations
                   else f"in-sample rmse {q.rmse_vol_pts:.3g} vol pts")
            if c.fallback == "last_good" and self.last_good is not None:
                published, fell_back, reason = self.last_good, True, why + "; kept last good"
            else:
                reason = why + "; published with its violations"
        else:
            self.last_good = surf
        self.prev_params.update(params)
        self.prev_t.update((sl.expiry_ns, sl.t) for sl in surf.slices)
        self.last_fitted = surf
        return FitResult(snapshot.ts_ns, published, surf, params, fit_ms, q, surf.violations,
                         fell_back, reason, used, carried)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Plain, picklable/JSON-able state: enough to resume exactly."""
        return {"config": asdict(self.config),
                "prev_params": {int(k): list(v) for k, v in self.prev_params.items()},
                "prev_t": {int(k): v for k, v in self.prev_t.items()},
                **{k: None if s is None else s.to_state() for k, s in (
                    ("last_good", self.last_good), ("last_fitted", self.last_fitted))},
                "last_fit_ns": self.last_fit_ns, "quotes_since_fit": self.quotes_since_fit,
                "inputs": {int(k): v.hex() for k, v in self.inputs.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.config = SchemeConfig.from_dict(state["config"])
        self.prev_params = {int(k): tuple(v) for k, v in state["prev_params"].items()}
        self.prev_t = {int(k): float(v) for k, v in state["prev_t"].items()}
        self.last_good, self.last_fitted = (None if state[k] is None else Surface.from_state(
            state[k]) for k in ("last_good", "last_fitted"))
        self.last_fit_ns = state["last_fit_ns"]
        self.quotes_since_fit = int(state["quotes_since_fit"])
        self.inputs = {int(k): bytes.fromhex(v) for k, v in state.get("inputs", {}).items()}


def replay_snapshots(snapshots: Iterable[QuoteSnapshot], config: SchemeConfig
                     ) -> tuple[dict, list[FitResult]]:
    """Calibration-only replay: walk the snapshots in time order, score the published surface
    out of sample on each snapshot's quotes updated since the fit (all of them when the
    snapshots do not know their quotes' times) before deciding to refit, refit when the
    scheme's trigger fires.  Returns the aggregated metrics (docs/outputs.md ``calibration``
    keys plus ``fallbacks``) and the fit results."""
    scheme = CalibrationScheme(config)
    results: list[FitResult] = []
    oos: list[OOSError] = []
    current: Surface | None = None
    for snap in snapshots:
        if current is not None:  # a surface was fitted, so last_fit_ns is set
            e = fresh_oos_errors(current, snap, scheme.last_fit_ns)
            if e is not None:
                oos.append(e)
        scheme.note_quotes(snap.n_quotes)
        if scheme.should_refit(snap):
            results.append(scheme.refit(snap))
            current = results[-1].surface
    # violations count what was published: a fallback publishes the clean last good surface
    qs = [replace(r.quality, arb_violations=len(r.surface.violations) if r.surface else 0)
          for r in results if r.quality is not None]
    metrics = aggregate(qs, oos)
    metrics["fallbacks"] = sum(r.fell_back for r in results)
    metrics["fitted_with_violations"] = sum(bool(r.violations) for r in results)
    return metrics, results
