"""The hedging costs of the ``pnl`` block: the fills of the hedger's own orders."""

from __future__ import annotations

import pandas as pd

from replay.analytics.execution import hedge_costs


def test_hedging_costs_are_the_hedgers_orders_options_included():
    """A gamma_vega hedger trades options: their fees and slippage are hedging costs, the
    book's option trades are not (classified by instrument kind, a gamma_vega job's 400 USD
    of option fees were left out of its hedging cost)."""
    orders = pd.DataFrame({"order_id": [1, 2, 3], "consumer": ["book", "hedger", "hedger"]})
    executions = pd.DataFrame({"order_id": [1, 2, 3, 3], "instrument_id": [5, 5, 0, 0],
                               "fee_usd": [30.0, 400.0, 2.0, 3.0],
                               "slippage_usd": [10.0, 50.0, 1.0, 0.5]})
    assert hedge_costs(executions, orders, "hedger") == {"hedge_fees_usd": -405.0,
                                                        "hedge_slippage_usd": -51.5}
    assert hedge_costs(executions, orders, None) == {"hedge_fees_usd": 0.0,
                                                    "hedge_slippage_usd": 0.0}
    assert hedge_costs(executions.iloc[:0], orders, "hedger")["hedge_fees_usd"] == 0.0
