"""PSF photometry: fluxes, positions and Fisher uncertainties against injected truth."""

import numpy as np
import pytest

from lightcurver_ops.cutouts import Stamp
from lightcurver_ops.photometry import measure_fluxes, prepare_photometry_stars, psf_centroid

SIZE, SS, SIGMA = 21, 2, 1.6


def gaussian_grid(x: float, y: float) -> np.ndarray:
    """A circular Gaussian at data-pixel position (x, y), sampled at the sub-pixel centres."""
    grid = (np.arange(SIZE * SS) - (SS - 1) / 2) / SS
    gx = np.exp(-0.5 * ((grid - x) / SIGMA) ** 2)
    gy = np.exp(-0.5 * ((grid - y) / SIGMA) ** 2)
    return np.outer(gy, gx) / (2 * np.pi * SIGMA**2 * SS**2)


def pixel_image(x: float, y: float) -> np.ndarray:
    return gaussian_grid(x, y).reshape(SIZE, SS, SIZE, SS).sum(axis=(1, 3))


def make_stamps(rng, fluxes, background=0.0, sky_rms=2.0):
    stamps, truth = {}, {}
    for index, flux in enumerate(fluxes):
        x, y = 10 + rng.uniform(-0.5, 0.5), 10 + rng.uniform(-0.5, 0.5)
        model = flux * pixel_image(x, y) + background
        noise = np.sqrt(sky_rms**2 + np.clip(model, 0, None) / 300.0)
        data = model + rng.normal(0, noise)
        name = f"star{index}"
        stamps[name] = Stamp(
            data.astype(np.float32),
            noise.astype(np.float32),
            np.zeros((SIZE, SIZE), bool),
            "",
            (100 * index, 50),
            (100 * index + x, 50 + y),
        )
        truth[name] = (flux, x, y)
    return stamps, truth


def test_psf_centroid_is_in_data_pixels():
    assert psf_centroid(gaussian_grid(10.0, 10.0), SS) == pytest.approx((10.0, 10.0), abs=1e-6)
    assert psf_centroid(gaussian_grid(9.3, 10.6), SS) == pytest.approx((9.3, 10.6), abs=1e-4)


@pytest.mark.parametrize("fit_background", [False, True])
def test_fluxes_positions_and_pulls_match_truth(fit_background):
    rng = np.random.default_rng(3)
    pulls, positions = [], []
    background = 1.5 if fit_background else 0.0
    frames, truths = [], []
    for _ in range(12):
        stamps, truth = make_stamps(rng, rng.uniform(2e3, 2e4, size=8), background=background)
        frames.append(prepare_photometry_stars(stamps, gaussian_grid(10.0, 10.0), SS))
        truths.append(truth)
    results = measure_fluxes(frames, fit_background=fit_background)
    chi2 = []
    for stars, truth in zip(results, truths, strict=True):
        for star in stars:
            flux, x, y = truth[star.star_id]
            pulls.append((star.flux - flux) / star.flux_uncertainty)
            origin = int(star.star_id[4:]) * 100, 50
            positions.append(np.hypot(star.offset[0] - origin[0] - x, star.offset[1] - origin[1] - y))
            chi2.append(star.reduced_chi2)
            assert star.converged
            if fit_background:
                assert star.background == pytest.approx(background, abs=0.3)
    pulls = np.asarray(pulls)
    assert abs(pulls.mean()) < 0.3
    assert 0.8 < pulls.std() < 1.2
    assert np.max(positions) < 0.05
    assert 0.85 < np.mean(chi2) < 1.15


def test_masked_pixels_have_no_weight_and_cores_are_protected():
    rng = np.random.default_rng(5)
    stamps, _ = make_stamps(rng, [1e4, 1e4])
    clean = measure_fluxes([prepare_photometry_stars(stamps, gaussian_grid(10, 10), SS)])[0]
    # a cosmic ray far from the core, masked: the flux error barely changes (lightcurver: x1000)
    hit = stamps["star0"]
    data, mask = hit.data.copy(), hit.mask.copy()
    data[2, 2] += 5e3
    mask[2, 2] = True
    stamps["star0"] = Stamp(data, hit.noise, mask, "", hit.origin, hit.position)
    masked = measure_fluxes([prepare_photometry_stars(stamps, gaussian_grid(10, 10), SS)])[0]
    assert masked[0].flux_uncertainty == pytest.approx(clean[0].flux_uncertainty, rel=0.01)
    assert masked[0].flux == pytest.approx(clean[0].flux, rel=0.002)
    # a masked pixel on the core: the star is not measured in this frame, with the reason
    x, y = (round(v - o) for v, o in zip(hit.position, hit.origin, strict=True))
    mask = hit.mask.copy()
    mask[y, x] = True
    stamps["star0"] = Stamp(hit.data, hit.noise, mask, "", hit.origin, hit.position)
    prepared = prepare_photometry_stars(stamps, gaussian_grid(10, 10), SS)
    assert prepared.star_ids == ("star1",)
    assert "core" in prepared.skipped["star0"]


def test_bad_arguments_are_named():
    rng = np.random.default_rng(1)
    stamps, _ = make_stamps(rng, [1e4])
    with pytest.raises(ValueError, match="does not match"):
        prepare_photometry_stars(stamps, np.ones((10, 10)), SS)
    assert measure_fluxes([]) == []
