"""The synthetic market: determinism, replay order, well-formed books, and its ground truth."""

from __future__ import annotations

import hashlib
import json
import math
import resource
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from replay.app.cli import main as cli_main
from replay.errors import StoreError
from replay.model.schema import MARKET_TABLES
from replay.store import open_store
from replay.synth import EPOCH_NS, SynthConfig, synthesize
from replay.synth.flow import FlowParams
from replay.synth.paths import YEAR_S, ModelParams
from tests.replay.synth import HOURS, connect, make_store


@pytest.fixture(scope="module")
def heston(tmp_path_factory):
    return make_store(tmp_path_factory, "heston", seed=11, model="heston")


@pytest.fixture(scope="module")
def heston_again(tmp_path_factory):
    return make_store(tmp_path_factory, "heston_again", seed=11, model="heston")


@pytest.fixture(scope="module")
def gbm(tmp_path_factory):
    # a strongly informed flow over one hour so the measured share is sharp
    return make_store(tmp_path_factory, "gbm", seed=3, model="gbm", hours=1.0,
                 flow=FlowParams(informed_fraction=0.6, horizon_s=60.0, option_trade_rate=1.0))


def _digest(path: Path) -> dict[str, str]:
    """sha256 of every table's rows in seq (or natural key) order."""
    con = connect(path)
    out = {}
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
    for t in tables:
        cols = [r[0] for r in con.execute(f"DESCRIBE {t}").fetchall()]
        order = "seq" if "seq" in cols else ", ".join(cols)
        rows = con.execute(f"SELECT * FROM {t} ORDER BY {order}").fetchall()
        out[t] = hashlib.sha256(repr(rows).encode()).hexdigest()
    con.close()
    return out


def test_same_seed_same_content_other_seed_differs(heston, heston_again, tmp_path_factory):
    a, b = _digest(heston[0]), _digest(heston_again[0])
    assert a == b
    assert {"truth_params", "truth_path", "truth_trades", *MARKET_TABLES} <= set(a)
    other, _ = make_store(tmp_path_factory, "other", seed=12, model="heston")
    c = _digest(other)
    for t in ("option_quotes", "option_trades", "underlying_quotes", "truth_path"):
        assert c[t] != a[t], t


def test_every_table_filled_in_replay_order_with_unique_seq(heston):
    path, summary = heston
    con = connect(path)
    assert summary["events"] == sum(summary["tables"].values())
    for t in MARKET_TABLES:
        n, nseq, lo, hi = con.execute(
            f"SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM {t}").fetchone()
        assert n > 0, t
        assert (nseq, lo, hi) == (n, 0, n - 1), t  # unique, gap-free
        if t != "instruments":
            assert summary["tables"][t] == n
        bad = con.execute(f"""
            SELECT count(*) FROM (SELECT ts_recv, ts_exchange,
                lag(ts_recv) OVER (ORDER BY seq) pr, lag(ts_exchange) OVER (ORDER BY seq) px
                FROM {t}) WHERE ts_recv < pr OR (ts_recv = pr AND ts_exchange < px)""").fetchone()[0]
        assert bad == 0, t
        lat_lo, lat_hi = con.execute(
            f"SELECT min(ts_recv - ts_exchange), max(ts_recv - ts_exchange) FROM {t}").fetchone()
        if t != "instruments":  # both clocks: 1-20 ms of latency
            assert 1_000_000 <= lat_lo and lat_hi <= 20_000_000, t
    lo, hi = con.execute("SELECT min(ts_exchange), max(ts_exchange) FROM option_quotes").fetchone()
    assert EPOCH_NS <= lo and hi < EPOCH_NS + HOURS * 3600e9
    con.close()


def test_store_scan_streams_the_synthetic_rows_in_order(heston):
    with open_store(heston[0]) as store:
        ts = np.concatenate([b.column("ts_recv").to_numpy()
                             for b in store.scan("option_quotes", batch_rows=4096)])
        assert ts.shape[0] == store.count("option_quotes")
        assert (np.diff(ts) >= 0).all()


def test_refuses_a_store_that_already_has_market_data(heston):
    with pytest.raises(StoreError, match="new --db path"):
        synthesize(heston[0], SynthConfig(hours=HOURS, seed=1))


