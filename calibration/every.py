"""The grammar of ``calibration.every``: when a calibration refits."""

from __future__ import annotations

import re

__all__ = ["EVERY_UNITS", "parse_every"]

#: nanoseconds per unit of a ``calibration.every`` interval
EVERY_UNITS = {"ns": 1, "us": 10 ** 3, "ms": 10 ** 6, "s": 10 ** 9, "m": 60 * 10 ** 9,
               "min": 60 * 10 ** 9, "h": 3600 * 10 ** 9, "d": 86400 * 10 ** 9}


def parse_every(every: float | str) -> dict:
    """``calibration.every`` as :class:`calibration.scheme.SchemeConfig` trigger fields; the
    one grammar of it.

    A positive number is seconds of market time; ``"300s"``, ``"5m"``/``"5min"``, ``"1h"``,
    ``"250ms"`` (units ``ns us ms s m min h d``) likewise (``{"every_ns": ...}``); ``"100q"`` is
    every 100 quote updates (``{"every_quotes": 100}``); ``"quality:5"`` refits when more than
    5 % of the mids updated since the last fit leave the fitted band
    (``{"quality_trigger_pct": 5.0}``); ``"always"`` refits at every call (``{}``).  Anything
    else, or a value that is not positive, raises ``ValueError``.

    >>> parse_every("250ms"), parse_every(2), parse_every("500q")
    ({'every_ns': 250000000}, {'every_ns': 2000000000}, {'every_quotes': 500})
    """
    if isinstance(every, int | float) and not isinstance(every, bool):
        if not every > 0:
            raise ValueError(f"{every!r} must be positive")
        return {"every_ns": round(float(every) * 1e9)}
    e = str(every).strip().lower()
    if e == "always":
        return {}
    units = "|".join(sorted(EVERY_UNITS, key=len, reverse=True))
    m = re.fullmatch(rf"(\d+(?:\.\d+)?)\s*({units})", e) or re.fullmatch(r"(\d+)\s*(q)", e)
    if m and not float(m.group(1)) > 0:
        raise ValueError(f"{every!r} must be positive")
    if m and m.group(2) == "q":
        return {"every_quotes": int(m.group(1))}
    if m:
        return {"every_ns": round(float(m.group(1)) * EVERY_UNITS[m.group(2)])}
    m = re.fullmatch(r"quality:\s*(\d+(?:\.\d+)?)", e)
    if m:
        return {"quality_trigger_pct": float(m.group(1))}
    raise ValueError(f"{every!r} is not understood; use an interval like '1s', '250ms', "
                     "'5min', a quote count like '500q', or 'quality:10'")
