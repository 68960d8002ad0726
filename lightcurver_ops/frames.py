"""Importing one raw frame: read and trim, ADU -> e-/s, sky, sources, seeing, ephemeris.

Pure functions on arrays, paths and plain values (no database, no configuration object, no dagster).
The steps follow lightcurver's frame importation (spec §6.2) with its bugs fixed:

- the trim correction of the WCS is always written to the header (lightcurver lost it for frames
  that were already plate solved);
- sky level and rms are always measured on the unsubtracted e-/s image (lightcurver measured them on
  an already-subtracted image when background subtraction was off);
- the seeing comes from pixel-integrated elliptical Moffat fits of bright isolated stars, combined
  with the COSMOULINE histogram method, instead of sep's moment-based FWHM, which is biased high for
  Moffat profiles;
- a frame without sources gets NaN seeing instead of -1;
- every per-frame failure raises :class:`~lightcurver_ops.errors.FrameError` naming the file.

Pixel coordinates are 0-based with the centre of the first pixel at (0, 0), as in sep and numpy.
"""

from __future__ import annotations

import math
import os
import re
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path

import ephem
import numpy as np
import sep
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning
from scipy.optimize import least_squares
from scipy.spatial import cKDTree

from lightcurver_ops.errors import FrameError

# Keywords describing the layout of the raw HDU; they no longer apply to the float image we return.
_STRUCTURAL_KEY = re.compile(
    r"^(SIMPLE|EXTEND|XTENSION|BITPIX|NAXIS\d*|PCOUNT|GCOUNT|GROUPS|BZERO|BSCALE|BLANK|CHECKSUM|DATASUM)$"
)
# World-coordinate keywords (primary and alternate descriptions, SIP polynomials) purged before the
# corrected WCS is written back.
_WCS_KEY = re.compile(
    r"^(WCSAXES|WCSNAME|CRPIX\d+|CRVAL\d+|CDELT\d+|CTYPE\d+|CUNIT\d+|CROTA\d+|CRDER\d+|CSYER\d+"
    r"|CD\d+_\d+|PC\d+_\d+|PV\d+_\d+|PS\d+_\d+|LONPOLE|LATPOLE|RADESYS|RADECSYS|EQUINOX|MJDREF)[A-Z]?$"
    r"|^(A|B|AP|BP)_\w+$"
)

_SEP_SUB_OBJECT_LIMIT = 8192
_MOFFAT_SUBSAMPLING = 3
_SEEING_MIN_PEAK_SNR = 30.0
# Radius, in sep FWHMs, of the disc masked around each neighbour in a seeing stamp; a neighbour
# closer than twice this radius disqualifies the star.
_NEIGHBOUR_MASK_RADIUS = 1.5
_MIN_FIT_FWHM_PIXELS = 0.5


@dataclass(frozen=True)
class RawFrame:
    """A raw frame as read from disk, trimmed.

    Attributes
    ----------
    path : Path
        The raw file.
    data : ndarray, shape (ny, nx), float64
        Trimmed pixel values in ADU; non-finite pixels are NaN.
    header : astropy.io.fits.Header
        Merged header without the structural keywords of the raw HDU, carrying the trim-corrected WCS.
    wcs : astropy.wcs.WCS or None
        Celestial WCS of the trimmed data, or None when the header has no (readable) celestial WCS.
    """

    path: Path
    data: np.ndarray
    header: fits.Header
    wcs: WCS | None


@dataclass(frozen=True)
class Background:
    """Sky background of an image, from sep.

    Attributes
    ----------
    sky : ndarray, shape (ny, nx), float64
        Smooth sky map, in the image's units (e-/s).
    level : float
        Global sky level (sep ``globalback``), e-/s.
    rms : float
        Global sky noise (sep ``globalrms``), e-/s.
    """

    sky: np.ndarray
    level: float
    rms: float


@dataclass(frozen=True)
class SeeingEstimate:
    """Seeing of a frame from Moffat fits of its stars.

    Attributes
    ----------
    fwhm_pixels : float
        Effective circular FWHM ``sqrt(FWHM_major * FWHM_minor)`` in pixels, combined over stars with
        :func:`seeing_histogram_mode`; NaN when no star could be fitted.
    ellipticity : float
        Median of ``1 - FWHM_minor / FWHM_major`` over the fitted stars; NaN when none.
    n_stars : int
        Number of stars with an accepted fit.
    """

    fwhm_pixels: float
    ellipticity: float
    n_stars: int


@dataclass(frozen=True)
class Ephemeris:
    """Observing conditions of a target at one time and place.

    Attributes
    ----------
    airmass : float
        Rozenberg airmass of the target; -1 when the target is below the horizon.
    altitude, azimuth : float
        Target position, deg (azimuth from north through east).
    degrees_to_moon : float
        Angular distance target-Moon, deg.
    moon_phase : float
        Illuminated fraction of the Moon, percent (0-100).
    moon_altitude, sun_altitude : float
        deg.
    """

    airmass: float
    altitude: float
    azimuth: float
    degrees_to_moon: float
    moon_phase: float
    moon_altitude: float
    sun_altitude: float


