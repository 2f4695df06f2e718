"""A sweep's ``summary.parquet``: one row per job, and a column that is null in every job typed
as its values would be (a numeric metric float, text otherwise), not Arrow's ``null``."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from replay.app.sweeps.summary import summarize_sweep


def test_all_null_columns_keep_their_types(tmp_path):
    for job, fee in ((0, -1.5), (1, -2.0)):
        d = tmp_path / str(job)
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "overrides.yaml").write_text(f"- strategy.band={0.05 * (job + 1)}\n")
        (d / "metrics.json").write_text(json.dumps({
            "journal_hash": "ab" * 16, "pnl": {"fees_usd": fee},
            "margin": {"christoffersen_p": None}, "forecast": {"best_by_qlike": None}}))
    schema = pq.read_schema(summarize_sweep(tmp_path)[0])
    assert schema.field("pnl.fees_usd").type == pa.float64()
    assert schema.field("margin.christoffersen_p").type == pa.float64()  # numeric, null here
    text = schema.field("status").type  # however pandas writes its strings
    assert pa.types.is_string(text) or pa.types.is_large_string(text)
    assert schema.field("error").type == text  # no job failed
    assert schema.field("forecast.best_by_qlike").type == text
    assert pq.read_table(tmp_path / "summary.parquet").num_rows == 2


def test_all_null_markouts_at_the_sweeps_own_horizons_are_numeric(tmp_path):
    (tmp_path / "multirun.yaml").write_text("report:\n  markout_horizons_s: [2.0, 30.0]\n")
    d = tmp_path / "0"
    d.mkdir()
    (d / "metrics.json").write_text(json.dumps({
        "journal_hash": "ab" * 16, "execution": {"markout_bps": {"2s": None, "30s": None}}}))
    schema = pq.read_schema(summarize_sweep(tmp_path)[0])
    assert schema.field("execution.markout_bps.2s").type == pa.float64()
    assert schema.field("execution.markout_bps.30s").type == pa.float64()
