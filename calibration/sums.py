"""numpy's floating-point sum, compiled, so that a numba pass can reduce exactly as numpy does.

``numpy.sum`` of float64 does not add left to right: it sums by blocks (pairwise summation;
N. J. Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., SIAM 2002, section
4.2, and numpy's ``pairwise_sum`` in ``loops_utils.h``):

* fewer than 8 values: one running sum from ``-0.0``;
* 8 to 128 values: eight running sums over the strides ``i = r mod 8``, combined as
  ``((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))``, then the ``n mod 8`` last values
  added one by one;
* more: the two halves (the first rounded down to a multiple of 8) summed so, then added.

A reduction of a contiguous 1-d array adds that to numpy's identity ``0.0``.  A compiled pass
that must give what the numpy definition of a quantity gives (a weight normalised to sum 1,
an RMSE), bit for bit, sums with :func:`pairwise_sum`; a test compares the two on random
arrays of every length up to a million.

>>> import numpy as np
>>> x = np.random.default_rng(0).standard_normal(1000) * 1e6
>>> bool(pairwise_sum(x, 0, x.size) == np.sum(x))
True
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["pairwise_sum"]


@njit(cache=True)
def _block(a, lo, n):
    """The sum of ``n <= 128`` values from ``a[lo]`` (the first two cases above)."""
    if n < 8:
        s = -0.0
        for i in range(lo, lo + n):
            s += a[i]
        return s
    s0, s1, s2, s3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    s4, s5, s6, s7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    end = lo + n - n % 8
    i = lo + 8
    while i < end:
        s0 += a[i]
        s1 += a[i + 1]
        s2 += a[i + 2]
        s3 += a[i + 3]
        s4 += a[i + 4]
        s5 += a[i + 5]
        s6 += a[i + 6]
        s7 += a[i + 7]
        i += 8
    s = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
    while i < lo + n:
        s += a[i]
        i += 1
    return s


@njit(cache=True)
def pairwise_sum(a, lo: int, n: int) -> float:
    """``numpy.sum(a[lo:lo + n])`` of a float64 array, to the bit (module docstring).

    The halving is walked with an explicit stack rather than by recursion: numba's cache
    cannot reload a self-recursive function safely."""
    if n <= 128:
        return 0.0 + _block(a, lo, n)
    # work items (start, count); count -1 means: add the two values on top of the stack
    w_lo, w_n = np.empty(192, np.int64), np.empty(192, np.int64)
    vals = np.empty(96)
    w_lo[0], w_n[0] = lo, n
    sp, vp = 1, 0
    while sp:
        sp -= 1
        start, m = w_lo[sp], w_n[sp]
        if m < 0:
            vp -= 1
            vals[vp - 1] = vals[vp - 1] + vals[vp]
        elif m <= 128:
            vals[vp] = _block(a, start, m)
            vp += 1
        else:
            half = m // 2
            half -= half % 8
            w_lo[sp], w_n[sp] = 0, -1  # then the sum of the two halves
            w_lo[sp + 1], w_n[sp + 1] = start + half, m - half  # then the second half
            w_lo[sp + 2], w_n[sp + 2] = start, half  # the first half first
            sp += 3
    return 0.0 + vals[0]
