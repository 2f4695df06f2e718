"""Calibration loss options: which quotes count, how much, and against what target.

Every model minimises a weighted mean of squared implied-vol errors in vol points::

    L = sum_i W_i * e_i^2 / sum_i W_i

with one of three weightings ``W`` (``LossConfig.weighting``):

* ``"vega"``: Black vega of the quote at its mid vol, normalised by the ATM vega (an error in
  vol then costs what it costs in price);
* ``"spread"``: ``1 / h_i^2`` with ``h_i`` the half bid/ask spread in vol points, floored at
  ``min_half_spread`` so that one tight quote cannot dominate (the usual inverse-variance
  weighting of a quote whose noise is its half spread);
* ``"uniform"``.

and, with ``band=True``, the bid/ask-aware error: ``e_i = d(fit_i, [bid_iv_i, ask_iv_i])``,
zero inside the quoted band and linear outside (so ``e^2`` is quadratic outside), plus an
optional small pull ``mid_weight * (fit_i - mid_i)^2`` that picks the middle of the band when
the band alone leaves the fit undetermined.  Without ``band`` the error is ``fit_i - mid_i``.
The band used by the loss is the quoted one trimmed by ``band_margin`` of the spread on each
side: a dead-zone loss parks the fit on the band's edge, where the last digit decides whether
the quote counts as inside; the margin keeps the fit strictly inside.

Quotes whose bid sits at the minimum tick (the true value may be far below) and stale quotes
are multiplied by ``min_tick_weight`` / ``stale_weight``; a weight of 0 drops them.  Only
two-sided quotes (finite bid and ask IV) are used.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

from calibration.pricing.black import vega
from calibration.quotes import QuoteSlice, QuoteSnapshot
from calibration.sums import pairwise_sum

WEIGHTINGS = ("vega", "spread", "uniform")


@dataclass(frozen=True)
class LossConfig:
    weighting: str = "spread"
    band: bool = True
    # the pull to the mid: at 0.05, once SVI minimised the band loss exactly, the shootout's
    # warm SVI fits sat 0.3499 vol pts from the venue's marks; at 0.1 every model is inside
    # the band as often or more, and nearer the marks (BENCHMARKS.md, the shootout rows)
    mid_weight: float = 0.1
    min_tick_weight: float = 0.2
    stale_weight: float = 0.0
    min_half_spread: float = 0.25  # vol points
    band_margin: float = 0.1  # fraction of the spread trimmed from each side of the band

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"loss.weighting: {self.weighting!r} is not allowed; choose one of "
                             f"{', '.join(WEIGHTINGS)}")
        if not isinstance(self.band, bool):  # a string such as "no" would read as true
            raise ValueError(f"loss.band: {self.band!r} is not a boolean; use true or false")
        if self.mid_weight < 0 or self.min_tick_weight < 0 or self.stale_weight < 0:
            raise ValueError("loss.mid_weight, loss.min_tick_weight and loss.stale_weight must "
                             "be non-negative")
        if self.min_half_spread <= 0:
            raise ValueError("min_half_spread must be positive")
        if not 0.0 <= self.band_margin < 0.5:
            raise ValueError("band_margin must be in [0, 0.5)")


@dataclass(frozen=True, eq=False)
class FitData:
    """The quotes of one slice that enter the fit, with their weights (summing to 1)."""

    t: float
    k: np.ndarray
    mid: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    weight: np.ndarray
    index: np.ndarray  # positions in the source QuoteSlice

    @property
    def n(self) -> int:
        return int(self.k.size)


@dataclass(frozen=True, eq=False)
class FitBatch:
    """:func:`fit_data` of every slice of a snapshot, as flat columns: slice ``i``'s fit
    quotes are rows ``off[i]:off[i + 1]``; ``row`` is each one's position in the
    snapshot's :class:`~calibration.quotes.QuoteRows`."""

    off: np.ndarray
    t: np.ndarray
    k: np.ndarray
    mid: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    weight: np.ndarray
    index: np.ndarray
    row: np.ndarray
    k_lo: np.ndarray  # per slice: the least and greatest k of its fit quotes
    k_hi: np.ndarray

    def __len__(self) -> int:
        return self.t.size

    def size(self, i: int) -> int:
        return int(self.off[i + 1] - self.off[i])

    def data(self, i: int) -> FitData:
        """Slice ``i``'s :class:`FitData` (views of the columns)."""
        a, b = self.off[i], self.off[i + 1]
        return FitData(float(self.t[i]), self.k[a:b], self.mid[a:b], self.bid[a:b],
                       self.ask[a:b], self.weight[a:b], self.index[a:b])


