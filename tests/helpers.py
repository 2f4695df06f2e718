"""Small helpers the end-to-end tests share: shipped config groups and journal queries."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"


def conf_group(name: str, option: str) -> dict:
    """The shipped ``conf/<name>/<option>.yaml`` as a plain dict."""
    return OmegaConf.to_container(OmegaConf.load(CONF / name / f"{option}.yaml"))


def journal_query(run: Path, sql: str) -> pd.DataFrame:
    """``sql`` over a run directory's ``journal.duckdb``, read-only."""
    with duckdb.connect(str(Path(run) / "journal.duckdb"), read_only=True) as con:
        return con.execute(sql).df()
