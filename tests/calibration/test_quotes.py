"""Quote snapshots: the out-of-sample subset of a snapshot and the venue forward's median."""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from calibration.pricing.black import black_price
from calibration.pricing.forwards import venue_forwards
from calibration.pricing.iv_memo import IVMemo
from calibration.quotes import QuoteSnapshot, build_snapshot

NS_DAY = 86_400 * 10 ** 9
NOW = 10 * NS_DAY


def _quotes(seed: int = 1) -> dict:
    """Two expiries of OTM-and-ITM quotes from a skewed smile, inverse premiums in coin, each
    carrying its own forward and last-update time (the latest quotes of an expiry at NOW)."""
    rng = np.random.default_rng(seed)
    rows = []
    for days, fwd in ((7, 100.0), (30, 101.0)):
        for strike in np.arange(80.0, 122.0, 2.5):
            for call in (True, False):
                rows.append((NOW + days * NS_DAY, strike, call, fwd))
    exp, strike, call, fwd = (np.array(c) for c in zip(*rows))
    t = (exp - NOW) / (365.0 * NS_DAY)
    vol = 0.6 - 0.3 * np.log(strike / fwd)
    coin = black_price(fwd, strike, t, vol, call) / fwd
    qts = NOW - rng.integers(1, 100, strike.size) * 10 ** 9
    for e in np.unique(exp):  # one OTM call per expiry quoted at NOW: the expiry's forward
        qts[np.flatnonzero((exp == e) & call & (strike > fwd))[0]] = NOW
    return dict(expiry_ns=exp, strike=strike, is_call=call, bid_coin=coin * 0.97,
                ask_coin=coin * 1.03, forward=fwd, quote_ts=qts,
                instrument=[f"O-{i}" for i in range(strike.size)])


def test_fresh_is_the_snapshot_of_the_quotes_updated_since():
    q = _quotes()
    full = build_snapshot(NOW, **q, parity=False)
    since = NOW - 50 * 10 ** 9
    sub = q["quote_ts"] > since
    alone = build_snapshot(NOW, **{k: np.asarray(v)[sub] for k, v in q.items()}, parity=False)
    fresh = full.fresh(since)
    assert len(fresh.slices) == len(alone.slices) == 2
    for a, b in zip(fresh.slices, alone.slices):
        assert (a.expiry_ns, a.t, a.forward) == (b.expiry_ns, b.t, b.forward)
        for f in ("strike", "k", "is_call", "bid_iv", "ask_iv", "mid_iv", "quote_ts"):
            assert_array_equal(getattr(a, f), getattr(b, f))
        assert_array_equal(a.instrument, b.instrument)
        assert np.all(a.quote_ts > since)
    # a snapshot made of the slices alone (no flat block of rows) gives the same
    joined = QuoteSnapshot(full.ts_ns, full.slices).fresh(since)
    for a, b in zip(joined.slices, fresh.slices, strict=True):
        for f in ("strike", "k", "bid_iv", "ask_iv", "quote_ts"):
            assert_array_equal(getattr(a, f), getattr(b, f))


def test_fresh_drops_slices_left_too_thin_and_needs_quote_times():
    q = _quotes()
    full = build_snapshot(NOW, **q, parity=False)
    assert full.fresh(NOW - 1).slices == ()  # one quote per expiry at NOW: below MIN_QUOTES
    assert len(full.fresh(NOW - 1, min_quotes=1).slices) == 2
    without = build_snapshot(NOW, **{k: v for k, v in q.items() if k != "quote_ts"},
                             parity=False)
    with pytest.raises(ValueError, match="quote_ts"):
        without.fresh(NOW - 1)


def test_venue_forwards_are_numpys_medians_of_the_latest_rows():
    rng = np.random.default_rng(7)
    sizes = [1, 2, 3, 4, 7, 10, 5]
    fwd = rng.normal(100.0, 5.0, sum(sizes))
    fwd[[2, 9]] = np.nan  # no forward on these rows
    qts = rng.integers(0, 3, fwd.size)
    first = np.cumsum([0, *sizes[:-1]])
    got = venue_forwards(fwd, qts, first)
    plain = venue_forwards(fwd, None, first)
    for g, (a, b) in enumerate(zip(first, [*first[1:], fwd.size])):
        f, q = fwd[a:b], qts[a:b]
        ok = np.isfinite(f)
        latest = ok & (q == q[ok].max()) if ok.any() else ok
        assert got[g] == float(np.median(f[latest])) if latest.any() else np.isnan(got[g])
        assert plain[g] == float(np.median(f[ok])) if ok.any() else np.isnan(plain[g])
    assert np.isnan(venue_forwards(np.full(3, np.nan), None, np.array([0]))).all()


