"""Config validation: errors name the key and the allowed values."""

from __future__ import annotations

import pytest

from replay.consumers.schedule import NS, parse_every
from replay.errors import ConfigError
from replay.model.config import check_choice, check_range


def test_parse_every_forms():
    assert parse_every("1s", 10) == (NS, None, None)
    assert parse_every("250ms", 10) == (250_000_000, None, None)
    assert parse_every("5min", 10) == (300 * NS, None, None)
    assert parse_every(2.5, 10) == (int(2.5 * NS), None, None)
    assert parse_every("500q", 10) == (None, 500, None)
    assert parse_every("quality:12.5", 10) == (10 * NS, None, 12.5)
    for bad in ("0s", "fast", "-1s", 0, "q"):
        with pytest.raises(ConfigError, match="calibration.every"):
            parse_every(bad, 10)
    for zero in ("0s", "0.0ms", "0q", 0):  # it read "'0s' is not understood"
        with pytest.raises(ConfigError, match="must be positive"):
            parse_every(zero, 10)


def test_choice_and_range_messages():
    with pytest.raises(ConfigError, match=r"strategy.hedge: 'swap' is not allowed; choose one of perp, future, spot"):
        check_choice("strategy.hedge", "swap", ("perp", "future", "spot"))
    with pytest.raises(ConfigError, match=r"venue.latency_ms: -1 is out of range \[0, inf\]"):
        check_range("venue.latency_ms", -1, lo=0)


def test_config_diff_names_differing_keys_and_skips_free_ones():
    from replay.model.config import RESUME_FREE_KEYS, config_diff

    a = {"seed": 0, "resume": None, "data": {"db": "s.duckdb", "window_s": 300.0},
         "book": {"_target_": "B", "size": 1.0}, "strategy": {"band": 0.1}}
    b = {"seed": 0, "resume": "runs/x", "data": {"db": "s.duckdb", "window_s": 60.0},
         "book": None, "strategy": {"band": 0.2}}
    assert config_diff(a, b, RESUME_FREE_KEYS) == [("book", a["book"], None),
                                                   ("strategy.band", 0.1, 0.2)]
