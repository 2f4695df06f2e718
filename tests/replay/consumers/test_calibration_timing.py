"""When a surface is fitted and when strategies can use it: a fit at a deadline ``T`` sees
every market event with ``ts_recv <= T``; with ``calibration.latency = L`` it becomes usable
at ``T + L`` and not before; at an equal timestamp it is published before any other
consumer's deadline wake of that instant (the calibration consumer comes first)."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from replay.consumers.calibration import CalibrationConsumer
from replay.consumers.surface_stream import StreamRecorder
from replay.engine.loop import run_replay
from replay.engine.wake import WakeCondition
from replay.units import NS
from strategies.board import SurfaceBoard

EVERY_S, LATENCY_S, PROBE_S = 60, 30, 15


class Probe:
    """Wakes every PROBE_S seconds and notes the surface it can see."""

    name = "probe"

    def __init__(self, board: SurfaceBoard):
        self.board, self.seen = board, []

    def on_start(self, ctx):
        return WakeCondition(deadline=(ctx.now // (PROBE_S * NS) + 1) * PROBE_S * NS)

    def on_wake(self, ctx):
        self.seen.append((ctx.now, self.board.ts if self.board.surface is not None else None))
        return WakeCondition(deadline=ctx.now + PROBE_S * NS)

    def state_dict(self):
        return {}

    def load_state_dict(self, d):
        pass


@pytest.mark.parametrize("latency_s", [0, LATENCY_S])
def test_a_surface_is_usable_from_fit_time_plus_latency(gbm_quarter_hour, tmp_path, latency_s):
    board = SurfaceBoard()
    rec = StreamRecorder()
    calib = CalibrationConsumer(every=f"{EVERY_S}s", latency=latency_s, board=board,
                                recorder=rec)
    probe = Probe(board)
    run_replay(gbm_quarter_hour, [calib, probe], tmp_path / "run", progress=False)
    fits = [int(t) for t, sw in zip(rec.wakes["ts"], rec.wakes["surface_wake"]) if sw >= 0]
    assert len(fits) >= 10
    for now, fit_ts in probe.seen:
        usable = [f for f in fits if f + latency_s * NS <= now]
        # the latest fit whose usable time has come, never a later one
        assert fit_ts == (usable[-1] if usable else None), (now, fit_ts)
    # the probe wakes at the very instant each surface becomes usable, and already sees it
    exact = {now for now, _ in probe.seen} & {f + latency_s * NS for f in fits}
    assert exact and all(dict(probe.seen)[t] == t - latency_s * NS for t in exact)


def test_a_fit_at_a_deadline_sees_every_event_up_to_it(gbm_quarter_hour, tmp_path):
    rec = StreamRecorder()
    run_replay(gbm_quarter_hour, [CalibrationConsumer(every="60s", recorder=rec)],
               tmp_path / "run", progress=False)
    from replay.model.schema import MARKET_TABLES  # every replayed stream, listings included

    with duckdb.connect(str(gbm_quarter_hour), read_only=True) as con:
        for ts, n in zip(rec.wakes["ts"], rec.wakes["n_events"]):
            count = sum(con.execute(f"SELECT count(*) FROM {t} WHERE ts_recv <= ?",
                                    [int(ts)]).fetchone()[0] for t in MARKET_TABLES)
            assert n == count


@pytest.mark.parametrize("latency_s", [0, 5])
def test_quote_count_refits_stay_every_n_quotes_with_a_latency(gbm_quarter_hour, tmp_path,
                                                                latency_s):
    """``every=300q``: a fit every 300 option quotes, whatever the latency.  The publication
    at fit + latency is a deadline wake in the middle of the count; it used to restart the
    count, so the fits came 300 quotes plus the latency's quotes apart (435-516 at 5 s)."""
    rec = StreamRecorder()
    calib = CalibrationConsumer(every="300q", latency=latency_s, board=SurfaceBoard(),
                                recorder=rec)
    run_replay(gbm_quarter_hour, [calib], tmp_path / "run", progress=False)
    fits = sorted({int(t) for t, sw in zip(rec.wakes["ts"], rec.wakes["surface_wake"])
                   if sw >= 0})
    with duckdb.connect(str(gbm_quarter_hour), read_only=True) as con:
        quotes = con.sql("SELECT ts_recv FROM option_quotes ORDER BY ts_recv, seq"
                         ).fetchnumpy()["ts_recv"]
    gaps = np.diff(np.searchsorted(quotes, fits, side="right"))
    assert len(gaps) >= 10 and (gaps == 300).all(), gaps[:10]