@dataclass(frozen=True)
class CalibratedFrame:
    """A frame in e-/s with its measured properties.

    Attributes
    ----------
    path : Path
        The raw file it comes from.
    image : ndarray, shape (ny, nx), float32
        Image in e-/s, sky-subtracted unless calibration was asked not to.
    header : astropy.io.fits.Header
        Header with ``BUNIT = 'ELPERSEC'`` and the trim-corrected WCS.
    sources : astropy.table.Table
        Sources from :func:`extract_sources` (fluxes in e-/s), brightest first.
    sky_level, sky_rms : float
        Global sky level and noise of the unsubtracted e-/s image, e-/s.
    seeing_pixels : float
        Effective FWHM in pixels; NaN when no star could be fitted.
    ellipticity : float
        Median stellar ellipticity; NaN when no star could be fitted.
    n_sources : int
        Number of rows of ``sources``.
    """

    path: Path
    image: np.ndarray
    header: fits.Header
    sources: Table
    sky_level: float
    sky_rms: float
    seeing_pixels: float
    ellipticity: float
    n_sources: int


# --------------------------------------------------------------------------------------------------
# Reading


def read_raw_frame(
    path: Path | str,
    hdu_data_index: int = 0,
    hdu_header_indexes: Sequence[int] = (0,),
    trim_vertical: int = 0,
    trim_horizontal: int = 0,
) -> RawFrame:
    """Read one raw FITS frame, trim it and correct its WCS for the trim.

    The file is opened read-only and never modified.

    Parameters
    ----------
    path : Path or str
        Raw FITS file.
    hdu_data_index : int
        0-based index of the HDU holding the 2-D image.
    hdu_header_indexes : sequence of int
        0-based indexes of the HDUs whose headers are merged, in order: a copy of the first one is
        updated with each following one, so later headers win.
    trim_vertical, trim_horizontal : int
        Pixels removed at both ends of the y (rows) and x (columns) axes.

    Returns
    -------
    RawFrame
        ``data`` of shape (ny - 2 trim_vertical, nx - 2 trim_horizontal), float64 ADU, non-finite
        pixels set to NaN. When the header has a celestial WCS, ``CRPIX1 -= trim_horizontal`` and
        ``CRPIX2 -= trim_vertical``; the old WCS keywords (CD, PC, CDELT, SIP ``A_``/``B_``/``AP_``/
        ``BP_``, alternates, ...) are purged and astropy's ``to_header(relax=True)`` of the corrected
        WCS, SIP distortion included, is written. A header without a readable celestial WCS has its
        WCS keywords purged and gives ``wcs=None``.

    Raises
    ------
    ValueError
        If an index or trim argument is not a non-negative integer, or no header index is given.
    FrameError
        If the file is missing, not FITS, corrupt or truncated, an index is out of range, the data HDU
        holds no 2-D image, the trim leaves no pixel, or the data are all NaN or all zero.
    """
    path = Path(path)
    header_indexes = tuple(hdu_header_indexes)
    if not header_indexes:
        raise ValueError("hdu_header_indexes must name at least one HDU")
    for name, value in [
        ("hdu_data_index", hdu_data_index),
        *((f"hdu_header_indexes[{i}]", v) for i, v in enumerate(header_indexes)),
        ("trim_vertical", trim_vertical),
        ("trim_horizontal", trim_horizontal),
    ]:
        _check_non_negative_int(name, value)

    data, header = _read_fits(path, hdu_data_index, header_indexes)
    ny, nx = data.shape
    if 2 * trim_vertical >= ny or 2 * trim_horizontal >= nx:
        raise FrameError(
            path,
            f"trim (vertical {trim_vertical}, horizontal {trim_horizontal}) leaves no pixel "
            f"of the {ny}x{nx} image",
        )
    data = data[trim_vertical : ny - trim_vertical, trim_horizontal : nx - trim_horizontal]
    data = np.where(np.isfinite(data), data, np.nan)
    finite = np.isfinite(data)
    if not finite.any():
        raise FrameError(path, "image data are all NaN")
    if not np.any(data[finite]):
        raise FrameError(path, "image data are all zero")

    _remove_keys(header, _STRUCTURAL_KEY)
    wcs = _trim_wcs(header, trim_vertical, trim_horizontal, data.shape)
    return RawFrame(path=path, data=data, header=header, wcs=wcs)


def _remove_keys(header: fits.Header, pattern: re.Pattern[str]) -> None:
    for key in {k for k in header if pattern.match(k)}:
        header.remove(key, remove_all=True)


