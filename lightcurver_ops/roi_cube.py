"""The calibrated ROI cube: every usable frame's normalised ROI cutout with its noise, mask and PSF.

lightcurver's prepared ROI file (spec §3.2), with three fixes: the frame constraints are checked
against a whitelist of columns (lightcurver interpolated config keys into SQL), the mask is kept
as its own dataset (lightcurver multiplied the noise of masked pixels by 1000 and dropped it), and
frames without a zero point give a NaN global zero point instead of a crash.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from lightcurver_ops.errors import ConfigError
from lightcurver_ops.files import atomic_path


def cd_matrix(wcs_header: str) -> np.ndarray:
    """The 2x2 CD matrix (deg/pixel) of a cutout's WCS header string."""
    return WCS(fits.Header.fromstring(wcs_header)).celestial.pixel_scale_matrix


def check_constraints(
    key: str, constraints: Mapping[str, Sequence[float]], allowed: Sequence[str]
) -> dict[str, tuple[float, float]]:
    """Validate a ``{column: [min, max]}`` constraint mapping against the allowed columns.

    Raises
    ------
    ConfigError
        Naming ``key`` and the column, for an unknown column or a bad interval.
    """
    checked = {}
    for column, interval in constraints.items():
        if column not in allowed:
            raise ConfigError(f"{key}: unknown column {column!r}; allowed: {', '.join(sorted(allowed))}")
        low, high = (float(v) for v in interval)
        if low > high:
            raise ConfigError(f"{key}: {column}: min {low} exceeds max {high}")
        checked[column] = (low, high)
    return checked


def satisfies(row: Mapping[str, Any], constraints: Mapping[str, tuple[float, float]]) -> bool:
    """Whether every constrained column of ``row`` lies in its interval (a NULL value does not)."""
    return all(row.get(c) is not None and low <= row[c] <= high for c, (low, high) in constraints.items())


def rotation_degrees(cd_epoch: np.ndarray, cd_reference: np.ndarray) -> float:
    """Rotation (deg, counter-clockwise in pixel coordinates) taking the reference stamp's pixel
    offsets to the epoch's: the angle of ``CD_epoch^-1 CD_reference`` (STARRED's ``alpha``)."""
    matrix = np.linalg.solve(np.asarray(cd_epoch, float), np.asarray(cd_reference, float))
    return float(np.degrees(np.arctan2(matrix[1, 0] - matrix[0, 1], matrix[0, 0] + matrix[1, 1])))


