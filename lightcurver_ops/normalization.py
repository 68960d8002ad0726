"""Relative flux calibration: reference fluxes of the stars (the baseline) and each frame's coefficient.

The star fluxes ``F[s, f]`` of constant stars follow ``F = S_s * T_f``: a reference flux per star
times a scale per frame (transparency, exposure, the share of the flux the frame's PSF captures).

- :func:`fit_baseline` solves the bilinear model over all accepted frames by alternating weighted
  least squares (weights ``1/sigma^2``), rejecting single measurements more than ``point_clip``
  sigma off and whole stars whose reduced chi2 is an outlier among the stars (a variable star, a
  galaxy whose PSF flux follows the seeing); the gauge puts the reference frame's scale at 1.
- :func:`frame_coefficient` then gives any frame's ``T_f`` from its own stars alone: the weighted,
  sigma-clipped mean of ``F / S`` with the error of that mean, so a new frame needs only its own
  fluxes and a fixed baseline.

lightcurver used weights ``1/sigma``, no outlier rejection, and the scatter across stars as the
uncertainty (spec §6.9); those are fixed here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

_POLISH_ITERATIONS = 10
_ALS_ITERATIONS = 200
_ALS_TOLERANCE = 1e-12
_CLIP_ROUNDS = 10
_MAD_TO_SIGMA = 1.4826
_CHI2_1_MEDIAN = 0.4549  # median of a chi2 variable with one degree of freedom
_ROBUST_CHI2_SPREAD = 1.6  # spread of the median-based chi2 relative to the mean-based one


@dataclass(frozen=True)
class Baseline:
    """Reference fluxes of the stars from many frames.

    Attributes
    ----------
    reference_flux : ndarray, shape (S,)
        ``S_s``, e-/s on the reference frame's scale; NaN for a rejected star.
    reference_flux_uncertainty : ndarray, shape (S,)
        1-sigma uncertainty of ``S_s`` (errors scaled by ``sqrt(max(1, chi2))`` of the star), e-/s.
    frame_scale : ndarray, shape (F,)
        ``T_f`` of each frame (1 for the reference frame); NaN for a frame with no accepted star.
    reduced_chi2 : ndarray, shape (S,)
        chi2 per degree of freedom of each star's accepted measurements about the model.
    n_frames : ndarray of int, shape (S,)
        Accepted measurements of each star.
    n_clipped : ndarray of int, shape (S,)
        Measurements of each star rejected as outliers.
    rejected : ndarray of bool, shape (S,)
        Stars left out entirely.
    reference_frame : int
        Index of the frame whose scale is 1.
    chi2_threshold : float
        A star with a reduced chi2 above this value is rejected.
    """

    reference_flux: np.ndarray
    reference_flux_uncertainty: np.ndarray
    frame_scale: np.ndarray
    reduced_chi2: np.ndarray
    n_frames: np.ndarray
    n_clipped: np.ndarray
    rejected: np.ndarray
    reference_frame: int
    chi2_threshold: float


def _rank_one(flux: np.ndarray, weight: np.ndarray, stars: np.ndarray, scales: np.ndarray):
    """Weighted least squares of ``flux ~ stars[:, None] * scales[None, :]`` by alternation."""
    for _ in range(_ALS_ITERATIONS):
        previous = scales
        with np.errstate(invalid="ignore", divide="ignore"):
            stars = (weight * flux * scales).sum(axis=1) / (weight * scales**2).sum(axis=1)
            stars = np.where(np.isfinite(stars), stars, 0.0)
            scales = (weight * flux * stars[:, None]).sum(axis=0) / (weight * stars[:, None] ** 2).sum(axis=0)
            scales = np.where(np.isfinite(scales), scales, 0.0)
        if np.allclose(scales, previous, rtol=_ALS_TOLERANCE, atol=0.0):
            break
    return stars, scales


def fit_baseline(
    flux: np.ndarray,
    sigma: np.ndarray,
    *,
    frame_order: np.ndarray | None = None,
    point_clip: float = 5.0,
    star_clip: float = 5.0,
) -> Baseline:
    """Robust bilinear fit ``F[s, f] = S_s * T_f`` of star fluxes over frames.

    Parameters
    ----------
    flux, sigma : ndarray, shape (S, F)
        Flux and 1-sigma uncertainty of star ``s`` in frame ``f``, e-/s; NaN where not measured.
    frame_order : ndarray, shape (F,), optional
        Sort key of the frames (MJD); the reference frame is the first, in this order, in which at
        least half the accepted stars are measured. Default: the frames' order.
    point_clip : float
        A measurement more than this many sigma from the model (sigma scaled by the median star's
        ``sqrt(chi2)`` when above 1) is rejected.
    star_clip : float
        A star whose robust reduced chi2 (``median(z^2) / 0.455`` over its measurements, so one bad
        measurement does not condemn a star) exceeds the median star's by more than this many times
        the spread of the stars' values (the larger of their MAD and the statistic's own
        ``1.6 sqrt(2/dof)``) is rejected.

    Raises
    ------
    ValueError
        If the shapes differ, or fewer than 2 frames share a star.
    """
    flux = np.asarray(flux, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if flux.ndim != 2 or flux.shape != sigma.shape:
        raise ValueError(
            f"flux and sigma must be (stars, frames) arrays of one shape, got {flux.shape}, {sigma.shape}"
        )
    order = (
        np.arange(flux.shape[1])
        if frame_order is None
        else np.argsort(np.asarray(frame_order), kind="stable")
    )
    valid = np.isfinite(flux) & np.isfinite(sigma) & (sigma > 0) & (flux > 0)
    if (valid.sum(axis=1) >= 2).sum() == 0:
        raise ValueError("no star is measured in 2 frames or more: the baseline needs at least 2 frames")
    accepted = valid.copy()
    rejected = valid.sum(axis=1) < 2
    safe_sigma = np.where(valid, sigma, 1.0)
    data = np.where(valid, flux, 0.0)
    stars, scales = _median_polish(flux, valid)
    threshold = np.inf
    for round_ in range(_CLIP_ROUNDS):
        z = np.where(valid, (data - stars[:, None] * scales[None, :]) / safe_sigma, np.nan)
        chi2 = _robust_chi2(z, accepted)
        good = ~rejected & np.isfinite(chi2)
        median = float(np.median(chi2[good])) if good.any() else 1.0
        dof = float(np.median(accepted.sum(axis=1)[good] - 1)) if good.any() else 1.0
        spread = max(
            _MAD_TO_SIGMA * float(np.median(np.abs(chi2[good] - median))),
            _ROBUST_CHI2_SPREAD * median * np.sqrt(2 / max(dof, 1)),
        )
        threshold = median + star_clip * spread
        new_accepted = valid & (np.abs(z) <= point_clip * np.sqrt(max(median, 1.0)))
        new_rejected = rejected | (np.nan_to_num(chi2, nan=0.0) > threshold)
        if new_rejected.sum() > rejected.sum() + 1:  # the worst star first: it biases the others
            worst = np.argmax(np.where(new_rejected & ~rejected, chi2, -np.inf))
            new_rejected = rejected.copy()
            new_rejected[worst] = True
        if round_ > 0 and np.array_equal(new_accepted, accepted) and np.array_equal(new_rejected, rejected):
            break
        accepted, rejected = new_accepted, new_rejected
        weight = np.where(accepted & ~rejected[:, None], 1.0 / safe_sigma**2, 0.0)
        stars, scales = _rank_one(data, weight, stars, scales)
    use = accepted & ~rejected[:, None]
    counted = use.sum(axis=0)
    enough = counted >= max(1, int(np.ceil(0.5 * (~rejected).sum())))
    candidates = [f for f in order if enough[f]] or [f for f in order if counted[f] > 0]
    reference = int(candidates[0])
    stars, scales = stars * scales[reference], scales / scales[reference]
    weight = np.where(use, 1.0 / safe_sigma**2, 0.0)
    chi2 = _reduced_chi2((data - stars[:, None] * scales[None, :]) / safe_sigma, use)
    with np.errstate(divide="ignore", invalid="ignore"):
        stars_sigma = np.sqrt(
            np.maximum(np.nan_to_num(chi2, nan=1.0), 1.0) / (weight * scales**2).sum(axis=1)
        )
    return Baseline(
        reference_flux=np.where(rejected, np.nan, stars),
        reference_flux_uncertainty=np.where(rejected, np.nan, stars_sigma),
        frame_scale=np.where(counted > 0, scales, np.nan),
        reduced_chi2=chi2,
        n_frames=use.sum(axis=1),
        n_clipped=(valid & ~accepted).sum(axis=1),
        rejected=rejected,
        reference_frame=reference,
        chi2_threshold=float(threshold),
    )


def _median_polish(flux: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Robust start: ``log F = log S + log T`` by alternating medians over frames and stars."""
    log_flux = np.where(valid, np.log(np.where(valid, flux, 1.0)), np.nan)
    log_stars = np.zeros(flux.shape[0])
    log_scales = np.zeros(flux.shape[1])
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows and columns
        for _ in range(_POLISH_ITERATIONS):
            log_stars = np.nan_to_num(np.nanmedian(log_flux - log_scales[None, :], axis=1))
            log_scales = np.nan_to_num(np.nanmedian(log_flux - log_stars[:, None], axis=0))
    return np.exp(log_stars), np.exp(log_scales)


