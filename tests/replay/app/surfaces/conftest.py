"""The surface tests' shared fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def cold(tmp_path_factory, monkeypatch_module):
    """An empty cache folder for this module's runs."""
    d = tmp_path_factory.mktemp("cold_cache")
    monkeypatch_module.setenv("VOLREPLAY_CACHE_DIR", str(d))
    return d


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp_ = pytest.MonkeyPatch()
    yield mp_
    mp_.undo()
