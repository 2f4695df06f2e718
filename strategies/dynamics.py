"""What a hedger learns of the smile's dynamics as the replay runs, from past surfaces only.

:class:`SmileTracker` looks at the published surface at each hedging wake.  For a reference
expiry (the nearest with at least ``min_days`` to go) it keeps the log forward, the ATM vol
and skew, and the vols of a few fixed strikes around the money with their call deltas.  When
an observation comes at least ``horizon_s`` after the last one kept, the pair of them gives

* an SSR pair ``x = s'(0) d ln F``, ``y = d sigma_ATM``
  (:func:`calibration.pricing.smile_delta.ssr_estimate`), and
* Hull-White samples: each strike's vol move against ``d ln F`` at its call delta
  (:func:`calibration.pricing.smile_delta.hull_white_fit`),

and the estimates use the pairs of the trailing ``window_s``: causal by construction.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from calibration.pricing.black import delta as black_delta
from calibration.pricing.smile_delta import (
    hull_white_fit,
    hull_white_vol_move,
    ssr_estimate,
    ssr_vol_move,
)
from replay.units import NS

YEAR_NS = 365.0 * 86400 * NS
#: strikes observed per surface: F exp(z vol sqrt(T)) for these z
Z_GRID = (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5)


class SmileTracker:
    """Causal SSR and Hull-White coefficients from the surfaces seen (module docstring)."""

    def __init__(self, horizon_s: float = 300.0, window_s: float = 86400.0,
                 min_days: float = 2.0) -> None:
        self.horizon_ns, self.window_ns = int(horizon_s * NS), int(window_s * NS)
        self.min_t = min_days / 365.0
        self.last: dict | None = None  # the observation pairs start from
        self.last_now: int | None = None  # the instant last observed (once per instant)
        self.pairs: deque = deque()  # (end ts, x, y, dvol[], dlnf, delta[], t)

    def observe(self, now: int, surface) -> None:
        if surface is None:
            return
        ok = np.flatnonzero(surface.ts >= self.min_t + (now - surface.ts_ns) / YEAR_NS)
        if not ok.size:
            return
        sl = surface.slices[int(ok[0])]
        t = (sl.expiry_ns - now) / YEAR_NS
        vol, skew = (float(x) for x in sl.vol_and_skew(0.0))
        f = float(sl.forward)
        if self.last is not None and self.last["expiry"] == sl.expiry_ns:
            if now - self.last["ts"] < self.horizon_ns:
                return
            last = self.last
            dlnf = math.log(f / last["f"])
            vols = np.asarray(sl.iv(np.log(last["k"] / f)), dtype=float)
            self.pairs.append((now, last["skew"] * dlnf, vol - last["vol"], vols - last["vols"],
                               dlnf, last["d"], last["t"]))
        k = f * np.exp(np.array(Z_GRID) * vol * math.sqrt(max(t, 1e-6)))
        vols = np.asarray(sl.iv(np.log(k / f)), dtype=float)
        self.last = {"ts": int(now), "expiry": int(sl.expiry_ns), "f": f, "vol": vol,
                     "skew": skew, "k": k, "vols": vols, "t": t,
                     "d": np.asarray(black_delta(np.full(k.size, f), k, np.full(k.size, max(t, 1e-6)),
                                                 vols, np.ones(k.size, bool)), dtype=float)}
        while self.pairs and self.pairs[0][0] < now - self.window_ns:
            self.pairs.popleft()

    def ssr(self) -> float:
        """The SSR of the window's pairs (NaN with fewer than 3)."""
        if len(self.pairs) < 3:
            return math.nan
        return ssr_estimate(np.array([p[1] for p in self.pairs]),
                            np.array([p[2] for p in self.pairs]))[0]

    def hull_white(self) -> np.ndarray | None:
        """``(a, b, c)`` of the window's samples (None with fewer than 3 pairs)."""
        if len(self.pairs) < 3:
            return None
        n = len(Z_GRID)
        dvol = np.concatenate([p[3] for p in self.pairs])
        dlnf = np.repeat([p[4] for p in self.pairs], n)
        d = np.concatenate([p[5] for p in self.pairs])
        t = np.repeat([p[6] for p in self.pairs], n)
        ok = np.isfinite(dvol) & np.isfinite(d)
        return hull_white_fit(dvol[ok], dlnf[ok], d[ok], t[ok]) if ok.sum() >= 3 else None

    def state_dict(self) -> dict:
        def plain(v):
            return v.tolist() if isinstance(v, np.ndarray) else v

        last = None if self.last is None else {k: plain(v) for k, v in self.last.items()}
        return {"last": last, "pairs": [[plain(x) for x in p] for p in self.pairs],
                "last_now": self.last_now}

    def load_state_dict(self, d: dict) -> None:
        last = d["last"]
        self.last = None if last is None else {
            k: np.asarray(v, dtype=float) if isinstance(v, list) else v for k, v in last.items()}
        self.pairs = deque(tuple(np.asarray(x, dtype=float) if isinstance(x, list) else x
                                 for x in p) for p in d["pairs"])
        self.last_now = d["last_now"]


def with_delta_model(legs, surface, model: str, ssr, tracker: SmileTracker, now: int):
    """``legs`` (:class:`~strategies.greeks.BookLegs`) with each leg's vol move per
    log-forward move under ``model`` (:mod:`calibration.pricing.smile_delta`): the surface's
    skew at the leg's strike times ``R - 1`` (``R`` = 0 for sticky moneyness, ``ssr`` or the
    tracker's measured SSR), or the tracker's Hull-White fit.  The tracker observes the
    surface once per instant.  Sticky strike (unchanged legs) before a surface is published,
    or while a measured estimate has too few pairs."""
    measured = model == "min_variance" or (model == "ssr" and ssr == "measured")
    if measured and tracker.last_now != now:
        tracker.observe(now, surface)
        tracker.last_now = now
    if surface is None or not len(legs):
        return legs
    if model == "min_variance":
        coef = tracker.hull_white()
        if coef is None:
            return legs
        call_delta = black_delta(legs.forward, legs.strike, legs.t, legs.vol,
                                 np.ones(len(legs), bool))
        return legs.with_vol_moves(hull_white_vol_move(coef, call_delta, legs.t))
    r = 0.0 if model == "sticky_moneyness" else (
        tracker.ssr() if ssr == "measured" else float(ssr))
    if not math.isfinite(r):
        return legs
    # the skew of each leg's expiry as fitted, where its vol was read (Surface.iv_expiry)
    _, skew = surface.vol_and_skew(legs.strike, legs.t + surface.years_since_fit(now))
    return legs.with_vol_moves(ssr_vol_move(np.nan_to_num(skew), r))
