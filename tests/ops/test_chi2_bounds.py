"""chi2 acceptance bounds per lightcurver's exclusion strategies."""

import math

import numpy as np
import pytest

from lightcurver_ops.chi2_bounds import chi2_bounds


def test_sigma_clip_rejects_an_outlier_and_keeps_the_bulk():
    values = [*np.random.default_rng(1).normal(1.0, 0.05, 200), 5.0]
    low, high = chi2_bounds({"sigma_clip": 4}, values)
    assert low < 0.9 and 1.1 < high < 5.0


def test_threshold_and_none():
    assert chi2_bounds({"threshold": [0.5, 2]}, [10.0]) == (0.5, 2.0)
    assert chi2_bounds(None, [1.0]) == (-math.inf, math.inf)
    assert chi2_bounds({"sigma_clip": 3}, [1.0, 2.0, 0.9, 1.1]) == (-math.inf, math.inf)  # too few to clip


@pytest.mark.parametrize(
    "values", [[1.0, None, float("nan"), 1.1, 0.9, 1.0, 1.05, 0.95, 1.0, 1.02, 0.98, 1.01]]
)
def test_missing_values_are_ignored(values):
    low, high = chi2_bounds({"sigma_clip": 3}, values)
    assert low < 1.0 < high