def _check_non_negative_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def _read_fits(
    path: Path, data_index: int, header_indexes: tuple[int, ...]
) -> tuple[np.ndarray, fits.Header]:
    """Read the data of one HDU eagerly (float64, native byte order) and merge the headers."""
    if not path.is_file():
        raise FrameError(path, "file does not exist or is not a regular file")
    with warnings.catch_warnings():
        # Damaged files produce verification warnings; the exception below is what we report.
        warnings.simplefilter("ignore")
        try:
            with fits.open(path, mode="readonly", memmap=False, lazy_load_hdus=False) as hdul:
                n_hdu = len(hdul)
                for index in (data_index, *header_indexes):
                    if index >= n_hdu:
                        raise FrameError(path, f"HDU index {index} out of range: the file has {n_hdu} HDU(s)")
                hdu = hdul[data_index]
                if not isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU | fits.CompImageHDU):
                    raise FrameError(path, f"HDU {data_index} is a {type(hdu).__name__}, not an image HDU")
                expected_shape = tuple(hdu.shape)
                if len(expected_shape) != 2:
                    raise FrameError(path, f"HDU {data_index} has no 2-D image data (shape {expected_shape})")
                try:
                    raw = hdu.data
                except Exception as exc:  # e.g. fewer bytes than the header's NAXISn promise
                    raise FrameError(
                        path, f"cannot read the data of HDU {data_index}, truncated or corrupt file ({exc})"
                    ) from exc
                if raw is None or raw.shape != expected_shape:
                    raise FrameError(
                        path,
                        f"HDU {data_index} data are shorter than its header says "
                        f"(expected {expected_shape}); truncated file?",
                    )
                data = np.array(raw, dtype=np.float64)
                header = hdul[header_indexes[0]].header.copy()
                for index in header_indexes[1:]:
                    header.update(hdul[index].header)
        except FrameError:
            raise
        except Exception as exc:  # astropy raises many exception types for damaged files
            raise FrameError(path, f"cannot read FITS file ({type(exc).__name__}: {exc})") from exc
    return data, header


def _trim_wcs(
    header: fits.Header, trim_vertical: int, trim_horizontal: int, shape: tuple[int, int]
) -> WCS | None:
    """Shift the WCS reference pixel by the trim and rewrite the WCS keywords of ``header`` in place."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(header, naxis=2, relax=True)
            celestial = wcs.has_celestial
        except Exception:  # an unreadable WCS is treated as no WCS; plate solving will provide one
            celestial = False
        _remove_keys(header, _WCS_KEY)
        if not celestial:
            return None
        wcs.wcs.crpix = wcs.wcs.crpix - np.array([trim_horizontal, trim_vertical], dtype=float)
        for card in wcs.to_header(relax=True).cards:
            if card.keyword not in header:  # keeps e.g. the original DATE-OBS/MJD-OBS untouched
                header.append(card)
        fixed = WCS(header, naxis=2, relax=True)
    fixed.pixel_shape = (shape[1], shape[0])
    return fixed


# --------------------------------------------------------------------------------------------------
# Units, background, sources


def to_electrons_per_second(data_adu: np.ndarray, gain: float, exptime: float) -> np.ndarray:
    """Convert ADU to electrons per second.

    Parameters
    ----------
    data_adu : ndarray, shape (ny, nx)
        Pixel values, ADU.
    gain : float
        e-/ADU.
    exptime : float
        Exposure time, s.

    Returns
    -------
    ndarray, shape (ny, nx), float64
        ``data_adu * gain / exptime``, e-/s.

    Raises
    ------
    ValueError
        If gain or exptime is not a finite positive number.
    """
    _check_positive("gain", gain)
    _check_positive("exptime", exptime)
    return np.asarray(data_adu, dtype=np.float64) * (float(gain) / float(exptime))


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")


def _sep_ready(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """C-contiguous native float64 copy of ``image`` with NaN set to 0, and the NaN mask."""
    image = np.asarray(image)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {image.shape}")
    nan_mask = ~np.isfinite(image)
    data = np.ascontiguousarray(np.where(nan_mask, 0.0, image), dtype=np.float64)
    return data, nan_mask


def _raise_sep_limits(n_pixels: int) -> None:
    """Make sep's pixel stack and deblending object limit large enough for a crowded frame."""
    if sep.get_extract_pixstack() < n_pixels:
        sep.set_extract_pixstack(n_pixels)
    if sep.get_sub_object_limit() < _SEP_SUB_OBJECT_LIMIT:
        sep.set_sub_object_limit(_SEP_SUB_OBJECT_LIMIT)


def _sep_extract(data: np.ndarray, **kwargs: object):
    _raise_sep_limits(data.size)
    try:
        return sep.extract(data, **kwargs)
    except Exception as exc:  # sep raises bare Exception on overflows
        raise RuntimeError(f"sep source extraction failed: {exc}") from exc


