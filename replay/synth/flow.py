"""Trade flow of the synthetic market: perp trades and option trades with an informed share.

Option trades arrive as a Poisson process; the instrument is drawn with the same weights as
its book-update rate (busy at the money, rare in the wings).  Each trade is *informed* with
probability ``informed_fraction``: an informed trader knows the sign of the index's log return
over the next ``horizon_s`` seconds and takes the matching delta (buys calls / sells puts before
an up-move, the reverse before a down-move).  Uninformed trades pick buy or sell with equal odds.
So for the delta direction ``d = side * (+1 call, -1 put)``::

    E[d * sign(future return)] = informed_fraction

which is the ground truth an adverse-selection measurement can be checked against (the flag
of every trade is stored in ``truth_trades``).  A trade lifts the ask or hits the bid of the
book at that instant, which is published as a quote at the same instant (before the trade);
a sell into a wing book without a bid does not happen (dropped).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from replay.synth.chain import Chain, ChainParams, active, books, quote_rates
from replay.synth.paths import NS_PER_S, ModelParams, PathBlock


@dataclass(frozen=True)
class FlowParams:
    """Trade arrival rates and the informed flow (the truth adverse selection should find)."""

    option_trade_rate: float = 0.3  # option trades per second, whole chain
    perp_trade_rate: float = 1.5  # perp trades per second
    informed_fraction: float = 0.3
    horizon_s: float = 120.0

    def validate(self, block_s: float) -> None:
        if not 0.0 <= self.informed_fraction <= 1.0:
            raise ValueError("informed_fraction must be in [0, 1]")
        if not 0.0 < self.horizon_s <= block_s:
            raise ValueError(f"horizon_s must be in (0, {block_s:g}] (the simulation looks one "
                             "block ahead)")
        if self.option_trade_rate < 0 or self.perp_trade_rate < 0:
            raise ValueError("trade rates must be non-negative")


def perp_trades(block: PathBlock, book: dict[str, np.ndarray], rate: float,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Perp prints at Poisson times, at the touch of the perp book in force at their exchange
    time (random side).  Received with latencies of their own, as a trade channel's are, a
    print close to a book step can arrive after the next book (or before its own): about 1 %
    of them read off the touch in the replay's order, up to a few ticks (the option prints,
    whose books change rarely and widely, are published with the book they met instead)."""
    n = rng.poisson(rate * block.n_steps * block.step_ns / NS_PER_S)
    ts = np.sort(block.t0_ns + (rng.random(n) * block.n_steps * block.step_ns).astype(np.int64))
    i = block.index(ts)
    side = np.where(rng.random(n) < 0.5, 1, -1).astype(np.int8)
    size = np.maximum(np.round(np.exp(np.log(100.0) + 1.3 * rng.standard_normal(n))), 1.0)
    return {"ts_exchange": ts,
            "price": np.where(side > 0, book["ask_price"][i], book["bid_price"][i]),
            "size": size, "side": side}


def option_trades(chain: Chain, block: PathBlock, ahead: PathBlock, model: str, p: ModelParams,
                  cp: ChainParams, fp: FlowParams, rng: np.random.Generator,
                  rate_mult: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Option prints of one block, with the informed flag and the future return as truth,
    and the book each print met: a fresh top of book at its instant
    (:func:`~replay.synth.chain.books`), which the writer publishes as a quote at the
    print's instant (a quote comes before a trade at one instant), so that every print is at
    the touch of the book in force (priced off a book never published, 237 of 1,086 prints
    of an hour were outside the book then in force).

    ``ahead`` is the next block of the path: the horizon return of a trade late in this block
    ends there.
    """
    idx, lo, hi = active(chain, block.t0_ns, block.t1_ns)
    whole = (lo == block.t0_ns) & (hi == block.t1_ns)  # trade only books live all block long
    idx = idx[whole]
    span = block.n_steps * block.step_ns
    n = rng.poisson(fp.option_trade_rate * rate_mult * span / NS_PER_S) if idx.size else 0
    ts = np.sort(block.t0_ns + (rng.random(n) * span).astype(np.int64))
    weights = quote_rates(chain, idx, block, model, p, cp, 1.0)
    pick = idx[rng.choice(idx.shape[0], size=n, p=weights / weights.sum())] if n else idx[:0]
    informed = rng.random(n) < fp.informed_fraction
    coin = np.where(rng.random(n) < 0.5, 1, -1)
    size = np.maximum(np.round(np.exp(np.log(1.0) + 1.2 * rng.standard_normal(n)), 1), 0.1)
    # horizon return from the path, continued into the next block
    path = np.concatenate([block.spot[:-1], ahead.spot])
    i = block.index(ts)
    h = round(fp.horizon_s * NS_PER_S / block.step_ns)
    fut = np.log(path[i + h] / path[i])
    direction = np.where(informed, np.where(fut >= 0, 1, -1), coin)
    side = (direction * np.where(chain.is_call[pick], 1, -1)).astype(np.int8)
    bk = books(chain, pick, ts, block, model, p, cp, rng)
    price = np.where(side > 0, bk["ask_price"], bk["bid_price"])
    iv = np.where(side > 0, bk["ask_iv"], bk["bid_iv"])
    ok = ~np.isnan(price)
    trades = {"ts_exchange": ts[ok], "instrument_id": bk["instrument_id"][ok],
              "price": price[ok], "size": size[ok], "side": side[ok], "iv": iv[ok],
              "index_price": np.round(bk["spot"][ok], 2),
              # truth, not market data
              "informed": informed[ok], "direction": direction[ok].astype(np.int8),
              "future_return": fut[ok]}
    met = {c: v[ok] for c, v in bk.items() if c != "spot"}
    met["ts_exchange"] = ts[ok]
    met["open_interest"] = np.full(int(ok.sum()), np.nan)
    return trades, met
