"""Underlying of an instrument name, for Deribit and Binance naming alike.

The hedge and the option chain are chosen by comparing ``underlying_of(name)`` with the
configured underlying (``BTC``), so a name mapped to anything else (``BINANCE``) cannot be
hedged.
"""

from __future__ import annotations

import numpy as np
import pytest

from replay.engine.state import NEVER, Instruments
from replay.model.instruments import parse_deribit_name, strip_quote, underlying_of
from strategies.hedge import resolve_hedge

CASES = {
    # Deribit options, inverse and linear
    "BTC-26DEC25-90000-C": "BTC",
    "BTC-6JAN25-100000-P": "BTC",
    "ETH-29MAR24-3500-C": "ETH",
    "BTC_USDC-29MAR24-70000-P": "BTC",
    "XRP_USDC-29MAR24-0d625-C": "XRP",
    # Deribit futures and perpetuals
    "BTC-26DEC25": "BTC",
    "ETH-29MAR24": "ETH",
    "BTC-PERPETUAL": "BTC",
    "ETH-PERPETUAL": "ETH",
    "BTC_USDC-PERPETUAL": "BTC",
    "SOL_USDC-PERPETUAL": "SOL",
    # indices
    "BTC-USD": "BTC",
    # Binance names written by the binance-ws adapter
    "BINANCE-BTCUSDT-PERP": "BTC",
    "BINANCE-BTCUSDT-SPOT": "BTC",
    "BINANCE-ETHUSDC-PERP": "ETH",
    "BINANCE-BTCFDUSD-SPOT": "BTC",
    "BINANCE-USDCUSDT-SPOT": "USDC",
}


@pytest.mark.parametrize(("name", "want"), list(CASES.items()))
def test_underlying_of(name: str, want: str) -> None:
    assert underlying_of(name) == want


def test_underlying_of_agrees_with_the_deribit_parser() -> None:
    for name in CASES:
        p = parse_deribit_name(name)
        if p is not None:
            assert underlying_of(name) == p.underlying, name


def test_strip_quote_keeps_a_bare_quote_currency() -> None:
    assert strip_quote("BTCUSDT") == "BTC"
    assert strip_quote("USDT") == "USDT"
    assert strip_quote("ETHBTC") == "ETHBTC"


def test_a_binance_store_can_be_hedged() -> None:
    """A perp and spot from binance-ws plus a Deribit option: ``BTC`` resolves both hedges."""
    inst = Instruments(
        name=np.array(["BINANCE-BTCUSDT-PERP", "BINANCE-BTCUSDT-SPOT", "BTC-29MAR24-70000-C"],
                      dtype=object),
        kind=np.array(["perp", "spot", "option"], dtype=object),
        expiry_ns=np.array([NEVER, NEVER, 1_711_699_200_000_000_000], np.int64),
        strike=np.array([np.nan, np.nan, 70_000.0]),
        is_call=np.array([-1, -1, 1], np.int8),
        settlement=np.array(["linear", "linear", "inverse"], dtype=object),
        contract_size=np.array([1.0, 1.0, 1.0]),
    )
    now = 1_709_251_200_000_000_000
    assert resolve_hedge(inst, "perp", now, underlying="BTC") == 0
    assert resolve_hedge(inst, "spot", now, underlying="BTC") == 1
