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

``epoch`` (``"6h"``, ``"1d"``; default none) cuts market time at its multiples (UTC): an
epoch's first working wake (a refit or a quality check) forgets the fits before it (warm
starts, Tikhonov anchors, carried expiries, the last good surface, the quote-sampling
clock), so epochs are independent and a stream build fits them in parallel
(:mod:`replay.app.surfaces.build`; a part's consumer sleeps until its ``active_from``).

``latency`` (seconds of market time, default 0) delays publication: a surface fitted at
``t`` becomes usable at ``t + latency`` (the consumer wakes then to publish it, before any
other consumer's wake of that instant).  ``quotes_every_s`` samples the ``calibration_quotes``
rows: a fit's quotes are journaled when at least that much market time has passed since the
last fit whose quotes were (``0``: every fit).

Source of the surfaces: a live consumer fits them (and, with a
:class:`~replay.consumers.surface_stream.StreamRecorder` attached, records what each wake
produced); one given a :class:`~replay.consumers.stream_reader.StreamReader` replays a
recorded stream instead: on a time schedule as a *recorded* consumer that the engine never
wakes but asks to catch up (:meth:`CalibrationConsumer.catch_up`), on a quote-count schedule
by waking as the live one does.  Either way it journals the same events at the same places
and publishes the same surfaces, so a run's journal hash does not depend on the source.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import asdict, replace
from functools import partial
from typing import Any

import numpy as np

from calibration.every import parse_every as parse_every_rule
from calibration.loss import LossConfig
from calibration.pricing.iv_memo import IVMemo
from calibration.quality import aggregate, calibration_quote_rows, fresh_oos_errors
from calibration.quotes import build_snapshot
from calibration.scheme import CalibrationScheme, SchemeConfig
from calibration.surface import Surface
from replay.consumers.schedule import no_epoch, parse_epoch, parse_every
from replay.consumers.stream_reader import StreamReader
from replay.consumers.surface_stream import Block, StreamMismatch, WakeOutput, surface_fit_rows
from replay.engine.wake import WakeCondition
from replay.errors import ConfigError
from replay.model.config import check_choice
from replay.model.events import KINDS, checked_payload
from replay.model.plugins import init_defaults
from replay.units import NS


class CalibrationConsumer:
    """Refits the implied-vol surface at its wake-ups and publishes it.

    Keyword arguments mirror :class:`calibration.scheme.SchemeConfig` (``model``, ``warm_start``,
    ``lam``, ``n_starts``, ``fallback``, ``max_rmse_vol_pts``, ``sabr_beta``, ``loss``) plus
    ``every``, ``epoch`` and ``latency`` (see the module docstring), ``check_s``, ``stale_s``
    (quotes older than this are flagged stale), ``quotes_every_s`` and ``max_quote_rows`` (sampling
    and cap of the ``calibration_quotes`` rows of a fit; 0 = every fit, all rows) and
    ``check_parity`` (also estimate the put-call parity forward where the venue gives one,
    to record their disagreement; about a millisecond per expiry, so off by default).
    ``stream`` replays a recorded surface stream instead of fitting; ``recorder`` records.
    """

    name = "calibration"
    run_provided = ("board", "stream", "recorder")  # given by a run, not a config key

    def __init__(self, model: str = "svi", every: Any = "60s", warm_start: bool = True,
                 lam: float = 0.0, n_starts: int = 1, fallback: str = "last_good",
                 max_rmse_vol_pts: float = 10.0, sabr_beta: float = 1.0,
                 loss: dict | None = None, check_s: float = 10.0, stale_s: float = 600.0,
                 latency: float = 0.0, quotes_every_s: float = 60.0, max_quote_rows: int = 0,
                 check_parity: bool = False, epoch: Any = None, board: Any = None,
                 stream: StreamReader | None = None, recorder: Any = None):
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
        if not latency >= 0:
            raise ConfigError(f"calibration.latency: {latency!r} must be >= 0 seconds")
        self.scheme = CalibrationScheme(cfg)
        self.wake_ns, self.wake_quotes = every_ns, every_q
        self.latency_ns = int(round(latency * NS))
        self.epoch_ns = parse_epoch(epoch, every_ns, self.latency_ns)
        self.active_from = 0  # market ns: set by an epoch build's part (module docstring)
        self._epoch: int | None = None  # the epoch of the last working wake
        self.quotes_every_ns = int(round(quotes_every_s * NS))
        self.stale_ns = int(stale_s * NS)
        self.max_quote_rows = int(max_quote_rows)
        self.check_parity = bool(check_parity)
        self.board = board
        self.stream, self.recorder = stream, recorder
        self._options: np.ndarray | None = None
        self._ivs = IVMemo()  # exact, so not state: a resumed run starts with an empty one
        self.qualities: list = []
        self.oos: list = []
        self.fallbacks = 0
        self.skipped = 0
        self.n_wakes = 0  # wake ordinal: the key of a recorded stream's rows
        self._row = 0  # replaying: the next row of the stream
        self._due: int | None = None  # the next fit (or quality check) deadline
        self._last_quotes_ts: int | None = None
        # (usable_ts, surface or loader, fit ts, spot) not yet usable, and the one published
        self._pending: list[tuple[int, Any, int, float]] = []
        self._published: tuple[Any, int, float] | None = None
        self._published_row = -1  # recorded: the last publishing row of the stream published

    @classmethod
    def keyed_config(cls, given: dict) -> dict:
        """The config ``given`` as its surface stream is keyed
        (:func:`replay.app.surfaces.cache.canonical_config`): each key left out as what it
        means (the ``loss`` keys too), and ``every`` and ``epoch`` as the rule they spell,
        so that ``every=300s`` and ``every=5min`` find one stream; not :attr:`run_provided`."""
        out = {k: v for k, v in init_defaults(cls).items() if k not in cls.run_provided} | given
        out["loss"] = {**asdict(LossConfig()), **(given.get("loss") or {})}
        out["epoch"] = None if no_epoch(out.get("epoch")) else out["epoch"]
        for key in ("every", "epoch"):  # one that does not parse is keyed as written
            with suppress(ValueError, TypeError):
                out[key] = parse_every_rule(out[key]) or out[key]
        return out

    # -- consumer protocol ------------------------------------------------------------
    @property
    def recorded(self) -> bool:
        """Replaying a stream on a time schedule: every wake and its journal events are known
        in advance, so the engine never wakes this consumer; it splices the recorded events
        into the journal in order instead (:meth:`catch_up`)."""
        return self.stream is not None and self.wake_quotes is None

    def on_start(self, ctx) -> WakeCondition | None:
        if self.recorded:
            s = self.stream
            if len(s) and s.ts[0] <= ctx.now:  # recorded before this replay starts
                raise self._mismatch(ctx.now, 0)
            return None
        return self._next(ctx)

    def _option_ids(self, ctx) -> np.ndarray:
        # derived from the instruments, not state: a resumed run never calls on_start; by
        # expiry and strike, the order build_snapshot groups them in (it then skips its sort)
        if self._options is None:
            inst = ctx.instruments
            ids = inst.ids_of_kind("option")
            self._options = ids[np.lexsort((inst.strike[ids], inst.expiry_ns[ids]))]
        return self._options

    def on_wake(self, ctx) -> WakeCondition:
        self.n_wakes += 1
        self._publish_due(ctx.now)
        if self.wake_quotes is not None:
            work = ctx.reason != "deadline"  # a deadline is a publication of a late surface
        else:
            work = self._due is not None and ctx.now >= self._due
        if work:
            out = self._replayed(ctx) if self.stream is not None else self._compute(ctx)
            if out is not None:
                self._apply(ctx, out)
        return self._next(ctx)

    def catch_up(self, rt, until: int, inclusive: bool) -> int:
        """Journal the recorded wakes before ``until`` (or at it, if ``inclusive``) that are
        not yet journaled, each with the cause it was decided at, and publish the last
        surface usable by then; returns the number of wakes caught up.

        This is what the live consumer's deadline wakes did, in the same order relative to
        every other consumer's actions (the engine calls it before each of them), so the
        journal and its hash are the same."""
        s, i0 = self.stream, self._row
        i1 = s.rows_until(until, inclusive)
        if i1 > i0:
            if s.n_events[i1 - 1] > rt.state.n_events:
                raise self._mismatch(until, int(s.wake[i1 - 1]))
            s.splice(rt.journal, i0, i1, self.name, rt.wake_payload(self.name, "deadline"))
            self._row, self.n_wakes = i1, int(s.wake[i1 - 1])
        j = s.published_until(until, inclusive) - 1
        if j > self._published_row:
            r = int(s.publishing[j])
            self._published_row = j
            self._publish(partial(s.surface, int(s.surface_wake[r])), int(s.ts[r]),
                          float(s.spot[r]))
        return i1 - i0

    def _mismatch(self, now: int, wake: int) -> StreamMismatch:
        return StreamMismatch(
            f"surface stream {self.stream.folder} does not match this replay at market time "
            f"{now} (wake {wake}); rebuild it with calibration.cache=refresh")

    def state_dict(self) -> dict:
        pub = self._published
        return {"scheme": self.scheme.state_dict(), "fallbacks": self.fallbacks,
                "skipped": self.skipped, "n_wakes": self.n_wakes, "row": self._row,
                "published_row": self._published_row,
                "due": self._due, "last_quotes_ts": self._last_quotes_ts, "epoch": self._epoch,
                "pending": [(u, _built(s).to_state(), t, spot) for u, s, t, spot in self._pending],
                "published": None if pub is None else (_built(pub[0]).to_state(), pub[1], pub[2]),
                "qualities": [asdict(q) for q in self.qualities],
                "oos": [asdict(o) for o in self.oos]}

    def load_state_dict(self, d: dict) -> None:
        from calibration.quality import FitQuality, OOSError

        self.scheme.load_state_dict(d["scheme"])
        self.fallbacks, self.skipped = d["fallbacks"], d["skipped"]
        self.n_wakes, self._row, self._due = d["n_wakes"], d["row"], d["due"]
        self._published_row = d["published_row"]
        self._last_quotes_ts, self._epoch = d["last_quotes_ts"], d.get("epoch")
        self._pending = [(u, Surface.from_state(s), t, spot) for u, s, t, spot in d["pending"]]
        self.qualities = [FitQuality(**q) for q in d["qualities"]]
        self.oos = [OOSError(**o) for o in d["oos"]]
        if d.get("published") is not None:
            st, ts, spot = d["published"]
            s = Surface.from_state(st)
            # the live scheme republishes its last good surface by identity: keep it one
            for known in (self.scheme.last_good, self.scheme.last_fitted):
                if known is not None and known.to_state() == st:
                    s = known
            self._publish(s, ts, spot)

    # -- work -------------------------------------------------------------------------
    def _next(self, ctx) -> WakeCondition:
        publish = self._pending[0][0] if self._pending else None
        if self.wake_quotes is not None:
            opts = self._option_ids(ctx)
            ids = tuple(int(i) for i in opts) if len(opts) else None
            # a publication (a deadline) amid a count goes on with the quotes left to count
            count = ctx.quotes_left if ctx.reason == "deadline" and ctx.quotes_left else \
                self.wake_quotes
            return WakeCondition(quote_count=count, instruments=ids, deadline=publish)
        if self._due is None or ctx.now >= self._due:
            self._due = max((ctx.now // self.wake_ns + 1) * self.wake_ns, self.active_from)
        return WakeCondition(deadline=self._due if publish is None else min(self._due, publish))

    def _publish_due(self, now: int) -> None:
        while self._pending and self._pending[0][0] <= now:
            _, surface, ts, spot = self._pending.pop(0)
            self._publish(surface, ts, spot)

    def _publish(self, surface: Any, ts: int, spot: float) -> None:
        """Publish a surface or (replaying) a loader of it, which runs on first use."""
        self._published = (surface, ts, spot)
        if self.board is None:
            return
        if isinstance(surface, Surface):
            self.board.publish(surface, ts, spot)
        else:
            self.board.publish_lazy(surface, ts, spot)

    def _apply(self, ctx, out: WakeOutput) -> None:
        """Journal, score and publish what a wake produced (computed or replayed)."""
        rows = {kind: r for kind, r in (("surface_fit", out.fits), ("calibration_quotes",
                                                                    out.quotes)) if r is not None}
        # computed rows are checked and digested once, for the journal and the recorder
        payloads = {kind: checked_payload(KINDS[kind], r) for kind, r in rows.items()
                    if not isinstance(r, Block)}
        if self.recorder is not None:
            self.recorder.add(self.n_wakes, out, payloads)
        if out.oos is not None and self.stream is None:  # replaying: see metrics()
            self.oos.append(out.oos)
        for kind, r in rows.items():
            if isinstance(r, Block):
                ctx.emit_block(kind, *_parts(r))
            else:
                ctx.emit_columns(kind, *payloads[kind])
        if out.fits is not None and self.stream is None:
            if out.quality is None:
                self.skipped += 1  # no expiry had enough usable quotes: nothing was fitted
            else:
                self.qualities.append(out.quality)
                self.fallbacks += int(out.fell_back)
        if out.publish is not None:
            self._release(out.publish, out.usable_ts, out.ts, out.spot, ctx.now)

    def _release(self, surface: Any, usable_ts: int, ts: int, spot: float, now: int) -> None:
        """Publish a surface fitted at ``ts`` now if it is usable, else when it becomes so."""
        if usable_ts <= now:
            self._publish(surface, ts, spot)
        else:
            self._pending.append((usable_ts, surface, ts, spot))

    def _replayed(self, ctx) -> WakeOutput | None:
        """The recorded output of this wake, if it produced one; checks that the stream
        belongs to this replay (the same wakes at the same instants)."""
        s, i = self.stream, self._row
        if i >= len(s) or s.wake[i] > self.n_wakes:
            return None
        if s.wake[i] < self.n_wakes or s.ts[i] != ctx.now or s.n_events[i] != ctx.events:
            raise self._mismatch(ctx.now, self.n_wakes)
        self._row += 1
        return s.output(i)

    def snapshot(self, ctx):
        """The option quotes as of ``ctx.now`` (live, unexpired options only)."""
        m, inst = ctx.market, ctx.instruments
        ids = self._option_ids(ctx)
        ids = ids[inst.expiry_ns[ids] > ctx.now]
        return build_snapshot(
            ctx.now, inst.expiry_ns[ids], inst.strike[ids], inst.is_call[ids] == 1,
            m.bid[ids], m.ask[ids], m.venue_forward[ids], mark_iv=m.mark_iv[ids],
            stale=np.asarray(m.quote_age(ids)) > self.stale_ns, quote_ts=m.quote_ts[ids],
            instrument=inst.name[ids],
            parity=self.check_parity, memo=self._ivs, row_id=ids)

    def _compute(self, ctx) -> WakeOutput | None:
        """Score the published surface on the fresh quotes, then refit if the scheme says so."""
        self._enter_epoch(ctx.now)
        snap = self.snapshot(ctx)
        out = WakeOutput(ctx.now, ctx.events, ctx.cause)
        pub = self._published  # scored out of sample if fitted in this epoch
        current = _built(pub[0]) if pub is not None and self._this_epoch(pub[1]) else None
        if current is not None and self.scheme.last_fit_ns is not None:
            out.oos = fresh_oos_errors(current, snap, self.scheme.last_fit_ns)
        self.scheme.note_quotes(snap.n_quotes)
        if snap.slices and self.scheme.should_refit(snap):
            self._refit(ctx, snap, out)
        return out if (out.oos is not None or out.fits is not None) else None

    def _enter_epoch(self, now: int) -> None:
        """A new epoch's first wake starts afresh: a new scheme, no quote-sampling clock."""
        if self.epoch_ns is not None:
            if self._epoch is not None and not self._this_epoch(now):
                self.scheme = CalibrationScheme(self.scheme.config)
                self._last_quotes_ts = None
            self._epoch = now // self.epoch_ns

    def _this_epoch(self, ts: int) -> bool:
        return self.epoch_ns is None or ts // self.epoch_ns == self._epoch

    def _refit(self, ctx, snap, out: WakeOutput) -> None:
        r = self.scheme.refit(snap)
        # the quality of a fit counts the violations of what was published (a fallback
        # publishes the clean last good surface)
        out.quality = None if r.quality is None else replace(
            r.quality, arb_violations=len(r.surface.violations) if r.surface is not None else 0)
        out.fitted, out.fell_back = r.fitted, r.fitted is not None and r.fell_back
        out.good = r.fitted is not None and self.scheme.last_good is r.fitted
        out.publish, out.usable_ts = r.surface, ctx.now + self.latency_ns
        out.spot = ctx.market.spot()
        out.fits = surface_fit_rows(r, snap, self.scheme.config.model)
        last = self._last_quotes_ts
        if r.fitted is None or last is not None and ctx.now - last < self.quotes_every_ns:
            return
        rows = calibration_quote_rows(r.fitted, snap, r.used)
        if self.max_quote_rows and len(rows["strike"]) > self.max_quote_rows:
            rows = {k: v[: self.max_quote_rows] for k, v in rows.items()}
        if len(rows["strike"]):
            self._last_quotes_ts = ctx.now
            out.quotes = {k: v for k, v in rows.items() if k != "ts"}

    @property
    def replayed_whole(self) -> bool:
        """Replaying a stream, and every row of it has been replayed: what the run derives
        from the published surfaces is what the build derived."""
        return self.stream is not None and self._row == len(self.stream)

    def metrics(self) -> dict:
        qualities, oos, fallbacks, skipped = (self.qualities, self.oos, self.fallbacks,
                                              self.skipped)
        if self.stream is not None:  # what a live consumer would have accumulated
            if self.replayed_whole and self.stream.metrics is not None:
                return dict(self.stream.metrics)  # the build's, over the same rows
            qualities, oos, fallbacks, skipped = self.stream.metrics_rows(self._row)
        out = aggregate(qualities, oos)
        out["fallbacks"] = fallbacks
        out["skipped_no_quotes"] = skipped
        return out


def _built(surface: Any) -> Surface:
    """A published surface, built if it is a replaying consumer's loader."""
    return surface if isinstance(surface, Surface) else surface()


def _parts(block: Block) -> tuple:
    return block.digest, block.table, block.i0, block.i1
