"""Quotes of a small chain of SVI smiles, for the scheme's and the quality metrics' tests."""

from __future__ import annotations

import numpy as np

from calibration.models.svi import SVIParams, svi_total_variance
from calibration.pricing.black import black_price
from calibration.pricing.inverse import usd_to_coin
from calibration.quotes import QuoteSnapshot, build_snapshot

DAY_NS = 86_400 * 10 ** 9
T0_NS = 1_700_000_000 * 10 ** 9


def svi_chain(now: int, requote: dict[int, float] | None = None, at_ns: int | None = None
              ) -> QuoteSnapshot:
    """A snapshot at ``now`` of three SVI expiries (1, 4 and 30 days from ``T0_NS``, vols
    0.9, 0.6, 0.5; 25 strikes, calls then puts), bid and ask half a vol point from the smile,
    each quote priced when last updated: at ``T0_NS``, or for the positions ``requote`` (of
    the flat rows) at ``at_ns`` (default ``now``), moved by that many vol points."""
    cols = {c: [] for c in ("expiry", "strike", "call", "fwd", "iv")}
    for days, fwd, vol in ((1, 90_000.0, 0.9), (4, 90_100.0, 0.6), (30, 90_500.0, 0.5)):
        t, strike = days / 365, fwd * np.exp(np.linspace(-0.4, 0.4, 25))
        p = SVIParams(vol ** 2 * t * 0.8, 0.3 * t, -0.3, 0.02, 0.15)
        iv = np.sqrt(svi_total_variance(np.log(strike / fwd), p) / t)
        for call in (True, False):
            for c, v in (("expiry", T0_NS + days * DAY_NS), ("strike", strike), ("call", call),
                         ("fwd", fwd), ("iv", iv)):
                cols[c].append(np.broadcast_to(v, strike.shape))
    c = {k: np.concatenate(v) for k, v in cols.items()}
    ts = np.full(c["strike"].size, T0_NS)
    for i, dv in (requote or {}).items():
        c["iv"][i] += dv
        ts[i] = now if at_ns is None else at_ns
    t = (c["expiry"] - ts) / (365 * DAY_NS)
    bid, ask = (usd_to_coin(black_price(c["fwd"], c["strike"], t, c["iv"] + d, c["call"]),
                            c["fwd"]) for d in (-0.005, 0.005))
    return build_snapshot(now, c["expiry"], c["strike"], c["call"], bid, ask, c["fwd"],
                          min_tick=0.0, quote_ts=ts)
