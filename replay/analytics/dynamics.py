"""Surface dynamics measured from the run's published surfaces: ATM vol and skew per expiry,
and the skew stickiness ratio (SSR).

For each published fit of expiry ``T`` at time ``t`` (the ``surface_fits`` rows), the ATM vol
``sigma_ATM = sqrt(w(0) / tau)`` and the ATM skew ``S = d sigma / dk = w'(0) / (2 sqrt(w(0)
tau))`` at ``k = ln(K / F) = 0`` (:meth:`calibration.surface.SmileSlice.vol_and_skew`).

**The SSR** (Bergomi, *Stochastic Volatility Modeling*, 2016, ch. 9) is

    R = (d sigma_ATM / d ln F) / S

``R = 1`` is sticky strike (the smile stays put in strike, so the ATM vol slides along it),
``R = 0`` sticky moneyness (the smile moves with the forward), and about 2 is what local
volatility implies for short maturities.  Over pairs of fits of one expiry ``h`` apart
(``dynamics_horizon_s``; each fit with the first one at least ``h`` later, if that one is at
most ``2h`` later: across a gap in the data a pair would measure a move over hours or days,
and such pairs, with the largest ``x``, would dominate both sums), with ``x = S_start * (ln F_end - ln F_start)`` and
``y = sigma_ATM,end - sigma_ATM,start``, ``R`` is the least-squares slope through the origin
of ``y`` on ``x``::

    R_hat = sum(x y) / sum(x^2)

with a standard error that allows for what the pairs share: pairs closer in time than ``h``
overlap, and the expiries of a bucket see the same forward move (Driscoll-Kraay, in
:func:`calibration.pricing.smile_delta.ssr_estimate`); taken as independent, the pairs of a
30 s cadence at ``h = 300 s`` would understate it about threefold.  Both are given
per expiry bucket over the whole run (``metrics.json``: ``dynamics.ssr``, ``dynamics.ssr_se``),
and per expiry over a trailing window (``dynamics_window_s``) of pairs that ended by ``t``
(the ``surface_dynamics`` table's ``ssr``, causal).  The ATM vol also drifts along its term
structure as ``tau`` shrinks; over the short horizons used here that drift is small against
the spot-driven move.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from calibration.pricing.smile_delta import ssr_estimate
from calibration.surface import PARAMS, SmileSlice

#: expiry buckets by days to expiry at the fit: (name, upper bound in days)
BUCKETS = (("0-1d", 1.0), ("1-7d", 7.0), ("7-30d", 30.0), ("30-90d", 90.0), ("90d+", math.inf))


def bucket_of(days: np.ndarray) -> np.ndarray:
    """The bucket name of each days-to-expiry value."""
    edges = np.array([b for _, b in BUCKETS[:-1]])
    return np.array([n for n, _ in BUCKETS])[np.searchsorted(edges, days, side="left")]


def atm_table(fits: pd.DataFrame) -> pd.DataFrame:
    """``ts, expiry, tau, forward, atm_vol, atm_skew`` of published fits given as
    :func:`published_fits` returns them, in their order (raw SVI in one vectorised pass over
    its parameter arrays; other models fit by fit)."""
    t, f = fits["t"].to_numpy(float), fits["forward"].to_numpy(float)
    vol, skew = np.full(len(fits), np.nan), np.full(len(fits), np.nan)
    model = fits["model"].astype("category")
    codes = model.cat.codes.to_numpy()
    for code, name in sorted(enumerate(model.cat.categories), key=lambda c: c[1]):
        rows = np.flatnonzero(codes == code)
        if not rows.size:
            continue
        k = len(PARAMS[name].__dataclass_fields__)
        par = fits[[f"p{j}" for j in range(k)]].to_numpy(float)[rows]
        if name == "svi":  # raw SVI evaluates on parameter arrays: one pass
            vol[rows], skew[rows] = SmileSlice(name, PARAMS[name](*par.T), 0, t[rows], f[rows],
                                               -1.0, 1.0).vol_and_skew(np.zeros(rows.size))
        else:
            vol[rows], skew[rows] = np.array(
                [SmileSlice(name, PARAMS[name](*p), 0, ti, fi, -1.0, 1.0).vol_and_skew(0.0)
                 for p, ti, fi in zip(par, t[rows], f[rows])], dtype=float).reshape(-1, 2).T
    return pd.DataFrame({"ts": fits["ts"].to_numpy(np.int64),
                         "expiry": fits["expiry"].to_numpy(np.int64), "tau": t, "forward": f,
                         "atm_vol": vol, "atm_skew": skew})


def published_fits(con) -> pd.DataFrame:
    """The published ``surface_fits`` of a journal connection with their parameters as one
    ``p0, p1, ...`` column per parameter (NaN past a model's own count; the cast also reads
    journals written when ``params`` was JSON text).  The parameters are split into columns
    in the query and the model read as a categorical: a day at 1 s is a million fits, which
    as lists and Python strings doubled a run's peak memory."""
    width = max(len(p.__dataclass_fields__) for p in PARAMS.values())
    cols = ", ".join(f"p[{j + 1}] AS p{j}" for j in range(width))
    t = con.sql(f"SELECT ts, model, expiry, t, forward, {cols} FROM (SELECT seq, ts, model, "
                "expiry, t, forward, CAST(params AS DOUBLE[]) AS p FROM surface_fits "
                "WHERE published) ORDER BY seq").to_arrow_table()
    return t.to_pandas(strings_to_categorical=True)


