"""Config resolvers for run configs, registered wherever jobs run.

``${volreplay.add_days:${data.start},1}`` derives a window's end from its start, so a
walk-forward (``conf/experiment/walk_forward.yaml``) sweeps only ``data.start``.  Hydra
resolves interpolations in the launching process and again in launcher workers, so the
registration rides on a Hydra callback (:class:`ConfigResolvers`) that each process creates.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any


def add_days(day: str | None, n: int | str = 1) -> str:
    """``day`` plus ``n`` days, in the same ISO form (a date stays a date): the
    ``${volreplay.add_days:${data.start},1}`` resolver of ``conf/experiment/walk_forward``."""
    if day is None:
        raise ValueError("data.start must be set (e.g. data.start=2025-01-06) to derive data.end")
    s = str(day)
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"data.start: {s!r} is not an ISO date or time (e.g. 2025-01-06), "
                         "needed to derive data.end") from None
    dt += timedelta(days=int(n))
    return dt.date().isoformat() if len(s) == 10 else dt.isoformat()


def register_resolvers() -> None:
    """Register the config resolvers (idempotent)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationResolutionError

    from replay.errors import ConfigError

    if OmegaConf.has_resolver("volreplay.add_days"):
        return

    class ResolverError(ConfigError, InterpolationResolutionError):
        """OmegaConf passes its own error type through, and the CLI shows a ConfigError as one
        line; OmegaConf appends the key and node type on further lines, which are dropped."""

        def __str__(self) -> str:
            return super().__str__().splitlines()[0]

    def resolve_add_days(day: str | None, n: int | str = 1) -> str:
        try:
            return add_days(day, n)
        except ValueError as e:
            raise ResolverError(str(e)) from None

    OmegaConf.register_new_resolver("volreplay.add_days", resolve_add_days)


class ConfigResolvers:
    """A Hydra callback whose only job is :func:`register_resolvers`, wherever jobs run: when
    Hydra creates it (before any config is resolved), and in launcher worker processes, which
    unpickle it and call ``on_job_start`` before the task."""

    def __init__(self) -> None:
        register_resolvers()

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        register_resolvers()

    def on_job_start(self, config: Any = None, **kwargs: Any) -> None:
        register_resolvers()

    def _ignore(self, config: Any = None, **kwargs: Any) -> None:
        """Nothing to do at the other Hydra events."""

    on_run_start = on_run_end = on_multirun_start = on_multirun_end = on_job_end = _ignore
