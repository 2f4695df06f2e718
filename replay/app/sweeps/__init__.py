"""Hydra sweeps: the summary callback (``summary.parquet``, ``sweep.html``), the Optuna search
space in Hydra's override grammar, and the Optuna sweeper behind ``hydra/sweeper=optuna``."""
