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
        # price, forward, strike, t (float64 bits) and is_call (0 or 1), by key
        self._bits = np.zeros((0, 5), dtype=np.int64)
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
        cols = [np.ascontiguousarray(c, dtype=np.float64) for c in (price, forward, strike, t)]
        call = np.ascontiguousarray(is_call, dtype=np.bool_)
        new = _stale_rows(key, *(c.view(np.int64) for c in cols), call, self._bits,
                          self._known)
        if new.size:
            iv = invert(*(c[new] for c in cols), call[new])
            _remember(key, new, *(c.view(np.int64) for c in cols), call,
                      np.asarray(iv, dtype=np.float64), self._bits, self._iv, self._known)
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
def _stale_rows(key, price, forward, strike, t, is_call, memo_bits, known):
    """Positions of the rows whose key is not known or whose inputs (``price``, ``forward``,
    ``strike``, ``t``: float64 bits as int64; ``is_call``) differ from the ones remembered
    for it, in order.  Bits, not values: NaN inputs (a missing side) match themselves."""
    out = np.empty(key.shape[0], dtype=np.int64)
    m = 0
    for i in range(key.shape[0]):
        kk = key[i]
        if not (known[kk] and memo_bits[kk, 0] == price[i] and memo_bits[kk, 1] == forward[i]
                and memo_bits[kk, 2] == strike[i] and memo_bits[kk, 3] == t[i]
                and memo_bits[kk, 4] == np.int64(is_call[i])):
            out[m] = i
            m += 1
    return out[:m]


@njit(cache=True)
def _remember(key, rows, price, forward, strike, t, is_call, iv, memo_bits, memo_iv, known):
    """Store the inputs and vol ``iv[j]`` of each row ``rows[j]`` under its key."""
    for j in range(rows.shape[0]):
        i = rows[j]
        kk = key[i]
        memo_bits[kk, 0], memo_bits[kk, 1], memo_bits[kk, 2] = price[i], forward[i], strike[i]
        memo_bits[kk, 3], memo_bits[kk, 4] = t[i], np.int64(is_call[i])
        memo_iv[kk] = iv[j]
        known[kk] = True
