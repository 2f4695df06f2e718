"""End to end on the synthetic market's smile regimes: the SSR measured from the calibrated
surfaces of a calibration-only run recovers the regime's configured SSR."""

from __future__ import annotations

import pytest

import replay
from replay.synth import SynthConfig, synthesize
from replay.synth.chain import ChainParams
from tests.helpers import conf_group

REGIMES = (0.0, 2.0)  # sticky moneyness and local-vol-like, on the same path
#: the buckets compared (90d+ has two expiries and too few pairs in an hour to say much)
BUCKETS = ("0-1d", "1-7d", "7-30d", "30-90d")


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> dict[float, dict]:
    """``metrics.json``'s ``dynamics`` block of each regime: one hour of Heston (seed 11),
    SVI refit every 30 s."""
    out = {}
    for r in REGIMES:
        tmp = tmp_path_factory.mktemp(f"regime{r:g}")
        db = tmp / "s.duckdb"
        synthesize(db, SynthConfig(hours=1.0, seed=11, model="heston", scale="small",
                                   chain=ChainParams(smile_ssr=r)))
        m = replay.run({"data": {"db": str(db)}, "seed": 0, "out_dir": str(tmp / "run"),
                        "report": {"html": False},
                        "calibration": {**conf_group("calibration", "svi"), "every": "30s"},
                        "book": conf_group("book", "none"),
                        "strategy": conf_group("strategy", "none")})
        out[r] = m["dynamics"]
    return out


@pytest.mark.parametrize("regime", REGIMES)
def test_the_measured_ssr_recovers_the_regimes(measured, regime):
    """Each bucket's SSR is within three of its (Driscoll-Kraay) standard errors of the
    configured one, and those errors are small enough for that to mean something."""
    d = measured[regime]
    for b in BUCKETS:
        r, se = d["ssr"][b], d["ssr_se"][b]
        assert se < 0.8, (b, se)
        assert abs(r - regime) < 3 * se, (b, r, se)


def test_the_regimes_differ_by_their_ssr(measured):
    """Same path in both regimes: the variance's moves and the path's chance correlations are
    common, so the difference of the measured SSRs is the configured difference, closely
    (measured: 1.72, 1.84, 1.97, 2.06 for a difference of 2)."""
    lo, hi = (measured[r]["ssr"] for r in REGIMES)
    for b in BUCKETS:
        assert abs((hi[b] - lo[b]) - (REGIMES[1] - REGIMES[0])) < 0.4, (b, hi[b], lo[b])
