"""ROI cube helpers, the joint ROI model and per-frame ROI photometry against injected truth."""

import numpy as np
import pytest

from lightcurver_ops.errors import ConfigError
from lightcurver_ops.roi_cube import RoiCube, check_constraints, rotation_degrees, satisfies
from lightcurver_ops.roi_model import fit_roi_model
from lightcurver_ops.roi_photometry import fit_roi_frame

SIZE, SS = 20, 2
UP = SIZE * SS
LABELS = ("A", "B")
# a pair 2.5 px apart, closer than the seeing (FWHM 2.6 to 3.5 px)
SOURCES = np.array([[8.4, 10.6], [10.3, 9.0]])


def gaussian(x, y, sigma, grid):
    return np.exp(-((grid[1] - x) ** 2 + (grid[0] - y) ** 2) / (2 * sigma**2))


def render(fluxes, sigma, shift, galaxy):
    """An epoch rendered on a 5x finer grid: point sources and a Gaussian galaxy seen through a
    Gaussian PSF of ``sigma`` pixels, shifted by ``shift``."""
    fine = 5
    coords = (np.arange(SIZE * fine) + 0.5) / fine - 0.5
    grid = np.meshgrid(coords, coords, indexing="ij")
    blurred = np.hypot(2.5, sigma)
    image = galaxy * gaussian(9.5 + shift[0], 9.5 + shift[1], blurred, grid) / (2 * np.pi * blurred**2)
    for (x, y), flux in zip(SOURCES, fluxes, strict=True):
        image = image + flux * gaussian(x + shift[0], y + shift[1], sigma, grid) / (2 * np.pi * sigma**2)
    return image.reshape(SIZE, fine, SIZE, fine).mean(axis=(1, 3))


def narrow_psf(sigma):
    """STARRED's narrow PSF: the PSF deconvolved by its Gaussian of FWHM 2 sub-pixels."""
    narrow_sigma = np.sqrt((sigma * SS) ** 2 - (2 / 2.3548) ** 2)
    coords = np.arange(UP) - (UP - 1) / 2  # STARRED centres PSFs on the grid centre
    grid = np.meshgrid(coords, coords, indexing="ij")
    psf = gaussian(0.0, 0.0, narrow_sigma, grid)
    return psf / psf.sum()


def make_cube(rng, n_epochs, galaxy=0.0):
    fluxes = np.column_stack([rng.uniform(800, 1200, n_epochs), rng.uniform(500, 900, n_epochs)])
    sigmas = rng.uniform(1.1, 1.5, n_epochs)
    shifts = rng.uniform(-0.5, 0.5, (n_epochs, 2))
    shifts[0] = 0.0
    models = np.array([render(f, s, d, galaxy) for f, s, d in zip(fluxes, sigmas, shifts, strict=True)])
    noise = np.sqrt(4.0 + np.clip(models, 0, None) / 100.0)
    data = models + rng.normal(0, noise)
    centre = (SIZE - 1) / 2
    cube = RoiCube(
        frame_ids=np.arange(n_epochs),
        partition_keys=tuple(f"f{i}" for i in range(n_epochs)),
        mjd=np.arange(n_epochs, dtype=float),
        seeing=sigmas * 2.3548 * 0.2,
        sky_level=np.full(n_epochs, 30.0),
        pixel_scale=np.full(n_epochs, 0.2),
        angle_to_north=np.zeros(n_epochs),
        data=data,
        noise=noise,
        mask=np.zeros(data.shape, bool),
        psf=np.array([narrow_psf(s) for s in sigmas]),
        positions=centre + shifts,
        cd=np.tile(np.diag([-0.2, 0.2]) / 3600, (n_epochs, 1, 1)),
        wcs_headers=("",) * n_epochs,
        coefficient=np.ones(n_epochs),
        coefficient_uncertainty=np.zeros(n_epochs),
        zeropoint=np.full(n_epochs, 25.0),
        subsampling=SS,
    )
    return cube, fluxes, shifts


