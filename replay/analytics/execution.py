"""Execution analytics: SQL over the run's journal and the market store (DuckDB ASOF JOIN).

Conventions (bps are of the mid at the reference time, USD as journaled by the venue):

* **slippage vs arrival**: ``side * (price - arrival_mid) / arrival_mid``: the spread (and depth)
  paid at the venue; this is the *spread cost*.
* **slippage vs decision**: ``side * (price - decision_mid) / decision_mid``; its difference to
  the above, ``side * (arrival_mid - decision_mid) / decision_mid``, is the *delay cost* of
  the order latency.
* **implementation shortfall** (Perold, "The implementation shortfall: paper versus reality",
  J. Portfolio Management 14(3), 1988) per order, in USD: what the fills cost against the
  decision mid, plus fees, plus the opportunity cost of the unfilled remainder valued at the
  mid when the venue gave up on it (a market order's arrival; a resting limit order's expiry).
* **markout** at horizon h: ``side * (mid(t + h) - price) / price`` in bps, from our side:
  negative means the fill lost money against the later mid.  It is the sum of the spread
  earned or paid at the fill and of the move after it, so it is split as
  ``markout_mid`` = ``side * (mid(t + h) - mid(t)) / mid(t)`` in bps, the *adverse selection*
  (price impact) part: the move of the mid after a fill, about zero on average when the
  counterparties know nothing (Glosten and Milgrom, J. Financial Economics 14, 1985; the
  realised-spread decomposition of Huang and Stoll, Rev. Financial Studies 9, 1996).
  ``mid(t)`` is the venue's mid at the fill (``arrival_mid``).  Option fills and hedge fills
  are reported separately.

Mids come from the store: ``(bid + ask) / 2`` of the last quote with ``ts_recv <= t`` of the
same instrument (ASOF JOIN), two-sided quotes only.  A markout whose horizon ends after the last
quote in the store, or at or after the option's expiry, is NULL (left out of the means), not the
last mid seen.  An instrument without quotes of its own
(the real Deribit data has no perp tape) has no market mid, and its figures are NULL.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import duckdb

from replay.engine.state import Instruments
from replay.errors import StoreError
from replay.model.orders import REJECT_REASONS
from replay.store import attach_store
from replay.units import NS

# A `volreplay ingest` into the store holds DuckDB's write lock, and a read-only attach then
# fails at once; an ingest commits in seconds, so wait about this long before giving up.
LOCK_WAIT_S = 10.0
#: DuckDB's memory cap on the analytics connection.  Building ``mids`` scans whole store tables,
#: and without a cap DuckDB keeps every block it read cached (up to 80 % of RAM), which made
#: the metrics step, not the replay, the peak of a run's RSS; the queries need far less.
MEMORY_LIMIT = "256MB"

# Only instruments the run traded and the store's underlying (the coin's USD rate where no fill
# gives it): the ASOF JOINs then sort thousands of quotes, not millions.
_MIDS = """
CREATE OR REPLACE TEMP TABLE mids AS
WITH traded AS (SELECT DISTINCT instrument_id FROM orders
                UNION SELECT instrument_id FROM underlying)
SELECT instrument_id, ts_recv AS ts, (bid_price + ask_price) / 2 AS mid
FROM mkt.option_quotes WHERE bid_price IS NOT NULL AND ask_price IS NOT NULL
     AND instrument_id IN (SELECT instrument_id FROM traded)
UNION ALL
SELECT instrument_id, ts_recv, (bid_price + ask_price) / 2
FROM mkt.underlying_quotes WHERE bid_price IS NOT NULL AND ask_price IS NOT NULL
     AND instrument_id IN (SELECT instrument_id FROM traded)
