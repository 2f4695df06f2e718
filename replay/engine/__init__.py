"""The replay engine: the feed (every market table merged into one ordered stream), the numba
fold into market state, wake conditions, the runtime that wakes consumers and delivers orders,
the plain per-event reference engine, the journal and snapshots.

The engine knows consumers and the venue only through the protocols of
:mod:`~replay.engine.runtime`; it imports nothing from the layers above it."""
