"""Bookkeeping of the ROI stages around :mod:`lightcurver_ops.roi_model` and
:mod:`lightcurver_ops.roi_photometry`: the cube from the per-frame files, the model file, its FITS
and JSON products, sky positions and plots."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
from matplotlib.figure import Figure

from lightcurver_ops.cutouts import Stamp
from lightcurver_ops.files import atomic_path
from lightcurver_ops.roi_cube import RoiCube, cd_matrix, epoch_transform, normalised_cutout, satisfies
from lightcurver_ops.roi_model import RoiModel


def centred_psf(psf: np.ndarray) -> np.ndarray:
    """A PSF shifted (Fourier) so that its first moment is the grid centre ``(n - 1) / 2``, where
    STARRED's FFT convolution puts a point source; the positions of the model are then those of
    the light's centroid in every frame."""
    psf = np.asarray(psf, dtype=np.float64)
    n = psf.shape[0]
    grid = np.arange(n)
    total = psf.sum()
    dx = (n - 1) / 2 - (psf.sum(axis=0) * grid).sum() / total
    dy = (n - 1) / 2 - (psf.sum(axis=1) * grid).sum() / total
    k = np.fft.fftfreq(n)
    phase = np.exp(-2j * np.pi * (k[None, :] * dx + k[:, None] * dy))
    shifted = np.real(np.fft.ifft2(np.fft.fft2(psf) * phase))
    return shifted / shifted.sum()