def _even_box(side: int, box: int) -> int:
    """Box size close to ``box`` that tiles ``side`` pixels in equal boxes (the last one at most 1 smaller).

    sep's last box along an axis is whatever is left over; ``min(ny, nx) // n_boxes`` usually leaves
    a strip of a few pixels whose noisy estimate then enters the median that makes ``globalback``,
    biasing it by about 1% on a sky gradient of a few percent.
    """
    n = max(1, round(side / box))
    return -(-side // n)


def estimate_background(
    image: np.ndarray, n_boxes: int = 3, mask_sources: bool = False, filter_size: int = 3
) -> Background:
    """Estimate the sky with sep's mesh background.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Unsubtracted image, e-/s. NaN pixels are masked.
    n_boxes : int
        Number of background boxes along the shorter axis: box size ``min(ny, nx) // n_boxes`` pixels.
    mask_sources : bool
        If true, sources found at 2 sigma (minimum area 10 pixels) on a first sky-subtracted image are
        masked (their segments and ellipses of 5 times their moment radii) and the background is
        measured again.
    filter_size : int
        Median filter size over boxes (sep ``fw``, ``fh``).

    Returns
    -------
    Background
        Sky map, global level and global rms, e-/s. The box size is adjusted by a few pixels so that
        equal boxes tile each axis (see :func:`_even_box`); on a linear sky gradient ``level`` is then
        the mean sky.

    Raises
    ------
    ValueError
        If the image is not 2-D, or n_boxes or filter_size is not a positive integer, or the boxes
        would be empty.
    RuntimeError
        If sep fails.
    """
    for name, value in [("n_boxes", n_boxes), ("filter_size", filter_size)]:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    data, nan_mask = _sep_ready(image)
    box = min(data.shape) // n_boxes
    if box < 1:
        raise ValueError(f"n_boxes={n_boxes} is larger than the image's shorter side {min(data.shape)}")
    box_height, box_width = (_even_box(side, box) for side in data.shape)

    def background(mask: np.ndarray) -> sep.Background:
        try:
            return sep.Background(
                data, mask=mask, bw=box_width, bh=box_height, fw=filter_size, fh=filter_size
            )
        except Exception as exc:  # sep raises bare Exception
            raise RuntimeError(f"sep background estimation failed: {exc}") from exc

    bkg = background(nan_mask)
    if mask_sources:
        objects, segmentation = _sep_extract(
            data - bkg.back(),
            thresh=2.0,
            var=bkg.globalrms**2,
            mask=nan_mask,
            minarea=10,
            segmentation_map=True,
        )
        source_mask = segmentation > 0
        # The 2-sigma segments miss the PSF wings, which bias the sky high: also mask ellipses of 5
        # times each source's moment radii.
        sep.mask_ellipse(
            source_mask, objects["x"], objects["y"], objects["a"], objects["b"], objects["theta"], r=5.0
        )
        bkg = background(nan_mask | source_mask)
    return Background(sky=bkg.back(), level=float(bkg.globalback), rms=float(bkg.globalrms))


def extract_sources(
    image_sub: np.ndarray, rms: float, exptime: float, threshold: float = 2.0, min_area: int = 20
) -> Table:
    """Detect sources with sep on a sky-subtracted image.

    Parameters
    ----------
    image_sub : ndarray, shape (ny, nx)
        Sky-subtracted image, e-/s. NaN pixels are masked.
    rms : float
        Sky noise, e-/s.
    exptime : float
        Exposure time, s, for the Poisson part of the variance
        ``((rms t)^2 + |image t|) / t^2`` in (e-/s)^2.
    threshold : float
        Detection threshold in units of the per-pixel noise.
    min_area : int
        Minimum number of pixels of a source.

    Returns
    -------
    astropy.table.Table
        One row per source, brightest ``flux`` (e-/s) first, with every sep column plus
        ``xcentroid``, ``ycentroid`` (pixels), ``FWHM`` = 2 sqrt(ln2 (a^2 + b^2)) (pixels, moment-based)
        and ``ellipticity`` = 1 - b/a. Elongated outliers (a/b > median + 3 std of a/b) are dropped.

    Raises
    ------
    ValueError
        If an argument is out of range.
    RuntimeError
        If sep fails.
    """
    _check_positive("rms", rms)
    _check_positive("exptime", exptime)
    _check_positive("threshold", threshold)
    if isinstance(min_area, bool) or not isinstance(min_area, int | np.integer) or min_area < 1:
        raise ValueError(f"min_area must be a positive integer, got {min_area!r}")
    data, nan_mask = _sep_ready(image_sub)
    variance = np.ascontiguousarray(rms**2 + np.abs(data) / exptime)
    objects = _sep_extract(data, thresh=float(threshold), var=variance, mask=nan_mask, minarea=int(min_area))
    sources = Table(objects)
    sources["xcentroid"] = sources["x"]
    sources["ycentroid"] = sources["y"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(sources["b"] > 0, sources["a"] / sources["b"], np.inf)
    keep = np.isfinite(ratio)
    if keep.any():
        # Drop only ratios strictly above the limit (lightcurver: >=), so that identical ratios
        # (std 0, e.g. a single source) are not all dropped.
        keep &= ratio <= np.median(ratio[keep]) + 3 * np.std(ratio[keep])
    sources = sources[keep]
    sources["FWHM"] = 2 * np.sqrt(np.log(2) * (sources["a"] ** 2 + sources["b"] ** 2))
    sources["ellipticity"] = 1 - sources["b"] / sources["a"]
    sources.sort("flux", reverse=True)
    return sources


# --------------------------------------------------------------------------------------------------
# Seeing


def seeing_histogram_mode(fwhm_values: np.ndarray | Sequence[float]) -> float:
    """Combine per-source FWHMs into one seeing value (COSMOULINE / Tewes histogram method).

    Non-finite values are ignored. With more than 10 values: ``med = max(median, 1.5)``,
    ``max_fwhm = min(30, 3 med)``; a 10-bin histogram over [1.5, max_fwhm]; if its peak is in the
    first or last bin the median is returned; otherwise a second 10-bin histogram over
    [peak - 2, peak + 2] around the peak bin's centre gives ``p2`` (its peak bin's centre), and the
    result is the median of the values in (p2 - 1, p2 + 1), or ``p2`` if there are none.
    With 1 to 10 values: their median. With none: NaN.

    Parameters
    ----------
    fwhm_values : array_like, shape (n,)
        FWHMs, pixels.

    Returns
    -------
    float
        Seeing, pixels.
    """
    values = np.asarray(fwhm_values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return math.nan
    median = float(np.median(values))
    if values.size <= 10:
        return median
    max_fwhm = min(30.0, 3 * max(median, 1.5))
    counts, edges = np.histogram(values, bins=10, range=(1.5, max_fwhm))
    peak_bin = int(np.argmax(counts))
    if peak_bin in (0, len(counts) - 1):
        return median
    peak = 0.5 * (edges[peak_bin] + edges[peak_bin + 1])
    counts, edges = np.histogram(values, bins=10, range=(peak - 2, peak + 2))
    peak_bin = int(np.argmax(counts))
    p2 = 0.5 * (edges[peak_bin] + edges[peak_bin + 1])
    near = values[(values > p2 - 1) & (values < p2 + 1)]
    return float(np.median(near)) if near.size else float(p2)


def measure_seeing(
    image_sub: np.ndarray,
    sources: Table,
    rms: float,
    saturation: float | None = None,
    max_stars: int = 50,
) -> SeeingEstimate:
    """Measure the seeing by fitting elliptical Moffat profiles to bright isolated stars.

    Stars are sources with sep ``flag == 0``, peak S/N (``peak / rms``) above 30, whose square stamp
    lies inside the image without NaN and with a maximum below ``saturation``. The stamp half-width
    is 2.5 times the median sep FWHM of the candidates (clipped to 5-20 pixels). Neighbours brighter
    than 1% of the star are masked in the stamp by discs of 1.5 sep FWHMs; a star with such a
    neighbour closer than 3 sep FWHMs is not used. The ``max_stars`` brightest are each fitted with
    an elliptical Moffat plus a constant, integrated over pixels (3x3 sub-pixel grid), by least
    squares. Failed fits, FWHMs below 0.5 pixel or above the stamp half-width, and centres more than
    2 pixels from sep's are rejected. The per-star effective FWHMs
    ``sqrt(FWHM_major FWHM_minor)`` are combined with :func:`seeing_histogram_mode`.

    Parameters
    ----------
    image_sub : ndarray, shape (ny, nx)
        Sky-subtracted image, e-/s.
    sources : astropy.table.Table
        Output of :func:`extract_sources` (needs ``x``, ``y``, ``flux``, ``peak``, ``flag``, ``FWHM``).
    rms : float
        Sky noise, e-/s.
    saturation : float or None
        Saturation level in the units and zero point of ``image_sub`` (e-/s above the sky); stars
        whose stamp reaches it are skipped. None: no saturation cut.
    max_stars : int
        Maximum number of stars fitted.

    Returns
    -------
    SeeingEstimate
        NaN FWHM and ellipticity with ``n_stars = 0`` when no star could be fitted.

    Raises
    ------
    ValueError
        If an argument is out of range.
    """
    _check_positive("rms", rms)
    if saturation is not None:
        _check_positive("saturation", saturation)
    if isinstance(max_stars, bool) or not isinstance(max_stars, int | np.integer) or max_stars < 1:
        raise ValueError(f"max_stars must be a positive integer, got {max_stars!r}")
    image = np.asarray(image_sub, dtype=np.float64)
    if image.ndim != 2:
        raise ValueError(f"image_sub must be 2-D, got shape {image.shape}")
    nothing = SeeingEstimate(fwhm_pixels=math.nan, ellipticity=math.nan, n_stars=0)
    if len(sources) == 0:
        return nothing

    x = np.asarray(sources["x"], dtype=np.float64)
    y = np.asarray(sources["y"], dtype=np.float64)
    flux = np.asarray(sources["flux"], dtype=np.float64)
    candidates = (np.asarray(sources["flag"]) == 0) & (
        np.asarray(sources["peak"]) / rms > _SEEING_MIN_PEAK_SNR
    )
    if not candidates.any():
        return nothing
    fwhm_guess = float(np.median(np.asarray(sources["FWHM"])[candidates]))
    half = int(np.clip(math.ceil(2.5 * fwhm_guess), 5, 20))

    ny, nx = image.shape
    ix, iy = np.rint(x).astype(int), np.rint(y).astype(int)
    candidates &= (ix - half >= 0) & (ix + half < nx) & (iy - half >= 0) & (iy + half < ny)
    tree = cKDTree(np.column_stack([x, y]))
    mask_radius = _NEIGHBOUR_MASK_RADIUS * fwhm_guess
    fitter = _MoffatFitter(half)
    stamp_y, stamp_x = np.mgrid[-half : half + 1, -half : half + 1]
    fwhms: list[float] = []
    ellipticities: list[float] = []
    n_tried = 0
    for i in np.flatnonzero(candidates)[np.argsort(-flux[candidates], kind="stable")]:
        neighbours = [
            j
            for j in tree.query_ball_point([x[i], y[i]], r=half * math.sqrt(2) + mask_radius)
            if j != i and flux[j] > 0.01 * flux[i]
        ]
        if any(math.hypot(x[j] - x[i], y[j] - y[i]) < 2 * mask_radius for j in neighbours):
            continue
        stamp = image[iy[i] - half : iy[i] + half + 1, ix[i] - half : ix[i] + half + 1]
        if not np.isfinite(stamp).all() or (saturation is not None and stamp.max() >= saturation):
            continue
        weights = np.full(stamp.shape, 1 / rms)
        for j in neighbours:
            weights[np.hypot(stamp_x - (x[j] - ix[i]), stamp_y - (y[j] - iy[i])) < mask_radius] = 0.0
        n_tried += 1
        fit = fitter.fit(stamp, weights, x[i] - (ix[i] - half), y[i] - (iy[i] - half), fwhm_guess)
        if fit is not None:
            fwhms.append(fit[0])
            ellipticities.append(fit[1])
        if n_tried >= max_stars:
            break
    if not fwhms:
        return nothing
    return SeeingEstimate(
        fwhm_pixels=seeing_histogram_mode(fwhms),
        ellipticity=float(np.median(ellipticities)),
        n_stars=len(fwhms),
    )


class _MoffatFitter:
    """Least-squares fit of a pixel-integrated elliptical Moffat plus constant on square stamps.

    Model: ``A (1 + q)^(-beta) + c`` with ``q = (l11 dx + l21 dy)^2 + (l22 dy)^2``, where ``l11, l22 > 0``
    and ``l21`` form a Cholesky factor of the inverse shape matrix, so every parameter set is a valid
    ellipse and a round star has no degenerate position angle. The fitted parameters are unconstrained
    (``log A, x0, y0, log l11, l21, log l22, log(beta - 1), c``), which allows MINPACK's
    Levenberg-Marquardt (a bounded trust-region fit is several times slower on these small problems).
    """

    def __init__(self, half: int) -> None:
        self.half = half
        self.size = 2 * half + 1
        n_sub = _MOFFAT_SUBSAMPLING
        offsets = (np.arange(n_sub) - (n_sub - 1) / 2) / n_sub
        pix = np.arange(self.size, dtype=np.float64)
        # Sub-pixel coordinates with shape (size, n_sub, size, n_sub): y, sub-y, x, sub-x.
        grid_shape = (self.size, n_sub, self.size, n_sub)
        self.xs = np.broadcast_to(pix[None, None, :, None] + offsets[None, None, None, :], grid_shape)
        self.ys = np.broadcast_to(pix[:, None, None, None] + offsets[None, :, None, None], grid_shape)

    @staticmethod
    def _block_mean(values: np.ndarray) -> np.ndarray:
        return values.mean(axis=(1, 3)).ravel()

    def _terms(self, p: np.ndarray) -> tuple[np.ndarray, ...]:
        log_amplitude, x0, y0, log_l11, l21, log_l22, log_beta_1, _ = p
        l11, l22, beta = math.exp(log_l11), math.exp(log_l22), 1.0 + math.exp(log_beta_1)
        dx, dy = self.xs - x0, self.ys - y0
        u, v = l11 * dx + l21 * dy, l22 * dy
        one_q = 1.0 + u * u + v * v
        profile = math.exp(log_amplitude) * one_q ** (-beta)
        return dx, dy, u, v, one_q, profile

    def _residuals(self, p: np.ndarray, stamp: np.ndarray, weight: np.ndarray) -> np.ndarray:
        *_, profile = self._terms(p)
        return (self._block_mean(profile) + p[7] - stamp) * weight

    def _jacobian(self, p: np.ndarray, stamp: np.ndarray, weight: np.ndarray) -> np.ndarray:
        _, _, _, log_l11, l21, log_l22, log_beta_1, _ = p
        l11, l22, beta = math.exp(log_l11), math.exp(log_l22), 1.0 + math.exp(log_beta_1)
        dx, dy, u, v, one_q, profile = self._terms(p)
        d_q = -beta * profile / one_q  # d model / d q
        columns = [
            profile,
            d_q * (-2 * u * l11),
            d_q * (-2 * (u * l21 + v * l22)),
            d_q * (2 * u * dx) * l11,
            d_q * (2 * u * dy),
            d_q * (2 * v * dy) * l22,
            -profile * np.log(one_q) * (beta - 1),
        ]
        jac = np.ones((self.size * self.size, 8))
        for k, column in enumerate(columns):
            jac[:, k] = self._block_mean(column)
        return jac * weight[:, None]

    def fit(
        self, stamp: np.ndarray, weights: np.ndarray, x0: float, y0: float, fwhm_guess: float
    ) -> tuple[float, float] | None:
        """Fit one stamp; return (effective FWHM in pixels, ellipticity) or None for a rejected fit.

        ``stamp`` and ``weights`` (1/noise, 0 for masked pixels) have shape (size, size), the stamp a
        positive maximum; ``x0, y0`` are the first guess of the centre in stamp pixels; ``fwhm_guess``
        is in pixels.
        """
        beta0 = 3.0
        log_l0 = -math.log(max(fwhm_guess, 1.0) / (2 * math.sqrt(2 ** (1 / beta0) - 1)))
        p0 = np.array([math.log(stamp.max()), x0, y0, log_l0, 0.0, log_l0, math.log(beta0 - 1), 0.0])
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            try:
                result = least_squares(
                    self._residuals,
                    p0,
                    jac=self._jacobian,
                    method="lm",
                    x_scale="jac",
                    args=(stamp.ravel(), weights.ravel()),
                    max_nfev=200,
                )
            except (ValueError, OverflowError, np.linalg.LinAlgError):
                return None
        if not result.success or not np.all(np.isfinite(result.x)):
            return None
        _, xf, yf, log_l11, l21, log_l22, log_beta_1, _ = result.x
        if math.hypot(xf - x0, yf - y0) > 2 or not -10 < log_beta_1 < 10:
            return None
        l11, l22, beta = math.exp(log_l11), math.exp(log_l22), 1.0 + math.exp(log_beta_1)
        shape_inverse = np.array([[l11 * l11, l11 * l21], [l11 * l21, l21 * l21 + l22 * l22]])
        eig_small, eig_large = np.linalg.eigvalsh(shape_inverse)
        scale = 2 * math.sqrt(2 ** (1 / beta) - 1)
        fwhm_major, fwhm_minor = scale / math.sqrt(eig_small), scale / math.sqrt(eig_large)
        fwhm = math.sqrt(fwhm_major * fwhm_minor)
        if not _MIN_FIT_FWHM_PIXELS <= fwhm <= self.half:
            return None
        return fwhm, 1 - fwhm_minor / fwhm_major


# --------------------------------------------------------------------------------------------------
# Ephemeris


def ephemeris(
    mjd: float,
    ra_deg: float,
    dec_deg: float,
    latitude_deg: float,
    longitude_deg: float,
    elevation_m: float,
) -> Ephemeris:
    """Target, Moon and Sun positions for an observer, with pyephem.

    pyephem's default atmosphere (1010 mbar, 15 °C) applies, so all altitudes include refraction.
    The target is a fixed J2000 position. The airmass is Rozenberg's
    ``X = 1 / (sin h + 0.025 exp(-11 sin h))`` of the (refracted) altitude h, and -1 below the horizon.

    Parameters
    ----------
    mjd : float
        Modified Julian Date (UTC) of the observation.
    ra_deg, dec_deg : float
        Target J2000 right ascension and declination, deg.
    latitude_deg, longitude_deg : float
        Observer geodetic latitude and east longitude, deg.
    elevation_m : float
        Observer elevation above sea level, m.

    Returns
    -------
    Ephemeris

    Raises
    ------
    ValueError
        If a value is not finite or out of range.
    """
    for name, value in [
        ("mjd", mjd),
        ("ra_deg", ra_deg),
        ("dec_deg", dec_deg),
        ("latitude_deg", latitude_deg),
        ("longitude_deg", longitude_deg),
        ("elevation_m", elevation_m),
    ]:
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    for name, value in [("dec_deg", dec_deg), ("latitude_deg", latitude_deg)]:
        if not -90 <= value <= 90:
            raise ValueError(f"{name} must be within [-90, 90], got {value!r}")

    observer = ephem.Observer()
    observer.lat = ephem.degrees(math.radians(latitude_deg))
    observer.lon = ephem.degrees(math.radians(longitude_deg))
    observer.elevation = float(elevation_m)
    observer.date = ephem.Date(float(mjd) + 2400000.5 - 2415020.0)  # Dublin Julian Date
    observer.epoch = ephem.J2000

    target = ephem.FixedBody()
    target._ra = ephem.hours(math.radians(ra_deg % 360.0))
    target._dec = ephem.degrees(math.radians(dec_deg))
    target._epoch = ephem.J2000
    target.compute(observer)
    moon = ephem.Moon(observer)
    sun = ephem.Sun(observer)

    sin_h = math.sin(float(target.alt))
    airmass = 1.0 / (sin_h + 0.025 * math.exp(-11.0 * sin_h)) if sin_h >= 0 else -1.0
    return Ephemeris(
        airmass=airmass,
        altitude=math.degrees(target.alt),
        azimuth=math.degrees(target.az),
        degrees_to_moon=math.degrees(ephem.separation(target, moon)),
        moon_phase=float(moon.phase),
        moon_altitude=math.degrees(moon.alt),
        sun_altitude=math.degrees(sun.alt),
    )


# --------------------------------------------------------------------------------------------------
# The whole import of one frame


def calibrate_frame(
    raw: RawFrame,
    gain: float,
    exptime: float,
    *,
    n_boxes: int,
    mask_sources: bool,
    subtract_background: bool = True,
    threshold: float,
    min_area: int,
    saturation_adu: float | None = None,
) -> CalibratedFrame:
    """Convert a raw frame to e-/s, subtract the sky, extract sources and measure the seeing.

    Sky level and rms are measured on the unsubtracted e-/s image whether or not the returned image
    is sky-subtracted. A frame without detected sources is returned with NaN seeing and ellipticity.

    Parameters
    ----------
    raw : RawFrame
        Output of :func:`read_raw_frame`.
    gain : float
        e-/ADU.
    exptime : float
        Exposure time, s.
    n_boxes : int
        Background boxes along the shorter axis (see :func:`estimate_background`).
    mask_sources : bool
        Mask sources before the final background estimate.
    subtract_background : bool
        Return the sky-subtracted image (True) or the unsubtracted e-/s image (False).
    threshold : float
        Source detection threshold, sigma.
    min_area : int
        Minimum source area, pixels.
    saturation_adu : float or None
        Saturation level of the raw data, ADU (``saturation_adu * gain / exptime`` in e-/s); stars
        reaching it are not used for the seeing.

    Returns
    -------
    CalibratedFrame

    Raises
    ------
    FrameError
        If gain, exptime or saturation_adu is not a finite positive number, or sep fails on this frame.
    """
    try:
        image = to_electrons_per_second(raw.data, gain, exptime)
        if saturation_adu is not None:
            _check_positive("saturation_adu", saturation_adu)
    except ValueError as exc:
        raise FrameError(raw.path, str(exc)) from exc
    try:
        background = estimate_background(image, n_boxes=n_boxes, mask_sources=mask_sources)
        image_sub = image - background.sky
        sources = extract_sources(image_sub, background.rms, exptime, threshold=threshold, min_area=min_area)
    except RuntimeError as exc:
        raise FrameError(raw.path, str(exc)) from exc
    saturation = None
    if saturation_adu is not None:
        # Above-sky saturation level; a value at or below the sky means every star is saturated.
        saturation = max(saturation_adu * gain / exptime - background.level, np.finfo(float).tiny)
    seeing = measure_seeing(image_sub, sources, background.rms, saturation=saturation)

    header = raw.header.copy()
    header["BUNIT"] = ("ELPERSEC", "electrons per second")
    output = image_sub if subtract_background else image
    return CalibratedFrame(
        path=raw.path,
        image=output.astype(np.float32),
        header=header,
        sources=sources,
        sky_level=background.level,
        sky_rms=background.rms,
        seeing_pixels=seeing.fwhm_pixels,
        ellipticity=seeing.ellipticity,
        n_sources=len(sources),
    )


def write_calibrated_frame(frame: CalibratedFrame, image_path: Path | str, sources_path: Path | str) -> None:
    """Write the calibrated image and its source table atomically.

    Each file is written to a temporary file in its destination directory and moved into place with
    :func:`os.replace`, so readers never see a partial file. Parent directories are created.

    Parameters
    ----------
    frame : CalibratedFrame
        The frame.
    image_path : Path or str
        Destination of the float32 primary-HDU image (e-/s) with the frame's header.
    sources_path : Path or str
        Destination of the sources as a FITS binary table.

    Raises
    ------
    FrameError
        If the frame's header cannot be written as valid FITS.
    """
    image_hdul = fits.HDUList([fits.PrimaryHDU(data=frame.image.astype(np.float32), header=frame.header)])
    sources_hdul = fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(frame.sources)])
    try:
        _write_atomically(image_hdul, Path(image_path))
    except fits.VerifyError as exc:
        raise FrameError(frame.path, f"calibrated header cannot be written as FITS: {exc}") from exc
    _write_atomically(sources_hdul, Path(sources_path))


def _write_atomically(hdul: fits.HDUList, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name in the same directory (same file system, so os.replace is atomic), created by
    # astropy with the usual permissions.
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        hdul.writeto(temporary, overwrite=True, output_verify="silentfix")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
