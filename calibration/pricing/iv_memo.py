"""Implied vols remembered per quote, so that a snapshot inverts only what changed.

A calibration wakes every second or so, and between two wakes only a few quotes of a book of
hundreds are updated.  :class:`IVMemo` keeps, per caller-chosen integer key (an instrument
and side), the inputs of its last inversion as raw float64 bits and the vol it gave; a row
whose inputs are bit-identical is answered from the memo, the rest are inverted by
:func:`calibration.pricing.iv.implied_vol`.

The memo is exact, not an approximation: ``implied_vol`` computes each element on its own,
so a memoised call returns bit for bit what a full call returns, and a memo can be dropped at
any time (a resumed replay starts with an empty one) without changing any figure.  Holding
the inputs fixed between updates is the caller's part: a quote inverted at the time of its
own update (:func:`calibration.quotes.build_snapshot`) has the same inputs until it changes.

>>> import numpy as np
>>> memo = IVMemo()
>>> key, f, k, t = np.arange(2), np.full(2, 100.0), np.array([90.0, 110.0]), np.full(2, 0.1)
>>> first = memo(key, np.array([0.9, 1.2]), f, k, t, np.array([False, True]))
>>> again = memo(key, np.array([0.9, 1.3]), f, k, t, np.array([False, True]))
>>> memo.inverted, bool(first[0] == again[0])
(3, True)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numba import njit

from calibration.pricing.iv import implied_vol

__all__ = ["IVMemo"]


class IVMemo:
    """Per-key memo of :func:`calibration.pricing.iv.implied_vol`; see the module docstring.

    ``inverted`` counts the rows actually inverted over the memo's life.
    """

    def __init__(self) -> None:
        self._bits = np.zeros((0, 5), dtype=np.int64)  # price, forward, strike, t, is_call
        self._iv = np.zeros(0)
        self._known = np.zeros(0, dtype=bool)
        self.inverted = 0

    def __call__(self, key: np.ndarray, price: np.ndarray, forward: np.ndarray,
                 strike: np.ndarray, t: np.ndarray, is_call: np.ndarray,
                 invert: Callable[..., np.ndarray] = implied_vol) -> np.ndarray:
        """Implied vols of the rows, one per ``key`` (non-negative, unique within a call: a
        key names one quote); equal to ``invert(price, forward, strike, t, is_call)``, where
        ``invert`` is ``implied_vol`` or a wrapper of it that computes the same elements."""
        key = np.asarray(key, dtype=np.int64)
        if key.size == 0:
            return np.zeros(0)
        self._grow(int(key.max()) + 1)
        x = np.empty((key.size, 5))
        x[:, 0], x[:, 1], x[:, 2], x[:, 3], x[:, 4] = price, forward, strike, t, is_call
        bits = x.view(np.int64)
        new = _stale_rows(key, bits, self._bits, self._known)
        if new.size:
            kn = key[new]
            self._iv[kn] = invert(x[new, 0], x[new, 1], x[new, 2], x[new, 3], x[new, 4] != 0.0)
            self._bits[kn] = bits[new]
            self._known[kn] = True
            self.inverted += int(new.size)
        return self._iv[key]

    def _grow(self, n: int) -> None:
        if n <= self._known.size:
            return
        n = max(n, 2 * self._known.size)
        self._bits = np.concatenate((self._bits, np.zeros((n - self._bits.shape[0], 5),
                                                          dtype=np.int64)))
        self._iv = np.concatenate((self._iv, np.zeros(n - self._iv.size)))
        self._known = np.concatenate((self._known, np.zeros(n - self._known.size, dtype=bool)))


@njit(cache=True)
def _stale_rows(key: np.ndarray, bits: np.ndarray, memo_bits: np.ndarray,
                known: np.ndarray) -> np.ndarray:
    """Positions of the rows whose key is not known or whose input bits differ from the ones
    remembered for it, in order.  Bits, not values: NaN inputs (a missing side) match
    themselves."""
    out = np.empty(key.shape[0], dtype=np.int64)
    m = 0
    for i in range(key.shape[0]):
        kk = key[i]
        stale = not known[kk]
        for j in range(bits.shape[1]):
            stale = stale or memo_bits[kk, j] != bits[i, j]
        if stale:
            out[m] = i
            m += 1
    return out[:m]
