"""User errors of ``volreplay run``: every numeric key has declared bounds and a bad value is one
error line naming the key (no traceback, no endless snapshot loop), Hydra's composition errors
look the same and share exit code 2, empty data selections are errors naming the data span,
and ``--help`` / ``--version`` show what a user needs."""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

import replay
from replay.app.compose import compose_checked
from replay.errors import ConfigError
from replay.model.config import (
    BOUNDS,
    PLUGIN_GROUPS,
    DataConfig,
    ReportConfig,
    RunConfig,
    VenueConfig,
    validate_numbers,
)
from tests.helpers import one_error_line, volreplay

CONF = Path(__file__).resolve().parents[3] / "conf"
SPAN = "spans 2025-01-06T00:00:00Z .. 2025-01-06T00:14:59Z"  # the gbm_quarter_hour store


def _run(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return volreplay("run", *args, cwd=cwd, timeout=timeout)


def _numeric(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


# -- declared bounds ------------------------------------------------------------------------
def _shipped_numeric_keys() -> set[str]:
    """Every numeric key of the schemas, the group presets and our targets' signatures."""
    from hydra.utils import get_class

    from calibration.loss import LossConfig

    keys = set()
    for group, cls in (("data", DataConfig), ("venue", VenueConfig), ("report", ReportConfig)):
        keys |= {f"{group}.{f.name}" for f in dataclasses.fields(cls)
                 if _numeric(f.default) or "float" in str(f.type) or "int" in str(f.type)}
    keys |= {f.name for f in dataclasses.fields(RunConfig) if _numeric(f.default)
             or str(f.type).startswith(("float", "int"))}
    keys |= {f"calibration.loss.{f.name}" for f in dataclasses.fields(LossConfig)
             if _numeric(f.default)}
    for group in PLUGIN_GROUPS:
        for f in (CONF / group).glob("*.yaml"):
            node = yaml.safe_load(f.read_text()) or {}
            for k, v in node.items():
                if _numeric(v):
                    keys.add(f"{group}.{k}")
            if node.get("_target_"):
                for p in inspect.signature(get_class(node["_target_"])).parameters.values():
                    if _numeric(p.default):
                        keys.add(f"{group}.{p.name}")
    return keys


def test_every_shipped_numeric_key_has_declared_bounds():
    missing = sorted(_shipped_numeric_keys() - set(BOUNDS))
    assert not missing, f"declare bounds in replay.model.config.BOUNDS for {missing}"


def test_the_shipped_defaults_are_within_their_bounds():
    for group in PLUGIN_GROUPS:
        for f in (CONF / group).glob("*.yaml"):
            node = yaml.safe_load(f.read_text())
            validate_numbers({group: node})
    validate_numbers(OmegaConf.to_container(OmegaConf.structured(RunConfig)))


@pytest.mark.parametrize("cfg, message", [
    ({"snapshot_every_s": -1},
     r"snapshot_every_s: -1 is out of range; allowed: \[1e-09, 4.61169e\+09\] or null"),
    ({"snapshot_every_s": 0.0}, r"snapshot_every_s: 0.0 is out of range"),
    ({"venue": {"latency_ms": -5}}, r"venue.latency_ms: -5 is out of range; allowed: \[0, 4.6"),
    # durations the engine's int64 nanoseconds cannot hold: 0 ns, and an overflow while
    # hashing the journal (both raw tracebacks before)
    ({"data": {"window_s": 1e-12}}, r"data.window_s: 1e-12 is out of range; allowed: \[1e-09, "),
    ({"venue": {"latency_ms": 1e13}}, r"venue.latency_ms: 10000000000000.0 is out of range"),
    ({"strategy": {"_target_": "strategies.hedging.registry.Periodic", "anchor_ns": 2 ** 63}},
     r"strategy.anchor_ns: 9223372036854775808 is out of range"),
    ({"venue": {"depth_levels": 2.5}}, r"venue.depth_levels: 2.5 is not an integer"),
    ({"data": {"window_s": 0}}, r"data.window_s: 0 is out of range"),
    ({"report": {"pnl_every_s": -60}}, r"report.pnl_every_s: -60 is out of range"),
    ({"report": {"markout_horizons_s": [1.0, -10.0]}}, r"report.markout_horizons_s\[1\]: -10.0"),
    ({"seed": -3}, r"seed: -3 is out of range"),
    ({"strategy": {"_target_": "strategies.hedging.registry.DeltaBand", "band": "wide"}},
     r"strategy.band: 'wide' is not a number"),
    ({"strategy": {"_target_": "strategies.hedging.registry.Periodic", "period_ns": 0}},
     r"strategy.period_ns: 0 is out of range"),
    ({"book": {"_target_": "strategies.books.FixedBook", "size": float("nan")}},
     r"book.size: nan is not finite"),
    ({"calibration": {"_target_": "replay.consumers.calibration.CalibrationConsumer", "n_starts": 0}},
     r"calibration.n_starts: 0 is out of range; allowed: integers in \[1, inf\)"),
    ({"calibration": {"_target_": "replay.consumers.calibration.CalibrationConsumer",
                      "loss": {"stale_weight": -1}}}, r"calibration.loss.stale_weight: -1"),
])
def test_a_value_out_of_bounds_names_the_key_and_the_allowed_values(cfg, message):
    with pytest.raises(ConfigError, match=message):
        validate_numbers(cfg)


def test_bounds_of_our_targets_leave_a_users_own_class_alone():
    validate_numbers({"strategy": {"_target_": "mypkg.Mine", "band": "wide", "cost": -1}})
    validate_numbers({"snapshot_every_s": None, "calibration": {"_target_": "x.Y", "every": "5min"}})


def test_library_run_rejects_a_bad_value_before_writing(gbm_quarter_hour, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="snapshot_every_s"):
        replay.run({"data": {"db": str(gbm_quarter_hour)}, "out_dir": str(out),
                    "snapshot_every_s": -1, "report": {"html": False}})
    assert not out.exists()


# -- through the CLI --------------------------------------------------------------------------
@pytest.mark.parametrize("override, needles", [
    # before the fix: an endless loop writing snapshot files
    ("snapshot_every_s=-1", ("snapshot_every_s: -1.0 is out of range",)),
    ("venue.latency_ms=-5", ("venue.latency_ms: -5.0 is out of range", "[0, 4.61169e+12]")),
    ("data.window_s=0", ("data.window_s: 0.0 is out of range", "[1e-09, 4.61169e+09]")),
    ("strategy.bnad=0.1", ("strategy.bnad: unknown key; allowed keys: hedge,", "band", "rebalance")),
    ("venue.latncy_ms=3", ("venue.latncy_ms: unknown key; allowed keys: latency_ms,",)),
    ("stratgy.band=0.1", ("stratgy: unknown key; allowed keys:", "strategy", "calibration")),
    ("+snapshot_every=60", ("snapshot_every: unknown key; allowed keys:", "snapshot_every_s")),
    ("+margin.mode=cross", ("margin.mode: margin=none takes no keys",)),
    ("strategy._target_=nope.X", ("strategy._target_: cannot import 'nope.X'",)),
    ("venue.latency_ms=abc", ("venue.latency_ms:", "'abc'")),
    ("strategy=delta_bnad", ("strategy=delta_bnad: no such option; choose one of delta_band,",
                             "whalley_wilmott")),
    ("data.end=${oops}", ("data.end: Interpolation key 'oops' not found",)),
    ("data.end=${oops:1}", ("data.end: Unsupported interpolation type oops",)),
    # before the fix: any string was a true (warm start stayed on with "no")
    ("calibration.warm_start=no", ("calibration.warm_start: 'no' is not a boolean",)),
    ("calibration.loss.band=off", ("loss.band: 'off' is not a boolean",)),
    ("calibration.loss.weighting=foo", ("loss.weighting: 'foo' is not allowed; choose one of",)),
    # before the fix: only a sweep read the objective, so a single run ignored its typo
    ("objective.direction=up", ("objective.direction: 'up' is not allowed",)),
    # before the fix: refused at the book's first wake, after the run directory was made
    ("book.expiry=someday", ("book.expiry: 'someday' is not allowed",)),
    # before the fix: Hydra's ValueError and a traceback, exit code 1
    ("margin=false", ("margin=False: no such option; choose one of none, portfolio, standard",)),
    ("strategy=null", ("strategy=null: no such option; choose one of delta_band,",)),
    ("=0.2", ("'=0.2': an override needs a key before '='",)),
    # before the fix: OmegaConf's "str is not a ListConfig"
    ("data.expiries=2025-01-06", ("data.expiries: give a list, data.expiries=[VALUE,...]",)),
    # before the fix: Hydra's usage and "unrecognized arguments"
    ("--db=elsewhere.duckdb", ("--db: run takes its overrides only; give the store as "
                               "data.db=PATH",)),
    # before the fix: found only after the surface stream was built
    ("strategy.hedge=future", ("strategy.hedge: no future of BTC in the store",)),
])
def test_cli_user_errors_are_one_line_with_exit_code_2(gbm_quarter_hour, tmp_path, override,
                                                         needles):
    out = tmp_path / "run"
    p = _run(f"data.db={gbm_quarter_hour}", f"hydra.run.dir={out}", "report.html=false",
             override, cwd=tmp_path, timeout=120)
    one_error_line(p, *needles)
    assert not out.exists()  # not even Hydra's record of the refused run


@pytest.mark.parametrize("overrides, needles", [
    (["data.start=2025-01-06T00:10", "data.end=2025-01-06T00:05"],
     ("data.start: 2025-01-06T00:10 is not before data.end 2025-01-06T00:05", SPAN)),
    (["data.start=2025-02-01"], ("data.start: 2025-02-01 is after the end of the data", SPAN)),
    (["data.end=2024-12-01"], ("data.end: 2024-12-01 is before the start of the data", SPAN)),
    (["data.expiries=[2025-01-09]"], ("data.expiries: '2025-01-09' is not an option expiry",
                                      "expiries: 2025-01-06, 2025-01-07", SPAN)),
    # inside the span but between two events: the replay finds nothing
    (["data.start=2025-01-06T00:05:00.000001", "data.end=2025-01-06T00:05:00.000002"],
     ("data.start, data.end: the selection holds no market events", SPAN)),
])
def test_empty_selections_are_errors_naming_the_key_and_the_span(gbm_quarter_hour, tmp_path,
                                                                   overrides, needles):
    out = tmp_path / "run"
    p = _run(f"data.db={gbm_quarter_hour}", f"hydra.run.dir={out}", "report.html=false",
             "calibration.every=300s", *overrides, cwd=tmp_path)
    one_error_line(p, *needles)
    assert not out.exists()


def test_help_hides_the_schemas_and_version_is_the_installed_one(tmp_path):
    from importlib.metadata import version

    p = _run("--help", cwd=tmp_path, timeout=120)
    assert p.returncode == 0
    groups = p.stdout.split("== Config ==")[0]
    assert "data: day, demo, deribit_btc\n" in groups and "schema" not in groups
    assert "volreplay run" in groups
    v = subprocess.run([sys.executable, "-m", "replay", "--version"], capture_output=True,
                       text=True, timeout=60)
    assert v.returncode == 0 and v.stdout.strip() == f"volreplay {version('volreplay')}"


class Crash:
    """A user's strategy with a bug: it must show a traceback and exit 1, not look like a
    config mistake."""

    name = "crash"

    def __init__(self, board=None):
        pass

    def on_start(self, ctx):
        raise RuntimeError("boom in on_start")


def test_a_bug_shows_a_traceback_and_exit_code_1(gbm_quarter_hour, tmp_path):
    import os

    env = {**os.environ, "PYTHONPATH": str(CONF.parent)}
    p = subprocess.run([sys.executable, "-m", "replay", "run", f"data.db={gbm_quarter_hour}",
                        f"hydra.run.dir={tmp_path / 'run'}", "report.html=false", "book=none",
                        "calibration=none", "strategy=none",
                        f"strategy._target_={__name__}.Crash"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stderr[-3000:]
    assert "Traceback" in p.stderr and "RuntimeError: boom in on_start" in p.stderr
    assert "volreplay: error:" not in p.stderr


def test_a_config_the_data_refuses_leaves_its_run_directory_free(gbm_quarter_hour, tmp_path):
    # the store has no spot to hedge with: refused once the store is read, before the
    # directory is taken (and before a surface stream is built for it)
    run = tmp_path / "run"
    args = (f"data.db={gbm_quarter_hour}", f"hydra.run.dir={run}", "report.html=false",
            "calibration.every=300s")
    p = _run(*args, "strategy.hedge=spot", cwd=tmp_path)
    one_error_line(p, "strategy.hedge: no spot of BTC in the store")
    assert not run.exists()  # a refused run leaves no directory behind
    assert _run(*args, "strategy.hedge=perp", cwd=tmp_path).returncode == 0
    assert json.loads((run / "run.json").read_text())["status"] == "complete"
    # through the Python API: refused before its directory is claimed
    cfg = compose_checked([f"data.db={gbm_quarter_hour}", "report.html=false",
                           "calibration.every=300s", "strategy.hedge=spot"])
    cfg.out_dir = str(tmp_path / "api")
    with pytest.raises(ConfigError, match="strategy.hedge: no spot"):
        replay.run(cfg)
    assert not (tmp_path / "api" / "run.json").exists()


def test_a_run_its_book_refuses_keeps_why(gbm_quarter_hour, tmp_path):
    """A config only a consumer can refuse once the replay runs (the book's expiry among the
    options the data selection keeps: none) leaves the run's directory with its config and
    why (it ran to the end doing nothing, and exited 0)."""
    cfg = compose_checked([f"data.db={gbm_quarter_hour}", "report.html=false",
                           "calibration.every=300s", "data.instruments=[BTC-PERPETUAL]"])
    cfg.out_dir = str(tmp_path / "api")
    with pytest.raises(ConfigError, match="book.expiry: no BTC option"):
        replay.run(cfg)
    status = json.loads((tmp_path / "api" / "run.json").read_text())["status"]
    assert status.startswith("failed: book.expiry: no BTC option")


def test_a_refused_run_removes_no_directory_it_did_not_make(gbm_quarter_hour, tmp_path):
    """``hydra.run.dir=.`` in an empty working directory, and a ``hydra.run.dir`` the user
    made with its parents: a refused run leaves them (it removed the working directory, and
    the given folder with up to three parents)."""
    work, mine = tmp_path / "work", tmp_path / "keep" / "a" / "b"
    work.mkdir()
    mine.mkdir(parents=True)
    for run_dir, cwd in ((".", work), (str(mine), tmp_path)):
        p = _run(f"data.db={gbm_quarter_hour}", f"hydra.run.dir={run_dir}", "strategy.band=-1",
                 cwd=cwd, timeout=120)
        one_error_line(p, "strategy.band: -1 is out of range")
    assert work.is_dir() and mine.is_dir()


def test_a_sweep_with_its_own_job_folder_names_is_refused(tmp_path):
    """The summary and the exit code read numbered job folders: with another
    ``hydra.sweep.subdir`` a failed sweep summarised no job and exited 0."""
    p = _run("-m", "data.db=nowhere.duckdb", "strategy=delta_band,periodic",
             "hydra.sweep.subdir=job${hydra.job.num}", f"hydra.sweep.dir={tmp_path / 'sw'}",
             cwd=tmp_path)
    one_error_line(p, "hydra.sweep.subdir: the sweep summary and exit code read the jobs")


@pytest.mark.parametrize("path", ["x,y.duckdb", "q[1].duckdb", "it's here.duckdb"])
def test_a_path_is_one_override_value_whatever_its_characters(path):
    """``volreplay demo --db PATH`` and a resume pass paths to Hydra as one quoted value (a
    comma made a sweep of it, a bracket a parse error)."""
    from replay.app.compose import parse_overrides
    from replay.app.hydra_app import quote_value

    (o,) = parse_overrides([f"data.db={quote_value('/tmp/a b/' + path)}"])
    assert o.value() == "/tmp/a b/" + path and not o.is_sweep_override()


def test_out_dir_on_the_command_line_is_refused_naming_hydra_run_dir(tmp_path):
    p = _run("data.db=nowhere.duckdb", f"out_dir={tmp_path / 'od'}", cwd=tmp_path)
    one_error_line(p, "out_dir: volreplay run sets it", "hydra.run.dir=PATH")
    assert not (tmp_path / "od").exists()


def test_unknown_keys_of_a_class_and_of_a_null_node(gbm_quarter_hour, tmp_path):
    args = (f"data.db={gbm_quarter_hour}", f"hydra.run.dir={tmp_path / 'run'}")
    line = one_error_line(_run(*args, "+calibration.foo=1", cwd=tmp_path),
                          "calibration.foo: unknown key for", "allowed keys: model,")
    assert "board" not in line and "stream" not in line  # a run's own, not config keys
    one_error_line(_run(*args, "margin=standard", "margin.rule._target_=x.Y", cwd=tmp_path),
                   "margin.rule._target_: unknown key; margin.rule is null in this config",
                   "+margin.rule._target_=VALUE", "'margin.rule={KEY: VALUE, ...}'")


class RefusesLater:
    """A user's strategy that finds its config unworkable at its second wake (as a roll that
    finds no expiry would), after events were replayed."""

    name = "refuses_later"

    def __init__(self, board=None):
        self.wakes = 0

    def on_start(self, ctx):
        from replay.engine.wake import WakeCondition

        return WakeCondition(deadline=ctx.now + 60 * 10**9)

    def on_wake(self, ctx):
        from replay.engine.wake import WakeCondition

        self.wakes += 1
        if self.wakes == 2:
            raise ConfigError("strategy.expiry_2: no BTC option expiring after the roll")
        return WakeCondition(deadline=ctx.now + 60 * 10**9)


def test_a_config_refused_mid_replay_keeps_its_journal(gbm_quarter_hour, tmp_path):
    cfg = compose_checked([f"data.db={gbm_quarter_hour}", "report.html=false",
                           "calibration=none", "book=none",
                           "strategy=none", f"strategy._target_={__name__}.RefusesLater"])
    cfg.out_dir = str(tmp_path / "run")
    with pytest.raises(ConfigError, match="strategy.expiry_2"):
        replay.run(cfg)
    status = json.loads((tmp_path / "run" / "run.json").read_text())["status"]
    assert status.startswith("failed: strategy.expiry_2") and \
        (tmp_path / "run" / "journal.duckdb").exists()


