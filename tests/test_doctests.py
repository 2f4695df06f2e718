"""The runnable examples in docstrings (``>>>``) are tests too: every module that has one is
run through :mod:`doctest`."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts)
    for pkg in ("replay", "calibration", "strategies")
    for p in (ROOT / pkg).rglob("*.py") if ">>>" in p.read_text())


def test_some_modules_have_examples():
    assert MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str):
    result = doctest.testmod(importlib.import_module(name.removesuffix(".__init__")))
    assert result.failed == 0 and result.attempted > 0
