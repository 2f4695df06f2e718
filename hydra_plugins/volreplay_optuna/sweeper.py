"""The Hydra-visible face of volreplay's Optuna sweeper; the work is in
:mod:`replay.optuna_sweeper` (Hydra instantiates only plugin classes defined under
``hydra_plugins``)."""

import replay.optuna_sweeper as _impl


class OptunaSweeper(_impl.OptunaSweeper):
    """See :class:`replay.optuna_sweeper.OptunaSweeper`."""
