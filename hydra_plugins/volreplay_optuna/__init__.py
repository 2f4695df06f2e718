"""volreplay's Optuna sweeper for Hydra: ``volreplay run -m hydra/sweeper=optuna ...``.

Hydra finds plugins in the ``hydra_plugins`` namespace package, imports every module in it and
registers the :class:`~hydra_plugins.volreplay_optuna.sweeper.OptunaSweeper` class (a thin
subclass of :class:`replay.app.sweeps.optuna.OptunaSweeper`) and its config schema.  Optuna itself is imported only when a sweep starts, so a plain ``volreplay run``
neither needs the ``sweeps`` extra nor pays for the import.
"""
