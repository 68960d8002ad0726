"""Aperture correction of PSF fluxes against a Moffat star field with known total fluxes."""

import math

import numpy as np
import pytest

from lightcurver_ops.aperture import aperture_correction, moffat_fraction_beyond


def moffat_image(positions, fluxes, fwhm, beta, shape=(200, 200), oversample=5):
    alpha = fwhm / (2 * math.sqrt(2 ** (1 / beta) - 1))
    ny, nx = shape
    fine = (np.arange(nx * oversample) + 0.5) / oversample - 0.5
    image = np.zeros(shape)
    for (x, y), flux in zip(positions, fluxes, strict=True):
        r2 = (fine[None, :] - x) ** 2 + (fine[:, None] - y) ** 2
        profile = (beta - 1) / (math.pi * alpha**2) * (1 + r2 / alpha**2) ** (-beta) / oversample**2
        image += flux * profile.reshape(ny, oversample, nx, oversample).sum(axis=(1, 3))
    return image


def test_fraction_beyond_matches_numerical_integration():
    fwhm, beta, radius = 4.0, 2.8, 9.0
    image = moffat_image([(99.5, 99.5)], [1.0], fwhm, beta, oversample=9)
    yy, xx = np.mgrid[:200, :200]
    inside = image[np.hypot(xx - 99.5, yy - 99.5) <= radius].sum()
    assert 1 - inside == pytest.approx(moffat_fraction_beyond(radius, fwhm, beta), abs=2e-3)
    with pytest.raises(ValueError, match="beta > 1"):
        moffat_fraction_beyond(5.0, 3.0, 1.0)


def test_psf_fluxes_missing_the_wings_are_corrected_to_total():
    rng = np.random.default_rng(0)
    positions = rng.uniform(30, 170, size=(6, 2))
    fluxes = rng.uniform(2e4, 5e4, 6)
    fwhm, beta = 4.5, 2.6
    image = moffat_image(positions, fluxes, fwhm, beta) + rng.normal(0, 0.5, (200, 200))
    psf_fluxes = fluxes * 0.95  # a stamp-normalised model that misses 5 % of the light
    correction = aperture_correction(image, 0.5, positions, psf_fluxes, fwhm, beta)
    assert correction.value * 0.95 == pytest.approx(1.0, abs=0.005)
    assert correction.n_stars == 6 and 0 < correction.beyond_aperture < 0.05


def test_stars_off_the_frame_or_too_faint_are_named():
    image = np.zeros((50, 50))
    with pytest.raises(ValueError, match="whole aperture"):
        aperture_correction(image, 1.0, np.array([[2.0, 2.0]]), np.array([1e4]), 4.0, 3.0)
    with pytest.raises(ValueError, match="bright enough"):
        aperture_correction(image, 1.0, np.array([[25.0, 25.0]]), np.array([10.0]), 4.0, 3.0)
