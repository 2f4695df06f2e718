"""A sweep's ``summary.parquet``: one row per job, and a column that is null in every job typed
as its values would be (a numeric metric float, text otherwise), not Arrow's ``null``."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from replay.app.sweeps.summary import summarize_sweep
from replay.errors import UserError


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


def _job(sweep, num: int, overrides: list[str], metrics: dict | None = None) -> None:
    d = sweep / str(num)
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        (d / "metrics.json").write_text(json.dumps(metrics))
    else:
        (d / "error.json").write_text(json.dumps({"error": "ConfigError: nothing selected"}))


def test_overrides_are_recorded_as_typed_not_as_hydra_escapes_them(tmp_path):
    """Hydra writes ``data.end=2025-01-06T00\\:20`` into a job's overrides.yaml: the summary
    holds the time the user gave (filtering on it found nothing)."""
    _job(tmp_path, 0, [r"data.end=2025-01-06T00\:20", "data.expiries=[2025-01-09,2025-01-10]",
                       "strategy.band=0.2"], {"journal_hash": "ab" * 16})
    row = pq.read_table(summarize_sweep(tmp_path)[0]).to_pylist()[0]
    assert row["override.data.end"] == "2025-01-06T00:20"
    assert row["override.data.expiries"] == "[2025-01-09,2025-01-10]"
    assert row["override.strategy.band"] == "0.2"


def test_a_sweep_whose_jobs_all_failed_has_an_objective_column_and_a_report(tmp_path):
    """No job gave metrics: the summary still has its (null, numeric) ``objective``, and
    ``volreplay report`` on the sweep writes its summary (it said the folder held no sweep
    jobs)."""
    from replay.app.report.page import rerender

    for job in (0, 1):
        _job(tmp_path / "sweep", job, [f"data.end=2025-01-06T00:0{job}"])
    paths = rerender(tmp_path / "sweep")
    assert [p.name for p in paths] == ["summary.parquet", "sweep.html"]
    assert pq.read_schema(paths[0]).field("objective").type == pa.float64()
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no run"):
        rerender(tmp_path / "empty")


def test_a_sweep_into_a_used_folder_keeps_the_old_sweeps_config(tmp_path):
    """The earlier jobs move to ``previous-<time>/`` with their summary and the config that
    made them (``multirun.yaml``, which Hydra then overwrote)."""
    from omegaconf import OmegaConf

    from replay.app.sweeps.summary import SweepSummary

    _job(tmp_path, 0, ["strategy.band=0.2"], {"journal_hash": "ab" * 16})
    (tmp_path / "multirun.yaml").write_text("objective:\n  expr: pnl.total_usd\n")
    SweepSummary().on_multirun_start(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    (old,) = tmp_path.glob("previous-*")
    assert sorted(p.name for p in old.iterdir()) == ["0", "multirun.yaml"]
    assert not (tmp_path / "multirun.yaml").exists()


def test_a_summary_that_fails_leaves_the_sweep_exit_code_non_zero(tmp_path):
    """Hydra turns what a callback raises into a warning: before, a summary that failed (a
    job's metrics.json cut short) left the exit code unset, and the sweep exited 0."""
    from omegaconf import OmegaConf

    from replay.app.sweeps import summary

    for job in (0, 1):
        d = tmp_path / str(job)
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "overrides.yaml").write_text(f"- strategy.band={0.1 * (job + 1)}\n")
        (d / "metrics.json").write_text('{"pnl": {"fees_usd": -1.0}}' if job else '{"pnl": {')
    cfg = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}})
    summary.last_exit_code = None
    with pytest.raises(json.JSONDecodeError):
        summary.SweepSummary().on_multirun_end(cfg)
    assert summary.last_exit_code == 1


def test_one_run_that_cannot_be_drawn_stops_no_other_report(tmp_path, monkeypatch):
    """Before, ``volreplay report <sweep>`` stopped at the first run whose linked stream had
    been cleaned: the later runs and the sweep's own page (which needs no stream) were not
    written."""
    from replay.app.report import page

    for job in (0, 1, 2):
        _job(tmp_path, job, [f"strategy.band={0.1 * (job + 1)}"], {"journal_hash": "ab" * 16})

    def render(run):
        if run.name == "0":
            raise UserError(f"journal {run} links its calibration rows to a cleaned stream")
        return run / "report.html"

    monkeypatch.setattr(page, "_render_saved", render)
    with pytest.raises(UserError, match="cleaned stream; the other reports were written"):
        page.rerender(tmp_path)
    assert (tmp_path / "summary.parquet").exists() and (tmp_path / "sweep.html").exists()
