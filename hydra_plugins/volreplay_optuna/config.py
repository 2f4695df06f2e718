"""Config schema of the Optuna sweeper, registered as ``hydra/sweeper=volreplay_optuna``.

``conf/hydra/sweeper/optuna.yaml`` selects it under the short name ``optuna``; being in the
application's own config folder, that file also wins over any other plugin registering an
``optuna`` sweeper.  The schema is a plain (not frozen) dataclass because Hydra must be able
to apply command-line overrides such as ``hydra.sweeper.n_trials=50`` to it.  (No
``from __future__ import annotations`` here: Hydra's plugin scan runs this module without
registering it in ``sys.modules``, where dataclasses would look string annotations up.)
"""

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class OptunaSweeperConf:
    _target_: str = "hydra_plugins.volreplay_optuna.sweeper.OptunaSweeper"
    n_trials: int = 20
    # Trials asked of Optuna at a time and launched together: with hydra/launcher=joblib
    # (or a cluster launcher) they run in parallel.
    n_jobs: int = 1
    sampler: str = "tpe"  # tpe | random | grid
    seed: int | None = 0  # sampler seed (null: a fresh one each sweep)
    # A study kept in a database (e.g. sqlite:///study.db) continues where the last sweep
    # with the same study_name stopped.
    storage: str | None = None
    study_name: str | None = None
    # Search space in Hydra's override grammar, e.g. {strategy.band: "interval(0.01,0.3)"};
    # parameters given on the command line are added to (and win over) these.
    params: dict[str, Any] | None = None


ConfigStore.instance().store(group="hydra/sweeper", name="volreplay_optuna",
                             node=OptunaSweeperConf, provider="volreplay_optuna")
