"""A Hydra sweeper that tunes a volreplay backtest with Optuna (``hydra/sweeper=optuna``).

Hydra only instantiates plugins defined in its ``hydra_plugins`` namespace, so
``hydra_plugins/volreplay_optuna`` holds the config schema and a one-line subclass of
:class:`OptunaSweeper`; the work is here.

Why our own instead of ``hydra-optuna-sweeper``: that plugin (1.3.0) pins optuna below 3, whose
database storage fails with SQLAlchemy 2, and it needs the task to return a float, while
``volreplay run`` returns the whole metrics dict and ``None`` for a failed job.  This one runs
on current Optuna through its ask-and-tell interface:

1. the objective (``objective.expr`` / ``objective.direction`` of the run config, see
   :mod:`replay.analytics.objective`) and the search space (:mod:`.space`) are checked before any job runs;
   a mistake is one ``volreplay: error:`` line and exit code 2;
2. ``n_jobs`` trials at a time are asked of Optuna and handed to the configured Hydra launcher
   as one batch, so ``hydra/launcher=joblib`` (or a cluster launcher) runs them in parallel;
3. each job's metrics give the trial its objective value; a job that failed (it wrote
   ``error.json``) or whose objective cannot be computed is told to Optuna as a failed trial,
   with the reason kept, and the study goes on;
4. ``optimization_results.yaml`` in the sweep directory records the objective, the best trial
   and every trial; the :class:`replay.app.sweeps.summary.SweepSummary` callback then writes
   ``summary.parquet`` and ``sweep.html`` as for any sweep.
"""

from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
SAMPLERS = ("tpe", "random", "grid")


