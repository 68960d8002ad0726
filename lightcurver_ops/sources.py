"""Source extraction with sep: positions, fluxes (e-/s), moment FWHM and ellipticity."""

import numpy as np
import sep
from astropy.table import Table

from lightcurver_ops._checks import check_positive
from lightcurver_ops._sep import sep_extract, sep_ready


def extract_sources(
    image_sub: np.ndarray, rms: float, exptime: float, threshold: float = 2.0, min_area: int = 20
) -> Table:
    """Detect sources with sep on a sky-subtracted image.

    Parameters
    ----------
    image_sub : ndarray, shape (ny, nx)
        Sky-subtracted image, e-/s. NaN pixels are masked.
    rms : float
        Sky noise, e-/s.
    exptime : float
        Exposure time, s, for the Poisson part of the variance
        ``((rms t)^2 + |image t|) / t^2`` in (e-/s)^2.
    threshold : float
        Detection threshold in units of the per-pixel noise.
    min_area : int
        Minimum number of pixels of a source.

    Returns
    -------
    astropy.table.Table
        One row per source, brightest ``flux`` (e-/s) first, with every sep column plus
        ``xcentroid``, ``ycentroid`` (pixels), ``FWHM`` = 2 sqrt(ln2 (a^2 + b^2)) (pixels, moment-based)
        and ``ellipticity`` = 1 - b/a. Elongated outliers (a/b > median + 3 std of a/b) are dropped.

    Raises
    ------
    ValueError
        If an argument is out of range.
    RuntimeError
        If sep fails.
    """
    check_positive("rms", rms)
    check_positive("exptime", exptime)
    check_positive("threshold", threshold)
    if isinstance(min_area, bool) or not isinstance(min_area, int | np.integer) or min_area < 1:
        raise ValueError(f"min_area must be a positive integer, got {min_area!r}")
    data, nan_mask = sep_ready(image_sub)
    variance = np.ascontiguousarray(rms**2 + np.abs(data) / exptime)
    objects = sep_extract(data, thresh=float(threshold), var=variance, mask=nan_mask, minarea=int(min_area))
    sources = Table(objects)
    sources["xcentroid"] = sources["x"]
    sources["ycentroid"] = sources["y"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(sources["b"] > 0, sources["a"] / sources["b"], np.inf)
    keep = np.isfinite(ratio)
    if keep.any():
        # Drop only ratios strictly above the limit (lightcurver: >=), so that identical ratios
        # (std 0, e.g. a single source) are not all dropped.
        keep &= ratio <= np.median(ratio[keep]) + 3 * np.std(ratio[keep])
    sources = sources[keep]
    sources["FWHM"] = 2 * np.sqrt(np.log(2) * (sources["a"] ** 2 + sources["b"] ** 2))
    sources["ellipticity"] = 1 - sources["b"] / sources["a"]
    sources.sort("flux", reverse=True)
    return sources


def add_windowed_positions(image_sub: np.ndarray, sources: Table, seeing_pixels: float) -> None:
    """Add ``xwin``, ``ywin``: sep's windowed centroids (pixels), far less noisy than ``x``, ``y``.

    The Gaussian window has sigma = 2 FWHM / 2.3548 (SExtractor's choice); where the seeing is
    unknown or sep flags a position, the isophotal ``x``, ``y`` are kept.
    """
    x, y = np.asarray(sources["x"], dtype=float), np.asarray(sources["y"], dtype=float)
    if len(sources) and np.isfinite(seeing_pixels) and seeing_pixels > 0:
        data, _ = sep_ready(image_sub)
        xwin, ywin, flags = sep.winpos(data, x, y, 2.0 * seeing_pixels / 2.3548)
        good = (flags == 0) & np.isfinite(xwin) & np.isfinite(ywin)
        x, y = np.where(good, xwin, x), np.where(good, ywin, y)
    sources["xwin"], sources["ywin"] = x, y
