"""Shared by the synthetic market's tests: a small store synthesised into a pytest temp
folder, and a read-only connection to it."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from replay.synth import SynthConfig, synthesize

HOURS = 0.25  # 3 blocks of 5 minutes: fast, yet every table is busy


def make_store(tmp_path_factory: pytest.TempPathFactory, name: str, **kw) -> tuple[Path, dict]:
    """A store of the ``small`` scale synthesised with ``kw`` (``hours``: :data:`HOURS`);
    its path and the synthesis summary."""
    path = tmp_path_factory.mktemp("synth") / f"{name}.duckdb"
    summary = synthesize(path, SynthConfig(hours=kw.pop("hours", HOURS), scale="small", **kw))
    return path, summary


def connect(path: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(path), read_only=True)
