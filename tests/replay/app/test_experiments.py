"""Every shipped experiment preset composes, and each of its sweep's first choices applies."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from replay.app.hydra_app import CONF_DIR

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_an_experiment_composes(name):
    from hydra import compose, initialize_config_dir

    from replay.model.config import register

    register()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={name}"], return_hydra_config=True)
        params = dict(cfg.hydra.sweeper.params or {})
        first = [f"{k}={str(v).split(',')[0]}" for k, v in params.items()
                 if not str(v).startswith(("range(", "interval(", "choice(", "tag("))]
        one = compose("config", overrides=[f"experiment={name}", *first])
    for o in first:
        key, value = o.split("=", 1)
        node = OmegaConf.select(one, key)
        if not OmegaConf.is_config(node):  # a key, not a group choice
            assert str(node).lower() == value.lower(), o
