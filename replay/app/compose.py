"""The ``volreplay run`` config composed outside a run, and Hydra's errors as one line.

The Hydra application (:mod:`replay.app.hydra_app`), its checks before a sweep, the
``calibrate`` command and :func:`replay.compose` compose the config the way a run does, here;
a mistake Hydra or OmegaConf meets while composing becomes one line naming the key and, for an
unknown key or option, what is allowed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def parse_overrides(argv: list[str], strict: bool = False) -> list[Any] | None:
    """Hydra's own parse of the override words (flags and their values skipped); when they do
    not parse, [] (None if ``strict``: a caller that must not check the default config in
    their place), and Hydra will then report that."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    words, skip = [], False
    for w in argv:
        if skip or w.startswith("-"):
            # flags that take a value: --config-name/-cn, --config-path/-cp, --config-dir/-cd
            skip = not skip and w in ("-cn", "-cp", "-cd", "--config-name", "--config-path",
                                      "--config-dir", "--info", "-i", "--experimental-rerun")
            continue
        words.append(w)
    try:
        return OverridesParser.create().parse_overrides(words)
    except HydraException:
        return None if strict else []


def check_overrides(argv: list[str]) -> None:
    """Refuse, as a :class:`~replay.errors.ConfigError`, the override words Hydra itself
    cannot report but only crash on: one without a key (``=0.2``, as ``$KEY=0.2`` reads with
    ``KEY`` unset) and a config group given a number, a boolean or null (``margin=false``)."""
    from replay.errors import ConfigError

    for o in parse_overrides(argv):
        if not o.key_or_group:
            raise ConfigError(f"{o.input_line!r}: an override needs a key before '=' (an unset "
                              "shell variable?)")
        group = CONF_DIR / o.key_or_group
        if not group.is_dir():
            continue
        value = o.value()
        values = value.list if o.is_sweep_override() and hasattr(value, "list") else [value]
        for v in values:
            if not isinstance(v, str | list):
                options = sorted(f.stem for f in group.glob("*.yaml"))
                raise ConfigError(f"{o.key_or_group}={v if v is not None else 'null'}: no such "
                                  f"option; choose one of {', '.join(options)}")


def compose(overrides: list[str], strict: bool = False, hydra: bool = False) -> Any:
    """The config composed with ``overrides`` (with ``hydra``, Hydra's own node too); None if
    it does not compose (Hydra will say why when it runs), or with ``strict`` Hydra's
    error."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from replay.app.resolvers import register_resolvers
    from replay.model.config import register

    register()
    register_resolvers()  # composing runs no Hydra callback
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return hydra_compose("config", overrides=overrides, return_hydra_config=hydra)
    except Exception:
        if strict:
            raise
        return None
    finally:
        GlobalHydra.instance().clear()


def compose_checked(overrides: list[str]) -> Any:
    """The ``volreplay run`` config composed with ``overrides`` (no run directory); a mistake
    Hydra meets while composing is one :class:`~replay.errors.ConfigError` line."""
    from replay.errors import ConfigError

    check_overrides(overrides)
    try:
        return compose(overrides, strict=True)
    except Exception as e:
        if not is_config_error(e):
            raise
        raise ConfigError(hydra_error_line(e, overrides)) from None


def is_config_error(e: BaseException) -> bool:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from replay.errors import ConfigError

    return isinstance(e, HydraException | OmegaConfBaseException | ConfigError)


def hydra_error_line(e: BaseException, argv: list[str]) -> str:
    """One line for an error Hydra or OmegaConf raised while composing the config: the key,
    what is wrong and, for an unknown key or option, what is allowed."""
    import re

    from hydra.errors import MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(e, MissingConfigException) and e.options and e.missing_cfg_file:
        group, _, name = str(e.missing_cfg_file).rpartition("/")
        return (f"{group}={name}: no such option; choose one of "
                f"{', '.join(sorted(e.options))}")
    cause = e if isinstance(e, OmegaConfBaseException) else e.__cause__
    key = getattr(cause, "full_key", None) if isinstance(cause, OmegaConfBaseException) else None
    if key:
        # "Key 'x' is not in struct" (a preset's dict), "Key 'x' not in 'RunConfig'" (a schema)
        if re.match(r"Key '[^']*' (is )?not in ", str(cause)):
            return _unknown_key_line(key, argv)
        if "is not a ListConfig" in str(cause):  # data.expiries=2025-01-10
            return f"{key}: give a list, {key}=[VALUE,...] (one value: {key}=[VALUE])"
        return f"{key}: {_first_line(cause)}"
    return _first_line(e, join=True)


def _first_line(e: BaseException, join: bool = False) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    lines = [ln for ln in lines if "HYDRA_FULL_ERROR" not in ln and not set(ln) <= {"^", " "}]
    return ("; ".join(lines) if join else (lines[0] if lines else "")) or type(e).__name__


def _unknown_key_line(key: str, argv: list[str]) -> str:
    """``KEY: unknown key; allowed keys: ...``, the keys of its parent in the config composed
    without the mistyped override (and without sweeps, which one config cannot hold)."""
    from replay.model.config import PLUGIN_GROUPS

    parent, _, _ = key.rpartition(".")
    line = f"{key}: unknown key"
    keys = _keys_of(parent, [o.input_line for o in parse_overrides(argv)
                             if not o.is_sweep_override()
                             and o.key_or_group != key
                             and not o.key_or_group.startswith(f"{key}.")
                             and not o.key_or_group.startswith("hydra")])
    if keys is None:  # a null node (margin.rule): its keys are added, or it is set whole
        return (f"{line}; {parent} is null in this config: add its keys with "
                f"+{key}=VALUE, or set it whole with '{parent}={{KEY: VALUE, ...}}'")
    if keys:
        line += f"; allowed keys: {', '.join(keys)}"
    if parent in PLUGIN_GROUPS:
        line += (f" (another parameter of the {parent} class is added with "
                 f"+{parent}.NAME=VALUE)")
    return line


def _keys_of(parent: str, overrides: list[str]) -> list[str] | None:
    """The keys of ``parent`` in the config composed with ``overrides``; None where it is
    set to null."""
    from omegaconf import DictConfig, OmegaConf

    cfg = compose(overrides)
    if cfg is None:
        return []
    node = OmegaConf.select(cfg, parent, default="") if parent else cfg
    if node is None:
        return None
    return [str(k) for k in node if k != "_target_"] if isinstance(node, DictConfig) else []
