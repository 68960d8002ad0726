"""Baseline and coefficients against injected transparencies, with a variable star and outliers."""

import numpy as np
import pytest

from lightcurver_ops.normalization import fit_baseline, frame_coefficient


def simulated(rng, n_stars=10, n_frames=30, variable=True):
    true_flux = rng.uniform(2e3, 5e4, n_stars)
    transparency = rng.uniform(0.6, 1.0, n_frames)
    model = true_flux[:, None] * transparency[None, :]
    if variable:
        model[3] *= 1 + 0.1 * np.sin(np.arange(n_frames) / 3)  # star 3 varies by 10 %
    sigma = np.sqrt(model / 300 + 20**2)
    flux = model + rng.normal(0, sigma)
    return flux, sigma, true_flux, transparency


def coefficients(flux, sigma, baseline):
    return np.array(
        [
            frame_coefficient(
                flux[:, f], sigma[:, f], baseline.reference_flux, baseline.reference_flux_uncertainty
            ).value
            for f in range(flux.shape[1])
        ]
    )


def test_variable_star_rejected_and_transparency_recovered():
    rng = np.random.default_rng(2)
    flux, sigma, _, transparency = simulated(rng)
    flux[5, 7] *= 1.5  # one bad measurement
    baseline = fit_baseline(flux, sigma)
    assert baseline.rejected.tolist() == [i == 3 for i in range(10)]
    assert baseline.n_clipped[5] == 1
    assert baseline.frame_scale[baseline.reference_frame] == 1.0
    coefficient = coefficients(flux, sigma, baseline)
    ratio = coefficient / transparency
    assert np.std(np.log(ratio)) * 1.0857 * 1000 < 2.0  # mmag after one global scale
    # constant stars divided by the coefficients scatter like their photon noise
    constant = [s for s in range(10) if s != 3]
    normalised = flux[constant] / coefficient[None, :]
    pulls = (normalised - baseline.reference_flux[constant, None]) / (sigma[constant] / coefficient[None, :])
    pulls[constant.index(5), 7] = 0.0  # the injected outlier
    assert np.std(pulls) < 1.2


def test_coefficient_uncertainty_is_the_error_of_the_mean():
    rng = np.random.default_rng(4)
    flux, sigma, _, transparency = simulated(rng, variable=False, n_frames=200)
    baseline = fit_baseline(flux, sigma)
    results = [
        frame_coefficient(
            flux[:, f], sigma[:, f], baseline.reference_flux, baseline.reference_flux_uncertainty
        )
        for f in range(200)
    ]
    values = np.array([r.value for r in results])
    errors = np.array([r.uncertainty for r in results])
    scale = np.median(values / transparency)
    pulls = (values - scale * transparency) / errors
    assert 0.8 < np.std(pulls) < 1.3


def test_a_new_frame_gets_the_coefficient_of_a_refit_from_scratch():
    rng = np.random.default_rng(8)
    flux, sigma, _, _ = simulated(rng, n_frames=13)
    old = fit_baseline(flux[:, :12], sigma[:, :12])
    new = fit_baseline(flux, sigma)
    incremental = frame_coefficient(
        flux[:, 12], sigma[:, 12], old.reference_flux, old.reference_flux_uncertainty
    )
    scratch = frame_coefficient(flux[:, 12], sigma[:, 12], new.reference_flux, new.reference_flux_uncertainty)
    assert abs(2.5 * np.log10(incremental.value / scratch.value)) < 1e-3


def test_reference_frame_follows_the_frame_order_and_single_star_frames_work():
    rng = np.random.default_rng(9)
    flux, sigma, _, _ = simulated(rng, variable=False, n_frames=6)
    baseline = fit_baseline(flux, sigma, frame_order=np.array([5.0, 4, 3, 2, 1, 0]))
    assert baseline.reference_frame == 5
    only = np.full(10, np.nan)
    only[0] = flux[0, 2]
    one = frame_coefficient(only, sigma[:, 2], baseline.reference_flux, baseline.reference_flux_uncertainty)
    assert one.used.sum() == 1 and np.isnan(one.reduced_chi2)
    assert one.uncertainty == pytest.approx(sigma[0, 2] / baseline.reference_flux[0], rel=0.1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="2 frames"):
        fit_baseline(np.ones((3, 1)), np.ones((3, 1)))
    with pytest.raises(ValueError, match="reference flux"):
        frame_coefficient(np.ones(2), np.ones(2), np.full(2, np.nan), np.ones(2))