"""


def connect(journal: str | Path, store: str | Path, underlying_id: int | None = None
            ) -> duckdb.DuckDBPyConnection:
    """A connection to the journal with the market store attached read-only as ``mkt``, and
    the temp tables ``underlying`` (the run's underlying, ``underlying_id``; by default the
    store's, :meth:`replay.engine.state.Instruments.default_underlying` at the journal's first
    event; -1 if none) and ``mids``."""
    con = duckdb.connect(str(journal), read_only=True)
    try:
        con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'").fetchall()
        _attach_waiting(con, store, journal)
        if underlying_id is None:
            first = con.sql("SELECT min(ts) FROM journal").fetchall()[0][0]
            underlying_id = Instruments.from_arrow(con.sql(
                "SELECT * FROM mkt.instruments ORDER BY instrument_id").to_arrow_table()
            ).default_underlying(first)
        con.execute("CREATE OR REPLACE TEMP TABLE underlying AS SELECT "
                    f"{int(underlying_id)}::INTEGER AS instrument_id")
        con.execute(_MIDS)
    except BaseException:
        con.close()
        raise
    return con


def _attach_waiting(con: duckdb.DuckDBPyConnection, store: str | Path, journal: str | Path,
                    wait_s: float | None = None) -> None:
    """Attach the store as ``mkt`` (a DuckDB file or a Parquet export), retrying while another
    process holds its write lock; then a :class:`StoreError` that says so."""
    wait_s = LOCK_WAIT_S if wait_s is None else wait_s
    deadline, pause = time.monotonic() + wait_s, 0.05
    while True:
        try:
            attach_store(con, store, "mkt")
            return
        except duckdb.IOException as e:
            if "lock" not in str(e).lower():
                raise
            if time.monotonic() >= deadline:
                raise StoreError(
                    f"store {store} is being written by another process (a running `volreplay "
                    f"ingest`?) and stayed locked for {wait_s:g} s; the replay finished and its "
                    f"journal is in {Path(journal).parent}, but the metrics need the store: run "
                    "again once the writer is done") from None
            time.sleep(pause)
            pause = min(pause * 2, 1.0)


def fills_table(con: duckdb.DuckDBPyConnection, horizons_s: list[float]) -> duckdb.DuckDBPyRelation:
    """One row per execution with arrival/decision slippage and markouts (see module doc).

    The mids it reads (at the decision and at each horizon after the fill) are looked up
    together (:func:`_mids_at`)."""
    at = ["o.ts", *(f"e.ts + {int(h * NS)}" for h in horizons_s)]  # mid j: at at[j]
    mids = _mids_at("e.rowid", "executions e JOIN orders o USING (order_id)",
                    [("e.instrument_id", t) for t in at], [f"mid{j}" for j in range(len(at))])
    mk_cols = []
    for j, h in enumerate(horizons_s, start=1):
        end = at[j]
        # a horizon past the end of the data, or past the option's expiry, has no mid.  The
        # test is on the joined mid, not in the join's ON clause: DuckDB plans an ASOF JOIN
        # only for equalities plus one inequality, and with more conditions it fell back to
        # a nested-loop join over every earlier quote (minutes on a long run, growing with it)
        mid = (f"CASE WHEN {end} <= (SELECT max(ts) FROM mids) "
               f"AND {end} < coalesce(i.expiry_ns, {end} + 1) THEN m.mid{j} END")
        mk_cols.append(f"sign(e.qty) * ({mid} - e.price) / e.price * 1e4 AS markout_{_hname(h)}")
        mk_cols.append(f"sign(e.qty) * ({mid} - e.arrival_mid) / e.arrival_mid * 1e4 "
                       f"AS markout_mid_{_hname(h)}")
    sql = f"""
    WITH m AS ({mids})
    SELECT e.seq, e.ts, e.order_id, e.instrument_id, i.name AS instrument, i.kind,
           CASE WHEN i.kind = 'option' THEN 'option' ELSE 'hedge' END AS leg,
           e.qty, e.price, e.fee, e.fee_usd, e.slippage_usd, e.usd_per_coin, e.arrival_mid,
           o.ts AS decision_ts, m.mid0 AS decision_mid,
           sign(e.qty) * (e.price - e.arrival_mid) / e.arrival_mid * 1e4 AS spread_cost_bps,
           sign(e.qty) * (e.arrival_mid - m.mid0) / m.mid0 * 1e4 AS delay_cost_bps,
           sign(e.qty) * (e.price - m.mid0) / m.mid0 * 1e4 AS slippage_vs_decision_bps,
           {', '.join(mk_cols) if mk_cols else 'NULL AS no_markouts'}
    FROM executions e
    JOIN orders o USING (order_id)
    JOIN mkt.instruments i ON i.instrument_id = e.instrument_id
    JOIN m ON m.key = e.rowid
    ORDER BY e.seq"""
    return con.sql(sql)


def shortfall_table(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
    """Implementation shortfall per order (USD), with its execution and opportunity parts.

    A coin-premium option's price is converted at the coin's USD rate of its own fills, else
    of the venue's last fill before it, else (no fill yet in the run) at the venue's rate then
    (:meth:`replay.engine.state.MarketView.spot`): the mid of the store's underlying
    (:meth:`replay.engine.state.Instruments.default_underlying`) while it is live, else the
    venue forward of the underlying future's expiry, else of the nearest live expiry that has
    one (the median of its options' last quoted forwards).  An instrument with no quotes in the store is measured from the mid the
    venue priced the order's first fill against (``executions.arrival_mid``) that had one: its
    delay cost is then 0 and its execution cost the venue's slippage.  An order with no mid
    at its decision nor at any fill (an option whose book was one-sided throughout) has no
    execution cost nor shortfall (NULL): the run's total (:func:`execution_metrics`) leaves
    it out and counts it."""
    # the order's mids at its decision and when it ended, and the underlying's at the decision
    mids = _mids_at("order_id", "o", [("instrument_id", "ts"), ("instrument_id", "end_ts"),
                                      ("(SELECT instrument_id FROM underlying)", "ts")],
                    ["decision_mid", "end_mid", "underlying_mid"])
    return con.sql(f"""
    WITH f AS (
        SELECT order_id, sum(qty) AS filled, sum(fee_usd) AS fees_usd,
               sum(qty * price) AS qty_px, any_value(usd_per_coin) AS usd,
               -- the venue journals NaN, not NULL, for a fill against a one-sided book;
               -- arg_min skips NULLs, so this is the first fill that had a mid
               arg_min(nullif(arrival_mid, 'NaN'::DOUBLE), seq) AS arrival_mid
        FROM executions GROUP BY order_id),
    r AS (SELECT order_id, sum(qty) AS unfilled, max(ts) AS gave_up_ts
          FROM rejections GROUP BY order_id),
    o AS (SELECT o.*, coalesce(r.gave_up_ts, o.arrival_ts) AS end_ts
          FROM orders o LEFT JOIN r USING (order_id)),
    q AS ({mids}),
    -- an instrument the store never quotes (a summary store's dated future): the mid the
    -- venue priced its first fill against, so that its fees and slippage are counted
    m AS (SELECT q.key, coalesce(q.decision_mid, f.arrival_mid) AS decision_mid,
                 coalesce(q.end_mid, f.arrival_mid) AS end_mid, q.underlying_mid
          FROM q LEFT JOIN f ON f.order_id = q.key),
    -- the underlying's expiry (a future's; none for a perpetual or a spot pair)
    ux AS (SELECT coalesce(expiry_ns, 9223372036854775807) AS expiry_ns FROM mkt.instruments
           WHERE instrument_id = (SELECT instrument_id FROM underlying)),
    -- option orders that never filled, sent before the run's first fill, and the expiries
    -- whose venue forward MarketView.spot reads then, in its order: the underlying future's,
    -- then the live ones, nearest first
    need AS (SELECT o.order_id, o.ts FROM o JOIN mkt.instruments i USING (instrument_id)
             WHERE i.kind = 'option' AND o.order_id NOT IN (SELECT order_id FROM f)
                   AND o.ts < coalesce((SELECT min(ts) FROM executions), 9223372036854775807)),
    cand AS (SELECT n.order_id, n.ts, 0 AS rank, i.expiry_ns AS e
             FROM need n, underlying u JOIN mkt.instruments i USING (instrument_id)
             WHERE i.kind = 'future' AND i.expiry_ns > n.ts
             UNION ALL
             SELECT n.order_id, n.ts, x.rank, x.e FROM need n, LATERAL (
                 SELECT expiry_ns AS e, row_number() OVER (ORDER BY expiry_ns) AS rank
                 FROM (SELECT DISTINCT expiry_ns FROM mkt.instruments
                       WHERE kind = 'option' AND expiry_ns > n.ts)) x),
    -- each option's forward as the state holds it: its last quote's (NULL if that has none)
    last AS (SELECT c.order_id, c.rank, arg_max_null(q.underlying_price, (q.ts_recv, q.seq)) AS f
             FROM cand c JOIN mkt.instruments i ON i.kind = 'option' AND i.expiry_ns = c.e
                  JOIN mkt.option_quotes q ON q.instrument_id = i.instrument_id
                                          AND q.ts_recv <= c.ts
             GROUP BY c.order_id, c.rank, i.instrument_id),
    v AS (SELECT order_id, arg_min(fwd, rank) AS fwd
          FROM (SELECT order_id, rank, median(f) FILTER (WHERE f > 0 AND isfinite(f)) AS fwd
                FROM last GROUP BY order_id, rank)
          WHERE fwd > 0 GROUP BY order_id)
    SELECT o.order_id, o.ts, o.instrument_id, i.kind, o.qty AS ordered,
           coalesce(f.filled, 0) AS filled, coalesce(r.unfilled, 0) AS unfilled,
           m.decision_mid, m.end_mid,
           coalesce(f.usd, u.usd_per_coin, if(ux.expiry_ns > o.ts, m.underlying_mid, NULL),
                    v.fwd)
               AS coin_usd,
           -- USD value of a unit price change per contract: options quote coin premiums; an
           -- inverse perp/future contract is worth cs/P coin, so dP moves it by cs dP/P^2 coin
           CASE WHEN i.kind = 'option' AND i.settlement = 'inverse'
                     THEN i.contract_size * coin_usd
                WHEN i.settlement = 'inverse'
                     THEN i.contract_size * coalesce(coin_usd, m.decision_mid)
                          / (m.decision_mid * m.decision_mid)
                ELSE i.contract_size END AS usd_per_price,
           (coalesce(f.qty_px, 0) - coalesce(f.filled, 0) * m.decision_mid) * usd_per_price
               AS execution_usd,
           coalesce(r.unfilled, 0) * (m.end_mid - m.decision_mid) * usd_per_price
               AS opportunity_usd,
           coalesce(f.fees_usd, 0) AS fees_usd,
           -- f.fees_usd by name, not the alias (DuckDB reads a column first): NULL when unfilled
           execution_usd + opportunity_usd + coalesce(f.fees_usd, 0) AS shortfall_usd
    FROM o
    JOIN mkt.instruments i ON i.instrument_id = o.instrument_id
    LEFT JOIN f USING (order_id) LEFT JOIN r USING (order_id)
    JOIN m ON m.key = o.order_id
    -- an option order that never filled: the coin's USD rate of the venue's last fill before it,
    -- else the underlying's mid at the decision
    ASOF LEFT JOIN (SELECT ts, usd_per_coin FROM executions) u ON u.ts <= o.ts
    -- else the underlying's mid while it is live (a future taken as the underlying expires)
    LEFT JOIN ux ON true
    -- else a venue forward (a store of venue summaries quotes no underlying)
    LEFT JOIN v USING (order_id)
    ORDER BY o.order_id""")


def _mids_at(key: str, source: str, probes: list[tuple[str, str]], names: list[str]) -> str:
    """SQL of the relation ``(key, names...)``: for each row of ``source``, per probe
    ``(instrument, time)`` (SQL expressions over ``source``) the last mid of that instrument
    at or before that time, every one looked up by a single ASOF JOIN.  A join sorts the mids,
    so one join per probe sorted them once per probe (a day's thousand fills: 0.12 s against
    0.03 s)."""
    union = " UNION ALL ".join(
        f"SELECT {key} AS key, {j} AS j, {instrument} AS instrument_id, {t} AS t FROM {source}"
        for j, (instrument, t) in enumerate(probes))
    cols = ", ".join(f"max(q.mid) FILTER (WHERE p.j = {j}) AS {name}"
                     for j, name in enumerate(names))
    return (f"SELECT p.key, {cols} FROM ({union}) p ASOF LEFT JOIN mids q "
            "ON q.instrument_id = p.instrument_id AND q.ts <= p.t GROUP BY p.key")


def hedge_costs(executions, orders, hedger: str | None) -> dict[str, float]:
    """The ``pnl`` block's hedging costs (negative: paid): ``hedge_fees_usd`` and
    ``hedge_slippage_usd``, the fees and the venue's fill-against-mid cost
    (``executions.fee_usd``, ``slippage_usd``) of the fills of the orders the ``hedger``
    consumer sent: its hedge trades, and a ``gamma_vega`` hedger's option trades.  What a
    sweep of hedgers over one options book trades off against the hedging error: the book's
    own trades cost the same in every job."""
    if hedger is None or not len(executions):
        return {"hedge_fees_usd": 0.0, "hedge_slippage_usd": 0.0}
    mine = set(orders.loc[orders["consumer"] == hedger, "order_id"].tolist())
    fills = executions[executions["order_id"].isin(mine)]
    return {"hedge_fees_usd": -float(fills["fee_usd"].sum()),
            "hedge_slippage_usd": -float(fills["slippage_usd"].sum())}


def _hname(h: float) -> str:
    return f"{int(h)}s" if float(h).is_integer() else f"{h:g}s".replace(".", "p")


def execution_metrics(journal: str | Path, store: str | Path, horizons_s: list[float],
                      underlying_id: int | None = None,
                      con: duckdb.DuckDBPyConnection | None = None) -> dict:
    """The ``execution`` block of metrics.json plus markout curves per leg (``underlying_id``:
    the run's underlying, :func:`connect`; ``con``: a connection :func:`connect` already
    opened on them, used and left open)."""
    if con is None:
        with connect(journal, store, underlying_id) as own:
            return execution_metrics(journal, store, horizons_s, underlying_id, own)
    n_orders = con.execute("SELECT count(*) FROM orders").fetchall()[0][0]
    # orders the venue refused or gave up on, by its reason (an order counted once, at
    # its last rejection): a book whose every opening order hit the price band holds
    # nothing, and only this says why
    rejected = dict.fromkeys(REJECT_REASONS, 0) | dict(con.execute(
        "SELECT reason, count(*) FROM (SELECT arg_max(reason, seq) AS reason "
        "FROM rejections GROUP BY order_id) GROUP BY reason ORDER BY reason").fetchall())
    fills = fills_table(con, horizons_s).df()
    # orders with no mid to measure from are left out of the total, and counted: one
    # such order made the whole run's total NaN
    is_usd, unpriced = con.execute(
        "SELECT sum(shortfall_usd), count(*) FILTER (WHERE shortfall_usd IS NULL) FROM ("
        + shortfall_table(con).sql_query() + ")").fetchall()[0]
    markout = {}
    curves: dict[str, dict[str, float | None]] = {"option": {}, "hedge": {}}
    adverse: dict[str, dict[str, float | None]] = {"option": {}, "hedge": {}}
    for h in horizons_s:
        col = f"markout_{_hname(h)}"
        markout[_hname(h)] = _mean(fills[col]) if len(fills) else None
        for leg in curves:
            sel = fills.leg == leg if len(fills) else []
            curves[leg][_hname(h)] = _mean(fills.loc[sel, col]) if len(fills) else None
            adverse[leg][_hname(h)] = _mean(fills.loc[sel, f"markout_mid_{_hname(h)}"]) \
                if len(fills) else None
    return {
        "n_orders": int(n_orders),
        "n_fills": int(len(fills)),
        "rejected": {str(k): int(v) for k, v in rejected.items()},
        "slippage_bps_mean": _mean(fills["spread_cost_bps"]) if len(fills) else None,
        "delay_cost_bps_mean": _mean(fills["delay_cost_bps"]) if len(fills) else None,
        "implementation_shortfall_usd": None if is_usd is None or not math.isfinite(is_usd)
        else float(is_usd),
        "shortfall_unpriced_orders": int(unpriced),
        "markout_bps": markout,
        "markout_bps_by_leg": curves,
        "markout_mid_bps_by_leg": adverse,
    }


def _mean(s) -> float | None:
    try:
        v = float(s.dropna().mean())
    except (AttributeError, TypeError):
        return None
    return v if math.isfinite(v) else None
