"""``calibration.epoch``: its grammar, and the configs it refuses, each error naming the key."""

from __future__ import annotations

import pytest

from replay.consumers.calibration import CalibrationConsumer
from replay.consumers.schedule import parse_epoch
from replay.errors import ConfigError
from replay.units import NS


def test_epochs_are_intervals_on_the_wake_grid():
    assert parse_epoch(None, NS, 0) is None
    assert parse_epoch("null", NS, 0) is None
    assert parse_epoch("1d", NS, 0) == 86400 * NS
    assert parse_epoch("6h", 5 * NS, 0) == 6 * 3600 * NS
    assert parse_epoch(600, 10 * NS, NS) == 600 * NS  # a number is seconds
    assert CalibrationConsumer(every="1s", epoch="1h").epoch_ns == 3600 * NS
    # a quality trigger wakes on the check_s grid
    assert CalibrationConsumer(every="quality:5", check_s=10, epoch="5min").epoch_ns == 300 * NS


@pytest.mark.parametrize("kwargs,message", [
    ({"every": "1s", "epoch": "daily"}, "'daily' is not a market-time interval such as '6h'"),
    ({"every": "1s", "epoch": -3}, "not a market-time interval"),
    ({"every": "1s", "epoch": "500q"}, "not a market-time interval"),
    ({"every": "500q", "epoch": "1h"}, "not a quote count"),
    ({"every": "7s", "epoch": "1min"}, "whole number of wake intervals"),
    ({"every": "quality:5", "check_s": 7, "epoch": "1min"}, "whole number of wake intervals"),
    ({"every": "1s", "epoch": "1h", "latency": 1.0}, "calibration.latency below"),
])
def test_bad_epochs_name_the_key(kwargs, message):
    with pytest.raises(ConfigError, match=message) as e:
        CalibrationConsumer(**kwargs)
    assert str(e.value).startswith("calibration.epoch")
