"""The Hydra-visible face of volreplay's Optuna sweeper; the work is in
:mod:`replay.app.sweeps.optuna` (Hydra instantiates only plugin classes defined under
``hydra_plugins``)."""

import replay.app.sweeps.optuna as _impl


class OptunaSweeper(_impl.OptunaSweeper):
    """See :class:`replay.app.sweeps.optuna.OptunaSweeper`."""