def test_option_books_are_positive_uncrossed_and_on_deribit_ticks(heston):
    con = connect(heston[0])
    bid, ask, mark, und, biv, aiv, miv = (np.array(c, dtype=float) for c in zip(*con.execute(
        "SELECT bid_price, ask_price, mark_price, underlying_price, bid_iv, ask_iv, mark_iv "
        "FROM option_quotes").fetchall()))
    has_bid = ~np.isnan(bid)
    assert 0 < (~has_bid).mean() < 0.2  # some one-sided wings, not many
    assert (ask > 0).all() and (bid[has_bid] > 0).all()
    assert (bid[has_bid] < ask[has_bid]).all()
    for px in (bid[has_bid], ask):
        units = px / 1e-4
        assert_allclose(units, np.round(units), atol=1e-6)  # multiples of 0.0001 BTC
        big = px >= 0.005
        assert_allclose(px[big] / 5e-4, np.round(px[big] / 5e-4), atol=1e-6)  # 0.0005 above
    assert (mark > 0).all() and (und > 0).all()
    assert (biv[has_bid] < miv[has_bid]).all() and (miv < aiv).all()
    assert 0.2 < np.median(miv) < 1.0
    ub, ua = (np.array(c, dtype=float) for c in zip(*con.execute(
        "SELECT bid_price, ask_price FROM underlying_quotes u JOIN instruments i "
        "USING (instrument_id) WHERE i.kind = 'perp'").fetchall()))
    assert (ub < ua).all() and (ub > 0).all()
    assert_allclose(ub / 0.5, np.round(ub / 0.5), atol=1e-9)
    tr = con.execute("SELECT count(*) FROM option_trades WHERE price <= 0 OR size <= 0 "
                     "OR side NOT IN (-1, 1) OR trade_id IS NULL").fetchone()[0]
    assert tr == 0
    con.close()


def test_instruments_are_deribit_like_with_0800_expiries(heston):
    con = connect(heston[0])
    rows = con.execute("SELECT name, kind, expiry_ns, strike, is_call, settlement, venue "
                       "FROM instruments").fetchall()
    kinds = {r[1] for r in rows}
    assert kinds == {"option", "perp", "index"}
    names = {r[0] for r in rows}
    assert {"BTC-PERPETUAL", "BTC-USD"} <= names
    opts = [r for r in rows if r[1] == "option"]
    expiries = {r[2] for r in opts}
    assert len(expiries) >= 10  # dailies, weeklies, monthlies, quarterlies
    for e in expiries:
        d = datetime.fromtimestamp(e / 1e9, UTC)
        assert (d.hour, d.minute, d.second) == (8, 0, 0)
    for name, _, exp, strike, is_call, settlement, venue in opts:
        d = datetime.fromtimestamp(exp / 1e9, UTC)
        assert name == f"BTC-{d.day}{d.strftime('%b').upper()}{d:%y}-{int(strike)}-" + \
            ("C" if is_call else "P")
        assert settlement == "inverse" and venue == "synth"
    con.close()


def test_gbm_realized_vol_matches_the_model(gbm):
    """Realized vol of 1 s log returns of the true index over 1 h: 3600 returns, so the
    estimate's relative standard error is 1/sqrt(2 * 3600) ~ 1.2 %; allow 5 %."""
    con = connect(gbm[0])
    spot = np.array([r[0] for r in con.execute("SELECT spot FROM truth_path ORDER BY ts").fetchall()])
    sigma = con.execute("SELECT value FROM truth_params WHERE key = 'model.sigma'").fetchone()[0]
    r = np.diff(np.log(spot))
    realized = math.sqrt(np.mean(r * r) * YEAR_S)
    assert_allclose(realized, sigma, rtol=0.05)
    # the published index ticks carry the same path (rounded to cents)
    idx = np.array([r[0] for r in con.execute(
        "SELECT bid_price FROM underlying_quotes u JOIN instruments i USING (instrument_id) "
        "WHERE i.kind = 'index' ORDER BY u.ts_exchange").fetchall()])
    assert_allclose(idx, spot[: idx.shape[0]], atol=0.006)
    # and the flat GBM smile marks every option at sigma
    mv = np.array([r[0] for r in con.execute("SELECT mark_iv FROM option_quotes").fetchall()])
    assert_allclose(mv, sigma, rtol=1e-12)
    con.close()


