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
