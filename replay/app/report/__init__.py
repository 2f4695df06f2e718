"""``report.html`` for a run: one self-contained page (inline PNG charts, no network).

* :mod:`~replay.app.report.page` - the page and its market, hedging and calibration sections;
* :mod:`~replay.app.report.risk` - the margin and forecast sections;
* :mod:`~replay.app.report.blocks` - sections, tables, time axes.
"""

from replay.app.report.page import render_run, rerender

__all__ = ["render_run", "rerender"]