def test_informed_flow_shows_in_trade_signs(gbm):
    """E[direction * sign(future move)] = informed fraction (0.6): each trade's term is +1 when
    informed and a fair coin otherwise, so the estimate's standard error is at most
    1/sqrt(n); allow 4 of them.  The move is measured from the stored index, as a user would."""
    con = connect(gbm[0])
    h = con.execute("SELECT value FROM truth_params WHERE key = 'flow.horizon_s'").fetchone()[0]
    q = con.execute("SELECT value FROM truth_params WHERE key = 'flow.informed_fraction'"
                    ).fetchone()[0]
    rows = con.execute(f"""
        SELECT t.side * CASE WHEN i.is_call THEN 1 ELSE -1 END AS dir,
               ln(f.bid_price / t.index_price) AS move
        FROM option_trades t JOIN instruments i USING (instrument_id)
        ASOF JOIN (SELECT u.ts_exchange, u.bid_price FROM underlying_quotes u
                   JOIN instruments ii USING (instrument_id) WHERE ii.kind = 'index') f
          ON f.ts_exchange >= t.ts_exchange + {int(h * 1e9)}
        """).fetchall()
    d, m = (np.array(c, dtype=float) for c in zip(*rows))
    n = d.shape[0]
    assert n > 1000
    est = np.mean(d * np.sign(m))
    assert_allclose(est, q, atol=4 / math.sqrt(n) + 0.03)  # + index rounding to cents
    assert np.corrcoef(d, m)[0, 1] > 0.2
    # the truth table agrees exactly with the flags it stores
    inf, agree = con.execute("SELECT avg(informed::INT), avg(CASE WHEN informed THEN "
                             "(direction * sign(future_return) = 1)::INT END) FROM truth_trades"
                             ).fetchone()
    assert_allclose(inf, q, atol=4 / math.sqrt(n))
    assert agree == 1.0
    con.close()


@pytest.mark.parametrize("model", ["heston", "bates"])
def test_stochastic_vol_truth_path(model, tmp_path_factory):
    path, summary = make_store(tmp_path_factory, model, seed=5, model=model, hours=0.1)
    con = connect(path)
    var, vol = (np.array(c) for c in zip(*con.execute(
        "SELECT variance, vol FROM truth_path ORDER BY ts").fetchall()))
    assert var.shape[0] == 360
    assert (var >= 0).all() and np.std(var) > 0
    assert_allclose(vol, np.sqrt(var), rtol=1e-12)
    v0 = con.execute("SELECT value FROM truth_params WHERE key = 'model.v0'").fetchone()[0]
    assert_allclose(var[0], v0, rtol=1e-12)
    # ATM mark vol of the front quarterly = sqrt(expected total variance / T): with v0 = theta
    # Heston's is theta; Bates adds the jumps' lambda (mu_J^2 + delta_J^2).  Quotes within 2 %
    # of the money and the drift of v over 6 minutes move it by well under 1 vol point.
    par = dict(con.execute("SELECT key, value FROM truth_params WHERE value IS NOT NULL").fetchall())
    assert par["model.v0"] == par["model.theta"]
    want = par["model.theta"]
    if model == "bates":
        want += par["model.jump_intensity"] * (par["model.jump_mean"] ** 2 + par["model.jump_std"] ** 2)
    miv = con.execute("""SELECT median(q.mark_iv) FROM option_quotes q JOIN instruments i
        USING (instrument_id) WHERE abs(ln(i.strike / q.underlying_price)) < 0.02
        AND i.expiry_ns = (SELECT min(expiry_ns) FROM instruments
                           WHERE kind = 'option' AND expiry_ns > 1743000000000000000)""").fetchone()[0]
    assert_allclose(miv, math.sqrt(want), atol=0.01)
    # the truth forecasts are scored against: the whole quadratic variation's rate, jumps
    # included (it was the diffusion's alone, a vol of 0.49 for 2.06 at 2,000 jumps a year)
    total = np.array(con.execute("SELECT total_variance FROM truth_path ORDER BY ts").fetchall())
    assert_allclose(total[:, 0], var + (want - par["model.theta"]), rtol=1e-12)
    con.close()
    assert summary["model"] == model


def test_config_validation():
    with pytest.raises(ValueError):
        SynthConfig(model="sabr")
    with pytest.raises(ValueError):
        SynthConfig(scale="huge")
    with pytest.raises(ValueError):
        SynthConfig(hours=-1)
    with pytest.raises(ValueError):
        SynthConfig(flow=FlowParams(horizon_s=10_000))
    # NaN passed every comparison (numpy's Poisson draw then failed); 1e12 jumps a year
    # overflowed the price to a negative bid and infinite asks
    with pytest.raises(ValueError, match="jump_intensity must be finite"):
        SynthConfig(model="bates", params=ModelParams(jump_intensity=float("nan")))
    with pytest.raises(ValueError, match="at most 8760"):
        SynthConfig(model="bates", params=ModelParams(jump_intensity=1e12))
    assert SynthConfig(scale="day").run_hours == 24.0


