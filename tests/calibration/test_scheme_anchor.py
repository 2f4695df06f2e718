"""The warm start and Tikhonov anchor of a refit are the expiry's previous parameters re-dated
to its time to expiry now: the same smile in vol."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from calibration.scheme import CalibrationScheme, SchemeConfig
from calibration.surface import rescaled
from tests.calibration.svi_chain import DAY_NS, T0_NS, svi_chain


@pytest.mark.parametrize("model", ["svi", "essvi"])
@pytest.mark.parametrize("lam", [1.0, 10.0])
def test_an_unchanged_vol_smile_a_day_later_is_not_pulled_by_its_anchor(model, lam):
    """Every quote requoted six hours later off the same vol smiles, so every expiry is
    refitted.  Anchored to the parameters in total variance as fitted six hours before, the
    1-day expiry's ATM vol rose 0.30 vol points (SVI, lam 1; 0.70 at lam 10) and eSSVI's
    fell 0.27 (0.67), and SVI's in-sample RMSE grew from 0.0006 to 0.12 (0.30)."""
    scheme = CalibrationScheme(SchemeConfig(model=model, lam=lam))
    first = scheme.refit(svi_chain(T0_NS))
    second = scheme.refit(svi_chain(T0_NS + DAY_NS // 4, dict.fromkeys(range(150), 0.0)))
    assert not second.carried
    atm = np.zeros(1)
    moved = [100 * (s.iv(atm)[0] - first.fitted.slice_for(s.expiry_ns).iv(atm)[0])
             for s in second.fitted.slices]
    assert len(moved) == 3 and np.max(np.abs(moved)) < 0.02
    if model == "svi":
        assert second.quality.rmse_vol_pts < 0.01


def test_rescaled_scales_the_parameters_total_variance_is_proportional_to():
    assert rescaled("svi", (0.01, 0.1, -0.3, 0.02, 0.2), 0.5) == (0.005, 0.05, -0.3, 0.02, 0.2)
    assert rescaled("essvi", (0.04, -0.3, 0.2), 2.0) == (0.08, -0.3, 0.4)
    assert rescaled("sabr", (0.5, 0.7, -0.2, 0.8), 2.0) == (0.5, 0.7, -0.2, 0.8)


def test_the_anchor_is_re_dated_with_its_time_to_expiry_across_a_resume():
    """The time to expiry of the previous parameters is part of the scheme's state."""
    a = CalibrationScheme(SchemeConfig(lam=1.0))
    a.refit(svi_chain(T0_NS))
    b = CalibrationScheme(SchemeConfig(lam=1.0))
    b.load_state_dict(a.state_dict())
    assert b.prev_t == a.prev_t and len(b.prev_t) == 3
    later = svi_chain(T0_NS + DAY_NS, dict.fromkeys(range(150), 0.0))
    ra, rb = a.refit(later), b.refit(later)
    assert_allclose([p for e in sorted(ra.params) for p in ra.params[e]],
                    [p for e in sorted(rb.params) for p in rb.params[e]], rtol=0, atol=0)