@dataclass(frozen=True)
class RoiFrame:
    """What one frame contributes to the ROI: its row values and files, read."""

    frame: Mapping[str, Any]
    stamp: Stamp
    narrow_psf: np.ndarray
    subsampling: int
    coefficient: float
    coefficient_uncertainty: float
    zeropoint: float

    def normalised(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return normalised_cutout(self.stamp.data, self.stamp.noise, self.stamp.mask, self.coefficient)

    @property
    def position(self) -> np.ndarray:
        """``(x, y)`` of the ROI centre in the cutout, pixels."""
        return np.subtract(self.stamp.position, self.stamp.origin).astype(float)


def build_cube(frames: Sequence[RoiFrame]) -> RoiCube:
    """The ROI cube of frames (sorted by MJD).

    Raises
    ------
    ValueError
        If there is no frame, or the frames differ in cutout size or sub-sampling.
    """
    if not frames:
        raise ValueError("no frame passes the ROI selection")
    frames = sorted(frames, key=lambda f: f.frame["mjd"])
    if len({(f.stamp.size, f.subsampling) for f in frames}) != 1:
        raise ValueError("the ROI frames differ in cutout size or PSF sub-sampling")
    data, noise, mask = (np.array(a) for a in zip(*(f.normalised() for f in frames), strict=True))
    column = lambda name: np.array([f.frame[name] for f in frames], dtype=float)  # noqa: E731
    return RoiCube(
        frame_ids=np.array([f.frame["id"] for f in frames]),
        partition_keys=tuple(f.frame["partition_key"] for f in frames),
        mjd=column("mjd"),
        seeing=column("seeing_arcseconds"),
        sky_level=column("sky_level_electron_per_second"),
        pixel_scale=column("pixel_scale"),
        angle_to_north=column("angle_to_north"),
        data=data,
        noise=noise,
        mask=mask,
        psf=np.array([centred_psf(f.narrow_psf) for f in frames]),
        positions=np.array([f.position for f in frames]),
        cd=np.array([cd_matrix(f.stamp.wcs_header) for f in frames]),
        wcs_headers=tuple(f.stamp.wcs_header for f in frames),
        coefficient=np.array([f.coefficient for f in frames]),
        coefficient_uncertainty=np.array([f.coefficient_uncertainty for f in frames]),
        zeropoint=np.array([np.nan if f.zeropoint is None else f.zeropoint for f in frames], dtype=float),
        subsampling=frames[0].subsampling,
    )


def source_pixels(
    point_sources: Mapping[str, Sequence[float]], wcs_header: str
) -> dict[str, tuple[float, float]]:
    """Pixel ``(x, y)`` of each point source (config ``point_sources``, deg) in a cutout."""
    wcs = WCS(fits.Header.fromstring(wcs_header))
    return {
        label: tuple(float(v) for v in wcs.all_world2pix([[ra, dec]], 0)[0])
        for label, (ra, dec) in point_sources.items()
    }


def sky_positions(model: RoiModel, wcs_header: str) -> dict[str, tuple[float, float]]:
    """``{label: (ra, dec)}`` (deg) of the model's point sources through the reference cutout's WCS."""
    wcs = WCS(fits.Header.fromstring(wcs_header))
    radec = wcs.all_pix2world(model.positions, 0)
    return {label: (float(ra), float(dec)) for label, (ra, dec) in zip(model.labels, radec, strict=True)}


@dataclass(frozen=True)
class StoredRoiModel:
    """What the per-frame ROI photometry reads of the model."""

    labels: tuple[str, ...]
    offsets: np.ndarray
    background: np.ndarray
    reference_cd: np.ndarray
    reference_position: np.ndarray
    reference_translation: np.ndarray
    cutout_size: int

    def start(self, cd: np.ndarray, position: np.ndarray) -> tuple[float, np.ndarray]:
        """A frame's fixed rotation (deg) and translation (pixels) from its cutout's CD matrix and ROI
        position relative to the reference cutout, plus the model's own translation of the
        reference (the model's positions and background are in that translated frame)."""
        angle, translation = epoch_transform(
            cd, position, self.reference_cd, self.reference_position, self.cutout_size
        )
        return angle, translation + self.reference_translation


def write_roi_model(path: Path, model: RoiModel, cube: RoiCube) -> None:
    """Write the model atomically: labels, positions, offsets, background, translations, fluxes,
    the frames it was fitted on, and the reference cutout (WCS, CD, ROI position)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary, h5py.File(temporary, "w") as f:
        f["labels"] = np.array(model.labels, dtype=object).astype(h5py.string_dtype())
        f["positions"] = model.positions
        f["offsets"] = model.point_source_offsets()
        f["background"] = model.background
        f["translations"] = model.translations
        f["rotations"] = model.rotations
        f["fluxes"] = model.fluxes
        f["sky"] = model.sky
        f["reduced_chi2"] = model.reduced_chi2
        f["loss_history"] = model.loss_history
        f["frame_id"] = cube.frame_ids
        f["reference_cd"] = cube.cd[0]
        f["reference_position"] = cube.positions[0]
        f.attrs["reference_wcs"] = cube.wcs_headers[0]
        f.attrs["subsampling_factor"] = model.subsampling
        f.attrs["cutout_size"] = cube.data.shape[1]


def read_roi_model(path: Path) -> StoredRoiModel:
    """Read what :func:`write_roi_model` wrote for the per-frame fits.

    Raises
    ------
    FileNotFoundError
        If there is no model file.
    """
    if not path.is_file():
        raise FileNotFoundError(f"ROI model file {path} does not exist")
    with h5py.File(path, "r") as f:
        return StoredRoiModel(
            labels=tuple(label.decode() if isinstance(label, bytes) else label for label in f["labels"][()]),
            offsets=f["offsets"][()],
            background=f["background"][()],
            reference_cd=f["reference_cd"][()],
            reference_position=f["reference_position"][()],
            reference_translation=f["translations"][0],
            cutout_size=int(f.attrs["cutout_size"]),
        )


def high_resolution_header(wcs_header: str, subsampling: int, zeropoint: float) -> fits.Header:
    """The reference cutout's WCS on the sub-sampled grid (CD / ss; pixel centres kept: the
    reference pixel moves to ``(crpix - 0.5) ss + 0.5``), with the global zero point ``ZPT``."""
    wcs = WCS(fits.Header.fromstring(wcs_header)).celestial.deepcopy()
    cd = wcs.pixel_scale_matrix / subsampling
    wcs.wcs.crpix = (np.asarray(wcs.wcs.crpix) - 0.5) * subsampling + 0.5
    wcs.wcs.cd = cd
    header = wcs.to_header(relax=True)
    for key in ("PC1_1", "PC1_2", "PC2_1", "PC2_2", "CDELT1", "CDELT2"):
        header.remove(key, ignore_missing=True)
    for i in range(2):
        for j in range(2):
            header[f"CD{i + 1}_{j + 1}"] = cd[i, j]
    if np.isfinite(zeropoint):
        header["ZPT"] = (zeropoint, "global zero point of normalised fluxes, mag")
    return header


def write_model_fits(prefix: Path, model: RoiModel, wcs_header: str, zeropoint: float) -> list[Path]:
    """``<prefix>_background.fits`` (the high-resolution background, normalised e-/s per sub-pixel)
    and ``<prefix>_high_res_model.fits`` (plus the point sources of the first epoch, as sub-sampled
    Gaussians of STARRED's FWHM of 2 sub-pixels)."""
    header = high_resolution_header(wcs_header, model.subsampling, zeropoint)
    n = model.background.shape[0]
    grid = np.arange(n)
    sigma = 2.0 / 2.3548
    sources = np.zeros_like(model.background)
    for (x, y), flux in zip(model.positions, model.fluxes[0], strict=True):
        sx, sy = (x + 0.5) * model.subsampling - 0.5, (y + 0.5) * model.subsampling - 0.5
        blob = np.exp(-((grid[None, :] - sx) ** 2 + (grid[:, None] - sy) ** 2) / (2 * sigma**2))
        sources += flux * blob / blob.sum()
    paths = []
    for suffix, image in (("background", model.background), ("high_res_model", model.background + sources)):
        path = Path(f"{prefix}_{suffix}.fits")
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            fits.PrimaryHDU(image.astype(np.float32), header=header).writeto(temporary)
        paths.append(path)
    return paths


def plot_roi_model(cube: RoiCube, model: RoiModel, path: Path, title: str) -> Path:
    """Data, model and residuals of up to 4 epochs, the background and the loss curve."""
    epochs = np.unique(np.linspace(0, len(cube.data) - 1, min(4, len(cube.data))).astype(int))
    figure = Figure(figsize=(3 * (len(epochs) + 1), 9), dpi=80)
    axes = figure.subplots(3, len(epochs) + 1, squeeze=False)
    for column, epoch in enumerate(epochs):
        scale = np.nanpercentile(cube.data[epoch], 99.5)
        axes[0, column].imshow(cube.data[epoch], origin="lower", cmap="magma", vmin=0, vmax=scale)
        axes[0, column].set_title(f"{cube.partition_keys[epoch]}")
        axes[1, column].imshow(model.model[epoch], origin="lower", cmap="magma", vmin=0, vmax=scale)
        axes[1, column].set_title("model")
        axes[2, column].imshow(model.residuals[epoch], origin="lower", cmap="RdBu_r", vmin=-4, vmax=4)
        axes[2, column].set_title(f"residual/sigma, chi2 {model.reduced_chi2[epoch]:.2f}")
    axes[0, -1].imshow(model.background, origin="lower", cmap="magma")
    axes[0, -1].plot(
        (model.positions[:, 0] + 0.5) * model.subsampling - 0.5,
        (model.positions[:, 1] + 0.5) * model.subsampling - 0.5,
        "c+",
    )
    axes[0, -1].set_title("background (high res.)")
    axes[1, -1].plot(model.loss_history)
    axes[1, -1].set_title("loss")
    axes[2, -1].set_axis_off()
    for ax in axes[:, :-1].ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path


def roi_rejection(
    frame: Mapping[str, Any],
    coefficient: Mapping[str, Any] | None,
    psf_chi2: float | None,
    psf_bounds: tuple[float, float],
    frame_constraints: Mapping[str, tuple[float, float]],
    coefficient_constraints: Mapping[str, tuple[float, float]],
) -> str | None:
    """Why a frame is left out of the ROI products (None if it is in): eliminated, no coefficient,
    PSF outside ``psf_fit_exclude_strategy``, or a constraint of the config not met."""
    if frame.get("eliminated"):
        return f"eliminated: {frame.get('comment')}"
    if coefficient is None:
        return "no normalisation coefficient"
    if psf_chi2 is None or not psf_bounds[0] <= psf_chi2 <= psf_bounds[1]:
        return "no PSF within psf_fit_exclude_strategy"
    if not satisfies(frame, frame_constraints):
        return f"outside constraints_on_frame_columns_for_roi {dict(frame_constraints)}"
    if not satisfies(coefficient, coefficient_constraints):
        return f"outside constraints_on_normalization_coeff {dict(coefficient_constraints)}"
    return None
