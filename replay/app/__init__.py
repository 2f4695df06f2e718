"""The application layer: the ``volreplay`` CLI, the Hydra ``run`` app, the backtest wiring,
reports, sweeps and the benchmark driver.  Nothing below imports from here."""
