"""Analytics over a finished run: execution quality (SQL over the journal and the store) and
the sweep objective expression over a run's metrics."""
