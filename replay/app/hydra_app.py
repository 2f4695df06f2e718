"""``volreplay run``: the Hydra application.

Hydra parses the overrides, composes ``conf/config.yaml`` with the structured schema of
:mod:`replay.model.config`, creates the run (or job) directory and calls :func:`task`.  Our part:

* every user mistake, whether Hydra meets it while composing (an unknown key or option, a
  value of the wrong type) or the run does (:class:`~replay.errors.VolreplayError` and its subclasses), is one ``volreplay: error:`` line and exit code
  2 (:data:`replay.errors.EXIT_USER_ERROR`); only bugs show a traceback (exit code 1);
* ``resume=<run dir>`` continues in that directory: it becomes ``hydra.run.dir`` and Hydra does
  not rewrite the run's ``.hydra/`` record; a resume that names nothing to continue stops
  before Hydra creates or touches any file;
* in a multirun a failing job writes ``error.json`` into its directory and the sweep goes on;
  after the last job :mod:`replay.app.sweeps.summary` aggregates ``summary.parquet`` and ``sweep.html``
  (a Hydra callback, so it also runs with other launchers and sweepers), and the sweep then
  exits non-zero if a job failed (:func:`replay.app.sweeps.summary.sweep_exit_code`).
"""

from __future__ import annotations

import json
import math
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from replay.app.compose import (
    CONF_DIR,
    check_overrides,
    compose,
    compose_checked,
    hydra_error_line,
    is_config_error,
    parse_overrides,
)

_MULTIRUN_FLAGS = ("-m", "--multirun")
# flags with which Hydra prints something and runs nothing: no run-directory checks then
_NO_RUN_FLAGS = ("-h", "--help", "--hydra-help", "-c", "--cfg", "-i", "--info", "-sc",
                 "--shell-completion")