@contextmanager
def _user_errors():
    """A configuration mistake ends the sweep with one line, like ``volreplay run`` does."""
    from replay.errors import ConfigError

    try:
        yield
    except ConfigError as e:
        print(f"volreplay: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


class OptunaSweeper(Sweeper):
    """Optuna ask-and-tell over Hydra jobs; see the module docstring."""

    def __init__(self, n_trials: int = 20, n_jobs: int = 1, sampler: str = "tpe",
                 seed: int | None = 0, storage: str | None = None,
                 study_name: str | None = None, params: dict[str, Any] | None = None) -> None:
        self.n_trials, self.n_jobs = n_trials, n_jobs
        self.sampler_name, self.seed = sampler, seed
        self.storage, self.study_name = storage, study_name
        self.params = dict(params or {})
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from replay.analytics.objective import checked_objective
        from replay.model.config import check_choice, check_range

        with _user_errors():
            try:
                import optuna  # noqa: F401 - fail here, before any job, if the extra is missing
            except ImportError:
                from replay.errors import ConfigError

                raise ConfigError("hydra/sweeper=optuna needs Optuna: "
                                  "pip install 'volreplay[sweeps]'") from None
            check_choice("hydra.sweeper.sampler", self.sampler_name, SAMPLERS)
            check_range("hydra.sweeper.n_trials", self.n_trials, lo=1)
            check_range("hydra.sweeper.n_jobs", self.n_jobs, lo=1)
            self.objective = checked_objective(config)
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        from replay.app.sweeps.space import parse_space

        assert self.config is not None and self.hydra_context is not None
        with _user_errors():
            space = parse_space(self.params, arguments, self.hydra_context.config_loader)
            study, n_trials = self._study(space)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        log.info(f"Optuna {self.sampler_name} sampler, {n_trials} trials, {self.n_jobs} at a "
                 f"time; {self.objective.direction} {self.objective.expr}")

        records: list[dict[str, Any]] = []
        returns = []
        asked = job = 0  # trials asked for; jobs launched (a trial that does not compose has none)
        while asked < n_trials:
            trials = self._ask(study, space, min(self.n_jobs, n_trials - asked))
            asked += len(trials)
            with _user_errors():
                trials = self._composed(study, space, trials, records, first=not returns)
            if trials:
                results = self.launcher.launch([space.overrides(t.params) for t in trials],
                                               initial_job_idx=job)
                for i, (trial, ret) in enumerate(zip(trials, results)):
                    records.append(self._tell(study, trial, ret, job + i))
                returns.append(results)
                job += len(trials)
        self._write_results(sweep_dir, study, records)
        return returns

    def _ask(self, study: Any, space: Any, n: int) -> list[Any]:
        """``n`` new trials; a stored study whose search space was another (a parameter's
        range or kind changed) is a :class:`~replay.errors.ConfigError`, and the trials this
        call opened are failed, not left RUNNING in the storage."""
        import optuna

        from replay.errors import ConfigError

        first, trials = len(study.trials), []
        try:
            for _ in range(n):
                trials.append(study.ask(space.distributions))
        except ValueError as e:
            for t in study.get_trials(deepcopy=False,
                                      states=(optuna.trial.TrialState.RUNNING,)):
                if t.number >= first:
                    study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            raise ConfigError(f"hydra.sweeper.params: study {study.study_name!r} in "
                              f"{self.storage} was searched over another space ({e}); give "
                              "it the same parameters, or another hydra.sweeper.study_name"
                              ) from None
        return trials

    def _sampler(self, space: Any, seed: int | None) -> Any:
        import optuna

        if self.sampler_name == "grid":
            return _grid_sampler(space.grid(), seed)
        if self.sampler_name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        # trials asked together do not see each other's results: without the "constant liar"
        # TPE would propose near-identical points within a batch
        return optuna.samplers.TPESampler(seed=seed, constant_liar=self.n_jobs > 1)

    def _study(self, space: Any) -> tuple[Any, int]:
        """The study (a stored one resumed) and how many trials to run.  A resumed study must
        have been searched for the same objective over the same space; its sampler is seeded
        from the seed and the trials it holds, so that a session does not ask again for the
        points the earlier ones did."""
        import numpy as np
        import optuna
        from optuna.distributions import distribution_to_json

        from replay.errors import ConfigError

        sampler = self._sampler(space, self.seed)
        try:
            study = optuna.create_study(direction=self.objective.direction, sampler=sampler,
                                        storage=self.storage, study_name=self.study_name,
                                        load_if_exists=self.storage is not None)
        except (ValueError, ImportError, optuna.exceptions.OptunaError, *_storage_errors()) as e:
            raise ConfigError(f"hydra.sweeper.storage: {self.storage!r}: {e}") from None
        if study.direction.name.lower() != self.objective.direction:
            raise ConfigError(f"objective.direction: study {study.study_name!r} in "
                              f"{self.storage} was created to {study.direction.name.lower()}")
        searched = {"objective.expr": self.objective.expr, "hydra.sweeper.params": {
            n: distribution_to_json(d) for n, d in sorted(space.distributions.items())}}
        for key, value in searched.items():
            if study.user_attrs.get(key, value) != value:
                raise ConfigError(f"{key}: study {study.study_name!r} in {self.storage} was "
                                  f"searched with another one ({study.user_attrs[key]}); give it "
                                  "the same, or another hydra.sweeper.study_name")
            study.set_user_attr(key, value)
        n_trials, done = self.n_trials, len(study.trials)
        if done and self.seed is not None:
            seed = int(np.random.SeedSequence([self.seed, done]).generate_state(1)[0])
            study.sampler = self._sampler(space, seed)
        if self.sampler_name == "grid":
            size = int(np.prod([len(v) for v in space.grid().values()]))
            if size - done < n_trials:
                log.info(f"grid of {size} points, {done} searched before: running "
                         f"{max(size - done, 0)} trials, not {n_trials}")
                n_trials = max(size - done, 0)
        return study, n_trials

    def _composed(self, study: Any, space: Any, trials: list[Any], records: list[dict],
                  first: bool) -> list[Any]:
        """The trials whose config composes.  One that does not (a value that does not fit
        another drawn with it, e.g. a key of one strategy drawn with another) is failed with
        its error, and the search goes on; but when no trial of the first batch composes, the
        fault is the sweep's (a bad key), and it stops before any job runs."""
        from optuna.trial import TrialState

        ok, errors = [], []
        for t in trials:
            try:
                self._validate([space.overrides(t.params)])
                ok.append(t)
            except Exception as e:  # noqa: BLE001 - told to the study, never left RUNNING
                errors.append((t, e))
        for t, _ in errors:
            study.tell(t, state=TrialState.FAIL)
        if first and not ok and errors:
            raise errors[0][1]
        for t, e in errors:
            records.append({"number": t.number, "job": None, "params": dict(t.params),
                            "state": "FAIL", "value": None, "error": f"not composed: {e}"})
            log.warning(f"trial {t.number} {dict(t.params)} failed: {e}")
        return ok

    def _validate(self, batch: list[list[str]]) -> None:
        """Compose every job's config now, so a bad key stops the sweep before jobs run."""
        from hydra.errors import HydraException

        from replay.errors import ConfigError

        try:
            self.validate_batch_is_legal(batch)
        except HydraException as e:
            cause = f" ({str(e.__cause__).splitlines()[0]})" if e.__cause__ else ""
            raise ConfigError(f"{str(e).splitlines()[0]}{cause}") from None

    def _tell(self, study: Any, trial: Any, ret: Any, job: int) -> dict[str, Any]:
        """Report one job to Optuna; returns its record for optimization_results.yaml."""
        from optuna.trial import TrialState

        from replay.errors import ConfigError, ObjectiveValueError

        rec: dict[str, Any] = {"number": trial.number, "job": job, "params": dict(trial.params),
                               "state": "FAIL", "value": None, "error": None}
        try:
            metrics = ret.return_value
        except Exception as e:  # the launcher reports a job that raised
            metrics, rec["error"] = None, f"{type(e).__name__}: {e}"
        if metrics is None and rec["error"] is None:
            rec["error"] = _job_error(ret)
        elif isinstance(metrics, dict):
            try:
                rec["value"] = self.objective.evaluate(metrics)
                rec["state"] = "COMPLETE"
            except (ConfigError, ObjectiveValueError) as e:
                rec["error"] = str(e)
        elif rec["error"] is None:
            rec["error"] = f"the task returned {type(metrics).__name__}, not a metrics dict"
        if rec["state"] == "COMPLETE":
            study.tell(trial, rec["value"])
        else:
            study.tell(trial, state=TrialState.FAIL)
            log.warning(f"trial {trial.number} (job {job}) failed: {rec['error']}")
        return rec

    def _write_results(self, sweep_dir: Path, study: Any, records: list[dict[str, Any]]) -> None:
        import yaml
        from optuna.trial import TrialState

        done = [t for t in study.trials if t.state == TrialState.COMPLETE]
        best = study.best_trial if done else None
        by_number = {r["number"]: r for r in records}
        out = {
            "name": "optuna",
            "objective": {"expr": self.objective.expr, "direction": self.objective.direction},
            "sampler": self.sampler_name, "seed": self.seed,
            "study_name": study.study_name, "storage": self.storage,
            "best_value": best.value if best else None,
            "best_params": dict(best.params) if best else None,
            "best_trial": {"number": best.number, "job": by_number.get(best.number, {}).get("job")}
            if best else None,
            "n_trials": len(records),
            "n_complete": sum(r["state"] == "COMPLETE" for r in records),
            "n_failed": sum(r["state"] == "FAIL" for r in records),
            "trials": records,
        }
        path = sweep_dir / "optimization_results.yaml"
        path.write_text(yaml.safe_dump(out, sort_keys=False))
        if best is None:
            log.warning(f"no trial completed; see the errors in {path}")
        else:
            log.info(f"best value {best.value:.6g} with {best.params}")
        print(f"optimization results: {path}")


def _grid_sampler(grid: dict[str, list[Any]], seed: int | None) -> Any:
    """Optuna's grid sampler, minus its call to ``study.stop()`` once the grid is done: that
    ends an ``optimize`` loop, and raises under ask-and-tell, where there is no loop to end (the
    sweep runs as many trials as the grid has points)."""
    import optuna

    class AskTellGridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            return None

    return AskTellGridSampler(grid, seed=seed)


def _job_error(ret: Any) -> str:
    """The reason a multirun job gave for failing (its error.json), or a generic one."""
    try:
        err = Path(ret.hydra_cfg.hydra.runtime.output_dir) / "error.json"
        return json.loads(err.read_text())["error"]
    except Exception:  # no hydra config or no error.json: say what we know
        return "the job failed (no metrics)"


def _storage_errors() -> tuple[type[Exception], ...]:
    """What a bad storage URL raises through SQLAlchemy (a malformed URL, an unknown dialect,
    a database that cannot be opened), when SQLAlchemy is installed."""
    try:
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:  # pragma: no cover - optuna's RDB storage needs it
        return ()
    return (SQLAlchemyError,)
