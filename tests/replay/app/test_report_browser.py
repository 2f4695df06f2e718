"""The run report in a real browser: headless Chromium loads report.html from a file URL,
renders it, takes a screenshot, and must log no console errors.

`make test` installs Debian's chromium when it is missing (CI runs as root); elsewhere the
test skips and says why.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import replay
from replay.synth import SynthConfig, synthesize

CONF = Path(__file__).resolve().parents[3] / "conf"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-quic"]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium on this machine (make test installs Debian's chromium where it "
                "can: apt-get as root)")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    from omegaconf import OmegaConf

    tmp = tmp_path_factory.mktemp("browser")
    db = tmp / "s.duckdb"
    synthesize(db, SynthConfig(hours=0.5, seed=2, model="heston", scale="small"))
    cfg = {"data": {"db": str(db)}, "out_dir": str(tmp / "run"), "seed": 0}
    for group, option in (("calibration", "svi"), ("book", "fixed"), ("strategy", "delta_band")):
        node = OmegaConf.to_container(OmegaConf.load(CONF / group / f"{option}.yaml"))
        cfg[group] = node
    cfg["calibration"]["every"] = "60s"
    replay.run(cfg)
    return tmp / "run" / "report.html"


def test_report_renders_charts_without_console_errors(report, tmp_path):
    exe = _chromium()
    profile = tmp_path / "profile"
    shot = tmp_path / "report.png"
    url = report.resolve().as_uri()
    common = [exe, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
              "--window-size=1200,3000"]
    p = subprocess.run([*common, f"--screenshot={shot}", url], capture_output=True, text=True,
                       timeout=120)
    assert shot.exists() and shot.stat().st_size > 20_000, p.stderr[-2000:]
    dom = subprocess.run([*common, "--virtual-time-budget=5000", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    html = dom.stdout
    charts = re.findall(r'<img class="chart"[^>]*src="data:image/png;base64,', html)
    assert len(charts) >= 6, f"only {len(charts)} charts in the page"
    # the page's own script counted the charts the browser decoded
    rendered = re.search(r'data-charts-rendered="(\d+)"', html)
    assert rendered and int(rendered.group(1)) == len(charts), html[:300]
    for section in ("headline", "pnl", "attribution", "hedge", "execution", "calibration",
                    "smiles", "arbitrage"):
        assert f'id="{section}"' in html
    console = [line for line in p.stderr.splitlines() + dom.stderr.splitlines()
               if "CONSOLE" in line and ("ERROR" in line.upper() or "Uncaught" in line)]
    assert not console, console
