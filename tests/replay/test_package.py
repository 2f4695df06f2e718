"""The package's public face (``replay/__init__.py``): what its docstring and the docs
promise a user who writes ``import replay``."""

from __future__ import annotations

import subprocess
import sys

import pytest

import replay
from replay.errors import ConfigError
from replay.synth import SynthConfig, synthesize
from tests.helpers import volreplay


def test_open_store_and_market_store_are_the_store_layers(tmp_path):
    from replay.store import MarketStore, open_store

    assert replay.open_store is open_store and replay.MarketStore is MarketStore
    db = tmp_path / "s.duckdb"
    synthesize(db, SynthConfig(hours=0.05, seed=1, model="gbm", scale="small"))
    with replay.open_store(db) as store:
        assert isinstance(store, replay.MarketStore)


def test_import_is_lazy():
    """``import replay`` loads neither DuckDB nor numba (each CLI call would pay for them);
    ``calibration``'s public names load theirs when first used."""
    code = ("import sys, replay; print('duckdb' in sys.modules, 'numba' in sys.modules); "
            "from calibration import implied_vol; print('numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False", "True"]


def test_compose_gives_the_config_a_run_composes(gbm_quarter_hour, tmp_path):
    """The docstring's recipe: ``replay.compose`` then ``replay.run``, the same journal as
    ``volreplay run`` with the same overrides."""
    overrides = [f"data.db={gbm_quarter_hour}", "calibration.every=300s", "report.html=false"]
    cfg = replay.compose(overrides)
    cfg.out_dir = str(tmp_path / "api")
    api = replay.run(cfg)
    assert volreplay("run", *overrides, f"hydra.run.dir={tmp_path / 'cli'}",
                     cwd=tmp_path).returncode == 0
    cli = (tmp_path / "cli" / "metrics.json").read_text()
    assert f'"journal_hash": "{api["journal_hash"]}"' in cli
    with pytest.raises(ConfigError, match="calibration.evry: unknown key"):
        replay.compose(["calibration.evry=1"])
