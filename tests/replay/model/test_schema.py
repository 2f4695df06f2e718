"""The schema reference in datasets/README.md is generated from replay.model.schema and must match."""

from __future__ import annotations

from pathlib import Path

from replay.model.schema import MARKET_TABLES, STREAM_PRIORITY, TABLES, ddl, markdown_docs

README = Path(__file__).resolve().parents[3] / "datasets" / "README.md"


def test_datasets_readme_documents_every_column():
    assert README.read_text().rstrip().endswith(markdown_docs().rstrip())


def test_every_market_table_has_clocks_seq_and_a_priority():
    for t in MARKET_TABLES:
        names = [c.name for c in TABLES[t]]
        assert names[:3] == ["ts_exchange", "ts_recv", "seq"], t
        assert t in STREAM_PRIORITY
        assert ddl(t).startswith(f"CREATE TABLE IF NOT EXISTS {t} (")
    assert sorted(STREAM_PRIORITY.values()) == list(range(len(MARKET_TABLES)))
