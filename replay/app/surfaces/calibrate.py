"""``volreplay calibrate [overrides]``: build a run's surface stream on its own.

It composes the same config as ``volreplay run`` with the same overrides, resolves the same
data selection and builds (or finds) the same stream the run would use, so a sweep or a
walk-forward can calibrate first (one job per day, say) and every later run only replays.
``calibration.cache=refresh`` rebuilds; ``auto`` (the default) reports an existing stream.
With ``calibration.epoch`` (e.g. ``1d``) the build fits the epochs in parallel processes
(``calibration.build_jobs``, default one per core).
Prints one JSON line: key, path, whether it was built now, its size, rows and parts (the
processes that built it: several only with ``calibration.epoch``), the build time and the
calibration metrics of the build.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from replay.errors import ConfigError

log = logging.getLogger(__name__)


def calibrate(cfg: Any) -> dict:
    """Build or find the surface stream of ``cfg``; returns what is printed."""
    from omegaconf import OmegaConf

    from replay.app.backtest import _active, _without
    from replay.app.selection import resolve_data, typed
    from replay.app.surfaces.cache import BUILD_KEYS, cache_mode, ensure_stream, read_manifest
    from replay.model.config import DataConfig, checked_config
    from replay.model.plugins import instantiate_checked

    if not OmegaConf.is_config(cfg):
        cfg = OmegaConf.create(cfg)
    checked_config(cfg)
    if not _active(cfg.get("calibration")):
        raise ConfigError("calibration: none has no surface stream to build; choose "
                          "calibration=svi, essvi or sabr")
    mode = cache_mode(cfg.calibration)
    if mode == "off":
        raise ConfigError("calibration.cache: off builds nothing; use auto (build if missing) "
                          "or refresh (rebuild)")
    node = _without(cfg.calibration, "cache")
    instantiate_checked("calibration", _without(node, *BUILD_KEYS))  # a bad key, before work
    data = resolve_data(typed(DataConfig, cfg.get("data"), "data"))
    info = ensure_stream(node, data.sel, mode=mode, log=log)
    man = read_manifest(info.path)
    info.release()  # built or found: nothing reads it here
    if not man["events"]:  # as a run refuses it (a day of a walk-forward inside a gap)
        keys = "data.start, data.end" + (", data.instruments" if data.sel.instrument_ids else "")
        raise ConfigError(f"{keys}: the selection holds no market events; {data.span_text}")
    return {**info.as_metrics(), "events": man["events"], "rows": man["rows"],
            "parts": man.get("parts", 1), "bytes": man["bytes"],
            "calibration": man["calibration_metrics"]}


def main(overrides: list[str]) -> int:
    from replay.app.compose import compose_checked

    if any(w in ("-h", "--help") for w in overrides):
        print(__doc__.strip())
        return 0
    if any(w in ("-m", "--multirun") for w in overrides):
        raise ConfigError("volreplay calibrate builds one stream; run it once per config "
                          "(e.g. once per day of a walk-forward)")
    logging.basicConfig(level=os.environ.get("VOLREPLAY_LOG", "INFO"), stream=sys.stderr,
                        format="%(message)s")
    print(json.dumps(calibrate(compose_checked(overrides)), default=str))
    return 0
