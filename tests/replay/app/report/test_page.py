"""Sections of the run report, from hand-made journal tables."""

from __future__ import annotations

import types

import pandas as pd

from replay.app.report.page import _arbitrage_section
from replay.consumers.surface_stream import surface_fit_rows


def test_a_skipped_refit_is_neither_a_fit_nor_a_fallback():
    """One published fit of two expiries and one refit that found no expiry with enough
    quotes (the row the calibration writes for it): one fit, no fallback, one refit skipped,
    as metrics.json counts them (it read "2 fits ... 1 not published (fell back ...)")."""
    nothing = types.SimpleNamespace(fitted=None, quality=None, fit_ms=0.3,
                                    reason="no slice with enough quotes")
    skipped = pd.DataFrame(surface_fit_rows(nothing, None, "svi")).assign(ts=2 * 10**9)
    ok = pd.DataFrame(dict(model=["svi"] * 2, expiry=[1, 2], t=[0.1, 0.2], forward=[1e5] * 2,
                           params=[[0.0] * 5] * 2, n_quotes=[10, 10], rmse_vol_pts=[0.5] * 2,
                           inside_spread_pct=[90.0] * 2, fit_ms=[1.0] * 2,
                           arb_violations=[0, 0], published=[True, True], reason=["", ""],
                           carried=[False, False], ts=[10**9] * 2))
    html = _arbitrage_section(pd.concat([ok, skipped], ignore_index=True))["html"]
    assert html.startswith("<p>1 fits, 0 with violations, 0 not published")
    assert "1 refits skipped" in html
