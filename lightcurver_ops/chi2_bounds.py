"""Accepted range of reduced chi2 values (lightcurver's ``psf_fit_exclude_strategy`` and
``fluxes_fit_exclude_strategy``)."""

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from astropy.stats import sigma_clipped_stats

MIN_VALUES_TO_CLIP = 10


def chi2_bounds(strategy: Mapping[str, Any] | None, values: Iterable[float]) -> tuple[float, float]:
    """(low, high) bounds of acceptable chi2.

    Parameters
    ----------
    strategy : mapping or None
        None: no bounds; ``{sigma_clip: k}``: clipped median ± k clipped standard deviations of
        ``values``; ``{threshold: [low, high]}``: as given.
    values : iterable of float
        The chi2 values the sigma-clipping is computed on (every frame of the star set); with fewer
        than ``MIN_VALUES_TO_CLIP`` finite values there are no bounds (a scatter of a handful of
        values would reject good fits).
    """
    if strategy is None:
        return -math.inf, math.inf
    if "threshold" in strategy:
        low, high = strategy["threshold"]
        return float(low), float(high)
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if finite.size < MIN_VALUES_TO_CLIP:
        return -math.inf, math.inf
    k = float(strategy["sigma_clip"])
    _, median, std = sigma_clipped_stats(finite, sigma=k)
    return float(median - k * std), float(median + k * std)
