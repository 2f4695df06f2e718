"""``volreplay run``: the Hydra application.

Hydra parses the overrides, composes ``conf/config.yaml`` with the structured schemas of
:mod:`replay.config`, creates the run (or job) directory and calls :func:`task`.  Our part:

* a single run re-raises user mistakes as :class:`~replay.config.ConfigError` (shown by the CLI
  as one ``error:`` line, exit code 2);
* in a multirun a failing job writes ``error.json`` into its directory and the sweep goes on;
  after the last job :mod:`replay.sweep` aggregates ``summary.parquet`` and ``sweep.html``
  (a Hydra callback, so it also runs with other launchers and sweepers).
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def task(cfg) -> dict | None:  # noqa: ANN001 - a DictConfig
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from replay.backtest import run

    hc = HydraConfig.get()
    out = Path(hc.runtime.output_dir)
    OmegaConf.set_struct(cfg, False)
    cfg.out_dir = str(out)
    if hc.mode != RunMode.MULTIRUN:
        from replay.cli import _user_errors

        try:
            metrics = run(cfg)
        except _user_errors() as e:  # a mistake in the config or paths: no traceback
            print(f"volreplay: error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        report = out / "report.html"
        print(f"run: {out}\nreport: {report if report.exists() else 'not written (report.html=false)'}")
        return metrics
    try:
        return run(cfg)
    except Exception as e:  # keep sweeping: the summary records the failure
        (out / "error.json").write_text(json.dumps({
            "error": f"{type(e).__name__}: {e}", "overrides": list(hc.overrides.task),
            "traceback": traceback.format_exc()}, indent=2))
        print(f"job {hc.job.num} failed: {type(e).__name__}: {e}", file=sys.stderr)
        return None


def main(argv: list[str]) -> int:
    """Run Hydra on ``argv`` (the words after ``volreplay run``)."""
    import hydra

    from replay.config import register

    register()
    if not CONF_DIR.is_dir():
        from replay.cli import UserError

        raise UserError(f"config folder {CONF_DIR} not found (run from a checkout of volreplay)")
    wrapped = hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(task)
    saved = sys.argv
    sys.argv = ["volreplay run", *argv]
    try:
        wrapped()
    except SystemExit as e:  # Hydra exits 1 after printing a composition error
        return int(e.code or 0) if isinstance(e.code, int) else 1
    finally:
        sys.argv = saved
    return 0
