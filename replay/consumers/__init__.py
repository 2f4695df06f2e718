"""Measurement consumers run inside a replay: the calibration consumer, which publishes the
surface stream, and the PnL marker with its greek attribution.  Strategies (``strategies/``)
are consumers too, one layer up."""
