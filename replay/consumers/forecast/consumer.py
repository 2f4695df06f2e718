"""The forecast consumer: journals every forecaster's vol forecast on a schedule and publishes
the latest ones to a :class:`ForecastBoard` that hedgers read (``strategy.hedge_vol=forecast``).

Forecasts depend only on the market and the forecast config, so they are computed in one
batch before the replay (:func:`~replay.consumers.forecast.forecasters.batch_forecasts`, from
the underlying's mid sampled by the store with previous-tick ASOF sampling); each forecast is
causal by construction (a look-ahead test perturbs the ticks after ``t``).  During the replay
the consumer wakes every ``every_s`` of market time, adds the ``implied`` forecast (the
published surface's ATM vol for the horizon) and journals one ``vol_forecast`` row per
forecaster and horizon.  ``realized_vol`` (and ``true_vol`` on a synthetic store) is NaN in the
event and filled in after the run (:mod:`replay.analytics.forecast_scores`): it is never
visible during the replay.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from replay.consumers.forecast.forecasters import (
    FORECASTERS,
    ORACLES,
    Bars,
    ForecastConfig,
    batch_forecasts,
)
from replay.engine.wake import WakeCondition
from replay.errors import ConfigError
from replay.model.events import EventKind, register_kind
from replay.units import NS

VOL_FORECAST = register_kind(EventKind("vol_forecast", "vol_forecasts", (
    ("forecaster", "str"), ("horizon_s", "float"), ("forecast_vol", "float"),
    ("realized_vol", "float"), ("true_vol", "float")),
    unhashed=("realized_vol", "true_vol")))
YEAR_S = 365.0 * 86400


class ForecastBoard:
    """The latest forecast of each forecaster and horizon, as of the replay's now.

    A forecast of the vol over the ``horizon_s`` after the instant it was made is kept while
    that window lasts, and dropped once it has passed with no newer forecast (a forecaster
    that cannot forecast, e.g. after a hole in the tape, leaves nothing stale behind): the
    readers then take their own fallback (a hedger the surface's vols, a margin rule its
    floor)."""

    def __init__(self) -> None:
        self.latest: dict[tuple[str, float], float] = {}
        self.made: dict[tuple[str, float], int] = {}  # when each was made (ns)
        self.ts: int | None = None

    def post(self, now: int, name: str, horizon_s: float, vol: float) -> None:
        """Record ``name``'s forecast for ``horizon_s`` made at ``now`` (NaN: none made)."""
        key = (name, float(horizon_s))
        if math.isfinite(vol):
            self.latest[key], self.made[key] = vol, now
        elif key in self.latest and now >= self.made[key] + round(key[1] * NS):
            del self.latest[key], self.made[key]

    def vol(self, name: str, horizon_s: float | None = None) -> float:
        """The latest ``name`` forecast (at its shortest horizon by default, the one the
        metrics score); NaN before one."""
        if horizon_s is None:
            hs = sorted(h for n, h in self.latest if n == name)
            if not hs:
                return math.nan
            horizon_s = hs[0]
        return self.latest.get((name, float(horizon_s)), math.nan)


