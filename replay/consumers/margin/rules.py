"""Rules: margin parameters set from the market as the replay runs.

A rule is any object with ``params(ctx, surface) -> dict[str, float]``: the parameter values
(names of :class:`~replay.consumers.margin.portfolio.PMParams` or
:class:`~replay.consumers.margin.standard.StandardParams`) in force from this evaluation on.
It sees the market as of the evaluation and the published surface (None before the first),
so it is causal by construction.  Rules are config entries with ``_target_``
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
    """``price_range = clip(k * ATM_IV(h) * sqrt(h), floor, cap)``: the stress move is ``k``
    standard deviations of the underlying over the liquidation horizon ``h`` at the
    surface's at-the-money implied vol for that horizon (total variance interpolated between
    slices, :class:`calibration.surface.Surface`).  Before a surface is published, or when
    its ATM vol is not finite, the range stays at ``floor`` (and at the configured
    ``price_range`` when ``floor`` is 0).

    This is the square-root-of-time scaling of a normal VaR (Jorion, *Value at Risk*, 3rd ed.,
    2007, ch. 5); with ``k = 2.33`` a delta-one position breaches about 1 % of the windows of
    length ``h`` when realised vol equals the implied one.
    """

    def __init__(self, k: float = 3.0, horizon_s: float = 3600.0, floor: float = 0.0,
                 cap: float = 1.0, key: str = "price_range") -> None:
        for name, v in (("k", k), ("horizon_s", horizon_s)):
            if not (isinstance(v, int | float) and v > 0):
                raise ConfigError(f"margin.rule.{name}: {v!r} must be a positive number")
        if not 0 <= floor <= cap:
            raise ConfigError(f"margin.rule.floor/cap: need 0 <= floor <= cap, got {floor}, {cap}")
        self.k, self.h, self.floor, self.cap, self.key = float(k), float(horizon_s), floor, cap, key

    def atm_vol(self, surface) -> float:
        t = self.h / YEAR_S
        f = surface.forward(t)
        return float(np.asarray(surface.iv(np.asarray(f), t)).ravel()[0])

    def params(self, ctx, surface) -> dict[str, float]:
        vol = self.atm_vol(surface) if surface is not None else math.nan
        if not math.isfinite(vol):
            return {self.key: self.floor} if self.floor > 0 else {}
        move = self.k * vol * math.sqrt(self.h / YEAR_S)
        return {self.key: min(max(move, self.floor), self.cap)}
