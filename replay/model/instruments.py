"""Instrument names and expiries: Deribit naming, 08:00 UTC settlement.

Deribit option names look like ``BTC-26DEC25-90000-C``: underlying, expiry date (day without
leading zero allowed, month as three letters, two-digit year), strike in USD and C/P.  Every
Deribit expiry settles at 08:00 UTC on its date.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from replay.units import NS

SETTLEMENT_HOUR_UTC = 8
_MONTHS = {m: i + 1 for i, m in enumerate(
    ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"])}
_OPTION_RE = re.compile(r"^([A-Z]+)(?:_([A-Z]+))?-(\d{1,2})([A-Z]{3})(\d{2})-(\d+(?:d\d+)?)-([CP])$")
_FUTURE_RE = re.compile(r"^([A-Z]+)(?:_([A-Z]+))?-(\d{1,2})([A-Z]{3})(\d{2})$")
_PERP_RE = re.compile(r"^([A-Z]+)(?:_([A-Z]+))?-PERPETUAL$")


@dataclass(frozen=True)
class ParsedName:
    kind: str  # option | future | perp
    underlying: str
    expiry_ns: int | None
    strike: float | None
    is_call: bool | None
    settlement: str  # inverse | linear (a quote-currency suffix such as _USDC means linear)


#: (underlying, kind) -> (contract size in USD, tick size in USD) of Deribit's inverse
#: perpetuals and futures
DERIBIT_DELTA_ONE_SPECS: dict[tuple[str, str], tuple[float, float]] = {
    ("BTC", "perp"): (10.0, 0.5),
    ("ETH", "perp"): (1.0, 0.05),
    ("BTC", "future"): (10.0, 2.5),
    ("ETH", "future"): (1.0, 0.25),
}
DERIBIT_OPTION_TICK = 0.0001  # coin


def deribit_spec(p: ParsedName) -> tuple[float, float] | None:
    """The contract size and tick of a Deribit instrument whose spec is known: an inverse
    option (1 coin, tick 0.0001 coin) or an inverse BTC/ETH perpetual or future
    (:data:`DERIBIT_DELTA_ONE_SPECS`); ``None`` for anything else (a linear USDC contract,
    another coin's future), which must be defined by an ``instruments`` file.

    >>> deribit_spec(parse_deribit_name("ETH-26DEC25"))
    (1.0, 0.25)
    >>> deribit_spec(parse_deribit_name("SOL_USDC-26DEC25")) is None
    True
    """
    if p.settlement != "inverse":
        return None
    if p.kind == "option":
        return 1.0, DERIBIT_OPTION_TICK
    return DERIBIT_DELTA_ONE_SPECS.get((p.underlying, p.kind))


def expiry_ns(day: int, month: int, year: int) -> int:
    """Nanoseconds UTC of the 08:00 settlement on the given date."""
    dt = datetime(year, month, day, SETTLEMENT_HOUR_UTC, tzinfo=timezone.utc)
    return int(dt.timestamp()) * NS


def _expiry(dd: str, mon: str, yy: str) -> int | None:
    month = _MONTHS.get(mon)
    if month is None:
        return None
    try:
        return expiry_ns(int(dd), month, 2000 + int(yy))
    except ValueError:
        return None


def parse_deribit_name(name: str) -> ParsedName | None:
    """Parse a Deribit instrument name; ``None`` when it is not one.

    >>> p = parse_deribit_name("BTC-26DEC25-90000-C")
    >>> (p.kind, p.underlying, p.strike, p.is_call, p.settlement)
    ('option', 'BTC', 90000.0, True, 'inverse')
    >>> parse_deribit_name("BTC-PERPETUAL").kind
    'perp'
    """
    if not isinstance(name, str):
        return None
    m = _OPTION_RE.match(name)
    if m:
        und, quote, dd, mon, yy, strike, cp = m.groups()
        exp = _expiry(dd, mon, yy)
        if exp is None:
            return None
        return ParsedName("option", und, exp, float(strike.replace("d", ".")), cp == "C",
                          "linear" if quote else "inverse")
    m = _FUTURE_RE.match(name)
    if m:
        und, quote, dd, mon, yy = m.groups()
        exp = _expiry(dd, mon, yy)
        if exp is None:
            return None
        return ParsedName("future", und, exp, None, None, "linear" if quote else "inverse")
    m = _PERP_RE.match(name)
    if m:
        und, quote = m.groups()
        return ParsedName("perp", und, None, None, None, "linear" if quote else "inverse")
    return None


#: Venue prefixes of names built as ``<VENUE>-<SYMBOL>-<KIND>`` (``BINANCE-BTCUSDT-PERP``, see
#: :mod:`replay.ingest.binance_ws`); Deribit names carry no venue prefix.
VENUE_PREFIXES = ("BINANCE",)
#: Quote currencies glued to the end of an exchange symbol (``BTCUSDT``), longest first so
#: that ``FDUSD`` is not read as ``USD``.
QUOTE_SUFFIXES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "USD")


def underlying_of(name: str) -> str:
    """The underlying coin of an instrument name: ``BTC`` for ``BTC-26DEC25-90000-C``,
    ``BTC-26DEC25``, ``BTC-PERPETUAL``, ``BTC_USDC-PERPETUAL``, ``BTC-USD`` and for
    ``BINANCE-BTCUSDT-PERP`` / ``BINANCE-BTCUSDT-SPOT``.

    >>> underlying_of("BINANCE-ETHUSDT-PERP"), underlying_of("ETH-PERPETUAL")
    ('ETH', 'ETH')
    """
    parts = str(name).split("-")
    if len(parts) >= 2 and parts[0].upper() in VENUE_PREFIXES:
        return strip_quote(parts[1])
    return parts[0].split("_")[0]


def strip_quote(symbol: str) -> str:
    """``BTC`` for ``BTCUSDT``; a symbol that is only a quote currency stays as it is."""
    s = symbol.upper()
    for q in QUOTE_SUFFIXES:
        if s.endswith(q) and len(s) > len(q):
            return s[:-len(q)]
    return s


def deribit_option_tick(premium_coin: float) -> float:
    """Deribit BTC option tick: 0.0001 BTC below 0.005 BTC premium, 0.0005 above."""
    return 0.0001 if premium_coin < 0.005 else 0.0005
