"""The k-way merge kernel of the feed: sorted runs, one per table, into one replay-ordered
batch.

A window of each table arrives sorted by ``(ts_recv, ts_exchange, seq)`` (the stores keep
tables in that order; :mod:`replay.engine.feed` checks ``seq``).  Merging ``k`` runs by repeatedly
taking the smallest head is ``O(n k)``; with ``k <= 6`` tables that beats a heap and needs no
allocation (Knuth, *TAOCP* vol. 3, 5.4.1, on multiway merging).
"""

from __future__ import annotations

from numba import njit


@njit(cache=True, nogil=True)
def merge_runs(ts, tx, seq, iid, v, run_start, run_end, run_stream,
                o_ts, o_tx, o_stream, o_seq, o_iid, o_v):  # pragma: no cover - numba
    """k-way merge of sorted runs (one per table, listed in priority order) by
    ``(ts_recv, ts_exchange, stream)``; ``seq`` order within a run is kept."""
    k = run_start.shape[0]
    pos = run_start.copy()
    n = o_ts.shape[0]
    for o in range(n):
        best = -1
        bts = 0
        btx = 0
        for r in range(k):
            p = pos[r]
            # runs are in priority order, so a strict '<' keeps the lower stream on ties
            if p < run_end[r] and (best < 0 or ts[p] < bts or (ts[p] == bts and tx[p] < btx)):
                best = r
                bts = ts[p]
                btx = tx[p]
        p = pos[best]
        o_ts[o] = bts
        o_tx[o] = btx
        o_stream[o] = run_stream[best]
        o_seq[o] = seq[p]
        o_iid[o] = iid[p]
        for j in range(v.shape[1]):
            o_v[o, j] = v[p, j]
        pos[best] = p + 1
