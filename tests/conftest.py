"""Shared fixtures: the real recordings in ../shared/data (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from replay.app.bench import RECORDINGS as SHARED_DATA

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real recordings not found at {SHARED_DATA} (only the project's own "
                    "checkout has ../shared/data)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def gbm_quarter_hour(tmp_path_factory) -> Path:
    """A 15-minute synthetic GBM store (seed 5), built once per session for the sweep tests.
    Runs open it read-only, so tests may share it."""
    from replay.synth import SynthConfig, synthesize

    db = tmp_path_factory.mktemp("synth") / "s.duckdb"
    synthesize(db, SynthConfig(hours=0.25, seed=5, model="gbm", scale="small"))
    return db


@pytest.fixture(scope="session", autouse=True)
def surface_cache_dir(tmp_path_factory) -> Path:
    """Runs of the suite keep their surface streams (calibration.cache=auto) in one session
    folder, never in the user's cache; subprocesses inherit it."""
    import os

    from replay.app.bench import CACHE_ENV

    d = tmp_path_factory.mktemp("volreplay_cache")
    old = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(d)
    yield d
    if old is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = old