def fit_batch(snapshot: QuoteSnapshot, cfg: LossConfig) -> FitBatch:
    """:func:`fit_data` of every slice of ``snapshot`` in one compiled pass over its flat
    rows (:attr:`~calibration.quotes.QuoteSnapshot.rows`), the same values to the bit."""
    r = snapshot.rows
    spread = cfg.weighting == "spread"
    raw = _NO_RAW if spread else _raw_weights(snapshot, cfg)  # spread: computed in the pass
    off, row, idx, ws, k, mid, lo, hi, k_lo, k_hi = _select_many(
        raw, spread, cfg.min_half_spread, r.start, r.stop, r.two_sided, r.min_tick, r.stale,
        cfg.min_tick_weight, cfg.stale_weight, r.k, r.mid_iv, r.bid_iv, r.ask_iv,
        cfg.band_margin)
    return FitBatch(off, np.array([sl.t for sl in snapshot.slices]), k, mid, lo, hi, ws, idx,
                    row, k_lo, k_hi)


def quote_weights(sl: QuoteSlice, cfg: LossConfig) -> np.ndarray:
    """Raw (un-normalised) weight of every quote of the slice; 0 for quotes not used."""
    usable = sl.two_sided
    if not usable.any():
        return np.zeros(sl.k.size)
    spread = cfg.weighting == "spread"
    raw = _NO_RAW if spread else _raw_weights(QuoteSnapshot(0, (sl,)), cfg)
    return _weights(raw, spread, cfg.min_half_spread, usable, sl.min_tick, sl.stale,
                    cfg.min_tick_weight, cfg.stale_weight, sl.bid_iv, sl.ask_iv)


def fit_data(sl: QuoteSlice, cfg: LossConfig) -> FitData:
    """The quotes of ``sl`` with positive weight, weights normalised to sum 1; ``bid``/``ask``
    are the loss band (trimmed by ``band_margin``).  The one-slice case of
    :func:`fit_batch`."""
    return fit_batch(QuoteSnapshot(0, (sl,)), cfg).data(0)


def _raw_weights(snapshot: QuoteSnapshot, cfg: LossConfig) -> np.ndarray:
    """The ``vega`` or ``uniform`` weight of each of the snapshot's flat rows (module
    docstring; 0 on a row of no slice): each quote's vega at its mid vol over its slice's
    ATM vega, at the median mid vol of the slice's two-sided quotes, in one vectorised
    call for all the slices."""
    r = snapshot.rows
    if cfg.weighting == "uniform":
        return np.ones(r.k.size)
    n = r.stop - r.start
    # the flat rows of the slices, slice by slice
    pos = np.arange(n.sum()) + np.repeat(r.start - np.concatenate(([0], np.cumsum(n)[:-1])), n)
    sls = snapshot.slices
    f, t = np.array([sl.forward for sl in sls]), np.array([sl.t for sl in sls])
    strike = np.concatenate([sl.strike for sl in sls]) if sls else np.zeros(0)
    mids = (m[~np.isnan(m)] for m in (r.mid_iv[a:b][r.two_sided[a:b]]
                                      for a, b in zip(r.start.tolist(), r.stop.tolist())))
    atm_vol = np.array([np.median(m) if m.size else np.nan for m in mids])  # nanmedian's
    raw = np.zeros(r.k.size)
    with np.errstate(invalid="ignore"):  # a slice with no mid vol has no weight
        raw[pos] = vega(np.repeat(f, n), strike, np.repeat(t, n), r.mid_iv[pos], True) \
            / np.repeat(vega(f, f, t, atm_vol, True), n)
    return raw


_NO_RAW = np.zeros(0)


@njit(cache=True)
def _weights(raw, spread, min_half_spread, usable, min_tick, stale, min_tick_weight,
             stale_weight, bid, ask):
    """Each quote's weight ``raw`` (with ``spread``, the spread weighting ``1 / h^2``,
    ``h = max(50 (ask - bid), min_half_spread)``, computed here as numpy computes it, NaN
    included), times ``min_tick_weight`` at the minimum tick and ``stale_weight`` when stale;
    0 where the quote is not usable or that is not finite."""
    w = np.zeros(usable.shape[0])
    for i in range(usable.shape[0]):
        if usable[i]:
            if spread:
                h = 50.0 * (ask[i] - bid[i])
                h = h if (h >= min_half_spread or h != h) else min_half_spread
                r = 1.0 / (h * h)
            else:
                r = raw[i]
            r = r * min_tick_weight if min_tick[i] else r
            r = r * stale_weight if stale[i] else r
            w[i] = r if np.isfinite(r) else 0.0
    return w


