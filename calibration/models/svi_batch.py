"""Many SVI slice fits in one compiled call, spread over the cores.

The expiries of one refit are independent SVI problems until the calendar floor
(:mod:`calibration.models.svi`, whose kernel each problem runs unchanged), so a refit hands
them over together: one call instead of one per expiry, and a large one's slices fitted in
parallel by numba's ``prange`` (threads: numba's, ``NUMBA_NUM_THREADS``; see
:func:`fit_svi_many` and :data:`PARALLEL_MIN_WORK`).

Each slice's result is exactly what :func:`calibration.models.svi.fit_svi` returns for the
same arguments, bit for bit: the same kernel on the same inputs, each slice on one thread,
nothing summed across slices.  The thread count therefore never changes a result.

>>> import numpy as np
>>> from calibration.models.svi import SVIParams, fit_svi, svi_total_variance
>>> k = np.linspace(-0.4, 0.3, 15)
>>> iv = np.sqrt(svi_total_variance(k, SVIParams(0.004, 0.03, -0.3, 0.02, 0.1)) / 0.1)
>>> p = SVIProblem(k, iv, 0.1, np.ones(15), iv - 0.002, iv + 0.002)
>>> many = fit_svi_many([p, p], band=True, mid_weight=0.1)
>>> one = fit_svi(k, iv, 0.1, np.ones(15), iv - 0.002, iv + 0.002, band=True,
...               mid_weight=0.1)
>>> many[0] == many[1] == one
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import get_num_threads, njit, prange

from calibration.models.svi import (
    _NONE,
    LEE_SLOPE,
    SVIFit,
    SVIParams,
    fit_result,
    fit_slice,
    fit_svi,
)

__all__ = ["SVIProblem", "fit_svi_many", "fit_svi_rows"]


@dataclass(frozen=True)
class SVIProblem:
    """One slice for :func:`fit_svi_many`: the arguments of
    :func:`calibration.models.svi.fit_svi` that differ between the slices of a refit (no
    calendar floor: a floor depends on the previous expiry's final fit)."""

    k: np.ndarray
    iv_mid: np.ndarray
    t: float
    weights: np.ndarray
    iv_bid: np.ndarray
    iv_ask: np.ndarray
    prev: SVIParams | None = None
    lam: float = 0.0
    warm: bool = True
    n_starts: int = 1


#: Quote-starts (a slice's quotes times its starts, summed) from which a refit's slices are
#: spread over numba's threads.  Handing a parallel region to OpenMP's threads, which wait
#: passively between regions (:mod:`calibration`), costs more than it saves on a typical
#: refit: with refits of 12 expiries of about 30 quotes, the synthetic day at a 1 s cadence
#: built in 124.9-127.0 s in parallel against 119.1-119.2 s on the calling thread (2 cores,
#: alternating), while 90 slices (about 2,500 quotes) fit in 1.1 ms on 2 threads against
#: 2.0 ms on one.  A refit timed alone, back to back, is faster in parallel (the bench's
#: ``surface_refit``: its fit 0.79 ms against 0.92-1.02 ms): a backtest's refits are not.
PARALLEL_MIN_WORK = 2000


@njit(cache=True, inline="always")
def _fit_into(out, nev, j, off, k, mid, bid, ask, w, t, band, mid_weight, slope, lam, prev,
              start_at_prev, n_starts, max_iter, precision):
    """Fit slice ``j`` (rows ``off[j]:off[j + 1]`` of the per-quote arrays, its weights
    ``w`` as given: ``fit_slice`` normalises them) into row ``j`` of ``out`` and ``nev``."""
    a, b = off[j], off[j + 1]
    o, ne = fit_slice(k[a:b], mid[a:b], t[j], w[a:b], bid[a:b], ask[a:b], band, mid_weight,
                      slope, lam[j], prev[j], start_at_prev[j], n_starts[j], max_iter,
                      precision, _NONE, _NONE, 0)
    out[j] = o
    nev[j] = ne


@njit(cache=True, parallel=True)
def _fit_many_parallel(order, off, k, mid, bid, ask, w, t, band, mid_weight, slope, lam,
                       prev, start_at_prev, n_starts, max_iter, precision):
    """The slices ``order`` fitted (:func:`_fit_into`), numba giving each thread a
    contiguous block of ``order``."""
    n = off.shape[0] - 1
    out, nev = np.empty((n, 6)), np.empty(n, np.int64)
    for jj in prange(order.shape[0]):
        _fit_into(out, nev, order[jj], off, k, mid, bid, ask, w, t, band, mid_weight, slope,
                  lam, prev, start_at_prev, n_starts, max_iter, precision)
    return out, nev


@njit(cache=True)
def _fit_many_serial(order, off, k, mid, bid, ask, w, t, band, mid_weight, slope, lam,
                     prev, start_at_prev, n_starts, max_iter, precision):
    """:func:`_fit_many_parallel` on the calling thread."""
    n = off.shape[0] - 1
    out, nev = np.empty((n, 6)), np.empty(n, np.int64)
    for jj in range(order.shape[0]):
        _fit_into(out, nev, order[jj], off, k, mid, bid, ask, w, t, band, mid_weight, slope,
                  lam, prev, start_at_prev, n_starts, max_iter, precision)
    return out, nev


def balanced_order(sizes: np.ndarray, threads: int) -> np.ndarray:
    """An order of the slices in which each of ``threads`` equal contiguous blocks holds a
    similar number of quotes: sorted by size, largest first, dealt out in a snake (the work
    of a fit grows with its quotes, roughly)."""
    n = len(sizes)
    threads = max(1, min(threads, n))
    by_size = np.argsort(-np.asarray(sizes), kind="stable")
    blocks: list[list[int]] = [[] for _ in range(threads)]
    for r, j in enumerate(by_size.tolist()):
        lap, pos = divmod(r, threads)
        blocks[pos if lap % 2 == 0 else threads - 1 - pos].append(j)
    return np.array([j for b in blocks for j in b], dtype=np.int64)


def fit_svi_many(problems: Sequence[SVIProblem], *, band: bool = False,
                 mid_weight: float = 0.1, max_iter: int = 80, slope_max: float = LEE_SLOPE,
                 precision: float = 1.0, parallel_min: int = PARALLEL_MIN_WORK
                 ) -> list[SVIFit]:
    """:func:`calibration.models.svi.fit_svi` of each problem (with the shared loss and
    search settings given here), in one compiled call; one problem is fitted directly.

    With ``parallel_min`` quote-starts or more (:data:`PARALLEL_MIN_WORK`) the slices run
    on numba's threads (``numba.get_num_threads()``: every core unless
    ``NUMBA_NUM_THREADS`` or ``numba.set_num_threads`` says otherwise); the results do not
    depend on how many, nor on whether they run in parallel."""
    if len(problems) <= 1:
        return [fit_svi(p.k, p.iv_mid, p.t, p.weights, p.iv_bid, p.iv_ask, prev=p.prev,
                        lam=p.lam, band=band, mid_weight=mid_weight, n_starts=p.n_starts,
                        max_iter=max_iter, slope_max=slope_max, precision=precision,
                        warm=p.warm) for p in problems]
    def cat(arrays) -> np.ndarray:
        return np.ascontiguousarray(np.concatenate(arrays), dtype=float)

    sizes = np.array([len(p.k) for p in problems], dtype=np.int64)
    has_prev = [p.prev is not None for p in problems]
    return fit_svi_rows(
        np.concatenate(([0], np.cumsum(sizes))), cat([p.k for p in problems]),
        cat([p.iv_mid for p in problems]), cat([p.iv_bid if band else p.iv_mid for p in problems]),
        cat([p.iv_ask if band else p.iv_mid for p in problems]),
        cat([p.weights for p in problems]), np.array([float(p.t) for p in problems]),
        np.array([p.prev.to_array() if h else np.zeros(5) for p, h in zip(problems, has_prev)]),
        np.array([float(p.lam) if h else 0.0 for p, h in zip(problems, has_prev)]),
        np.array([h and p.warm for p, h in zip(problems, has_prev)]),
        np.array([int(p.n_starts) for p in problems], dtype=np.int64),
        np.arange(len(problems)), band=band, mid_weight=mid_weight, max_iter=max_iter,
        slope_max=slope_max, precision=precision, parallel_min=parallel_min)


def fit_svi_rows(off: np.ndarray, k: np.ndarray, iv_mid: np.ndarray, iv_bid: np.ndarray,
                 iv_ask: np.ndarray, weights: np.ndarray, t: np.ndarray, prev: np.ndarray,
                 lam: np.ndarray, warm: np.ndarray, n_starts: np.ndarray, todo: np.ndarray,
                 *, band: bool = False, mid_weight: float = 0.1, max_iter: int = 80,
                 slope_max: float = LEE_SLOPE, precision: float = 1.0,
                 parallel_min: int = PARALLEL_MIN_WORK) -> list[SVIFit]:
    """:func:`fit_svi_many` of problems given as flat columns (a refit's
    :class:`calibration.loss.FitBatch`, without building a problem per slice): problem ``j``
    is rows ``off[j]:off[j + 1]`` of ``k``, the IVs and ``weights``, at maturity ``t[j]``,
    with previous parameters ``prev[j]`` (rows ``a, b, rho, m, sigma``; read when
    ``lam[j] > 0`` or ``warm[j]``).  Only the problems ``todo`` are fitted; their fits come
    back in that order.  ``iv_bid`` / ``iv_ask`` are read only with ``band``; the slices
    run in parallel from ``parallel_min`` quote-starts (:func:`fit_svi_many`)."""
    todo = np.asarray(todo, dtype=np.int64)
    if todo.size == 0:
        return []
    n_starts = np.asarray(n_starts, dtype=np.int64)
    sizes = np.diff(off)[todo]
    if int(sizes @ n_starts[todo]) >= parallel_min:
        kernel, order = _fit_many_parallel, todo[balanced_order(sizes, get_num_threads())]
    else:
        kernel, order = _fit_many_serial, todo
    out, nev = kernel(
        order, off, k, iv_mid, iv_bid if band else iv_mid, iv_ask if band else iv_mid,
        np.asarray(weights, dtype=float),
        np.asarray(t, dtype=float), bool(band), float(mid_weight), float(slope_max),
        np.asarray(lam, dtype=float), np.asarray(prev, dtype=float),
        np.asarray(warm, dtype=np.bool_), n_starts,
        int(max_iter), float(precision))
    return [fit_result(o, n) for o, n in zip(out[todo].tolist(), nev[todo].tolist())]
