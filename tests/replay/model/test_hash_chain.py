"""The compiled journal hash chain against its definition (hashlib's BLAKE2b, one event at a
time), byte for byte."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from replay.model.events import H0, HEAD, length_prefixed
from replay.model.hash_chain import blake2b_256, chain_many, chain_many_reference


def test_blake2b_matches_hashlib_at_every_length_around_the_block_edges():
    """Messages of every length up to three blocks (128 bytes each) and a long one: the empty
    message, exact blocks and one byte past them are the padding's and counter's edge
    cases (RFC 7693, section 3.3)."""
    rng = np.random.default_rng(7)
    for n in [*range(0, 400), 1000, 4096]:
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        assert blake2b_256(data) == hashlib.blake2b(data, digest_size=32).digest(), n


def _events(rng, n: int, n_kinds: int):
    ts = rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64)
    cause_stream = rng.integers(-128, 128, n)
    cause_seq = rng.integers(-2**63, 2**63 - 1, n, dtype=np.int64)
    code = rng.integers(0, n_kinds, n)
    digests = rng.integers(0, 256, 32 * n, dtype=np.uint8).tobytes()
    return ts, cause_stream, cause_seq, code, digests


def test_chain_many_matches_the_reference_loop():
    """Extreme int64 values (struct packs them two's complement), every int8 cause stream,
    and prefixes from empty to long enough that an event's bytes span two and three blocks."""
    rng = np.random.default_rng(11)
    prefixes = [b"", length_prefixed("wake") + length_prefixed("engine"),
                length_prefixed("surface_fit") + length_prefixed("calibration"),
                length_prefixed("k" * 90) + length_prefixed("s" * 40),
                length_prefixed("q" * 200) + length_prefixed("")]
    h = bytes(range(32))
    for n in (0, 1, 2, 57, 2000):
        args = (h, 41, *_events(rng, n, len(prefixes))[:4], prefixes,
                _events(rng, n, 1)[4])
        assert chain_many(*args) == chain_many_reference(*args), n
    ts, cs, cq, code, digests = _events(rng, 0, 1)
    assert chain_many(H0, 0, ts, cs, cq, code, prefixes, digests) == H0


def test_reference_is_the_journal_definition():
    """The reference chains ``h || HEAD(seq, ts, cause) || prefix || digest`` with seqs
    counted on from ``seq0``, as :mod:`replay.model.events` defines the running hash."""
    prefix = length_prefixed("wake") + length_prefixed("engine")
    d = bytes(range(64))
    h1 = hashlib.blake2b(H0 + HEAD.pack(8, 100, 2, 5) + prefix + d[:32], digest_size=32)
    h2 = hashlib.blake2b(h1.digest() + HEAD.pack(9, 101, -1, 6) + prefix + d[32:],
                         digest_size=32)
    args = (H0, 7, np.array([100, 101]), np.array([2, -1]), np.array([5, 6]),
            np.zeros(2, np.int64), [prefix], d)
    assert chain_many_reference(*args) == chain_many(*args) == h2.digest()


def test_bad_arguments_are_refused():
    """What the reference's ``struct.pack`` or indexing refuses, the kernel refuses too,
    before it reads out of bounds or wraps."""
    ts, cs, cq, code, pre, d = (np.array([1]), np.array([1]), np.array([1]), np.array([0]),
                                [b"x"], bytes(32))
    with pytest.raises(ValueError, match="one signed byte"):
        chain_many(H0, 0, ts, np.array([300]), cq, code, pre, d)
    with pytest.raises(ValueError, match="digest bytes"):
        chain_many(H0, 0, ts, cs, cq, code, pre, bytes(31))
    for bad in (np.array([1]), np.array([-1])):
        with pytest.raises(ValueError, match="names no prefix"):
            chain_many(H0, 0, ts, cs, cq, bad, pre, d)
    with pytest.raises(IndexError):
        chain_many_reference(H0, 0, ts, cs, cq, np.array([1]), pre, d)
    with pytest.raises(ValueError, match="largest int64"):
        chain_many(H0, 2 ** 63 - 1, ts, cs, cq, code, pre, d)
    for name, arg in (("ts", np.array([1.5])), ("cause_seq", np.array([2 ** 63], np.uint64))):
        args = {"ts": ts, "cause_seq": cq, name: arg}
        with pytest.raises(TypeError, match=name):
            chain_many(H0, 0, args["ts"], cs, args["cause_seq"], code, pre, d)


def test_event_runs_chain_as_the_definition_however_they_are_added_and_taken():
    """Events added one by one and in runs, chained in several batches (what the journal
    hands its writer thread) or all at once, give the definition's hash; what is taken to
    write is every event once, in seq order."""
    from replay.model.hash_chain import EventRuns

    rng = np.random.default_rng(3)
    pairs = [("wake", "engine"), ("surface_fit", "calibration"), ("pnl", "pnl")]
    prefixes = [length_prefixed(k) + length_prefixed(s) for k, s in pairs]
    n = 60
    ts, cause_stream, cause_seq, code, digests = _events(rng, n, len(pairs))
    want = chain_many_reference(H0, -1, ts, cause_stream, cause_seq, code, prefixes, digests)
    cuts = [0, 5, 6, 20, 21, 22, 40, 60]  # alternately single events and runs
    for batches in ([60], [6, 22, 60], [1, 21, 41, 60]):
        runs, written = EventRuns(), []
        for j, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
            if j % 2 == 0:
                for i in range(a, b):
                    runs.add(i, int(ts[i]), int(code[i]), int(cause_stream[i]),
                             int(cause_seq[i]), digests[32 * i:32 * i + 32])
            else:
                runs.add_run((np.arange(a, b), ts[a:b], code[a:b], cause_stream[a:b],
                              cause_seq[a:b]), digests[32 * a:32 * b])
            if b in batches:
                rows, unchained = runs.take()
                written += rows
                runs.chain(unchained, pairs)
        assert runs.hash == want, batches
        assert np.concatenate([r[0] for r in written]).tolist() == list(range(n))