@njit(cache=True)
def _select_many(raw, spread, min_half_spread, start, stop, usable, min_tick, stale,
                 min_tick_weight, stale_weight, k, mid, bid, ask, margin):
    """The fit quotes of every slice (rows ``start[i]:stop[i]`` of the flat columns) in one
    pass: those of positive weight (:func:`_weights`), their slice offsets ``off``, their
    flat rows, their positions in their slice, their weights normalised per slice, ``k``,
    mids and loss band (the quoted one trimmed by ``margin`` of the spread on each side), and
    each slice's least and greatest ``k``."""
    n_sl = start.shape[0]
    w = _weights(raw, spread, min_half_spread, usable, min_tick, stale, min_tick_weight,
                 stale_weight, bid, ask)
    m = 0
    for j in range(n_sl):
        for i in range(start[j], stop[j]):
            m += w[i] > 0.0
    off = np.empty(n_sl + 1, np.int64)
    row, idx = np.empty(m, np.int64), np.empty(m, np.int64)
    ws, ks, mids, lo, hi = np.empty(m), np.empty(m), np.empty(m), np.empty(m), np.empty(m)
    c = 0
    for j in range(n_sl):
        off[j] = c
        for i in range(start[j], stop[j]):
            if w[i] > 0.0:
                trim = margin * (ask[i] - bid[i])
                row[c], idx[c], ws[c], ks[c], mids[c] = i, i - start[j], w[i], k[i], mid[i]
                lo[c], hi[c] = bid[i] + trim, ask[i] - trim
                c += 1
    off[n_sl] = c
    k_lo, k_hi = np.full(n_sl, np.inf), np.full(n_sl, -np.inf)
    for j in range(n_sl):  # normalised as fit_data normalises, numpy's sum included
        tot = pairwise_sum(ws, off[j], off[j + 1] - off[j])
        for i in range(off[j], off[j + 1]):
            if tot > 0:
                ws[i] /= tot
            # numpy's min and max: a NaN, once met, is the result
            x = ks[i]
            if x < k_lo[j] or x != x or i == off[j]:
                k_lo[j] = x
            if x > k_hi[j] or x != x or i == off[j]:
                k_hi[j] = x
    return off, row, idx, ws, ks, mids, lo, hi, k_lo, k_hi


def fit_inputs_digest(d: FitData, forward: float, prev_slice: Any = None) -> bytes:
    """What a slice's fit depends on besides its own previous parameters: the quotes that
    enter it (log-moneyness, mid, loss band, weights, positions), the forward and, for eSSVI,
    the previous expiry's parameters its calendar constraints come from (``prev_slice``, a
    model's parameters: the models import this module, so it is not typed by name).  Time to expiry is
    left out on purpose: it moves at every wake, while the quotes (each inverted at the time
    of its own update, :func:`calibration.quotes.build_snapshot`) stay until they change."""
    h = hashlib.blake2b(digest_size=16)
    for a in (d.k, d.mid, d.bid, d.ask, d.weight, d.index):
        h.update(np.ascontiguousarray(a))  # the array's bytes, without copying them
    h.update(struct.pack("=d", forward))
    if prev_slice is not None:
        h.update(prev_slice.to_array().tobytes())  # a model's parameters, in field order
    return h.digest()


def residuals(fit_iv: np.ndarray, d: FitData, cfg: LossConfig) -> np.ndarray:
    """Residual vector (vol points) whose sum of squares is the loss ``L`` of the module
    docstring; for least-squares solvers."""
    f = 100.0 * np.asarray(fit_iv, dtype=float)
    sw = np.sqrt(d.weight)
    if not cfg.band:
        return sw * (f - 100.0 * d.mid)
    out = sw * (f - np.clip(f, 100.0 * d.bid, 100.0 * d.ask))
    if cfg.mid_weight > 0:
        out = np.concatenate([out, sw * np.sqrt(cfg.mid_weight) * (f - 100.0 * d.mid)])
    return out


def loss(fit_iv: np.ndarray, d: FitData, cfg: LossConfig) -> float:
    """The loss ``L`` (vol points squared)."""
    r = residuals(fit_iv, d, cfg)
    return float(r @ r)