def _by_expiry(expiry: np.ndarray, order: np.ndarray) -> list[np.ndarray]:
    """``order`` (row positions) split into one run per expiry, in increasing expiry, each
    run keeping the positions' order (as ``groupby(sort=True)`` does)."""
    o = order[np.argsort(expiry[order], kind="stable")]
    cuts = np.flatnonzero(np.diff(expiry[o])) + 1
    return np.split(o, cuts) if o.size else []


def ssr_pairs(atm: pd.DataFrame, horizon_ns: int) -> pd.DataFrame:
    """The ``(x, y)`` pairs of the module docstring: per expiry, each fit and the first fit at
    least ``horizon_ns`` later, where that is at most ``2 horizon_ns`` later; with the end
    time and the start's days to expiry."""
    ts, expiry = atm["ts"].to_numpy(np.int64), atm["expiry"].to_numpy(np.int64)
    starts, ends = [], []
    for rows in _by_expiry(expiry, np.argsort(ts, kind="stable")):  # each in time order
        t = ts[rows]
        j = np.searchsorted(t, t + horizon_ns, side="left")
        ok = j < t.size
        ok[ok] = t[j[ok]] - t[ok] <= 2 * horizon_ns
        starts.append(rows[ok])
        ends.append(rows[j[ok]])
    i = np.concatenate(starts) if starts else np.zeros(0, np.int64)
    if not i.size:
        return pd.DataFrame(columns=["expiry", "start", "end", "days", "x", "y"])
    j = np.concatenate(ends)
    lf = np.log(atm["forward"].to_numpy(float))
    vol, skew = atm["atm_vol"].to_numpy(float), atm["atm_skew"].to_numpy(float)
    return pd.DataFrame({"expiry": expiry[i], "start": ts[i], "end": ts[j],
                         "days": atm["tau"].to_numpy(float)[i] * 365.0,
                         "x": skew[i] * (lf[j] - lf[i]), "y": vol[j] - vol[i]})


def rolling_ssr(pairs: pd.DataFrame, at: np.ndarray, expiry: np.ndarray, window_ns: int
                ) -> np.ndarray:
    """Per row (time ``at``, ``expiry``): the SSR of that expiry's pairs that ended in
    ``(at - window, at]`` (causal)."""
    out = np.full(at.size, np.nan)
    end_all, exp_all = pairs["end"].to_numpy(np.int64), pairs["expiry"].to_numpy(np.int64)
    x_all, y_all = pairs["x"].to_numpy(float), pairs["y"].to_numpy(float)
    # each expiry's pairs by end time, ties in the order of a (non-stable) sort of the ends:
    # the running sums below add them in that order
    for g in _by_expiry(exp_all, np.argsort(end_all, kind="quicksort")):
        rows = np.flatnonzero(expiry == exp_all[g[0]])
        end, x, y = end_all[g], x_all[g], y_all[g]
        cxy = np.concatenate([[0.0], np.cumsum(x * y)])
        cxx = np.concatenate([[0.0], np.cumsum(x ** 2)])
        hi = np.searchsorted(end, at[rows], side="right")
        lo = np.searchsorted(end, at[rows] - window_ns, side="right")
        n = hi - lo
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (cxy[hi] - cxy[lo]) / (cxx[hi] - cxx[lo])
        out[rows] = np.where(n >= 3, r, np.nan)
    return out