class ForecastConsumer:
    """``forecast=all`` (module docstring; keys in docs/outputs.md)."""

    name = "forecast"

    def __init__(self, forecasters: list[str] | None = None,
                 horizons_s: list[float] | None = None, every_s: float = 300.0,
                 sample_s: float = 300.0, refit_s: float = 3600.0, lookback_s: float = 86400.0,
                 ewma_lambda: float = 0.94, flat_vol: float = 0.5, min_returns: int = 24,
                 board: Any = None, forecasts: ForecastBoard | None = None) -> None:
        for key, v in (("forecasters", forecasters), ("horizons_s", horizons_s)):
            if v is not None and not len(v):
                raise ConfigError(f"forecast.{key}: an empty list; null takes the default")
        names = tuple(forecasters or FORECASTERS)
        bad = [n for n in names if n not in FORECASTERS + ORACLES]
        if bad:
            raise ConfigError(f"forecast.forecasters: {bad[0]!r} is not a forecaster; choose "
                              f"from {', '.join(FORECASTERS + ORACLES)}")
        if not 0 < ewma_lambda < 1:
            raise ConfigError(f"forecast.ewma_lambda: {ewma_lambda!r} must be in (0, 1)")
        hs = tuple(float(h) for h in (horizons_s or [3600.0]))
        for key, v in (("every_s", every_s), ("sample_s", sample_s), ("refit_s", refit_s)):
            if not v > 0:
                raise ConfigError(f"forecast.{key}: {v!r} must be positive")
        if not math.isclose(every_s / sample_s, round(every_s / sample_s)):
            # a forecast between bar ends reads a stale bar, and its target begins before it
            raise ConfigError(f"forecast.every_s: {every_s:g} s is not a whole number of bars "
                              f"(forecast.sample_s = {sample_s:g} s)")
        odd = [h for h in hs if h < sample_s or not math.isclose(h / sample_s,
                                                                 round(h / sample_s))]
        if odd:  # the forecasters forecast whole bars, and the scores sum whole bars
            raise ConfigError(f"forecast.horizons_s: {odd[0]:g} s is not a whole number of "
                              f"bars (forecast.sample_s = {sample_s:g} s)")
        self.cfg = ForecastConfig(names, hs, float(every_s), float(sample_s), float(refit_s),
                                  float(lookback_s), float(ewma_lambda), float(flat_vol),
                                  int(min_returns))
        self.every_ns = int(every_s * NS)
        self.board, self.forecasts = board, forecasts if forecasts is not None else ForecastBoard()
        self.at = np.zeros(0, np.int64)
        self.table: dict = {}

    def prepare(self, bars: Bars, start: int, end: int,
                truth: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Compute the batch forecasts for the forecast times in ``(start, end]`` (``truth``:
        the synthetic variance path, for ``truth``)."""
        first = (start // self.every_ns + 1) * self.every_ns
        self.at = np.arange(first, end + 1, self.every_ns, dtype=np.int64)
        self.table = batch_forecasts(bars, self.at, self.cfg, truth)

    def on_start(self, ctx) -> WakeCondition:
        return WakeCondition(deadline=(ctx.now // self.every_ns + 1) * self.every_ns)

    def on_wake(self, ctx) -> WakeCondition:
        i = int(np.searchsorted(self.at, ctx.now))
        for h in self.cfg.horizons_s:
            for name in self.cfg.forecasters:
                if name == "implied":
                    v = self._implied(h)
                else:
                    col = self.table.get((name, h))
                    v = float(col[i]) if col is not None and i < self.at.size and \
                        self.at[i] == ctx.now else math.nan
                self.forecasts.post(ctx.now, name, h, v)
                if math.isfinite(v):
                    ctx.emit("vol_forecast", forecaster=name, horizon_s=h, forecast_vol=v,
                             realized_vol=math.nan, true_vol=math.nan)
        self.forecasts.ts = ctx.now
        return WakeCondition(deadline=(ctx.now // self.every_ns + 1) * self.every_ns)

    def _implied(self, h: float) -> float:
        surf = self.board.surface if self.board is not None else None
        return surf.atm_vol(h / YEAR_S) if surf is not None else math.nan

    def state_dict(self) -> dict:
        b = self.forecasts
        return {"latest": [[n, h, v, b.made[(n, h)]] for (n, h), v in sorted(b.latest.items())],
                "ts": b.ts}

    def load_state_dict(self, d: dict) -> None:
        b = self.forecasts
        b.latest = {(n, float(h)): float(v) for n, h, v, _ in d["latest"]}
        b.made = {(n, float(h)): int(made) for n, h, _, made in d["latest"]}
        b.ts = d["ts"]
