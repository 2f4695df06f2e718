"""The application layer: the ``volreplay`` CLI, the Hydra ``run`` app, the backtest wiring,
reports, sweeps and the benchmark driver.  Nothing below imports from here."""


def use_system_allocator() -> None:
    """Make Arrow allocate with the system allocator.  Its default pool (mimalloc) keeps the
    blocks it frees, so a run's memory stays at its high-water mark of Arrow buffers: a cached
    synthetic day peaked at 840 MB against 755 MB this way, at the same speed."""
    import pyarrow as pa

    pa.set_memory_pool(pa.system_memory_pool())
