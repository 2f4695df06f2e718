"""`volreplay bench`: one JSON object per case, each case in its own process."""

from __future__ import annotations

import json
import subprocess
import sys


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "replay", "bench", "--quick", *args],
                          capture_output=True, text=True, timeout=300)


def test_bench_prints_one_json_object_per_case():
    p = _bench("--case", "svi_slice", "--case", "synth")
    assert p.returncode == 0, p.stderr[-2000:]
    rows = [json.loads(line) for line in p.stdout.strip().splitlines()]
    assert [r["case"] for r in rows] == ["synth", "svi_slice"]
    synth = rows[0]
    assert synth["events"] > 0 and synth["events_per_second"] > 0


def test_unknown_case_is_a_user_error():
    p = _bench("--case", "nope")
    assert p.returncode == 2 and "unknown bench case" in p.stderr and "Traceback" not in p.stderr
