"""SSR measurement: a surface stream whose ATM vol moves with a known SSR gives it back."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from calibration.pricing.smile_delta import ssr_estimate
from replay.analytics.dynamics import atm_table, bucket_of, rolling_ssr, ssr_pairs

NS = 10**9
B, RHO, SIG = 0.02, -0.6, 0.1


def _fits(r_true: float, n: int = 600, seed: int = 0, noise: float = 1e-4) -> pd.DataFrame:
    """Fits every 60 s of one 20-day expiry whose ATM vol follows d sigma = R S d ln F, as
    :func:`replay.analytics.dynamics.published_fits` gives them."""
    rng = np.random.default_rng(seed)
    t = 20 / 365
    lf, vol, rows = np.log(95_000.0), 0.55, []
    for i in range(n):
        w0 = vol * vol * t
        a = w0 - B * SIG  # w(0) = a + b sigma_svi at m = 0
        skew = B * RHO / (2 * np.sqrt(w0 * t))
        rows.append({"ts": i * 60 * NS, "model": "svi", "expiry": 20 * 86400 * NS, "t": t,
                     "forward": float(np.exp(lf)),
                     **{f"p{j}": v for j, v in enumerate([a, B, RHO, 0.0, SIG])}})
        dlf = 0.5 * np.sqrt(60 / (365 * 86400)) * rng.standard_normal()
        lf += dlf
        vol += r_true * skew * dlf + noise * rng.standard_normal()
    return pd.DataFrame(rows)


@pytest.mark.parametrize("r_true", [0.0, 1.0, 1.8])
def test_the_ssr_is_recovered_within_its_standard_error(r_true):
    atm = atm_table(_fits(r_true))
    assert_allclose(atm["atm_skew"], B * RHO / (2 * atm["atm_vol"] * 20 / 365), rtol=1e-9)
    pairs = ssr_pairs(atm, 60 * NS)
    r, se = ssr_estimate(pairs["x"].to_numpy(), pairs["y"].to_numpy())
    assert abs(r - r_true) < 3 * se
    assert se < 0.3
    roll = rolling_ssr(pairs, atm["ts"].to_numpy(), atm["expiry"].to_numpy(), 3600 * NS)
    late = roll[-100:]
    assert np.isfinite(late).all() and abs(np.median(late) - r_true) < 0.5


def test_buckets_and_pair_horizon():
    assert bucket_of(np.array([0.5, 1.0, 3.0, 29.0, 31.0, 400.0])).tolist() == \
        ["0-1d", "0-1d", "1-7d", "7-30d", "30-90d", "90d+"]
    atm = atm_table(_fits(1.0, n=20))
    pairs = ssr_pairs(atm, 300 * NS)  # each fit and the first one 5 minutes later
    assert len(pairs) == 15 and ((pairs["end"] - pairs["start"]) == 300 * NS).all()
    # a gap in the data: no pair spans it (it would pair fits 52 hours apart as "5 minutes")
    gap = atm.assign(ts=np.where(atm["ts"] >= atm["ts"].iloc[10], atm["ts"] + 52 * 3600 * NS,
                                 atm["ts"]))
    pairs = ssr_pairs(gap, 300 * NS)
    assert len(pairs) == 10 and ((pairs["end"] - pairs["start"]) == 300 * NS).all()


def test_dynamics_of_a_recorded_stream_are_copied_as_computed(tmp_path):
    """A stream's recorded dynamics (its fits file, rows in journal order) are what the
    journal of the same fits gives; a run that replayed the stream copies them as they are."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from replay.analytics.dynamics import dynamics, recorded_dynamics
    from replay.engine.journal import Journal

    fits = _fits(1.0, n=200)
    params = fits[[f"p{j}" for j in range(5)]].to_numpy().tolist()
    rows = pa.table({"ts": fits["ts"], "model": fits["model"], "expiry": fits["expiry"],
                     "t": fits["t"], "forward": fits["forward"], "params": params,
                     "published": [i % 5 != 3 for i in range(len(fits))]})  # some not
    pq.write_table(rows, tmp_path / "fits.parquet")
    block = recorded_dynamics(tmp_path / "fits.parquet", tmp_path / "dyn.parquet")
    live = tmp_path / "live.duckdb"
    with duckdb.connect(str(live)) as con:
        con.register("r", rows.append_column("seq", pa.array(range(len(fits)), pa.int64())))
        con.execute("CREATE TABLE surface_fits AS SELECT * FROM r").fetchall()
    assert dynamics(live) == block and block["pairs"] > 0
    copied = tmp_path / "copied.duckdb"
    journal = Journal(copied)  # the run's journal copies the table while it replays
    journal.copy_table("surface_dynamics", tmp_path / "dyn.parquet")
    journal.close()
    assert dynamics(copied, known=block) == block
    read = [duckdb.connect(str(p), read_only=True).execute(
        "SELECT * FROM surface_dynamics").df() for p in (live, copied)]
    pd.testing.assert_frame_equal(*read)
    # no published fit, no file: the block alone
    assert dynamics(tmp_path / "none.duckdb", known=block) == block
    # recorded with another horizon or window: computed again, not copied
    for kw in ({"horizon_s": 600.0}, {"window_s": 3600.0}):
        other = tmp_path / f"other{len(kw)}{next(iter(kw))}.duckdb"
        with duckdb.connect(str(other)) as con:
            con.register("r", rows.append_column("seq", pa.array(range(len(fits)), pa.int64())))
            con.execute("CREATE TABLE surface_fits AS SELECT * FROM r").fetchall()
        got = dynamics(other, known=block, **kw)
        assert got[next(iter(kw))] == next(iter(kw.values())) and got != block
        win = duckdb.connect(str(other), read_only=True).execute(
            "SELECT DISTINCT window_s FROM surface_dynamics").fetchall()
        assert win == [(kw.get("window_s", 86400.0),)]

    # a journal holding a copy made during the replay keeps it when the block is known, and
    # has it replaced, or dropped without published fits, when computed
    assert dynamics(copied, known=block) == block
    with duckdb.connect(str(copied), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM surface_dynamics").fetchall()[0][0] > 0
    assert dynamics(copied)["pairs"] == 0  # its journal has no surface_fits rows
    with duckdb.connect(str(copied), read_only=True) as con:
        assert not con.execute("SELECT count(*) FROM information_schema.tables "
                               "WHERE table_name = 'surface_dynamics'").fetchall()[0][0]
