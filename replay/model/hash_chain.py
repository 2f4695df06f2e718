"""The running journal hash of many events in one compiled call.

:mod:`replay.model.events` defines the hash: event ``k``'s bytes are
``HEAD(seq, ts, cause_stream, cause_seq) || prefix(kind, source) || payload digest`` and
``h_k = BLAKE2b-256(h_{k-1} || bytes_k)``.  A replayed surface stream appends tens of
thousands of recorded events a day whose payload digests are stored, so chaining them is a
loop of one small hash per event; in Python that loop costs more in the interpreter than in
the hash.  :func:`chain_many` runs it compiled, with BLAKE2b written out from its
specification (RFC 7693, M.-J. Saarinen and J.-P. Aumasson, "The BLAKE2 Cryptographic Hash
and Message Authentication Code (MAC)", 2015: unkeyed, 32-byte digest), and
:func:`chain_many_reference` is the same loop over :func:`hashlib.blake2b`: the definition,
which a test holds the compiled one to, byte for byte.

>>> import numpy as np
>>> from replay.model.events import H0
>>> args = (H0, 0, np.array([5, 9]), np.array([1, 1]), np.array([7, 8]), np.array([0, 0]),
...         [b"\\x01\\x00\\x00\\x00a"], bytes(64))
>>> chain_many(*args) == chain_many_reference(*args)
True
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from itertools import accumulate

import numpy as np
from numba import njit

from replay.model.events import H0, HEAD, length_prefixed

__all__ = ["EventRuns", "blake2b_256", "chain_many", "chain_many_reference"]

#: RFC 7693 section 2.6: the initialisation vector (SHA-512's)
_IV = np.array([0x6A09E667F3BCC908, 0xBB67AE8584CAA73B, 0x3C6EF372FE94F82B,
                0xA54FF53A5F1D36F1, 0x510E527FADE682D1, 0x9B05688C2B3E6C1F,
                0x1F83D9ABFB41BD6B, 0x5BE0CD19137E2179], dtype=np.uint64)
#: RFC 7693 section 2.7: the message word schedule of each round (rounds 10 and 11 reuse
#: rows 0 and 1)
_SIGMA = np.array([
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
    [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
    [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
    [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
    [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
    [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
    [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
    [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0]], dtype=np.int64)
#: the parameter block's first word for a 32-byte digest, no key, fanout and depth 1
#: (section 2.5): ``0x0101kknn``
_PARAM0 = np.uint64(0x01010000 | 32)
_BLOCK = 128
_MASK = np.uint64(0xFF)
_R1, _R2, _R3, _R4 = (np.uint64(r) for r in (32, 24, 16, 63))
_L1, _L2, _L3, _L4 = (np.uint64(64 - r) for r in (32, 24, 16, 63))
_HEAD = HEAD.size  # seq, ts (int64), cause stream (int8), cause seq (int64)
_LITTLE = sys.byteorder == "little"


@njit(cache=True, inline="always")
def _half_g(a, b, c, d, x, r1, l1, r2, l2):
    """Half of the mixing function G: ``a += b + x; d = (d ^ a) >>> r1; c += d;
    b = (b ^ c) >>> r2`` (``l = 64 - r``: a rotation is two shifts)."""
    a = a + b + x
    s = d ^ a
    d = (s >> r1) | (s << l1)
    c = c + d
    s = b ^ c
    return a, (s >> r2) | (s << l2), c, d


@njit(cache=True, inline="always")
def _g(a, b, c, d, x, y):
    """The mixing function G (section 3.1) of the words ``a, b, c, d`` with the message
    words ``x, y``: its first half rotates by 32 and 24 bits, its second by 16 and 63."""
    a, b, c, d = _half_g(a, b, c, d, x, _R1, _L1, _R2, _L2)
    return _half_g(a, b, c, d, y, _R3, _L3, _R4, _L4)


@njit(cache=True)
def _compress(h, block, at, counter, last):
    """The compression function F (section 3.2) of the 128 bytes ``block[at:at + 128]``,
    ``counter`` bytes into the message (below 2**64: its high word is zero), into ``h``.
    The working vector is sixteen locals, not an array: they stay in registers."""
    m = block[at:at + _BLOCK].view(np.uint64)  # little-endian words (checked at import)
    v0, v1, v2, v3, v4, v5, v6, v7 = h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
    v8, v9, v10, v11 = _IV[0], _IV[1], _IV[2], _IV[3]
    v12, v13, v14, v15 = _IV[4] ^ np.uint64(counter), _IV[5], _IV[6], _IV[7]
    if last:
        v14 = ~v14
    for r in range(12):
        s = r % 10
        v0, v4, v8, v12 = _g(v0, v4, v8, v12, m[_SIGMA[s, 0]], m[_SIGMA[s, 1]])
        v1, v5, v9, v13 = _g(v1, v5, v9, v13, m[_SIGMA[s, 2]], m[_SIGMA[s, 3]])
        v2, v6, v10, v14 = _g(v2, v6, v10, v14, m[_SIGMA[s, 4]], m[_SIGMA[s, 5]])
        v3, v7, v11, v15 = _g(v3, v7, v11, v15, m[_SIGMA[s, 6]], m[_SIGMA[s, 7]])
        v0, v5, v10, v15 = _g(v0, v5, v10, v15, m[_SIGMA[s, 8]], m[_SIGMA[s, 9]])
        v1, v6, v11, v12 = _g(v1, v6, v11, v12, m[_SIGMA[s, 10]], m[_SIGMA[s, 11]])
        v2, v7, v8, v13 = _g(v2, v7, v8, v13, m[_SIGMA[s, 12]], m[_SIGMA[s, 13]])
        v3, v4, v9, v14 = _g(v3, v4, v9, v14, m[_SIGMA[s, 14]], m[_SIGMA[s, 15]])
    h[0] ^= v0 ^ v8
    h[1] ^= v1 ^ v9
    h[2] ^= v2 ^ v10
    h[3] ^= v3 ^ v11
    h[4] ^= v4 ^ v12
    h[5] ^= v5 ^ v13
    h[6] ^= v6 ^ v14
    h[7] ^= v7 ^ v15


@njit(cache=True)
def _digest_into(msg, n, out, h):
    """BLAKE2b-256 of ``msg[:n]`` (``msg`` zero-padded to a whole number of blocks past
    ``n``) into ``out[:32]``; ``h`` is scratch."""
    for i in range(8):
        h[i] = _IV[i]
    h[0] ^= _PARAM0
    full = (n - 1) // _BLOCK if n > 0 else 0  # every block but the last
    for b in range(full):
        _compress(h, msg, b * _BLOCK, (b + 1) * _BLOCK, False)
    _compress(h, msg, full * _BLOCK, n, True)
    for i in range(32):
        out[i] = np.uint8((h[i // 8] >> np.uint64(8 * (i % 8))) & _MASK)


@njit(cache=True)
def _blake2b_256(msg):
    n = msg.shape[0]
    padded = np.zeros(max(1, (n + _BLOCK - 1) // _BLOCK) * _BLOCK, np.uint8)
    padded[:n] = msg
    out = np.empty(32, np.uint8)
    _digest_into(padded, n, out, np.empty(8, np.uint64))
    return out


def blake2b_256(data: bytes) -> bytes:
    """``hashlib.blake2b(data, digest_size=32).digest()``, compiled (for tests and the
    doctest of the module: a single hash is faster through :mod:`hashlib`).

    >>> import hashlib
    >>> blake2b_256(b"abc") == hashlib.blake2b(b"abc", digest_size=32).digest()
    True
    """
    if not _LITTLE:
        return hashlib.blake2b(data, digest_size=32).digest()
    return _blake2b_256(np.frombuffer(data, np.uint8)).tobytes()


@njit(cache=True)
def _put_int(buf, at, x, size):
    u = np.uint64(x)  # two's complement, as struct packs a signed int
    for i in range(size):
        buf[at + i] = np.uint8((u >> np.uint64(8 * i)) & _MASK)


@njit(cache=True, nogil=True)  # run on the journal's writer thread beside the replay
def _chain_many(h0, seq0, ts, cause_stream, cause_seq, code, prefix, prefix_at, digests):
    n_pre = prefix_at.shape[0] - 1
    longest = 0
    for c in range(n_pre):
        longest = max(longest, prefix_at[c + 1] - prefix_at[c])
    size = 32 + _HEAD + longest + 32
    msg = np.zeros((size + _BLOCK - 1) // _BLOCK * _BLOCK, np.uint8)
    out = h0.copy()
    h = np.empty(8, np.uint64)
    for j in range(ts.shape[0]):
        if cause_stream[j] < -128 or cause_stream[j] > 127:
            raise ValueError("a cause stream does not fit the event head's one signed byte")
        msg[:32] = out
        _put_int(msg, 32, seq0 + j + 1, 8)
        _put_int(msg, 40, ts[j], 8)
        _put_int(msg, 48, cause_stream[j], 1)
        _put_int(msg, 49, cause_seq[j], 8)
        at = 32 + _HEAD
        c = code[j]
        if c < 0 or c >= n_pre:
            raise ValueError("an event's code names no prefix")
        for i in range(prefix_at[c], prefix_at[c + 1]):
            msg[at] = prefix[i]
            at += 1
        msg[at:at + 32] = digests[32 * j:32 * j + 32]
        at += 32
        msg[at:] = 0  # the padding of the last block
        _digest_into(msg, at, out, h)
    return out


def chain_many(h: bytes, seq0: int, ts: np.ndarray, cause_stream: np.ndarray,
               cause_seq: np.ndarray, code: np.ndarray, prefixes: Sequence[bytes],
               digests: bytes) -> bytes:
    """The running hash after events ``seq0 + 1, seq0 + 2, ...`` chained onto ``h``: event
    ``j`` at ``ts[j]``, with cause ``(cause_stream[j], cause_seq[j])``, the kind-and-source
    prefix ``prefixes[code[j]]`` and the payload digest ``digests[32 j : 32 j + 32]``
    (:func:`chain_many_reference`, compiled)."""
    if len(digests) != 32 * len(ts):
        raise ValueError(f"{len(ts)} events need {32 * len(ts)} digest bytes, not "
                         f"{len(digests)}")
    if int(seq0) + len(ts) >= 2 ** 63:
        raise ValueError("an event's seq would pass the largest int64")
    ts, cause_stream, cause_seq, code = (_int64(n, a) for n, a in (
        ("ts", ts), ("cause_stream", cause_stream), ("cause_seq", cause_seq), ("code", code)))
    if not _LITTLE:  # the kernel reads the blocks' words in the machine's byte order
        return chain_many_reference(h, seq0, ts, cause_stream, cause_seq, code, prefixes,
                                    digests)
    out = _chain_many(np.frombuffer(h, np.uint8), int(seq0), ts, cause_stream, cause_seq, code,
                      np.frombuffer(b"".join(prefixes) or b"\0", np.uint8),
                      np.array([0, *accumulate(map(len, prefixes))], np.int64),
                      np.frombuffer(digests, np.uint8))
    return out.tobytes()


def _int64(name: str, a: np.ndarray) -> np.ndarray:
    """``a`` as int64, refusing what :func:`struct.pack` would refuse to pack as one (floats,
    unsigned values past the int64 range), as the reference does."""
    a = np.asarray(a)
    if a.dtype.kind not in "iu" or (a.dtype.kind == "u" and a.size and a.max() >= 2 ** 63):
        raise TypeError(f"{name}: int64 values expected, not {a.dtype}")
    return a.astype(np.int64, copy=False)


def chain_many_reference(h: bytes, seq0: int, ts: np.ndarray, cause_stream: np.ndarray,
                         cause_seq: np.ndarray, code: np.ndarray, prefixes: Sequence[bytes],
                         digests: bytes) -> bytes:
    """:func:`chain_many` as the definition reads (:mod:`replay.model.events`): one
    :func:`hashlib.blake2b` per event."""
    pack = HEAD.pack
    for j, (c, t, cs, cq) in enumerate(zip(np.asarray(code).tolist(), np.asarray(ts).tolist(),
                                           np.asarray(cause_stream).tolist(),
                                           np.asarray(cause_seq).tolist())):
        h = hashlib.blake2b(h + pack(seq0 + j + 1, t, cs, cq) + prefixes[c]
                            + digests[32 * j:32 * j + 32], digest_size=32).digest()
    return h


#: a run of events: five int64 arrays, ``(seq, ts, pair, cause_stream, cause_seq)``, ``pair``
#: the code of the event's (kind, source)
Run = tuple[np.ndarray, ...]


class EventRuns:
    """Events appended in seq order and not yet written, and the running hash over them,
    chained lazily: an event appended on its own costs a list append (:meth:`add`), a run of
    recorded ones a tuple of arrays (:meth:`add_run`), and :meth:`chain` chains many of them
    in one :func:`chain_many` call, wherever the caller runs it (the journal's writer thread).

    :meth:`take` hands over the runs to write and the runs to chain (the same events: each is
    chained once, before or with its rows' write), :meth:`take_unchained` only the latter."""

    def __init__(self, h: bytes = H0) -> None:
        self.hash = h  # after every event chained so far
        self._one: list[tuple[int, int, int, int, int]] = []  # events added one by one
        self._one_digests: list[bytes] = []
        self._runs: list[Run] = []
        self._unchained: list[tuple[Run, bytes]] = []  # each run with its payload digests

    def add(self, seq: int, ts: int, pair: int, cause_stream: int, cause_seq: int,
            digest: bytes) -> None:
        if len(digest) != 32:
            raise ValueError(f"a payload digest is 32 bytes, not {len(digest)}")
        self._one.append((seq, ts, pair, cause_stream, cause_seq))
        self._one_digests.append(digest)

    def add_run(self, run: Run, digests: bytes) -> None:
        if len(digests) != 32 * len(run[0]):
            raise ValueError(f"{len(run[0])} events need {32 * len(run[0])} digest bytes, "
                             f"not {len(digests)}")
        self._close()
        self._runs.append(run)
        self._unchained.append((run, digests))

    def _close(self) -> None:
        """The events added one by one since the last run, as a run of their own."""
        if self._one:
            run = tuple(np.array(self._one, dtype=np.int64).T)
            self._runs.append(run)
            self._unchained.append((run, b"".join(self._one_digests)))
            self._one, self._one_digests = [], []

    def take(self) -> tuple[list[Run], list[tuple[Run, bytes]]]:
        """The runs to write and those to chain, handed over (both emptied)."""
        self._close()
        out = self._runs, self._unchained
        self._runs, self._unchained = [], []
        return out

    def take_unchained(self) -> list[tuple[Run, bytes]]:
        self._close()
        out, self._unchained = self._unchained, []
        return out

    def chain(self, unchained: list[tuple[Run, bytes]], pairs: Sequence[tuple[str, str]]
              ) -> None:
        """Chain ``unchained`` (taken in order) onto :attr:`hash`: ``pairs`` are the (kind,
        source) of each pair code, in code order."""
        if not unchained:
            return
        runs = [r for r, _ in unchained]
        ts, pair, cs, cq = (np.concatenate([r[i] for r in runs]) for i in (1, 2, 3, 4))
        self.hash = chain_many(self.hash, int(runs[0][0][0]) - 1, ts, cs, cq, pair,
                               [length_prefixed(k) + length_prefixed(src) for k, src in pairs],
                               b"".join(d for _, d in unchained))
