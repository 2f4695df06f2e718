"""The Optuna sweeper's study across sessions and its trials that do not compose
(``replay/app/sweeps/optuna.py``), on the sweeper's own methods with an SQLite storage."""

from __future__ import annotations

from types import SimpleNamespace

import optuna
import pytest

from replay.app.sweeps.optuna import OptunaSweeper
from replay.errors import ConfigError

SPACE = SimpleNamespace(distributions={"x": optuna.distributions.FloatDistribution(0.0, 1.0)},
                        grid=lambda: {"x": [0.0, 0.5, 1.0]})


def _sweeper(url: str, expr: str = "pnl.total_usd", sampler: str = "random") -> OptunaSweeper:
    s = OptunaSweeper(n_trials=2, sampler=sampler, seed=0, storage=url, study_name="s")
    s.objective = SimpleNamespace(expr=expr, direction="minimize")
    return s


def _session(s: OptunaSweeper, space=SPACE) -> list[float]:
    study, n = s._study(space)
    xs = []
    for t in s._ask(study, space, n):
        xs.append(t.params["x"])
        study.tell(t, t.params["x"])
    return xs


def test_a_resumed_study_asks_for_new_points(tmp_path):
    """Before, the second session's sampler started from the same seed and asked for the same
    points as the first (random, and TPE in its random start-up)."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    first, second = _session(_sweeper(url)), _session(_sweeper(url))
    assert len(set(first + second)) == 4
    other = f"sqlite:///{tmp_path / 'o.db'}"
    assert _session(_sweeper(other)) == first  # the same seed, a new study: the same points


def test_a_resumed_grid_runs_only_the_points_not_searched(tmp_path):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    s = _sweeper(url, sampler="grid")
    s.n_trials = 10
    assert len(_session(s)) == 3
    assert _session(_sweeper(url, sampler="grid")) == []


@pytest.mark.parametrize("change", ["objective", "range"])
def test_a_resumed_study_searched_for_another_objective_or_range_is_refused(tmp_path, change):
    """Before, only the direction was compared: a study resumed with another objective ranked
    values of two measures together, and a changed range was taken silently."""
    url = f"sqlite:///{tmp_path / 's.db'}"
    _session(_sweeper(url))
    if change == "objective":
        with pytest.raises(ConfigError, match="objective.expr: study 's' .* another one"):
            _sweeper(url, expr="pnl.fees_usd")._study(SPACE)
    else:
        wider = SimpleNamespace(distributions={
            "x": optuna.distributions.FloatDistribution(0.0, 2.0)}, grid=SPACE.grid)
        with pytest.raises(ConfigError, match="hydra.sweeper.params: study 's' .* another one"):
            _sweeper(url)._study(wider)


def test_a_trial_that_does_not_compose_fails_and_the_search_goes_on(tmp_path):
    """Before, one trial whose drawn values did not compose together (a key of one strategy
    drawn with another) stopped the whole search after jobs had run, with no results."""
    s = _sweeper(f"sqlite:///{tmp_path / 's.db'}")
    study, _ = s._study(SPACE)
    trials = s._ask(study, SPACE, 3)
    bad = trials[1].params["x"]

    def validate(batch):
        if f"x={bad!r}" in batch[0]:
            raise ConfigError("Could not override 'strategy.band'")

    s._validate = validate
    space = SimpleNamespace(overrides=lambda p: [f"x={p['x']!r}"])
    records: list[dict] = []
    assert s._composed(study, space, trials, records, first=False) == [trials[0], trials[2]]
    assert [r["number"] for r in records] == [trials[1].number]
    assert "Could not override 'strategy.band'" in records[0]["error"]
    assert study.trials[trials[1].number].state.name == "FAIL"
    # none of the first batch composes: the sweep's fault (a bad key), stopped before any job

    def refuse(batch):
        raise ConfigError("Could not override 'y'")

    s._validate = refuse
    fresh = s._ask(study, SPACE, 2)
    with pytest.raises(ConfigError, match="Could not override 'y'"):
        s._composed(study, space, fresh, [], first=True)
    assert {study.trials[t.number].state.name for t in fresh} == {"FAIL"}  # none left RUNNING


@pytest.mark.parametrize("interval, want", [("interval(1.5, 9.7)", (2, 9)),
                                            ("interval(1, 4)", (1, 4))])
def test_an_int_interval_searches_the_whole_numbers_inside_it(interval, want):
    """Before, ``tag(int, interval(1.5, 9.7))`` searched 1 to 9: 1 is outside the interval."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from replay.app.sweeps.space import _distribution

    o = OverridesParser.create().parse_overrides([f"n=tag(int, {interval})"])[0]
    d = _distribution("n", o)
    assert (d.low, d.high) == want
    with pytest.raises(ConfigError, match="holds no integer"):
        _distribution("n", OverridesParser.create().parse_overrides(
            ["n=tag(int, interval(1.2, 1.8))"])[0])
