"""The calibration package's import-time settings."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO


def test_importing_calibration_makes_openmp_threads_wait_passively():
    """OpenMP's spinning threads made two builds side by side 2.6x slower; a value the user
    set is kept."""
    code = "import os, calibration; print(os.environ['OMP_WAIT_POLICY'])"
    for env, want in (({}, "PASSIVE"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE")):
        base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                             text=True, env={**base, **env}, check=True).stdout.split()
        assert out[-1] == want