def test_a_quote_is_inverted_at_its_own_update_time():
    """A quote priced an hour before the snapshot gives back the vol it was priced at: the
    time to expiry of its inversion is the one it was quoted at."""
    q = _quotes()
    t_quoted = (q["expiry_ns"] - q["quote_ts"]) / (365.0 * NS_DAY)
    vol = 0.6 - 0.3 * np.log(q["strike"] / q["forward"])
    coin = black_price(q["forward"], q["strike"], t_quoted, vol, q["is_call"]) / q["forward"]
    later = NOW + 3600 * 10 ** 9
    snap = build_snapshot(later, **{**q, "bid_coin": coin, "ask_coin": coin * 1.0001},
                          parity=False)
    for sl in snap.slices:
        np.testing.assert_allclose(sl.bid_iv, 0.6 - 0.3 * np.log(sl.strike / sl.forward),
                                   atol=1e-10)
        assert sl.t == (sl.expiry_ns - later) / (365.0 * NS_DAY)  # the slice's: the snapshot's


def test_a_memo_changes_no_figure_and_inverts_only_updated_quotes():
    q = _quotes()
    rng = np.random.default_rng(5)
    memo = IVMemo()
    ids = np.arange(q["strike"].size) + 100
    now = NOW
    for step in range(5):
        if step:  # a few quotes updated since the last snapshot
            now += 10 ** 9
            upd = rng.random(ids.size) < 0.1
            q["bid_coin"] = np.where(upd, q["bid_coin"] * 1.001, q["bid_coin"])
            q["quote_ts"] = np.where(upd, now, q["quote_ts"])
        before = memo.inverted
        plain = build_snapshot(now, **q, parity=False)
        memoised = build_snapshot(now, **q, parity=False, memo=memo, row_id=ids)
        for a, b in zip(plain.slices, memoised.slices, strict=True):
            for f in ("k", "bid_iv", "ask_iv", "mid_iv"):
                assert_array_equal(getattr(a, f), getattr(b, f))
        otm = {name for sl in plain.slices for name in sl.instrument}
        changed = otm if step == 0 else otm & {q["instrument"][i] for i in np.flatnonzero(upd)}
        assert memo.inverted - before == 3 * len(changed)  # bid, ask and mid of each


@pytest.mark.parametrize("parity", [False, True])
def test_rows_in_any_order_give_the_same_snapshot(parity):
    """Rows given sorted by expiry and strike skip build_snapshot's sort; shuffled rows are
    sorted: both give the same slices, to the bit."""
    q = _quotes()
    assert np.all(np.diff(q["expiry_ns"]) >= 0)  # _quotes() lists them sorted
    shuffle = np.random.default_rng(3).permutation(q["strike"].size)
    sorted_snap = build_snapshot(NOW, **q, parity=parity)
    shuffled = build_snapshot(NOW, **{k: np.asarray(v)[shuffle] for k, v in q.items()},
                              parity=parity)
    assert len(sorted_snap.slices) == len(shuffled.slices) == 2
    for a, b in zip(sorted_snap.slices, shuffled.slices, strict=True):
        assert (a.expiry_ns, a.t, a.forward, a.forward_source) == \
            (b.expiry_ns, b.t, b.forward, b.forward_source)
        for f in ("strike", "k", "is_call", "bid_iv", "ask_iv", "mid_iv", "quote_ts"):
            assert_array_equal(getattr(a, f), getattr(b, f))
        assert_array_equal(a.instrument, b.instrument)


def test_a_snapshots_slices_are_views_of_its_rows_made_when_read():
    """build_snapshot's slices read their arrays from the snapshot's flat rows when first
    asked: every field equals the flat rows' part of it, ``replace`` gives a plain slice
    holding them all, and a pickled slice (a surface-stream build's state) reads the same."""
    import copy
    import pickle
    from dataclasses import fields, replace

    from calibration.quotes import QuoteSlice

    snap = build_snapshot(NOW, **_quotes(), parity=False)
    r = snap.rows
    for i, sl in enumerate(snap.slices):
        part = slice(r.start[i], r.stop[i])
        for f in ("k", "bid_iv", "ask_iv", "mid_iv", "mark_iv", "min_tick", "stale", "quote_ts"):
            assert_array_equal(getattr(sl, f), getattr(r, f)[part], strict=True)
        assert_array_equal(sl.two_sided, r.two_sided[part])
        assert sl.n == r.stop[i] - r.start[i] and len(sl.instrument) == sl.n
        plain = replace(sl, forward=sl.forward * 2)
        assert plain.forward == sl.forward * 2 and "_cols" not in vars(plain)
        for other in (plain, pickle.loads(pickle.dumps(sl)), copy.deepcopy(sl)):
            for f in fields(QuoteSlice):
                if f.name != "forward" or other is not plain:
                    assert_array_equal(getattr(other, f.name), getattr(sl, f.name))
        with pytest.raises(AttributeError, match="no attribute 'nope'"):
            sl.nope  # noqa: B018 - the lookup is the test
