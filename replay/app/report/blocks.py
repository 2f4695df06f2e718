"""Building blocks of the report page: sections, tables, time axes."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd


def times(ts) -> pd.DatetimeIndex:
    return pd.to_datetime(np.asarray(ts, dtype="int64"), unit="ns", utc=True)


def table(rows: dict, fmt: str = "{:,.4g}") -> str:
    out = ["<table><tr><th>figure</th><th>value</th></tr>"]
    for k, v in rows.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}: {_fmt(b, fmt)}" for a, b in v.items())
        else:
            v = _fmt(v, fmt)
        out.append(f"<tr><td class='k'>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>")
    out.append("</table>")
    return "".join(out)


def _fmt(v, fmt: str) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return fmt.format(v)
    return str(v)


class Section(dict):
    def __init__(self, id: str, title: str, intro: str = "", empty: str = "Not produced by this run."):
        super().__init__(id=id, title=title, intro=intro, empty=empty, images=[], html="")
