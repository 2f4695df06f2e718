"""`volreplay bench`: one JSON object per case, each case in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "replay", "bench", "--quick", *args],
                          capture_output=True, text=True, timeout=300)


def test_bench_prints_one_json_object_per_case():
    p = _bench("--case", "svi_slice", "--case", "synth")
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [json.loads(line) for line in p.stdout.strip().splitlines()]
    assert [r["case"] for r in rows] == ["synth", "svi_slice"]
    synth = rows[0]
    assert synth["events"] > 0 and synth["events_per_second"] > 0


@pytest.mark.parametrize("case", ["forecast", pytest.param("hedgers", marks=pytest.mark.slow)])
def test_the_cases_on_the_backtest_store_run(case):
    """The cases that replay the backtest case's synthetic day take it from one place
    (``replay.app.bench.day_store``); both once read a helper the backtest case no longer
    had, and reported an error instead of figures."""
    p = _bench("--case", case)
    assert p.returncode == 0, p.stderr[-2000:]
    (row,) = [json.loads(line) for line in p.stdout.strip().splitlines()]
    assert row["case"] == case and "error" not in row, row
    assert row["events"] > 0


def test_unknown_case_is_a_user_error():
    p = _bench("--case", "nope")
    assert p.returncode == 2 and "unknown bench case" in p.stderr and "Traceback" not in p.stderr


# -- where cached bench stores go ------------------------------------------------------------
BENCH_STORES = ["bench_large.duckdb", "bench_quick.duckdb", "bench_day.duckdb",
                "bench_quick_backtest.duckdb"]


def test_bench_datasets_go_to_volreplay_cache_dir(tmp_path, monkeypatch):
    from replay.app.bench import dataset_path

    cache = tmp_path / "cache"
    monkeypatch.setenv("VOLREPLAY_CACHE_DIR", str(cache))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # the own variable wins
    for name in BENCH_STORES:
        p = dataset_path(name)
        assert p == cache / name
        assert p.parent.is_dir()
    checkout = Path(__file__).resolve().parents[3]
    assert not dataset_path("bench_day.duckdb").resolve().is_relative_to(checkout)


def test_cache_dir_defaults_to_xdg_then_home(tmp_path, monkeypatch):
    from replay.app.bench import cache_dir

    monkeypatch.delenv("VOLREPLAY_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "volreplay"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # ignored, as the XDG spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "volreplay"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == tmp_path / "home" / ".cache" / "volreplay"


def test_bench_cases_take_their_stores_from_the_cache(tmp_path, monkeypatch):
    """The cases build their store paths through ``dataset_path``, not under the checkout."""
    from replay.app.bench import discover

    monkeypatch.setenv("VOLREPLAY_CACHE_DIR", str(tmp_path))
    found = discover()
    built: list[Path] = []

    def fake_synthesize(path, cfg):  # record where the case would build, build nothing
        built.append(Path(path))
        raise RuntimeError("not built in this test")

    import replay.synth

    monkeypatch.setattr(replay.synth, "synthesize", fake_synthesize)
    from replay.app.bench import day_store

    with pytest.raises(RuntimeError, match="not built"):
        day_store(True)  # the backtest and parquet_store cases' store
    assert [(p.parent, p.name) for p in built] == [
        (tmp_path, "bench_quick_backtest.duckdb.building")]  # renamed into place once built
    text = "\n".join(p.read_text() for p in found.values())
    assert "datasets/bench_" not in text and '"datasets"' not in text


def test_a_cached_day_job_imports_nothing_inside_its_clock(gbm_quarter_hour, tmp_path,
                                                          monkeypatch):
    """The backtest case times a cached run with the modules it uses imported first
    (``RUN_MODULES``): a run that comes to import another module inside the clock (numba's
    own, which load with the kernels, aside) shows up here, not as a slower figure."""
    from replay.app.bench import CACHE_ENV, _load, discover

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))  # the subprocesses' cold cache
    mod = _load("backtest", discover()["backtest"])
    cold = mod._in_own_process("cold", gbm_quarter_hour, tmp_path / "cold", band=0.1)
    warm = mod._in_own_process("warm", gbm_quarter_hour, tmp_path / "warm", band=0.05)
    assert cold["built"] and not warm["built"]
    assert warm["imported"] == []
    # the floor job: the same cached day without a book or hedger
    floor = mod._in_own_process("floor", gbm_quarter_hour, tmp_path / "floor", band=0.05)
    assert not floor["built"] and floor["events"] == warm["events"]
    assert "hedger" in warm["consumer_seconds"] and "hedger" not in floor["consumer_seconds"]


def test_a_bench_store_is_rebuilt_when_its_synthesis_changes(tmp_path, monkeypatch):
    """``synth_store`` builds once and reuses the store while its config and the
    synthesiser's source are those it was built with; another config (or source: the stamp
    records both) rebuilds it."""
    from replay.app.bench import synth_store
    from replay.synth import SynthConfig

    monkeypatch.setenv("VOLREPLAY_CACHE_DIR", str(tmp_path))
    built: list[SynthConfig] = []
    import replay.synth

    def fake_synthesize(path, cfg):
        built.append(cfg)
        Path(path).write_text(f"store of seed {cfg.seed}")

    monkeypatch.setattr(replay.synth, "synthesize", fake_synthesize)
    a, b = SynthConfig(hours=0.1, seed=1), SynthConfig(hours=0.1, seed=2)
    path = synth_store("s.duckdb", a)
    assert synth_store("s.duckdb", a) == path and built == [a]
    assert synth_store("s.duckdb", b) == path and built == [a, b]
    assert path.read_text() == "store of seed 2" and not path.with_suffix(".building").exists()
    stamp = path.with_name("s.duckdb.synth")
    stamp.write_text(stamp.read_text().replace(stamp.read_text().splitlines()[1], "old source"))
    synth_store("s.duckdb", b)
    assert built == [a, b, b]
