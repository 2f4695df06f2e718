"""Small helpers the end-to-end tests share: shipped config groups, journal queries, and
the command line run as a user runs it, with its one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
from omegaconf import OmegaConf

from replay.errors import EXIT_USER_ERROR

CONF = Path(__file__).resolve().parents[1] / "conf"


def conf_group(name: str, option: str) -> dict:
    """The shipped ``conf/<name>/<option>.yaml`` as a plain dict."""
    return OmegaConf.to_container(OmegaConf.load(CONF / name / f"{option}.yaml"))


def journal_query(run: Path, sql: str) -> pd.DataFrame:
    """``sql`` over a run directory's ``journal.duckdb``, read-only."""
    with duckdb.connect(str(Path(run) / "journal.duckdb"), read_only=True) as con:
        return con.execute(sql).df()


def volreplay(*args: str, cwd: Path, env: dict | None = None, timeout: float = 300
              ) -> subprocess.CompletedProcess:
    """``volreplay ARGS`` in a fresh process (``python -m replay``), run in ``cwd`` with
    ``env`` added to the environment."""
    return subprocess.run([sys.executable, "-m", "replay", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def one_error_line(p: subprocess.CompletedProcess, *needles: str) -> str:
    """The one ``volreplay: error:`` line of a user mistake (exit code 2, no traceback, no
    raw DuckDB catalog error, no log line of Hydra's own before it), holding ``needles``."""
    assert p.returncode == EXIT_USER_ERROR, (p.returncode, p.stdout[-2000:], p.stderr[-3000:])
    for raw in ("Traceback", "CatalogException", "HYDRA_FULL_ERROR", "[ERROR]"):
        assert raw not in p.stderr, p.stderr[-3000:]
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("volreplay: error:")]
    assert len(lines) == 1, p.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]