def epoch_transform(
    cd: np.ndarray, position: np.ndarray, reference_cd: np.ndarray, reference_position: np.ndarray, size: int
) -> tuple[float, np.ndarray]:
    """STARRED's fixed rotation (deg) of a cutout relative to the reference cutout, and the
    translation ``(dx, dy)`` (pixels) putting the ROI centre where the cutout has it (STARRED rotates
    about the cutout centre ``(size - 1) / 2``)."""
    angle = rotation_degrees(cd, reference_cd)
    theta = np.radians(angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    centre = (size - 1) / 2.0
    return angle, np.asarray(position, float) - centre - rotation @ (
        np.asarray(reference_position, float) - centre
    )


def global_zeropoint(zeropoints: np.ndarray, coefficients: np.ndarray) -> tuple[float, float]:
    """lightcurver's global zero point of the normalised fluxes: median and standard deviation over
    frames of ``ZP - 2.5 log10(coefficient)`` (mag); NaN when no frame has a zero point."""
    adjusted = np.asarray(zeropoints, float) - 2.5 * np.log10(np.asarray(coefficients, float))
    adjusted = adjusted[np.isfinite(adjusted)]
    if adjusted.size == 0:
        return float("nan"), float("nan")
    return float(np.median(adjusted)), float(np.std(adjusted))


@dataclass(frozen=True)
class RoiCube:
    """Normalised ROI cutouts of the accepted frames, sorted by MJD.

    Attributes
    ----------
    frame_ids : ndarray of int, shape (N,)
    partition_keys : tuple of str
    mjd, seeing, sky_level, pixel_scale, angle_to_north : ndarray, shape (N,)
        MJD, seeing (arcsec), sky (e-/s per pixel), arcsec/pixel, deg.
    data, noise : ndarray, shape (N, s, s)
        ROI cutout and its 1-sigma noise divided by the frame's normalisation coefficient, e-/s;
        0 and 1e7 where the data are NaN.
    mask : ndarray of bool, shape (N, s, s)
        True = bad pixel (cosmic ray, bad line, saturation, NaN).
    psf : ndarray, shape (N, S, S)
        Narrow PSF of each frame on the sub-sampled grid (sum 1).
    positions : ndarray, shape (N, 2)
        ``(x, y)`` of the ROI centre in each cutout, pixels.
    cd : ndarray, shape (N, 2, 2)
        CD matrix of each cutout's WCS (deg/pixel).
    wcs_headers : tuple of str
        FITS header strings of the cutouts' WCS.
    coefficient, coefficient_uncertainty, zeropoint : ndarray, shape (N,)
        Normalisation coefficient and its 1-sigma error; absolute zero point (mag, NaN if missing).
    subsampling : int
    """

    frame_ids: np.ndarray
    partition_keys: tuple[str, ...]
    mjd: np.ndarray
    seeing: np.ndarray
    sky_level: np.ndarray
    pixel_scale: np.ndarray
    angle_to_north: np.ndarray
    data: np.ndarray
    noise: np.ndarray
    mask: np.ndarray
    psf: np.ndarray
    positions: np.ndarray
    cd: np.ndarray
    wcs_headers: tuple[str, ...]
    coefficient: np.ndarray
    coefficient_uncertainty: np.ndarray
    zeropoint: np.ndarray
    subsampling: int

    def global_zeropoint(self) -> tuple[float, float]:
        """The cube's :func:`global_zeropoint`."""
        return global_zeropoint(self.zeropoint, self.coefficient)


MISSING_NOISE = 1e7
"""Noise (e-/s) given to pixels without data, as lightcurver."""


def normalised_cutout(
    data: np.ndarray, noise: np.ndarray, mask: np.ndarray, coefficient: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(data, noise, mask)`` of a cutout divided by its coefficient; NaN pixels masked with data 0
    and noise ``MISSING_NOISE``."""
    bad = np.asarray(mask, bool) | ~np.isfinite(data) | ~np.isfinite(noise) | (np.asarray(noise) <= 0)
    clean = np.where(bad & ~np.isfinite(data), 0.0, np.nan_to_num(np.asarray(data, float))) / coefficient
    sigma = np.where(~np.isfinite(noise) | (np.asarray(noise) <= 0), MISSING_NOISE, np.asarray(noise, float))
    return clean, np.where(sigma >= MISSING_NOISE, sigma, sigma / coefficient), bad


def write_roi_cube(path: Path, cube: RoiCube, global_zeropoint: tuple[float, float]) -> None:
    """Write the cube atomically in lightcurver's prepared-ROI layout, plus ``mask``, ``positions``
    and ``partition_key`` (datasets ordered by MJD)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(cube.frame_ids)
    with atomic_path(path) as temporary, h5py.File(temporary, "w") as f:
        f["frame_id"] = cube.frame_ids
        f["partition_key"] = np.array(cube.partition_keys, dtype=object).astype(h5py.string_dtype())
        f["data"] = cube.data
        f["noisemap"] = cube.noise
        f["mask"] = cube.mask
        f["psf"] = cube.psf
        f["seeing"] = cube.seeing
        f["sky_level_electron_per_second"] = cube.sky_level
        f["mjd"] = cube.mjd
        f["global_zeropoint"] = global_zeropoint[0]
        f["global_zeropoint_scatter"] = global_zeropoint[1]
        f["relative_normalization_error"] = cube.coefficient_uncertainty
        f["normalization_coefficient"] = cube.coefficient
        f["zeropoint"] = cube.zeropoint
        f["wcs"] = np.array(cube.wcs_headers, dtype=object).astype(h5py.string_dtype())
        f["pixel_scale"] = cube.pixel_scale
        f["subsampling_factor"] = np.full((n, 1), cube.subsampling)
        f["angle_to_north"] = cube.angle_to_north
        f["positions"] = cube.positions


def read_roi_cube(path: Path) -> RoiCube:
    """Read a cube written by :func:`write_roi_cube`.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    """
    if not path.is_file():
        raise FileNotFoundError(f"ROI cube {path} does not exist")

    def text(values: np.ndarray) -> tuple[str, ...]:
        return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in values)

    with h5py.File(path, "r") as f:
        headers = text(f["wcs"][()])
        return RoiCube(
            frame_ids=f["frame_id"][()],
            partition_keys=text(f["partition_key"][()]),
            mjd=f["mjd"][()],
            seeing=f["seeing"][()],
            sky_level=f["sky_level_electron_per_second"][()],
            pixel_scale=f["pixel_scale"][()],
            angle_to_north=f["angle_to_north"][()],
            data=f["data"][()],
            noise=f["noisemap"][()],
            mask=f["mask"][()],
            psf=f["psf"][()],
            positions=f["positions"][()],
            cd=np.array([cd_matrix(h) for h in headers]),
            wcs_headers=headers,
            coefficient=f["normalization_coefficient"][()],
            coefficient_uncertainty=f["relative_normalization_error"][()],
            zeropoint=f["zeropoint"][()],
            subsampling=int(f["subsampling_factor"][0, 0]),
        )
