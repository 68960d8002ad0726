"""Bookkeeping of the photometry stages around :mod:`lightcurver_ops.photometry` and
:mod:`lightcurver_ops.normalization`: which stars, which measurements are accepted, the tables they
come from and go to, and the normalisation plot."""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from lightcurver_ops.config import LightcurverConfig
from lightcurver_ops.normalization import Baseline, Coefficient
from lightcurver_ops.photometry import StarFlux
from lightcurver_ops.star_choice import choose_stars


def normalization_stars(
    config: LightcurverConfig, stars: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The stars of the set used for normalisation (``stars_to_use_norm`` / ``stars_to_exclude_norm``).

    The choice is made once over the whole set (lightcurver: the 10 nearest to the ROI globally),
    so every frame is normalised on the same stars.
    """
    return choose_stars(
        stars, {star["gaia_id"] for star in stars}, config.stars_to_use_norm, config.stars_to_exclude_norm
    )


def psf_rejection(chi2: float | None, converged: bool, bounds: tuple[float, float]) -> str | None:
    """Why a frame's PSF is not usable for photometry (None if it is): no PSF, its reduced chi2
    outside ``psf_fit_exclude_strategy``'s bounds, or a fit that did not converge."""
    if chi2 is None:
        return "no PSF model for this frame"
    low, high = bounds
    if not low <= chi2 <= high:
        return f"PSF reduced chi2 {chi2:.3f} outside [{low:.3g}, {high:.3g}] (psf_fit_exclude_strategy)"
    if not converged:
        return "PSF fit did not converge"
    return None


def flux_rows(fluxes: Sequence[StarFlux]) -> list[dict[str, Any]]:
    """``star_flux_in_frame`` rows of a frame's measurements (frame and set added by the caller)."""
    return [
        {
            "star_gaia_id": flux.star_id,
            "flux": flux.flux,
            "flux_uncertainty": flux.flux_uncertainty,
            "chi2": flux.reduced_chi2,
            "relative_loss_differential": None,
        }
        for flux in fluxes
    ]


def accepted(row: Mapping[str, Any], bounds: tuple[float, float]) -> bool:
    """Whether a stored star flux enters the normalisation (``fluxes_fit_exclude_strategy``)."""
    chi2 = row["chi2"]
    return chi2 is not None and bounds[0] <= chi2 <= bounds[1] and row["flux"] is not None


def flux_matrix(
    rows: Sequence[Mapping[str, Any]], bounds: tuple[float, float]
) -> tuple[list[str], list[int], np.ndarray, np.ndarray, np.ndarray]:
    """Accepted star fluxes pivoted to ``(stars, frames)``.

    Returns
    -------
    star_ids, frame_ids : list
        Row and column labels (sorted).
    mjd : ndarray, shape (F,)
    flux, sigma : ndarray, shape (S, F)
        e-/s; NaN where a star has no accepted flux in a frame.
    """
    kept = [row for row in rows if accepted(row, bounds)]
    star_ids = sorted({row["star_gaia_id"] for row in kept})
    frame_ids = sorted({row["frame_id"] for row in kept})
    star_index = {star: i for i, star in enumerate(star_ids)}
    frame_index = {frame: i for i, frame in enumerate(frame_ids)}
    flux = np.full((len(star_ids), len(frame_ids)), np.nan)
    sigma = np.full_like(flux, np.nan)
    mjd = np.full(len(frame_ids), np.nan)
    for row in kept:
        s, f = star_index[row["star_gaia_id"]], frame_index[row["frame_id"]]
        flux[s, f], sigma[s, f], mjd[f] = row["flux"], row["flux_uncertainty"], row["mjd"]
    return star_ids, frame_ids, mjd, flux, sigma


def baseline_rows(
    baseline: Baseline, star_ids: Sequence[str], frame_ids: Sequence[int], created_mjd: float
) -> list[dict[str, Any]]:
    """``star_reference_fluxes`` rows of a baseline (the set is added by the caller)."""

    def number(value: float) -> float | None:
        return float(value) if np.isfinite(value) else None

    return [
        {
            "star_gaia_id": star,
            "reference_flux": number(baseline.reference_flux[i]),
            "reference_flux_uncertainty": number(baseline.reference_flux_uncertainty[i]),
            "reduced_chi2": number(baseline.reduced_chi2[i]),
            "n_frames": int(baseline.n_frames[i]),
            "n_clipped": int(baseline.n_clipped[i]),
            "rejected": int(baseline.rejected[i]),
            "reference_frame_id": int(frame_ids[baseline.reference_frame]),
            "created_mjd": created_mjd,
        }
        for i, star in enumerate(star_ids)
    ]


def coefficient_inputs(
    fluxes: Mapping[str, Mapping[str, Any]],
    reference: Mapping[str, Mapping[str, Any]],
    bounds: tuple[float, float],
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A frame's accepted fluxes aligned with the baseline's accepted stars.

    Returns ``(star_ids, flux, sigma, reference_flux, reference_sigma)``, arrays of shape (S,) over
    the stars with both an accepted flux in the frame and a reference flux.
    """
    star_ids = sorted(
        star
        for star, row in fluxes.items()
        if accepted(row, bounds) and star in reference and not reference[star]["rejected"]
    )
    columns = (
        [fluxes[s]["flux"] for s in star_ids],
        [fluxes[s]["flux_uncertainty"] for s in star_ids],
        [reference[s]["reference_flux"] for s in star_ids],
        [reference[s]["reference_flux_uncertainty"] for s in star_ids],
    )
    return star_ids, *(np.asarray(c, dtype=np.float64) for c in columns)


def coefficient_row(coefficient: Coefficient) -> dict[str, Any]:
    """``normalization_coefficients`` columns of a coefficient (frame and set added by the caller)."""
    return {
        "coefficient": coefficient.value,
        "coefficient_uncertainty": coefficient.uncertainty,
        "reduced_chi2": None if np.isnan(coefficient.reduced_chi2) else coefficient.reduced_chi2,
        "n_stars": int(coefficient.used.sum()),
    }


def plot_normalization(
    coefficients: Sequence[Mapping[str, Any]],
    star_fluxes: Sequence[Mapping[str, Any]],
    star_name: str,
    reference_flux: float,
    path: Path,
) -> Path:
    """Coefficients over time, and one reference star's flux before and after normalisation.

    Parameters
    ----------
    coefficients : sequence of mappings
        ``mjd, frame_id, coefficient, coefficient_uncertainty`` of each frame.
    star_fluxes : sequence of mappings
        ``mjd, frame_id, flux, flux_uncertainty`` of the star in each frame.
    star_name : str
    reference_flux : float
        The star's reference flux, e-/s.
    path : Path
        Output image.
    """
    figure = Figure(figsize=(9, 6), dpi=90)
    top, bottom = figure.subplots(2, 1, sharex=True)
    mjd = np.array([c["mjd"] for c in coefficients])
    top.errorbar(
        mjd,
        [c["coefficient"] for c in coefficients],
        yerr=[c["coefficient_uncertainty"] for c in coefficients],
        fmt="o",
        ms=3,
    )
    top.set_ylabel("normalisation coefficient")
    by_frame = {c["frame_id"]: c["coefficient"] for c in coefficients}
    star = [row for row in star_fluxes if row["frame_id"] in by_frame]
    star_mjd = np.array([row["mjd"] for row in star])
    raw = np.array([row["flux"] for row in star]) / reference_flux
    error = np.array([row["flux_uncertainty"] for row in star]) / reference_flux
    scale = np.array([by_frame[row["frame_id"]] for row in star])
    bottom.errorbar(star_mjd, raw, yerr=error, fmt="o", ms=3, alpha=0.5, label="measured / reference")
    bottom.errorbar(star_mjd, raw / scale, yerr=error / scale, fmt="o", ms=3, label="normalised")
    bottom.axhline(1.0, color="grey", lw=0.8)
    bottom.set_xlabel("MJD")
    bottom.set_ylabel(f"star {star_name}")
    bottom.legend(loc="best", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
