"""Rebuild the venue's books from a run's journal: the event-sourcing check that the portfolio
holds no state the journal does not.

Folding, in ``seq`` order, every ``execution`` (the venue's fill after fees, with the coin's USD
price it was booked at), every ``funding`` accrual and every ``settlement`` into a fresh
:class:`~replay.venue.accounting.Portfolio` reproduces the run's portfolio exactly: positions,
realised PnL in coin and USD, fees and funding.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import duckdb

from replay.model.orders import Fill, InstrumentSpec
from replay.venue.accounting import Portfolio


def fold_portfolio(journal: str | os.PathLike, specs: Mapping[int, InstrumentSpec]) -> Portfolio:
    """The portfolio the journal at ``journal`` describes (``specs`` as the run's venue had)."""
    with duckdb.connect(str(journal), read_only=True) as con:
        have = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables").fetchall()}
        parts = []
        if "executions" in have:
            parts.append("SELECT seq, 'x' AS k, ts, order_id, instrument_id, qty, price, fee, "
                         "liquidity, level, usd_per_coin, NULL AS amount, NULL AS underlying "
                         "FROM executions")
        if "funding_payments" in have:
            parts.append("SELECT seq, 'f', ts, NULL, instrument_id, NULL, NULL, NULL, NULL, "
                         "NULL, usd_per_coin, amount, NULL FROM funding_payments")
        if "settlements" in have:
            parts.append("SELECT seq, 's', ts, NULL, instrument_id, NULL, NULL, NULL, NULL, "
                         "NULL, NULL, NULL, underlying FROM settlements")
        rows = con.execute(" UNION ALL ".join(parts) + " ORDER BY seq").fetchall() if parts \
            else []
    pf = Portfolio(specs)
    for _, k, ts, oid, iid, qty, price, fee, liq, level, usd, amount, und in rows:
        if k == "x":
            side = 1 if qty > 0 else -1
            pf.apply_fill(Fill(int(oid), int(iid), int(ts), side, float(price), abs(float(qty)),
                               str(liq), float(fee), int(level)), float(usd))
        elif k == "f":
            pf.apply_funding(int(iid), float(amount), float(usd))
        else:  # as the venue did, whatever the index was
            pf.settle(int(iid), float(und))
    return pf