def dynamics_of(fits: pd.DataFrame, horizon_s: float = 300.0, window_s: float = 86400.0
                ) -> tuple[dict, pd.DataFrame | None]:
    """The ``dynamics`` block of metrics.json (``ssr`` and ``ssr_se`` per bucket of
    :data:`BUCKETS`, null where a bucket has fewer than 3 pairs; ``horizon_s``, ``window_s``,
    ``pairs``)
    and the ``surface_dynamics`` rows (None without fits) of published fits given as
    :func:`published_fits` returns them."""
    block: dict = {"ssr": dict.fromkeys(n for n, _ in BUCKETS),
                   "ssr_se": dict.fromkeys(n for n, _ in BUCKETS),
                   "horizon_s": float(horizon_s), "window_s": float(window_s), "pairs": 0}
    if fits.empty:
        return block, None
    atm = atm_table(fits)
    del fits  # a day's fits are a million rows: let them go (the callers hold none)
    pairs = ssr_pairs(atm, int(horizon_s * 1e9))
    block["pairs"] = int(len(pairs))
    if len(pairs):
        names = bucket_of(pairs["days"].to_numpy())
        for n, _ in BUCKETS:
            sel = names == n
            r, se = ssr_estimate(pairs["x"].to_numpy()[sel], pairs["y"].to_numpy()[sel],
                                 pairs["start"].to_numpy()[sel], horizon_s * 1e9)
            block["ssr"][n] = r if math.isfinite(r) else None
            block["ssr_se"][n] = se if math.isfinite(se) else None
    atm["ssr"] = rolling_ssr(pairs, atm["ts"].to_numpy(), atm["expiry"].to_numpy(),
                             int(window_s * 1e9)) if len(pairs) else np.nan
    atm["window_s"] = float(window_s)
    # in (ts, expiry) order, which is unique: one row per expiry of a fit
    return block, atm[["ts", "expiry", "tau", "forward", "atm_vol", "atm_skew", "ssr",
                       "window_s"]].sort_values(["ts", "expiry"], ignore_index=True)


def dynamics(journal: Path, horizon_s: float = 300.0, window_s: float = 86400.0,
             known: dict | None = None) -> dict:
    """Write the run's ``surface_dynamics`` table and return the ``dynamics`` block
    (:func:`dynamics_of`).  ``known``: the block :func:`recorded_dynamics` gave for the same
    published fits (a surface stream the run replayed whole), whose table the journal holds
    already (copied while the run replayed, :meth:`replay.engine.journal.Journal.copy_table`);
    it is returned as it is when it was measured with this horizon and window.  Otherwise the
    block and the table are computed from the journal, the table replacing any the journal
    holds (or dropping it, without published fits)."""
    import duckdb

    if known is not None and (known["horizon_s"], known.get("window_s")) == (
            float(horizon_s), float(window_s)):
        return known
    block, table = dynamics_of(_published(str(journal), None), horizon_s, window_s)
    with duckdb.connect(str(journal)) as con:
        if table is not None:
            con.register("dyn", table)
            con.execute("CREATE OR REPLACE TABLE surface_dynamics AS SELECT * FROM dyn"
                        ).fetchall()
        else:
            con.execute("DROP TABLE IF EXISTS surface_dynamics").fetchall()
    return block


def recorded_dynamics(fits_parquet: Path, out: Path, horizon_s: float = 300.0,
                      window_s: float = 86400.0) -> dict:
    """:func:`dynamics` of the published fits recorded in a surface stream's
    ``fits.parquet`` (rows in journal order): writes the table to the Parquet file ``out``
    (none without fits) and returns the block."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    block, table = dynamics_of(_published(":memory:", fits_parquet), horizon_s, window_s)
    if table is not None:
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), out,
                       compression="zstd")
    return block


def _published(database: str, recorded: Path | None) -> pd.DataFrame:
    """:func:`published_fits` of a journal, or (``recorded``) of a stream's fits file, on a
    connection closed before the fits are used: DuckDB's buffers are let go."""
    import duckdb

    with duckdb.connect(database, read_only=recorded is None) as con:
        if recorded is not None:  # a view: the query reads what it needs of the file
            con.read_parquet(str(recorded), file_row_number=True).create_view("recorded")
            con.execute("CREATE VIEW surface_fits AS SELECT file_row_number AS seq, * "
                        "FROM recorded").fetchall()
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables").fetchall()}
        return published_fits(con) if "surface_fits" in tables else pd.DataFrame()
