"""Aperture correction: the flux a PSF model normalised on its stamp misses.

A PSF model is normalised to 1 over its stamp and its regularised pixel grid does not follow faint
extended wings, so PSF-fitted fluxes miss a few per cent of the light (more in poor seeing).
Relative photometry does not care (every star and the ROI lose the same share in a frame), but
absolute zero points do. The correction is the median over bright stars of the flux in a circular
aperture of 3 FWHM (sky-subtracted frame) over the PSF flux, extrapolated to infinity with the
fitted Moffat's curve of growth: a circular Moffat of index ``beta`` holds the fraction
``(1 + r^2 / alpha^2)^(1 - beta)`` of its light beyond radius ``r``. Larger apertures are dominated by
sky-subtraction errors and neighbours for all but the brightest stars.
"""

from dataclasses import dataclass

import numpy as np
import sep

from lightcurver_ops._sep import sep_ready

APERTURE_RADIUS_FWHM = 3.0
"""Radius of the total-flux aperture in units of the frame's seeing FWHM."""
_MAX_RATIO_ERROR = 0.02  # stars whose aperture ratio is noisier than this are not used
_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class ApertureCorrection:
    """Ratio of total to PSF flux.

    Attributes
    ----------
    value : float
        Total over PSF flux (about 1.01 to 1.08); multiply PSF fluxes by it to get total fluxes.
    uncertainty : float
        Error of the median aperture ratio, ``1.2533 * 1.4826 * MAD / sqrt(n)`` (NaN for one star).
    beyond_aperture : float
        Fraction of the light beyond the aperture by the Moffat curve of growth.
    n_stars : int
        Stars used.
    """

    value: float
    uncertainty: float
    n_stars: int
    beyond_aperture: float


def moffat_fraction_beyond(radius: float, fwhm: float, beta: float) -> float:
    """Fraction of a circular Moffat's light beyond ``radius``.

    Parameters
    ----------
    radius, fwhm : float
        Pixels.
    beta : float
        Moffat index, > 1 (a finite total flux).
    """
    if not beta > 1 or not fwhm > 0 or radius < 0:
        raise ValueError(f"need beta > 1, fwhm > 0 and radius >= 0, got {beta}, {fwhm}, {radius}")
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    return float((1.0 + (radius / alpha) ** 2) ** (1.0 - beta))


def aperture_correction(
    image: np.ndarray,
    rms: float,
    positions: np.ndarray,
    psf_fluxes: np.ndarray,
    moffat_fwhm: float,
    moffat_beta: float,
) -> ApertureCorrection:
    """Aperture correction of a frame from its stars.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Sky-subtracted frame, e-/s; NaN pixels count as 0.
    rms : float
        Sky noise per pixel, e-/s.
    positions : ndarray, shape (n, 2)
        ``(x, y)`` of the stars, 0-based pixels.
    psf_fluxes : ndarray, shape (n,)
        Their PSF fluxes, e-/s.
    moffat_fwhm, moffat_beta : float
        The frame's fitted Moffat (FWHM in pixels): sets the aperture radius, 3 FWHM, and the
        extrapolation beyond it.

    Raises
    ------
    ValueError
        If no star has a usable aperture flux (all off the frame or too faint).
    """
    positions = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
    psf_fluxes = np.asarray(psf_fluxes, dtype=np.float64)
    if len(positions) != len(psf_fluxes):
        raise ValueError(f"{len(positions)} positions for {len(psf_fluxes)} fluxes")
    if not rms > 0:
        raise ValueError(f"rms must be positive, got {rms}")
    radius = APERTURE_RADIUS_FWHM * moffat_fwhm
    beyond = moffat_fraction_beyond(radius, moffat_fwhm, moffat_beta)
    data, nan_mask = sep_ready(image)
    ny, nx = data.shape
    x, y = positions[:, 0], positions[:, 1]
    inside = (x - radius >= 0) & (y - radius >= 0) & (x + radius <= nx - 1) & (y + radius <= ny - 1)
    inside &= psf_fluxes > 0
    if not inside.any():
        raise ValueError("no star has its whole aperture on the frame")
    flux, error, _ = sep.sum_circle(data, x[inside], y[inside], radius, err=float(rms), mask=nan_mask)
    ratio = flux / psf_fluxes[inside]
    ratio_error = error / psf_fluxes[inside]
    good = ratio_error < _MAX_RATIO_ERROR
    if not good.any():
        raise ValueError(f"no star is bright enough for an aperture correction within {_MAX_RATIO_ERROR:.0%}")
    ratio = ratio[good]
    value = float(np.median(ratio))
    n = len(ratio)
    spread = _MAD_TO_SIGMA * float(np.median(np.abs(ratio - value)))
    uncertainty = 1.2533 * spread / np.sqrt(n) if n > 1 else float("nan")
    return ApertureCorrection(value / (1.0 - beyond), float(uncertainty), n, beyond)