def test_a_shorter_run_is_a_prefix_of_a_longer_one(tmp_path_factory):
    """Also across a listing: the longer run lists the daily expiry of 08:00, so its chain
    holds more options, and which far-wing books show no bid must not depend on an option's
    place in the chain (it did: 389 quotes differed between a 1- and a 9-hour run)."""
    short, s = make_store(tmp_path_factory, "short", seed=8, hours=0.1)
    long, _ = make_store(tmp_path_factory, "long", seed=8, hours=8.5)
    ca, cb = connect(short), connect(long)
    n_short, n_long = (c.execute("SELECT count(*) FROM instruments").fetchone()[0]
                       for c in (ca, cb))
    ca.close()
    cb.close()
    assert n_long > n_short
    for t in ("option_quotes", "option_trades", "underlying_quotes", "funding"):
        q = (f"SELECT * EXCLUDE (seq) FROM {t} WHERE ts_exchange < {s['end_ns']} "
             "ORDER BY ts_recv, ts_exchange, instrument_id")
        ca, cb = connect(short), connect(long)
        a, b = ca.execute(q).fetchall(), cb.execute(q).fetchall()
        ca.close()
        cb.close()
        assert len(a) > 0 and a == b, t


def test_cli_synth_writes_then_refuses_to_overwrite(tmp_path, capsys):
    db = tmp_path / "cli.duckdb"
    args = ["synth", "--db", str(db), "--hours", "0.05", "--seed", "4", "--model", "bates"]
    assert cli_main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "bates" and out["events"] > 0 and out["events_per_second"] > 0
    assert cli_main(args) == 2
    assert "already holds market data" in capsys.readouterr().err


@pytest.mark.parametrize("extra, needle", [
    (["--model", "gbm", "--jumps-per-year", "50"], "--jumps-per-year goes with --model bates"),
    (["--smile-dynamics", "ssr", "--ssr", "nan"], "--ssr nan is not a number"),
])
def test_cli_synth_refuses_what_it_would_ignore_or_choke_on(tmp_path, capsys, extra, needle):
    """Jumps asked of a model without jumps were silently dropped; a NaN SSR reached numpy's
    Poisson draw as a traceback."""
    db = tmp_path / "x.duckdb"
    assert cli_main(["synth", "--db", str(db), "--hours", "0.02", *extra]) == 2
    assert needle in capsys.readouterr().err and not db.exists()


def test_a_failed_write_leaves_no_store(tmp_path, monkeypatch):
    from replay.synth import writer

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(writer, "_block_events", boom)
    db = tmp_path / "broken.duckdb"
    with pytest.raises(RuntimeError, match="disk on fire"):
        synthesize(db, SynthConfig(hours=0.05))
    assert not db.exists()


@pytest.mark.slow
def test_large_scale_writes_50m_events_with_bounded_memory(tmp_path):
    """The full ``--scale large`` run (a few minutes): at least 50M events while the writing
    process stays far below the store size in memory."""
    db = tmp_path / "large.duckdb"
    proc = subprocess.run([sys.executable, "-m", "replay", "synth", "--db", str(db),
                           "--scale", "large", "--seed", "1"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[3], check=True)
    summary = json.loads(proc.stdout)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert summary["events"] >= 50_000_000
    assert peak_mb < 1500, peak_mb
    assert db.stat().st_size / 2**20 > 2 * peak_mb


def test_the_perp_book_holds_the_mid():
    """Every step's book holds the perp's mid: ``bid <= mid <= ask``, the bid the tick
    nearest ``mid - spread / 2`` (a floor put the mid above the ask at about half the
    steps of a 1-tick book)."""
    from types import SimpleNamespace

    from replay.synth.paths import PERP_TICK, perp_book

    rng = np.random.default_rng(4)
    mid = 100_000.0 + np.cumsum(rng.standard_normal(20_000)) * 0.7
    block = SimpleNamespace(n_steps=mid.size, t0_ns=0, step_ns=250_000_000,
                            perp_mid=lambda: mid)
    book = perp_book(block, np.random.default_rng(5))
    bid, ask = book["bid_price"], book["ask_price"]
    assert (bid <= mid).all() and (mid <= ask).all()
    one = np.isclose(ask - bid, PERP_TICK)
    assert one.mean() > 0.8
    assert_allclose(np.mean((bid + ask)[one] / 2 - mid[one]), 0.0, atol=0.02)


def test_every_option_print_is_at_the_touch_of_the_book_in_force(heston):
    """A print lifts the ask or hits the bid of the book the replay shows at its instant
    (the last quote of its option received by then; at one instant quotes come first): it
    was priced off a book never published, and a fifth of the prints were outside the book
    in force."""
    con = connect(heston[0])
    rows = con.execute("""
        SELECT t.side, t.price, q.bid_price, q.ask_price FROM option_trades t
        ASOF JOIN option_quotes q ON t.instrument_id = q.instrument_id
            AND (t.ts_recv, t.ts_exchange) >= (q.ts_recv, q.ts_exchange)""").fetchall()
    n = con.execute("SELECT count(*) FROM option_trades").fetchone()[0]
    con.close()
    assert len(rows) == n > 0
    assert all(p == (a if s > 0 else b) for s, p, b, a in rows)
