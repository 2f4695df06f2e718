"""The application layer: the ``volreplay`` CLI, the Hydra ``run`` app, the backtest wiring,
reports, sweeps and the benchmark driver.  Nothing below imports from here."""


#: Whether a run's replay reads the store ahead on a thread (``run_replay``'s ``prefetch``).
#: A backtest's consumers run Python at every wake, and the read-ahead thread then competes
#: with them for the GIL: a cached synthetic day ran 4.35-4.47 s without it against
#: 4.96-5.25 s with it, a cold build 1-2 % faster, while a replay with light consumers is the
#: faster with it (the large store: 21.7-22.6 against 18.3-18.6 M events/s).
FEED_READ_AHEAD = False


def use_system_allocator() -> None:
    """Make Arrow allocate with the system allocator.  Its default pool (mimalloc) keeps the
    blocks it frees, so a run's memory stays at its high-water mark of Arrow buffers: a cached
    synthetic day peaked at 840 MB against 755 MB this way, at the same speed."""
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