def test_constraints_are_whitelisted():
    allowed = ("seeing_arcseconds", "coefficient")
    assert check_constraints("key", {"seeing_arcseconds": [0, 2]}, allowed) == {
        "seeing_arcseconds": (0.0, 2.0)
    }
    with pytest.raises(ConfigError, match="unknown column 'x; DROP TABLE'"):
        check_constraints("constraints_on_frame_columns_for_roi", {"x; DROP TABLE": [0, 1]}, allowed)
    with pytest.raises(ConfigError, match="exceeds"):
        check_constraints("key", {"coefficient": [2, 1]}, allowed)
    assert satisfies({"coefficient": 1.0}, {"coefficient": (0.5, 2)})
    assert not satisfies({"coefficient": None}, {"coefficient": (0.5, 2)})


def test_rotation_between_cutouts():
    theta = np.radians(3.0)
    cd = np.diag([-1.0, 1.0]) / 3600
    rotated = cd @ np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    assert rotation_degrees(cd, cd) == pytest.approx(0.0)
    assert abs(rotation_degrees(rotated, cd)) == pytest.approx(3.0, abs=1e-6)


REGULARIZATION = {
    "regularization_strength_scales": 1.0,
    "regularization_strength_hf": 1.0,
    "regularization_strength_positivity": 100.0,
    "regularization_strength_pts_source": 0.0,
    "regularization_scatter_fluxes_pre_optim": 0.0,
    "regularization_scatter_fluxes_main_optim": 0.0,
}


def fit_model(cube, rng, **kwargs):
    sources = {label: tuple(SOURCES[i] + rng.normal(0, 0.1, 2)) for i, label in enumerate(LABELS)}
    return fit_roi_model(
        cube, sources, translations_iters=50, all_iters=1000, regularization=REGULARIZATION, **kwargs
    )


def frame_fits(cube, model):
    return [
        fit_roi_frame(
            cube.data[epoch],
            cube.noise[epoch],
            cube.mask[epoch],
            cube.psf[epoch],
            model.background,
            model.point_source_offsets(),
            0.0,
            model.translations[epoch],
        )
        for epoch in range(len(cube.data))
    ]


def test_joint_model_and_frame_fits_recover_a_blended_pair():
    rng = np.random.default_rng(4)
    cube, fluxes, shifts = make_cube(rng, 8)
    model = fit_model(cube, rng)
    assert np.max(np.abs(model.positions - SOURCES)) < 0.05
    # each epoch's translation rests on two sources of S/N ~100: about 0.03 px per axis
    assert np.max(np.abs(model.translations[1:] - model.translations[0] - shifts[1:])) < 0.1
    fits = frame_fits(cube, model)
    # the joint fluxes within 3 sigma of the injected ones (sigma: the frame fits' photon errors, 2 %
    # for A and 3 % for B, the fainter of the blended pair)
    errors = np.array([fit.flux_uncertainties for fit in fits])
    assert np.max(np.abs(model.fluxes - fluxes) / errors) < 3
    pulls = np.array([(fit.fluxes - f) / fit.flux_uncertainties for fit, f in zip(fits, fluxes, strict=True)])
    assert np.all(np.abs(pulls.mean(axis=0)) < 1.2), pulls
    assert 0.5 < np.std(pulls) < 1.5
    assert 0.8 < np.median([fit.reduced_chi2 for fit in fits]) < 1.3
    for fit in fits:  # the blended pair's errors are anti-correlated
        assert fit.covariance[0, 1] / np.prod(fit.flux_uncertainties) < -0.1


def test_a_galaxy_under_the_images_goes_to_the_background():
    rng = np.random.default_rng(5)
    cube, fluxes, _ = make_cube(rng, 8, galaxy=400.0)
    model = fit_model(cube, rng)
    assert model.background.sum() > 0.5 * 400.0 / SS**2
    assert 0.8 < np.median(model.reduced_chi2) < 1.3
    fits = frame_fits(cube, model)
    measured = np.array([fit.fluxes for fit in fits])
    # the light curves follow the injected ones up to one scale per image
    scale = np.median(measured / fluxes, axis=0)
    assert np.max(np.abs(measured / (fluxes * scale) - 1)) < 0.08  # B: 3 % errors, 8 epochs


def test_fit_roi_frame_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        fit_roi_frame(
            np.zeros((4, 4)),
            np.ones((5, 5)),
            np.zeros((4, 4), bool),
            np.ones((8, 8)),
            np.zeros((8, 8)),
            np.zeros((1, 2)),
            0.0,
            np.zeros(2),
        )
