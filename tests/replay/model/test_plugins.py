"""Plugin instantiation: errors name the group, the key and the allowed keys."""

from __future__ import annotations

import pytest

from replay.errors import ConfigError
from replay.model.plugins import instantiate_checked


class _Target:
    def __init__(self, a: int = 1, board=None):
        self.a, self.board = a, board


def test_instantiate_checked_names_unknown_key_and_allowed():
    node = {"_target_": f"{__name__}._Target", "b": 3}
    with pytest.raises(ConfigError, match=r"strategy.b: unknown key .*allowed keys: a, board"):
        instantiate_checked("strategy", node)
    obj = instantiate_checked("strategy", {"_target_": f"{__name__}._Target", "a": 2},
                              board="B", venue="ignored: not a parameter")
    assert (obj.a, obj.board) == (2, "B")
    with pytest.raises(ConfigError, match="cannot import"):
        instantiate_checked("book", {"_target_": "nowhere.Nothing"})


def test_a_nested_target_hydra_cannot_locate_or_call_names_its_key():
    """``margin.rule._target_`` is instantiated by Hydra inside the group's target: its
    errors were raw tracebacks."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"margin": {"_target_": "collections.OrderedDict",
                                       "rule": {"_target_": "nowhere.Nothing"}}})
    with pytest.raises(ConfigError, match=r"^margin.rule._target_: Error locating target "
                                          r"'nowhere.Nothing'$"):
        instantiate_checked("margin", cfg.margin)
    cfg.margin.rule._target_ = "json"
    with pytest.raises(ConfigError, match=r"^margin.rule._target_: Expected a callable target"):
        instantiate_checked("margin", cfg.margin)
