"""A fresh writable store per test for the ingestion tests."""

from __future__ import annotations

import pytest

from replay.store import open_store


@pytest.fixture
def store(tmp_path):
    s = open_store(tmp_path / "s.duckdb", read_only=False)
    yield s
    s.close()
