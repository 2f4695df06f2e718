"""Option quotes as calibration input: per-expiry columnar slices of implied vols.

A :class:`QuoteSnapshot` is what a calibration sees at one instant: for every expiry a
:class:`QuoteSlice` holding strikes, forward log-moneyness ``k = ln(K/F)``, time to the
08:00 UTC settlement, the forward, and the bid / ask / mid implied vols (fractions) computed
from the venue's inverse premiums (``USD price = premium_coin * F``), next to the venue's own
mark IV.

Only the out-of-the-money side enters a smile (puts below the forward, calls at or above it),
as desks do: in-the-money premiums are mostly intrinsic value and their IVs are noisy.

Flags per quote:

* ``one_sided``: bid or ask missing, or its IV undefined (price outside the no-arbitrage
  bounds);
* ``min_tick``: the bid is at the venue's minimum tick, so the option may be worth far less;
* ``stale``: the quote has not been updated for longer than the caller's threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property

import numba
import numpy as np

from calibration.pricing.forwards import (
    SECONDS_PER_YEAR,
    ForwardEstimate,
    choose_forward,
    rows_parity_forward,
    time_to_expiry,
    venue_forwards,
)
from calibration.pricing.iv import implied_vol
from calibration.pricing.iv_memo import IVMemo

#: Deribit BTC option minimum tick, BTC
DERIBIT_MIN_TICK = 0.0001
#: Expiries closer than this (years; 6 hours) are left out of the fit: their smiles are
#: dominated by the few hours of remaining gamma and their quotes by the tick size.
MIN_T_YEARS = 6.0 / (365.0 * 24.0)
MIN_QUOTES = 5
_NO_PARITY = ForwardEstimate(float("nan"), 0, float("nan"), "insufficient")
#: below this many inversions, implied vols are computed on the calling thread only
_PARALLEL_MIN = 768


@dataclass(frozen=True, eq=False)
class QuoteSlice:
    """The OTM quotes of one expiry; all arrays have one entry per strike, sorted by strike."""

    expiry_ns: int
    t: float
    forward: float
    strike: np.ndarray
    k: np.ndarray
    is_call: np.ndarray
    bid_iv: np.ndarray  # NaN where there is no usable bid
    ask_iv: np.ndarray
    mid_iv: np.ndarray  # IV of the mid premium; NaN unless two-sided
    mark_iv: np.ndarray  # venue mark IV (fraction); NaN when absent
    min_tick: np.ndarray
    stale: np.ndarray
    instrument: np.ndarray | tuple = ()  # each quote's instrument name (objects); () if unknown
    forward_source: str = "venue"  # venue | parity (calibration.pricing.forwards.choose_forward)
    forward_disagreement_bps: float = float("nan")  # parity vs venue forward
    quote_ts: np.ndarray | None = None  # when each quote was last updated, when known

    @property
    def one_sided(self) -> np.ndarray:
        return ~self.two_sided

    @cached_property  # asked for by the loss, the quality and the out-of-sample scores
    def two_sided(self) -> np.ndarray:
        return np.isfinite(self.bid_iv) & np.isfinite(self.ask_iv) & (self.ask_iv >= self.bid_iv)

    @property
    def n(self) -> int:
        return int(self.strike.size)


class _RowsSlice(QuoteSlice):
    """A :class:`QuoteSlice` of :func:`build_snapshot`: its per-quote arrays are views of
    the snapshot's flat columns (rows ``sl``), each made when first read.  A refit reads the
    flat columns (:attr:`QuoteSnapshot.rows`), not a slice's own, and making a dozen slices'
    ten views at every wake cost a tenth of the snapshot.  :func:`dataclasses.replace` makes
    a plain slice of it, holding every array."""

    @classmethod
    def of(cls, cols: dict[str, np.ndarray | None], sl: slice, **scalars) -> _RowsSlice:
        self = object.__new__(cls)  # filled as unpickling fills it: the arrays come later
        # the fields with class-level defaults are looked up before __getattr__: set now
        qts, name = cols["quote_ts"], cols.get("instrument")
        self.__dict__.update(scalars, _cols=cols, _sl=sl,
                             quote_ts=None if qts is None else qts[sl],
                             instrument=() if name is None else name[sl])
        return self

    def __getattr__(self, name: str):  # only called for what __dict__ does not hold yet
        d = self.__dict__
        cols = d.get("_cols")
        if cols is None or name not in _ARRAY_FIELDS:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        d[name] = v = cols[name][d["_sl"]]
        return v


@dataclass(frozen=True, eq=False)
class QuoteRows:
    """The per-quote columns of a snapshot's slices, flat: slice ``i`` is rows
    ``start[i]:stop[i]``, in the slice's own order.  Calibration works on these in a few
    compiled passes (:func:`calibration.loss.fit_batch`) rather than slice by slice."""

    start: np.ndarray
    stop: np.ndarray
    k: np.ndarray
    bid_iv: np.ndarray
    ask_iv: np.ndarray
    mid_iv: np.ndarray
    mark_iv: np.ndarray
    min_tick: np.ndarray
    stale: np.ndarray
    two_sided: np.ndarray
    quote_ts: np.ndarray | None = None  # None unless every slice knows its quotes' times


_FLAT_FIELDS = ("k", "bid_iv", "ask_iv", "mid_iv", "mark_iv", "min_tick", "stale", "two_sided")


@dataclass(frozen=True, eq=False)
class QuoteSnapshot:
    ts_ns: int
    slices: tuple[QuoteSlice, ...]  # increasing expiry
    #: the slices' columns as one block, when the slices are views of it (build_snapshot)
    base: QuoteRows | None = field(default=None, repr=False)

    @cached_property
    def rows(self) -> QuoteRows:
        """The slices' quotes as flat columns: :attr:`base`, or the slices' own columns
        joined."""
        if self.base is not None:
            return self.base
        n = np.array([sl.n for sl in self.slices], dtype=np.int64)
        stop = np.cumsum(n)
        known = all(sl.quote_ts is not None for sl in self.slices)
        return QuoteRows(stop - n, stop, **{
            f: np.concatenate([getattr(sl, f) for sl in self.slices]) if self.slices
            else np.zeros(0, bool if f in ("min_tick", "stale", "two_sided") else float)
            for f in _FLAT_FIELDS}, quote_ts=np.concatenate(
                [sl.quote_ts for sl in self.slices]) if known and self.slices else None)

    @property
    def n_quotes(self) -> int:
        return int(sum(s.n for s in self.slices))

    @property
    def n_two_sided(self) -> int:
        return int(sum(int(s.two_sided.sum()) for s in self.slices))

    def fresh(self, since: int, min_quotes: int = MIN_QUOTES) -> QuoteSnapshot:
        """The quotes updated after ``since`` (needs each slice's ``quote_ts``), keeping the
        slices' forwards and times: the out-of-sample set of a surface fitted at ``since``.
        A slice left with fewer than ``min_quotes`` two-sided quotes is dropped, as
        :func:`build_snapshot` drops one."""
        if not self.slices:
            return QuoteSnapshot(self.ts_ns, ())
        rows = self.rows
        if rows.quote_ts is None:
            raise ValueError("QuoteSnapshot.fresh needs the quotes' quote_ts")
        # each slice's fresh two-sided quotes, counted over the flat rows at once
        keep = rows.quote_ts > since
        counted = np.concatenate(([0], np.cumsum(keep & rows.two_sided)))
        out = []
        for i in np.flatnonzero(counted[rows.stop] - counted[rows.start] >= min_quotes):
            sl, mine = self.slices[i], keep[rows.start[i]:rows.stop[i]]
            out.append(replace(
                sl, **{f: getattr(sl, f)[mine] for f in _ROW_FIELDS},
                instrument=np.asarray(sl.instrument, dtype=object)[mine]
                if len(sl.instrument) else ()))
        return QuoteSnapshot(self.ts_ns, tuple(out))


#: the per-quote array fields of a :class:`QuoteSlice`
_ROW_FIELDS = ("strike", "k", "is_call", "bid_iv", "ask_iv", "mid_iv", "mark_iv", "min_tick",
               "stale", "quote_ts")
#: the ones a :class:`_RowsSlice` makes when first read (``quote_ts`` has a class default)
_ARRAY_FIELDS = frozenset(_ROW_FIELDS) - {"quote_ts"}


def build_snapshot(ts_ns: int, expiry_ns: np.ndarray, strike: np.ndarray, is_call: np.ndarray,
                   bid_coin: np.ndarray, ask_coin: np.ndarray, forward: np.ndarray, *,
                   mark_iv: np.ndarray | None = None, stale: np.ndarray | None = None,
                   quote_ts: np.ndarray | None = None,
                   instrument: Sequence[str] | None = None, min_tick: float = DERIBIT_MIN_TICK,
                   min_t: float = MIN_T_YEARS, min_quotes: int = MIN_QUOTES,
                   parity: bool = True, memo: IVMemo | None = None,
                   row_id: np.ndarray | None = None) -> QuoteSnapshot:
    """Group option quotes (inverse premiums in coin, NaN for a missing side) into OTM slices.

    ``forward`` is per row (e.g. the venue's underlying price of the expiry, NaN if none); the
    venue forward is its median over the expiry's rows (a few rows are stamped a tick apart)
    or, given each row's quote time ``quote_ts``, over its most recently quoted rows: a row
    carries the forward of its own last update, and a wing quoted minutes ago would otherwise
    pull the forward back towards where it was then, so that the smile read at ``k = 0``
    would lag the market's moves.  A quote's implied vols are inverted at the forward it
    carries (the one its coin premium was priced off; the expiry's where it carries none),
    while its log-moneyness is taken against the expiry's current forward: a quote not
    refreshed since the forward moved keeps its strike's vol (sticky strike) rather than
    being read at a forward it was never priced at, which would move its vol by about
    ``-(delta - p) dF / vega`` on an inverse option of coin premium ``p``.
    For the same reason a quote is inverted at the time to expiry of its own last update,
    when ``quote_ts`` gives it: the vol it was quoted at, as a venue reports it with the
    quote.  Its inputs then stay fixed until it is updated, so with ``memo`` (an
    :class:`~calibration.pricing.iv_memo.IVMemo` kept by the caller across snapshots) only
    the quotes updated since the last snapshot are inverted; ``row_id`` gives each row a
    stable non-negative id (the instrument's) for the memo.  The result does not depend on
    the memo.
    The put-call parity forward is estimated too; ``calibration.pricing.forwards.choose_forward``
    picks the venue's where it exists and records the disagreement; ``parity=False`` skips
    the parity estimate where a venue forward exists (it is then only a diagnostic).
    Expiries with ``t < min_t`` or fewer than ``min_quotes`` two-sided OTM quotes are dropped.
    """
    expiry_ns = np.asarray(expiry_ns, dtype=np.int64)
    strike = np.asarray(strike, dtype=float)
    is_call = np.asarray(is_call, dtype=bool)
    bid = np.asarray(bid_coin, dtype=float)
    ask = np.asarray(ask_coin, dtype=float)
    fwd_row = np.asarray(forward, dtype=float)
    n = strike.size
    mark = np.full(n, np.nan) if mark_iv is None else np.asarray(mark_iv, dtype=float)
    stl = np.zeros(n, dtype=bool) if stale is None else np.asarray(stale, dtype=bool)
    names = None if instrument is None else np.asarray(instrument, dtype=object)
    qts = None if quote_ts is None else np.asarray(quote_ts, dtype=np.int64)

    # pass 1: forward, time and OTM rows per expiry, on the rows sorted by (expiry, strike)
    # a caller that keeps its rows in this order (the replay's calibration does) is spared
    # the sort: a stable sort of sorted rows is the identity
    order = np.arange(n) if _sorted_by(expiry_ns, strike) else np.lexsort((strike, expiry_ns))
    es = expiry_ns[order]
    first = np.flatnonzero(np.concatenate(([True], es[1:] != es[:-1]))) if n \
        else np.zeros(0, np.int64)
    bounds = np.append(first, n)
    ts_all = time_to_expiry(int(ts_ns), es[first])
    venue_all = venue_forwards(fwd_row[order], None if qts is None else qts[order], first)
    groups, kept = [], []
    for g, (e, t, v) in enumerate(zip(es[first].tolist(), ts_all.tolist(), venue_all.tolist())):
        if not t >= min_t:
            continue
        venue = None if math.isnan(v) else v
        if parity or venue is None:
            # the parity estimate reads the rows in their given order
            r = np.sort(order[bounds[g]:bounds[g + 1]])
            est = rows_parity_forward(strike[r], is_call[r], bid[r], ask[r])
        else:
            est = _NO_PARITY
        f, src, bps = choose_forward(est, venue)
        if not (f > 0 and math.isfinite(f)):
            continue
        groups.append((e, t, f, src, bps))
        kept.append(g)
    if not groups:
        return QuoteSnapshot(int(ts_ns), ())
    # the OTM rows of every expiry kept and their inversion inputs, in one pass over the
    # sorted rows (an expiry left out has a NaN forward, which drops its rows)
    f_group = np.full(first.size, np.nan)
    f_group[kept] = [g[2] for g in groups]
    rows, sizes, f_rows, args, tick = _otm_rows(
        order, first, f_group, ts_all, strike, is_call, fwd_row, bid, ask,
        _NO_TIMES if qts is None else qts, qts is not None, int(ts_ns), expiry_ns,
        1e9 * SECONDS_PER_YEAR, min_tick * (1 + 1e-9))
    sizes = sizes[kept]
    # pass 2: one implied_vol call for bid, ask and mid of every slice
    if memo is None:
        ivs = _implied_vols(*args)
    else:
        if row_id is None:
            raise ValueError("build_snapshot: a memo needs row_id")
        key = 3 * np.asarray(row_id, dtype=np.int64)[rows]
        ivs = memo(np.concatenate((key, key + 1, key + 2)), *args, invert=_implied_vols)
    biv, aiv, miv = ivs.reshape(3, rows.size)
    # every per-quote column at once; each slice takes a view of its rows
    two = np.isfinite(biv) & np.isfinite(aiv) & (aiv >= biv)
    K = strike[rows]
    cols = dict(strike=K, k=np.log(K / f_rows), is_call=is_call[rows], bid_iv=biv, ask_iv=aiv,
                mid_iv=np.where(two, miv, np.nan), mark_iv=mark[rows], min_tick=tick,
                stale=stl[rows],
                quote_ts=None if qts is None else qts[rows])
    if names is not None:
        cols["instrument"] = names[rows]
    slices, starts, stops = [], [], []
    start = 0
    n_two = np.concatenate(([0], np.cumsum(two)))  # two-sided quotes before each row
    for (e, t, f, src, bps), size in zip(groups, sizes.tolist()):
        sl = slice(start, start + size)
        start += size
        if n_two[sl.stop] - n_two[sl.start] < min_quotes:
            continue
        starts.append(sl.start)
        stops.append(sl.stop)
        slices.append(_RowsSlice.of(cols, sl, expiry_ns=e, t=t, forward=f, forward_source=src,
                                    forward_disagreement_bps=float(bps)))
    base = QuoteRows(np.array(starts, dtype=np.int64), np.array(stops, dtype=np.int64),
                     two_sided=two, quote_ts=cols["quote_ts"],
                     **{c: cols[c] for c in _FLAT_FIELDS if c != "two_sided"})
    return QuoteSnapshot(int(ts_ns), tuple(slices), base)


@numba.njit(cache=True)
def _otm_rows(order, first, f_group, t_group, strike, is_call, fwd_row, bid, ask, qts,
              has_qts, ts_ns, expiry_ns, year_ns, tick_max):
    """:func:`build_snapshot`'s OTM selection in one pass over the rows sorted by expiry
    (groups start at ``first``, expiry forward ``f_group``; a put below the forward, a call
    at or above it, none where the forward is NaN): the rows, how many per group, their
    expiry's forward, the inputs of their bid, ask and mid inversions (``implied_vol``'s
    price, forward, strike, time and call flag, bid rows then ask rows then mid rows) and
    whether the bid is at the minimum tick (``<= tick_max``).  Each quote is inverted at its
    own forward where it carries a positive one, else the expiry's, at the time to expiry of
    its own update when ``has_qts`` (``qts``; never after ``ts_ns``), as
    :func:`calibration.pricing.forwards.time_to_expiry` computes it (``year_ns``: ns a
    year); a missing or non-positive side is NaN, and the mid needs both."""
    n, n_groups = order.shape[0], first.shape[0]
    rows, grp = np.empty(n, np.int64), np.empty(n, np.int64)
    sizes = np.zeros(n_groups, np.int64)
    m = 0
    for g in range(n_groups):
        f = f_group[g]
        for j in range(first[g], first[g + 1] if g + 1 < n_groups else n):
            r = order[j]
            if (not is_call[r] if strike[r] < f else is_call[r]) and f > 0.0:
                rows[m], grp[m] = r, g
                sizes[g] += 1
                m += 1
    rows = rows[:m]
    f_rows, tick = np.empty(m), np.empty(m, np.bool_)
    price, fw, strikes, tt = (np.empty(3 * m), np.empty(3 * m), np.empty(3 * m),
                              np.empty(3 * m))
    call = np.empty(3 * m, np.bool_)
    for i in range(m):
        r, g = rows[i], grp[i]
        f_rows[i] = f_group[g]
        own = fwd_row[r]
        f = own if (np.isfinite(own) and own > 0.0) else f_group[g]
        if has_qts:
            q = qts[r]
            q = q if (q >= 0 and q <= ts_ns) else ts_ns
            t = np.float64(expiry_ns[r] - q) / year_ns
        else:
            t = t_group[g]
        b, a = bid[r], ask[r]
        b_ok, a_ok = np.isfinite(b) and b > 0.0, np.isfinite(a) and a > 0.0
        tick[i] = b_ok and b <= tick_max
        price[i] = (b if b_ok else np.nan) * f
        price[m + i] = (a if a_ok else np.nan) * f
        price[2 * m + i] = (0.5 * (b + a) if (b_ok and a_ok) else np.nan) * f
        for s in (i, m + i, 2 * m + i):
            fw[s], strikes[s], tt[s], call[s] = f, strike[r], t, is_call[r]
    return rows, sizes, f_rows, (price, fw, strikes, tt, call), tick


@numba.njit(cache=True)
def _sorted_by(first: np.ndarray, second: np.ndarray) -> bool:
    """Whether the rows are in nondecreasing ``(first, second)`` order (a NaN in ``second``
    counts as out of order, so such rows are sorted)."""
    for i in range(1, first.shape[0]):
        if first[i] < first[i - 1] or (first[i] == first[i - 1] and
                                       not second[i] >= second[i - 1]):
            return False
    return True


_NO_TIMES = np.zeros(0, np.int64)


def _implied_vols(price, forward, strike, t, is_call) -> np.ndarray:
    """``calibration.pricing.iv.implied_vol`` of one snapshot's quotes: on numba's threads
    from ``_PARALLEL_MIN`` inversions, on the calling thread below.

    Waking the threads costs 35-100 us (more when they have slept), so the few tens of
    quotes a wake re-inverts stay on the calling thread; a whole snapshot (the first wake,
    or a replay of venue snapshots without a memo) is split.  Measured side by side on
    2 cores: at 512 inversions 101 against 118 us with the threads awake but 172 against
    119 us after 50 ms asleep; at 1,024, 158 / 235 against 233 / 253 us.
    """
    return np.asarray(implied_vol(price, forward, strike, t, is_call,
                                  parallel_min=_PARALLEL_MIN), dtype=float)

