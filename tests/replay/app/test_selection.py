"""A run's selection against its store: bounds beyond the data replay as no bound would."""

from __future__ import annotations

from datetime import datetime

import pytest

import replay
from replay.app.selection import resolve_data
from replay.errors import ConfigError
from replay.model.config import DataConfig
from replay.units import iso_z
from tests.helpers import conf_group


def _cfg(db, out, **data) -> dict:
    return {"data": {"db": str(db), **data}, "seed": 0, "out_dir": str(out),
            "report": {"html": False, "pnl_every_s": 60.0},
            "calibration": {**conf_group("calibration", "svi"), "every": "300s"},
            "book": conf_group("book", "fixed"),
            "strategy": {**conf_group("strategy", "delta_band"), "band": 0.05}}


def test_bounds_beyond_the_data_are_dropped(gbm_quarter_hour):
    d = resolve_data(DataConfig(db=str(gbm_quarter_hour)))
    lo, hi = d.sel.start, d.sel.end
    assert (lo, hi) == (None, None)
    wide = resolve_data(DataConfig(db=str(gbm_quarter_hour), start="2000-01-01",
                                   end="2100-01-01"))
    assert wide.sel == d.sel  # the same selection, so the same surface stream
    inside = resolve_data(DataConfig(db=str(gbm_quarter_hour), start="2025-01-06T00:05",
                                     end="2025-01-06T00:10"))
    assert (iso_z(inside.sel.start), iso_z(inside.sel.end)) == ("2025-01-06T00:05:00Z",
                                                                "2025-01-06T00:10:00Z")


def test_a_day_past_the_end_of_the_data_marks_only_while_there_is_data(gbm_quarter_hour,
                                                                       tmp_path):
    # the store holds 15 minutes: a day-long selection must not mark a frozen market for the
    # rest of the day, which would dilute the per-step PnL figures
    bare = replay.run(_cfg(gbm_quarter_hour, tmp_path / "bare"))
    day = replay.run(_cfg(gbm_quarter_hour, tmp_path / "day", start="2025-01-06",
                          end="2025-01-07"))
    assert day["journal_hash"] == bare["journal_hash"]
    assert day["consumers"]["pnl"]["wakes"] == bare["consumers"]["pnl"]["wakes"] <= 16


def test_an_empty_store_path_is_refused_naming_the_key():
    # before the fix: "data.db=" opened the working directory and said it was no store
    for db in ("", "  "):
        with pytest.raises(ConfigError, match=r"^data.db is empty: give the path of a store"):
            resolve_data(DataConfig(db=db))


def test_an_instrument_selection_keeps_the_underlying_and_refuses_to_drop_the_hedge(
        gbm_quarter_hour, tmp_path):
    """Before, ``data.instruments`` listing two options replayed no perpetual: the run
    hedged into an empty book (61 of 62 orders rejected) and completed."""
    from omegaconf import OmegaConf

    from replay.app.selection import check_hedge

    d = resolve_data(DataConfig(db=str(gbm_quarter_hour)))
    options = [n for n in d.names.values() if n.endswith("-C")][:2]
    picked = resolve_data(DataConfig(db=str(gbm_quarter_hour), instruments=options))
    assert d.names[picked.sel.underlying_id] == "BTC-PERPETUAL"
    assert picked.sel.underlying_id in picked.sel.instrument_ids
    perp = OmegaConf.create({"strategy": {"hedge": "perp"}})
    check_hedge(perp, picked)  # replayed as the underlying: fine
    on_index = resolve_data(DataConfig(db=str(gbm_quarter_hour), instruments=options,
                                       underlying="BTC-USD"))
    with pytest.raises(ConfigError, match="data.instruments: leaves out BTC-PERPETUAL, the "
                                          "hedge"):
        check_hedge(perp, on_index)


def test_an_option_as_underlying_and_empty_selections_are_refused(gbm_quarter_hour, tmp_path):
    """An option taken as ``data.underlying`` made its premium the coin's price (a PnL of
    +97,766 USD for -2,276); an empty list selected everything, as null does."""
    d = resolve_data(DataConfig(db=str(gbm_quarter_hour)))
    option = next(n for n in d.names.values() if n.endswith("-C"))
    with pytest.raises(ConfigError, match=rf"^data.underlying: '{option}' is an option of .*; "
                                          "non-option instruments: BTC-PERPETUAL, BTC-USD$"):
        resolve_data(DataConfig(db=str(gbm_quarter_hour), underlying=option))
    for key in ("instruments", "expiries"):
        with pytest.raises(ConfigError, match=rf"^data.{key}: an empty list selects nothing"):
            resolve_data(DataConfig(db=str(gbm_quarter_hour), **{key: []}))


def test_a_venue_consumer_list_naming_no_consumer_is_refused(gbm_quarter_hour, tmp_path):
    """``[books]`` for ``[book]`` sent the book's orders to the venue's queue: it traded
    nothing, and the run completed."""
    cfg = _cfg(gbm_quarter_hour, tmp_path / "a")
    with pytest.raises(ConfigError, match=r"^venue.negotiated_consumers: 'books' is no consumer "
                                          "of this run; its consumers: book, calibration, "
                                          "hedger, pnl$"):
        replay.run({**cfg, "venue": {"negotiated_consumers": ["books"]}})
    with pytest.raises(ConfigError, match=r"^venue.liquidation_consumers: 'margn'"):
        replay.run({**cfg, "venue": {"liquidation_consumers": ["margn"]}})


def test_a_selection_is_a_set(gbm_quarter_hour):
    """Listed in another order (or with a name twice), the same instruments and expiries
    are one selection, and so one surface stream's key: each order was built apart."""
    d = resolve_data(DataConfig(db=str(gbm_quarter_hour)))
    names = sorted(n for n in d.names.values() if n.endswith("-C"))[:3]
    expiries = sorted({n.split("-")[1] for n in d.names.values() if n.endswith("-C")})
    days = [str(datetime.strptime(e, "%d%b%y").date()) for e in expiries]
    a = resolve_data(DataConfig(db=str(gbm_quarter_hour), instruments=names, expiries=days))
    b = resolve_data(DataConfig(db=str(gbm_quarter_hour), instruments=names[::-1] + names[:1],
                                expiries=days[::-1]))
    assert a.sel == b.sel and len(days) > 1
