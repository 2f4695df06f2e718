"""Plugin groups (``calibration``, ``book``, ``strategy``, ``margin``, ``forecast``): their
``_target_`` classes instantiated with errors that name the group, the key and the keys the
class accepts, so that users can plug in their own classes and still get one-line errors."""

from __future__ import annotations

import inspect
from typing import Any

from replay.errors import ConfigError


def _init_params(cls: type) -> tuple[list[inspect.Parameter], bool]:
    """The keyword parameters ``cls(...)`` accepts, following ``**kwargs`` that are passed on
    to base classes (``super().__init__(**common)``); ``open_ended`` when the chain ends in a
    ``**kwargs`` that no base class defines."""
    found: dict[str, inspect.Parameter] = {}  # by name, in the order first met
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        for p in params:
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                found.setdefault(p.name, p)
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return list(found.values()), False
    return list(found.values()), True


def _init_keywords(cls: type) -> tuple[list[str], bool]:
    """The names of :func:`_init_params`, and whether the chain is open-ended."""
    params, open_ended = _init_params(cls)
    return [p.name for p in params], open_ended


def init_defaults(cls: type) -> dict[str, Any]:
    """The defaults of the keyword arguments ``cls(...)`` accepts (:func:`_init_params`)
    where they are plain config values (numbers, strings, booleans, None): what an omitted
    key means, as far as the signature says."""
    return {p.name: p.default for p in _init_params(cls)[0]
            if p.default is None or isinstance(p.default, (bool, int, float, str))}


def _check_booleans(group: str, cls: type, values: dict) -> None:
    """A key the target declares ``bool`` takes true or false.  Hydra passes ``no``, ``off``
    or ``0`` on as the string or number they are, and the target would read any of them but
    ``0`` as true."""
    for p in _init_params(cls)[0]:
        v = values.get(p.name)
        if p.annotation in (bool, "bool") and v is not None and not isinstance(v, bool):
            raise ConfigError(f"{group}.{p.name}: {v!r} is not a boolean; use true or false")


def locate_class(key: str, target: str) -> type:
    """The class a ``_target_`` names (``package.module.Class``), imported here rather than
    by Hydra's ``get_class``, which logs an error of its own before raising."""
    import importlib

    parts = target.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for name in parts[i:]:
                obj = getattr(obj, name)
        except AttributeError:
            break
        if isinstance(obj, type):
            return obj
        break
    raise ConfigError(f"{key}: cannot import {target!r} (give a class as package.module.Class)")


def instantiate_checked(group: str, node: Any, **extra: Any) -> Any:
    """``hydra.utils.instantiate`` with errors that name the group, key and allowed keys."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    if node is None:
        return None
    target = OmegaConf.select(node, "_target_") if OmegaConf.is_config(node) else node.get("_target_")
    if not target:
        raise ConfigError(f"{group}: missing _target_ (the class to instantiate)")
    cls = locate_class(f"{group}._target_", str(target))
    allowed, open_ended = _init_keywords(cls)
    _check_booleans(group, cls, OmegaConf.to_container(node) if OmegaConf.is_config(node)
                    else node)
    # run-provided collaborators (e.g. the surface board) go only to targets that take them
    extra = {k: v for k, v in extra.items() if open_ended or k in allowed}
    if not open_ended:
        keys = [k for k in (OmegaConf.to_container(node) if OmegaConf.is_config(node) else node)
                if k != "_target_"]
        unknown = [k for k in keys if k not in allowed]
        if unknown:
            # what the run hands over itself is no config key
            run_provided = set(extra) | set(getattr(cls, "run_provided", ()))
            raise ConfigError(f"{group}.{unknown[0]}: unknown key for {target}; allowed keys: "
                              f"{', '.join(k for k in allowed if k not in run_provided)}")
    try:
        return instantiate(node, **extra, _convert_="all")
    except ConfigError:
        raise
    except Exception as e:  # Hydra wraps constructor errors; surface ours unwrapped
        cause = e.__cause__ or e
        if isinstance(cause, ConfigError):
            raise cause from None
        if isinstance(cause, (TypeError, ValueError)):
            raise ConfigError(f"{group}: {cause}") from None
        # a nested _target_ (margin.rule._target_) Hydra could not import or call
        what, _, key = str(e).partition("\nfull_key: ")
        if isinstance(e, InstantiationException) and what.startswith(
                ("Error locating target", "Expected a callable target")):
            key = key if key.startswith(f"{group}.") else f"{group}.{key}"
            raise ConfigError(f"{key}._target_: {what.split(', set env var')[0]}") from None
        raise