def _robust_chi2(z: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Per star: ``median(z^2) / 0.455`` (the chi2 per degree of freedom, insensitive to a few
    outlying measurements); NaN with fewer than 2 measurements."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(np.where(valid, z**2, np.nan), axis=1)
    return np.where(valid.sum(axis=1) >= 2, median / _CHI2_1_MEDIAN, np.nan)


def _reduced_chi2(z: np.ndarray, use: np.ndarray) -> np.ndarray:
    """Per star: sum of squared accepted residuals over (n - 1); NaN with fewer than 2."""
    n = use.sum(axis=1)
    total = np.where(use, np.nan_to_num(z) ** 2, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n >= 2, total / (n - 1), np.nan)


@dataclass(frozen=True)
class Coefficient:
    """A frame's normalisation coefficient.

    Attributes
    ----------
    value : float
        Weighted mean of ``F_s / S_s`` over the accepted stars (the frame's scale ``T_f``).
    uncertainty : float
        Error of that mean, ``1 / sqrt(sum w)``, scaled by ``sqrt(chi2)`` when the stars scatter more
        than their errors.
    reduced_chi2 : float
        Scatter of the accepted ratios about the mean, chi2 per degree of freedom (NaN for one star).
    used : ndarray of bool, shape (S,)
        Stars entering the mean.
    """

    value: float
    uncertainty: float
    reduced_chi2: float
    used: np.ndarray


def frame_coefficient(
    flux: np.ndarray,
    sigma: np.ndarray,
    reference_flux: np.ndarray,
    reference_sigma: np.ndarray,
    clip: float = 3.0,
) -> Coefficient:
    """A frame's coefficient against the baseline: sigma-clipped weighted mean of its flux ratios.

    Parameters
    ----------
    flux, sigma : ndarray, shape (S,)
        The frame's star fluxes and uncertainties, e-/s; NaN where not measured or rejected.
    reference_flux, reference_sigma : ndarray, shape (S,)
        The baseline's reference fluxes and uncertainties of the same stars; NaN for rejected stars.
    clip : float
        Ratios more than ``clip`` sigma from the mean (sigma scaled by ``sqrt(chi2)`` when above 1)
        are rejected, iteratively.

    Raises
    ------
    ValueError
        If the shapes differ or no star has both a flux and a reference flux.
    """
    arrays = [np.asarray(a, dtype=np.float64) for a in (flux, sigma, reference_flux, reference_sigma)]
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1:
        raise ValueError("flux, sigma and the reference arrays must be 1-D arrays of one length")
    flux, sigma, reference, reference_sigma = arrays
    usable = np.isfinite(flux) & np.isfinite(sigma) & (sigma > 0) & np.isfinite(reference) & (reference > 0)
    if not usable.any():
        raise ValueError("no star of this frame has a reference flux in the baseline")
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = flux / reference
        ratio_sigma = np.hypot(sigma / reference, flux * np.nan_to_num(reference_sigma) / reference**2)
    # robust start: the median ratio and the MAD of the standardised deviations from it
    z = (ratio - np.median(ratio[usable])) / np.where(usable, ratio_sigma, 1.0)
    spread = max(_MAD_TO_SIGMA * float(np.median(np.abs(z[usable]))), 1.0)
    used = usable & (np.abs(z) <= clip * spread)
    for _ in range(_CLIP_ROUNDS):
        weight = np.where(used, 1.0 / np.where(usable, ratio_sigma, 1.0) ** 2, 0.0)
        mean = float((weight * np.nan_to_num(ratio)).sum() / weight.sum())
        z = np.where(usable, (ratio - mean) / np.where(usable, ratio_sigma, 1.0), np.inf)
        n = int(used.sum())
        chi2 = float((z[used] ** 2).sum() / (n - 1)) if n > 1 else float("nan")
        keep = usable & (np.abs(z) <= clip * np.sqrt(max(np.nan_to_num(chi2, nan=1.0), 1.0)))
        if np.array_equal(keep, used) or keep.sum() < max(1, n // 2):
            break
        used = keep
    uncertainty = np.sqrt(max(np.nan_to_num(chi2, nan=1.0), 1.0) / weight.sum())
    return Coefficient(mean, float(uncertainty), chi2, used)
