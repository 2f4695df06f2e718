"""The search space of an Optuna sweep, written in Hydra's override grammar.

Users already know Hydra's sweep syntax, so the space is given the same way, on the command
line or in ``hydra.sweeper.params``, and parsed with Hydra's own ``OverridesParser``:

=========================================  ============================================
``key=a,b,c`` or ``key=choice(a,b,c)``       categorical
``key=range(1,10)`` / ``range(0.1,1,0.1)``   integers / floats on a step (end excluded,
                                             as in Hydra)
``key=interval(0.01,0.5)``                   continuous; ``tag(log, interval(...))`` samples
                                             on a log scale, ``tag(int, interval(1,9))`` draws
                                             integers (both ends included)
``key=value``                                fixed for every trial
=========================================  ============================================

Optuna needs the distributions; each trial's values go back to Hydra as override strings,
formatted the way Hydra's grammar reads them.
"""

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SearchSpace:
    """Distributions to sample (by parameter name) and overrides common to every trial."""

    distributions: dict[str, Any]  # name -> optuna BaseDistribution
    keys: dict[str, str]  # name -> override key as typed (keeps a leading "+" or "++")
    fixed: tuple[str, ...]  # whole overrides passed unchanged to every trial

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """The Hydra overrides of one trial, from its sampled ``params``."""
        from hydra.core.override_parser.types import Override

        return [*self.fixed, *(f"{self.keys[n]}={Override._get_value_element_as_str(v)}"
                               for n, v in params.items())]

    def grid(self) -> dict[str, list[Any]]:
        """Every value of every parameter, for Optuna's grid sampler."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        from replay.errors import ConfigError

        out: dict[str, list[Any]] = {}
        for name, d in self.distributions.items():
            if isinstance(d, CategoricalDistribution):
                out[name] = list(d.choices)
            elif isinstance(d, IntDistribution) and not d.log:
                out[name] = list(range(d.low, d.high + 1, d.step))
            elif isinstance(d, FloatDistribution) and d.step is not None:
                n = int(round((d.high - d.low) / d.step))
                out[name] = [round(d.low + i * d.step, 12) for i in range(n + 1)]
            else:
                raise ConfigError(f"hydra.sweeper.sampler=grid: {name} is a continuous interval; "
                                  "give it as choice(...) or range(...)")
        return out


def parse_space(params: dict[str, Any] | None, arguments: list[str],
                config_loader: Any) -> SearchSpace:
    """Parse ``hydra.sweeper.params`` and the command-line overrides (which win on a clash)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from replay.errors import ConfigError

    lines = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    try:
        parsed = OverridesParser.create(config_loader=config_loader).parse_overrides(lines)
    except HydraException as e:
        raise ConfigError(f"hydra.sweeper.params: {e}") from None
    dists: dict[str, Any] = {}
    keys: dict[str, str] = {}
    fixed: dict[str, str] = {}
    for o in parsed:
        key = o.get_key_element()
        name = key.lstrip("+~")
        dists.pop(name, None)
        fixed.pop(name, None)
        if o.is_sweep_override():
            try:
                dists[name], keys[name] = _distribution(name, o), key
            except ConfigError:
                raise
            except ValueError as e:  # optuna rejects the bounds (e.g. a log range from 0)
                raise ConfigError(f"{name}: {o.get_value_string()}: {e}") from None
        else:
            fixed[name] = o.input_line or f"{key}={o.get_value_element_as_str()}"
    if not dists:
        raise ConfigError("hydra/sweeper=optuna: nothing to search; give at least one parameter "
                          "as choice(...), range(...) or interval(...), e.g. "
                          "'strategy.band=interval(0.01,0.3)'")
    return SearchSpace(distributions=dists, keys={n: keys[n] for n in dists},
                       fixed=tuple(fixed.values()))


def _distribution(name: str, o: Any) -> Any:
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from replay.errors import ConfigError

    v = o.value()
    tags = set(getattr(v, "tags", ()) or ())
    unknown = tags - {"log", "int"}
    if unknown:
        raise ConfigError(f"{name}: unknown tag {sorted(unknown)[0]!r}; tags are log and int")
    if isinstance(v, ChoiceSweep):
        choices = list(v.list)
        for c in choices:
            if c is not None and not isinstance(c, (str, int, float, bool)):
                raise ConfigError(f"{name}: choice {c!r} is not a number, string or boolean")
        return CategoricalDistribution(choices)
    if isinstance(v, RangeSweep):
        values = list(o.sweep_iterator())
        if not values:
            raise ConfigError(f"{name}: {o.get_value_string()} is empty")
        lo, hi, step = min(values), max(values), abs(v.step)
        if all(isinstance(x, int) for x in values):
            if "log" in tags and step != 1:
                raise ConfigError(f"{name}: a log range needs step 1, not {step}")
            return IntDistribution(lo, hi, log="log" in tags, step=step)
        return FloatDistribution(float(lo), float(hi), step=float(step))
    if isinstance(v, IntervalSweep):
        lo, hi = v.start, v.end
        if not lo < hi:
            raise ConfigError(f"{name}: interval({lo}, {hi}) is empty")
        if "log" in tags and lo <= 0:
            raise ConfigError(f"{name}: a log interval must start above 0, not at {lo}")
        if "int" in tags:  # the whole numbers inside the interval
            ilo, ihi = math.ceil(lo), math.floor(hi)
            if ilo > ihi:
                raise ConfigError(f"{name}: tag(int, interval({lo}, {hi})) holds no integer")
            return IntDistribution(ilo, ihi, log="log" in tags)
        return FloatDistribution(lo, hi, log="log" in tags)
    raise ConfigError(f"{name}: {o.get_value_string()} cannot be searched by Optuna; "
                      "use choice(...), range(...) or interval(...)")
