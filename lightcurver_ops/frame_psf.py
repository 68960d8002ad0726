"""The PSF of one frame: which stars, their stamps, and what is stored of the fit.

lightcurver's ``psf_modeling`` bookkeeping around :mod:`lightcurver_ops.psf`: the stars are chosen by
``stars_to_use_psf`` / ``stars_to_exclude_psf`` among those with a stamp in the frame; the model is
kept in ``psfs/<frame>.h5`` and summarised in the ``PSFs`` table.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from matplotlib.figure import Figure

from lightcurver_ops.config import LightcurverConfig
from lightcurver_ops.cutouts import Stamp
from lightcurver_ops.files import atomic_path
from lightcurver_ops.psf import PsfFit, PsfStars, distorted_psf, prepare_psf_stars, rescaled_position
from lightcurver_ops.star_choice import choose_stars, star_set_label


def psf_stars_of_frame(
    config: LightcurverConfig,
    stars: Sequence[Mapping[str, Any]],
    stamps: Mapping[str, Stamp],
    frame_shape: Sequence[int],
) -> tuple[PsfStars, list[str]]:
    """The prepared PSF stars of one frame (with their rescaled positions in the frame of shape
    ``(ny, nx)``, for a field distortion) and their names.

    Raises
    ------
    ValueError
        If no star is chosen or every chosen star is masked too much.
    """
    chosen = choose_stars(stars, set(stamps), config.stars_to_use_psf, config.stars_to_exclude_psf)
    if not chosen:
        raise ValueError("none of the stars chosen for the PSF has a stamp in this frame")
    prepared = prepare_psf_stars(
        {star["gaia_id"]: stamps[star["gaia_id"]] for star in chosen}, frame_shape=frame_shape
    )
    names = {star["gaia_id"]: star["name"] for star in chosen}
    return prepared, [names[gaia_id] for gaia_id in prepared.star_ids]


def psf_row(fit: PsfFit, names: Sequence[str], subsampling: int, pixel_scale: float | None) -> dict[str, Any]:
    """The ``PSFs`` columns of a fit (the frame and star set are added by the caller)."""
    return {
        "psf_ref": star_set_label(names),
        "chi2": float(fit.reduced_chi2),
        "subsampling_factor": int(subsampling),
        "relative_loss_differential": float(fit.relative_loss_differential),
        "fwhm_moffat_arcseconds": fit.moffat_fwhm_pixels * pixel_scale if pixel_scale else None,
    }


def write_psf(path: Path, fit: PsfFit, names: Sequence[str], subsampling: int) -> None:
    """Write a frame's PSF model atomically: narrow and full PSF, sub-sampling, stars used."""
    with atomic_path(path) as temporary, h5py.File(temporary, "w") as f:
        f.create_dataset("narrow_psf", data=fit.narrow_psf)
        f.create_dataset("full_psf", data=fit.full_psf)
        f.create_dataset("distortion", data=fit.distortion)
        f.create_dataset("star_ids", data=np.array(fit.star_ids, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset("star_names", data=np.array(list(names), dtype=object), dtype=h5py.string_dtype())
        f.attrs.update(
            {
                "subsampling_factor": subsampling,
                "reduced_chi2": fit.reduced_chi2,
                "moffat_fwhm_pixels": fit.moffat_fwhm_pixels,
                "moffat_beta": fit.moffat_beta,
                "effective_fwhm_pixels": fit.effective_fwhm_pixels,
                "converged": fit.converged,
            }
        )


def _mosaic(stamps: Sequence[np.ndarray]) -> np.ndarray:
    """Stamps of one size side by side, separated by a column of NaN (drawn blank)."""
    size = stamps[0].shape[0]
    gap = np.full((size, 1), np.nan)
    return np.hstack([part for stamp in stamps for part in (stamp, gap)][:-1])


def plot_psf_fit(stars: PsfStars, fit: PsfFit, names: Sequence[str], path: Path, title: str) -> Path:
    """Stars, residuals in noise units, the full PSF and the loss curve of one frame's fit.

    The stars and their residuals are drawn as two mosaics (one image each, labelled per star):
    a grid of one axes per star cost about 1 s per frame in matplotlib's layout.
    """
    n = len(names)
    size = stars.data.shape[1]
    shown = [np.where(stars.mask[i], np.nan, stars.data[i]) for i in range(n)]
    shown = [np.arcsinh(data / (np.nanstd(data) or 1.0)) for data in shown]
    figure = Figure(figsize=(max(6.0, 0.75 * n + 3.5), 5.0), dpi=90)
    grid = figure.add_gridspec(2, 2, width_ratios=[max(n, 2), 2])
    stars_axes, residual_axes = figure.add_subplot(grid[0, 0]), figure.add_subplot(grid[1, 0])
    stars_axes.imshow(_mosaic(shown), origin="lower", cmap="gray")
    image = residual_axes.imshow(_mosaic(fit.residuals[:n]), origin="lower", cmap="RdBu_r", vmin=-3, vmax=3)
    for index, name in enumerate(names):
        centre = index * (size + 1) + (size - 1) / 2
        stars_axes.text(centre, size, str(name), ha="center", va="bottom", fontsize=7)
        residual_axes.text(centre, -1, f"{fit.chi2_per_star[index]:.2f}", ha="center", va="top", fontsize=7)
    stars_axes.set_title("PSF stars", fontsize=9, pad=12)
    residual_axes.set_title("residual / sigma (reduced chi2 below each star)", fontsize=9)
    for ax in (stars_axes, residual_axes):
        ax.set_axis_off()
    colorbar = figure.colorbar(image, ax=residual_axes, orientation="horizontal", fraction=0.08, pad=0.12)
    colorbar.set_label("residual / sigma", fontsize=8)
    psf_axes, loss_axes = figure.add_subplot(grid[0, 1]), figure.add_subplot(grid[1, 1])
    psf_axes.imshow(np.log10(np.maximum(fit.full_psf, 1e-6)), origin="lower", cmap="magma")
    psf_axes.set_title("full PSF (log)", fontsize=9)
    loss_axes.plot(fit.loss_history)
    loss_axes.set_yscale("log")
    loss_axes.set_title("loss", fontsize=9)
    figure.suptitle(f"{title}: reduced chi2 {fit.reduced_chi2:.2f}, FWHM {fit.moffat_fwhm_pixels:.2f} px")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


@dataclass(frozen=True)
class StoredPsf:
    """What the later stages read back of a frame's PSF model (:func:`write_psf`).

    Attributes
    ----------
    full_psf, narrow_psf : ndarray, shape (s*ss, s*ss)
        Full and narrow PSF on the sub-sampled grid, sum 1.
    subsampling : int
    converged : bool
    moffat_fwhm_pixels, moffat_beta : float
        The fitted Moffat's mean FWHM (data pixels) and index.
    distortion : ndarray, shape (3, 2)
        Field-distortion coefficients (zeros without ``field_distortion``).
    """

    full_psf: np.ndarray
    narrow_psf: np.ndarray
    subsampling: int
    converged: bool
    moffat_fwhm_pixels: float
    moffat_beta: float
    distortion: np.ndarray

    def at(self, position: Sequence[float], frame_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """``(narrow, full)`` PSF at frame pixel ``position`` ``(x, y)`` (distorted if fitted so)."""
        if not np.any(self.distortion):
            return self.narrow_psf, self.full_psf
        return distorted_psf(
            self.narrow_psf, self.distortion, rescaled_position(position, frame_shape), self.subsampling
        )


def read_psf(path: Path) -> StoredPsf:
    """Read a frame's PSF model written by :func:`write_psf`.

    Raises
    ------
    FileNotFoundError
        If the frame has no PSF file.
    """
    if not path.is_file():
        raise FileNotFoundError(f"PSF file {path} does not exist")
    with h5py.File(path, "r") as f:
        return StoredPsf(
            full_psf=f["full_psf"][()],
            narrow_psf=f["narrow_psf"][()],
            subsampling=int(f.attrs["subsampling_factor"]),
            converged=bool(f.attrs["converged"]),
            moffat_fwhm_pixels=float(f.attrs["moffat_fwhm_pixels"]),
            moffat_beta=float(f.attrs["moffat_beta"]),
            distortion=f["distortion"][()] if "distortion" in f else np.zeros((3, 2)),
        )
