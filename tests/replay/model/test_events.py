"""An event's payload is refused, not coerced, where its canonical bytes and its stored
column would read a value as another (``replay.model.events.columns_of``)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from replay.model.events import KINDS, columns_of, payload_bytes

FIT = {"model": "svi", "expiry": 1, "t": 0.1, "forward": 1e5, "params": [0.1], "n_quotes": 9,
       "rmse_vol_pts": 0.2, "inside_spread_pct": 90.0, "fit_ms": 1.0, "arb_violations": 0,
       "published": True, "reason": "", "carried": False}


@pytest.mark.parametrize("kind, rows, why", [
    ("snapshot", {"n_events": 3.9}, "snapshot.n_events: 3.9 is not an int"),
    ("surface_fit", FIT | {"published": math.nan}, "surface_fit.published: nan is not a bool"),
    ("surface_fit", FIT | {"expiry": [1, 2], "carried": [0.0, 0.5]},
     "surface_fit.carried: 0.5 is not a bool"),
])
def test_a_float_an_int_or_bool_field_cannot_hold_is_refused(kind, rows, why):
    """Before, 3.9 hashed as 3 (and was stored as 3) and NaN as True (then failed at a later
    flush, or never without a journal file)."""
    with pytest.raises(ValueError, match=why):
        columns_of(KINDS[kind], rows)


def test_whole_floats_and_zero_one_flags_are_the_ints_and_bools_they_spell():
    k = KINDS["snapshot"]
    assert payload_bytes(k, columns_of(k, {"n_events": np.float64(3.0)})[1]) == \
        payload_bytes(k, columns_of(k, {"n_events": 3})[1])


@pytest.mark.parametrize("kind, row", [
    ("order", {"order_id": 7, "instrument_id": 2, "qty": -1.5, "limit_price": math.nan,
               "arrival_ts": 10, "consumer": "hedger"}),
    ("pnl", {"total_usd": np.float64(1.25), "total_coin": 0.0, "options_usd": -0.0,
             "hedge_usd": math.inf, "fees_usd": 3, "funding_usd": np.nan}),
])
def test_a_row_of_scalars_has_the_columns_and_bytes_of_its_one_row_columns(kind, row):
    """One row of scalars (the fast path of ``columns_of``) is the payload of the same row
    given as one-entry columns, value for value (numpy scalars as given) and byte for byte."""
    k = KINDS[kind]
    n, cols = columns_of(k, row)
    m, ref = columns_of(k, {f: [v] for f, v in row.items()})
    def plain(c: dict) -> str:
        return repr({f: [x.item() if isinstance(x, np.generic) else x for x in v]
                     for f, v in c.items()})

    assert (n, plain(cols)) == (m, plain(ref))
    assert payload_bytes(k, cols) == payload_bytes(k, ref)


def test_str_cells_keep_their_own_text_when_remembered():
    """A ``str`` column's cells are each their text, length-prefixed (None: ``0xffffffff``),
    however often a value repeats: 1, 1.0 and True are three texts, and a cell that cannot be
    remembered (a list) is still its text."""
    from replay.model.events import _canon_column, length_prefixed

    cells = ["svi", 1, 1.0, True, None, "svi", 1, np.str_("svi")]
    want = b"".join(b"\xff\xff\xff\xff" if x is None else length_prefixed(str(x))
                    for x in cells)
    for _ in range(2):  # the second time from the remembered cells
        assert _canon_column(cells, "str") == want
    assert _canon_column(["a", [1, 2]], "str") == length_prefixed("a") + length_prefixed("[1, 2]")