def task(cfg) -> dict | None:  # noqa: ANN001 - a DictConfig
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from replay.app.backtest import run
    from replay.errors import EXIT_USER_ERROR, error_line, is_user_error

    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    OmegaConf.set_struct(cfg, False)
    cfg.out_dir = str(out)
    if hc.mode != RunMode.MULTIRUN:
        try:
            metrics = run(cfg)
        except Exception as e:
            if not is_user_error(e):  # a bug: main() must show it, not read it as a Hydra error
                raise _TaskFailed() from e
            _drop_if_unused(out)
            print(f"volreplay: error: {error_line(e)}", file=sys.stderr)  # no traceback
            raise SystemExit(EXIT_USER_ERROR) from None
        report = out / "report.html"
        print(f"run: {out}\nreport: {report if report.exists() else 'not written (report.html=false)'}")
        note = rejected_note(metrics)
        if note:
            print(note, file=sys.stderr)
        return metrics
    try:
        return run(cfg)
    except Exception as e:  # keep sweeping: the summary records the failure
        (out / "error.json").write_text(json.dumps({
            "error": f"{type(e).__name__}: {e}", "overrides": list(hc.overrides.task),
            "user_error": is_user_error(e),
            "traceback": traceback.format_exc()}, indent=2))
        print(f"job {hc.job.num} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return None


def rejected_note(metrics: dict) -> str | None:
    """A line saying how many of a run's orders the venue rejected, in whole or in part,
    and why (the rest of a resting order that expired unfilled counts too); None when none
    were.  A run whose book never opened (every order beyond ``venue.price_band``, say)
    otherwise ends like any other, with a PnL of zero."""
    ex = (metrics or {}).get("execution") or {}
    rejected = {reason: n for reason, n in (ex.get("rejected") or {}).items() if n}
    if not rejected:
        return None
    why = ", ".join(f"{reason}: {n}" for reason, n in rejected.items())
    return (f"volreplay: note: the venue rejected all or part of {sum(rejected.values())} "
            f"of {ex.get('n_orders')} orders ({why}); see the journal's rejections table "
            "(docs/outputs.md)")


#: directories that existed before Hydra made the run's (:func:`_existing_dirs`): a refused
#: run never removes them
_kept: set[Path] = set()


def _existing_dirs(argv: list[str]) -> set[Path]:
    """The working directory and the folders above it, and of an explicit ``hydra.run.dir``
    the folders that exist already: the user's, not Hydra's to remove."""
    cwd = Path.cwd().resolve()
    keep = {cwd, *cwd.parents}
    given = next((o for o in parse_overrides(argv) if o.key_or_group == "hydra.run.dir"), None)
    if given is not None and "${" not in str(given.value()):
        p = (cwd / os.path.expanduser(str(given.value()))).resolve()
        keep |= {q for q in (p, *p.parents) if q.is_dir()}
    return keep


def _drop_if_unused(out: Path) -> None:
    """Remove the run directory of a refused run when it holds only what Hydra wrote into it
    before the run was called (``.hydra/``, ``hydra_app.log``) and the run's ``run.json``,
    and the folders above it that are then empty (``reports/runs/<date>``): a mistake leaves
    no trace but its error line.  A directory with a journal (a resumed run's) is never
    touched, nor one that existed before the command (the working directory, a
    ``hydra.run.dir`` the user made) or holds the working directory."""
    import shutil

    out = out.resolve()
    if out in _kept or not out.is_dir() or not {p.name for p in out.iterdir()} <= {
            ".hydra", "hydra_app.log", "run.json"}:
        return
    shutil.rmtree(out, ignore_errors=True)
    for parent in list(out.parents)[:3]:  # reports/runs/<date>, as Hydra made them
        if parent in _kept:
            break
        try:
            parent.rmdir()
        except OSError:  # not empty: other runs
            break


class _TaskFailed(Exception):
    """Carries an unexpected exception of a single run out through Hydra (as its cause)."""


def main(argv: list[str]) -> int:
    """Run Hydra on ``argv`` (the words after ``volreplay run``); returns the exit code."""
    import hydra

    from replay.app.sweeps import summary as sweep
    from replay.errors import EXIT_USER_ERROR, ConfigError, UserError
    from replay.model.config import register

    register()
    if not CONF_DIR.is_dir():
        raise UserError(f"config folder {CONF_DIR} not found (run from a checkout of volreplay)")
    if any(o.key_or_group == "out_dir" for o in parse_overrides(argv)):
        raise ConfigError("out_dir: volreplay run sets it to the run's directory; choose that "
                          "with hydra.run.dir=PATH (a sweep's: hydra.sweep.dir=PATH)")
    check_overrides(argv)
    argv = [*argv, *resume_overrides(argv)]  # before Hydra creates any directory
    _kept.clear()
    _kept.update(_existing_dirs(argv))
    if not any(w in _NO_RUN_FLAGS for w in argv):  # a run or a sweep, not --help or --cfg
        if any(w in _MULTIRUN_FLAGS for w in argv):
            _check_sweep(argv)
        else:
            _note_sweep_experiment(argv)
    wrapped = hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(task)
    saved, saved_env = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = ["volreplay run", *argv]
    # Hydra then raises composition errors to us instead of printing them over several lines
    # with an advice about tracebacks; a user who set the variable gets Hydra's own output.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    sweep.last_exit_code = None
    try:
        wrapped()
    except SystemExit as e:  # argparse (--help, bad flags) and our own exits
        return int(e.code or 0) if isinstance(e.code, int) else 1
    except _TaskFailed as e:
        raise e.__cause__ from None  # type: ignore[misc] - a bug: the CLI shows the traceback
    except Exception as e:
        if saved_env or not is_config_error(e):
            raise
        print(f"volreplay: error: {hydra_error_line(e, argv)}", file=sys.stderr)
        return EXIT_USER_ERROR
    finally:
        sys.argv = saved
        if saved_env is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
    return sweep.last_exit_code or 0


def _started_with(run_dir: Path, given: dict) -> list[str]:
    """The overrides ``run_dir``'s run was started with (Hydra keeps them in
    ``.hydra/overrides.yaml``) that the command line does not give again, so that
    ``resume=<run dir>`` alone composes the run's own config."""
    from omegaconf import OmegaConf

    saved = run_dir / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        return []
    words = [str(w) for w in OmegaConf.load(saved)]
    return [o.input_line for o in parse_overrides(words)
            if o.key_or_group not in given
            and not o.key_or_group.startswith(("hydra.", "resume"))]


def quote_value(text: str) -> str:
    """``text`` as one quoted Hydra override value (a path with ``,``, ``[`` or spaces is
    otherwise parsed as a sweep, a list or several words)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def resume_overrides(argv: list[str]) -> list[str]:
    """The overrides that make ``resume=X`` continue in X's run directory, after checking
    that X holds snapshots: ``hydra.run.dir`` (unless given, then it must be X's run dir),
    ``hydra.output_subdir=null`` (the run's ``.hydra/`` keeps how it was started) and the
    overrides the run was started with that the command line does not repeat."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from replay.engine import snapshot
    from replay.errors import ConfigError

    if any(w in _NO_RUN_FLAGS for w in argv):
        return []
    parsed = parse_overrides(argv)
    values = {o.key_or_group: o for o in parsed}
    resume = values.get("resume")
    if resume is None or resume.is_delete() or resume.value() in (None, ""):
        _refuse_used_run_dir(values, argv)
        return []
    where = str(resume.value())
    if Path(where).is_file() and not (Path(where).name.startswith("snap-")
                                      and Path(where).suffix == ".snap"):
        raise ConfigError(f"resume: {where} is neither a run directory nor a snapshot file "
                          "(snapshots/snap-*.snap)")
    if any(w in _MULTIRUN_FLAGS for w in argv):
        raise ConfigError("resume: continues one run; it cannot be used with -m/--multirun "
                          "(resume each job of a sweep on its own, with resume=<job dir>)")
    if not Path(where).exists() or not snapshot.candidates(where):
        snapshot.find_latest(where)  # raises the ConfigError that says what is missing
    run_dir = snapshot.run_dir_of(where)
    given = values.get("hydra.run.dir")
    extra = ["hydra.output_subdir=null", *_started_with(run_dir, values)]
    if given is not None:
        if "${" not in str(given.value()) and \
                Path(str(given.value())).resolve() != run_dir.resolve():
            raise ConfigError(f"resume: {where} belongs to run directory {run_dir}, not to "
                              f"hydra.run.dir={given.value()}; a resume continues in its own "
                              "directory (drop hydra.run.dir)")
        return extra
    quoted = quote_value(str(run_dir))
    check = OverridesParser.create().parse_overrides([f"hydra.run.dir={quoted}"])[0]
    if check.value() != str(run_dir):
        raise ConfigError(f"resume: cannot pass the path {run_dir} to Hydra; add "
                          "hydra.run.dir=<that run directory>")
    return [f"hydra.run.dir={quoted}", *extra]


def _refuse_used_run_dir(values: dict[str, Any], argv: list[str]) -> None:
    """A new run into a ``hydra.run.dir`` that holds another run stops here, before Hydra
    rewrites that run's ``.hydra/`` record (:func:`replay.app.backtest.run` refuses it too, for
    directories that only Hydra can resolve, like the default time-stamped one)."""
    from replay.app.backtest import refuse_used_dir

    given = values.get("hydra.run.dir")
    if given is None or any(w in _MULTIRUN_FLAGS for w in argv) or "${" in str(given.value()):
        return
    refuse_used_dir(Path(str(given.value())))


def _note_sweep_experiment(argv: list[str]) -> None:
    """Say so when a run without ``-m`` names an experiment that is a sweep (its
    ``hydra.sweeper.params``): Hydra then runs one job of its base config."""
    from omegaconf import OmegaConf

    for o in parse_overrides(argv):
        if o.key_or_group != "experiment" or o.is_sweep_override():
            continue
        f = CONF_DIR / "experiment" / f"{o.value()}.yaml"
        params = OmegaConf.select(OmegaConf.load(f), "hydra.sweeper.params") \
            if f.is_file() else None
        if params:
            print(f"volreplay: note: experiment={o.value()} is a sweep over "
                  f"{', '.join(map(str, params))}; without -m this runs one job of its base "
                  "config", file=sys.stderr)


#: A grid of at most this many jobs is checked job by job (one config composed per job,
#: about 0.1 s each); a larger one value by value
MAX_CHECKED_JOBS = 64


def _check_sweep(argv: list[str]) -> None:
    """A sweep's objective and its jobs' configs, checked before its first job (Hydra only
    warns about an error raised in a callback, and a bad value would otherwise fail its jobs
    after the others ran): each job's config composed and its keys and numbers checked as a
    run checks them, and its data selection against its store, so that a value valid alone
    but not with another (``strategy.band`` with ``strategy=periodic``) is named with it;
    an experiment's ``hydra.sweeper.params`` sweep with the command line's; a grid of more
    than :data:`MAX_CHECKED_JOBS` jobs is checked one swept value at a time instead.  Values
    given as ranges or intervals, and every value of an Optuna search (where a failed trial
    is part of the search), are left to the sweeper, a swept objective to the jobs."""
    import itertools

    from omegaconf import OmegaConf

    from replay.analytics.objective import checked_objective
    from replay.app.selection import check_hedge, resolve_data, typed
    from replay.errors import ConfigError
    from replay.model.config import DataConfig, checked_config

    parsed = parse_overrides(argv, strict=True)
    if parsed is None:  # Hydra reports the word it cannot parse, not a check of the defaults
        return
    if any(o.key_or_group == "hydra.sweep.subdir" for o in parsed):
        raise ConfigError("hydra.sweep.subdir: the sweep summary and exit code read the jobs "
                          "from their numbered folders (${hydra.job.num}); leave it unset")
    overrides = [o for o in parsed if not o.key_or_group.startswith("hydra")]
    base = [o.input_line for o in overrides if not o.is_sweep_override()]
    swept = [o for o in overrides if o.is_sweep_override()]
    # with Hydra's own node and overrides: which sweeper runs the jobs
    cfg = compose([*base, *(o.input_line for o in parsed if not o.is_sweep_override()
                            and o.key_or_group.startswith("hydra"))], hydra=True)
    if cfg is None:
        return  # Hydra says why when it runs
    if not any(o.key_or_group.startswith("objective") for o in swept):
        checked_objective(cfg)
    if "optuna" in str(OmegaConf.select(cfg, "hydra.sweeper._target_", default="")).lower():
        return  # a search: a trial whose value fails is part of it (its state is FAIL)
    # an experiment's own sweep (hydra.sweeper.params) is part of every job, as Hydra runs
    # it: the command line wins for a key both give
    given = {o.key_or_group for o in overrides}
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
    preset = parse_overrides([f"{k}={v}" for k, v in params.items()
                              if str(k).lstrip("+~") not in given])
    axes = []  # per swept key, its overrides of one value each
    for o in [*preset, *swept]:
        try:
            values = list(o.sweep_string_iterator()) if o.is_sweep_override() else None
        except Exception:  # noqa: BLE001 - an interval or other continuous search space
            continue
        axes.append([o.input_line] if values is None else
                    [f"{o.get_key_element()}={v}" for v in values])
    if math.prod(len(a) for a in axes) <= MAX_CHECKED_JOBS:
        jobs = itertools.product(*axes)
    else:
        jobs = ((one,) for a in axes for one in a)
    selections: dict[str, Any] = {}  # the data selections checked against their stores
    for job in jobs:
        try:
            job_cfg = compose_checked([*base, *job])
            checked_config(job_cfg)
            data = typed(DataConfig, job_cfg.get("data"), "data")
            if repr(data) not in selections:  # a day after the end of the data, say
                selections[repr(data)] = resolve_data(data)
            check_hedge(job_cfg, selections[repr(data)])
        except ConfigError as e:
            raise ConfigError(f"{e} (in the sweep, {' '.join(job)})" if job else str(e)) \
                from None
