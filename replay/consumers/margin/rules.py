"""Rules: margin parameters set from the market as the replay runs.

A rule is any object with ``params(ctx, surface, forecasts) -> dict[str, float]``: the
parameter values (names of :class:`~replay.consumers.margin.portfolio.PMParams` or
:class:`~replay.consumers.margin.standard.StandardParams`) in force from this evaluation on.
It sees the market as of the evaluation, the published surface (None before the first) and
the latest vol forecasts (a :class:`~replay.consumers.forecast.ForecastBoard` with
``forecast=all``, else None), so it is causal by construction.  Rules are config entries with ``_target_``
(``margin.rule._target_: mypackage.MyRule``), so users plug in their own; a sweep over a
rule's arguments traces the frontier of breach rate against average margin
(``experiment=margin_frontier``).
"""

from __future__ import annotations

import math

import numpy as np

from replay.errors import ConfigError

YEAR_S = 365.0 * 86400


class ImpliedMove:
    """``price_range = clip(k * vol(h) * sqrt(h), floor, cap)``: the stress move is ``k``
    standard deviations of the underlying over the liquidation horizon ``h``, at the
    surface's at-the-money implied vol for that horizon (``vol="surface"``: total variance
    interpolated between slices, :class:`calibration.surface.Surface`) or at the latest
    forecast of ``forecast`` (``vol="forecast"``: e.g. ``garch``; needs ``forecast=all``), for
    the horizon ``h`` when ``forecast.horizons_s`` holds it, else for the shortest one.
    Before a vol is known the range stays at ``floor`` (and at the configured
    ``price_range`` when ``floor`` is 0).

    This is the square-root-of-time scaling of a normal VaR (Jorion, *Value at Risk*, 3rd ed.,
    2007, ch. 5); with ``k = 2.33`` a delta-one position moves by more than the range in about
    1 % of the windows of length ``h`` when realised vol equals the implied one.  Portfolio
    margin adds the delta shock (``max_delta_shock`` of the range, 10 % by default) to such a
    position's requirement, so at ``k = 2.33`` it breaches about 0.5 % of the windows and
    ``k = 2.33 / 1.1 = 2.12`` gives 1 %.
    """

    def __init__(self, k: float = 3.0, horizon_s: float = 3600.0, floor: float = 0.0,
                 cap: float = 1.0, key: str = "price_range", vol: str = "surface",
                 forecast: str = "garch") -> None:
        if vol not in ("surface", "forecast"):
            raise ConfigError(f"margin.rule.vol: {vol!r} is not allowed; choose surface or "
                              "forecast")
        self.vol, self.forecast = vol, forecast
        for name, v in (("k", k), ("horizon_s", horizon_s)):
            if not (isinstance(v, int | float) and v > 0):
                raise ConfigError(f"margin.rule.{name}: {v!r} must be a positive number")
        if not 0 <= floor <= cap:
            raise ConfigError(f"margin.rule.floor/cap: need 0 <= floor <= cap, got {floor}, {cap}")
        self.k, self.h, self.floor, self.cap, self.key = float(k), float(horizon_s), floor, cap, key

    def params(self, ctx, surface, forecasts=None) -> dict[str, float]:
        if self.vol == "forecast":
            if forecasts is None:
                raise ConfigError("margin.rule.vol: 'forecast' needs forecasts (forecast=all)")
            # the forecast for the rule's own horizon when one is made, else the shortest's
            vol = forecasts.vol(self.forecast, self.h)
            if not math.isfinite(vol):
                vol = forecasts.vol(self.forecast)
        else:
            vol = surface.atm_vol(self.h / YEAR_S) if surface is not None else math.nan
        if not math.isfinite(vol):
            return {self.key: self.floor} if self.floor > 0 else {}
        move = self.k * vol * math.sqrt(self.h / YEAR_S)
        return {self.key: min(max(move, self.floor), self.cap)}


class SurfaceVariability:
    """Vol shocks scaled by how much the surface has been moving: ``volatility_range_up`` and
    ``volatility_range_down`` are set to ``clip(k * s * sqrt(h), floor, cap)`` with ``s`` the
    realised volatility of the log ATM vol at ``tenor_s`` over the last ``window_s`` of market
    time, estimated from the surfaces seen at the margin evaluations::

        s^2 = sum_i (ln v_i - ln v_{i-1})^2 / sum_i (t_i - t_{i-1})      (per second)

    (the realised-variance estimator of a diffusion sampled at irregular times; Andersen,
    Bollerslev, Diebold and Labys, "Modeling and forecasting realized volatility",
    *Econometrica* 71(2), 2003).  ``volatility_range_down`` is capped below 1.  Until two
    observations exist the configured ranges stay.  It keeps its observations, so it carries
    them through a snapshot (``state_dict``).
    """

    def __init__(self, k: float = 3.0, horizon_s: float = 3600.0, window_s: float = 86400.0,
                 tenor_s: float = 30 * 86400.0, floor: float = 0.05, cap: float = 2.0) -> None:
        if not (k > 0 and horizon_s > 0 and window_s > 0 and tenor_s > 0 and 0 <= floor <= cap):
            raise ConfigError("margin.rule: need k, horizon_s, window_s, tenor_s > 0 and "
                              f"0 <= floor <= cap (got {k}, {horizon_s}, {window_s}, "
                              f"{tenor_s}, {floor}, {cap})")
        self.k, self.h, self.window_ns = float(k), float(horizon_s), int(window_s * 1e9)
        self.tenor_t = tenor_s / YEAR_S
        self.floor, self.cap = float(floor), float(cap)
        self.obs: list[tuple[int, float]] = []  # (ts, ln ATM vol)

    def params(self, ctx, surface, forecasts=None) -> dict[str, float]:
        vol = surface.atm_vol(self.tenor_t) if surface is not None else math.nan
        if math.isfinite(vol) and vol > 0 and (not self.obs or ctx.now > self.obs[-1][0]):
            self.obs.append((int(ctx.now), math.log(vol)))
        self.obs = [o for o in self.obs if o[0] >= ctx.now - self.window_ns]
        if len(self.obs) < 2:
            return {}
        t = np.array([o[0] for o in self.obs], dtype=float) / 1e9
        lv = np.array([o[1] for o in self.obs])
        s = math.sqrt(float(np.sum(np.diff(lv) ** 2) / (t[-1] - t[0])))
        r = min(max(self.k * s * math.sqrt(self.h), self.floor), self.cap)
        return {"volatility_range_up": r, "volatility_range_down": min(r, 0.95)}

    def state_dict(self) -> dict:
        return {"obs": [list(o) for o in self.obs]}

    def load_state_dict(self, d: dict) -> None:
        self.obs = [(int(a), float(b)) for a, b in d["obs"]]
