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

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from lightcurver_ops._checks import check_non_negative_int, check_positive
from lightcurver_ops.background import BackgroundModel, estimate_background
from lightcurver_ops.errors import FrameError
from lightcurver_ops.files import atomic_path
from lightcurver_ops.seeing import measure_seeing
from lightcurver_ops.sources import add_windowed_positions, extract_sources

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
        check_non_negative_int(name, value)

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
    check_positive("gain", gain)
    check_positive("exptime", exptime)
    return np.asarray(data_adu, dtype=np.float64) * (float(gain) / float(exptime))


def calibrate_frame(
    raw: RawFrame,
    gain: float,
    exptime: float,
    *,
    n_boxes: int,
    mask_sources: bool,
    background_model: BackgroundModel = "mesh",
    polynomial_degree: int = 2,
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
    background_model : {"mesh", "polynomial"}
        Sky model (see :func:`estimate_background`).
    polynomial_degree : int
        Degree of the polynomial sky model.
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
            check_positive("saturation_adu", saturation_adu)
    except ValueError as exc:
        raise FrameError(raw.path, str(exc)) from exc
    try:
        background = estimate_background(
            image,
            n_boxes=n_boxes,
            mask_sources=mask_sources,
            model=background_model,
            polynomial_degree=polynomial_degree,
        )
        image_sub = image - background.sky
        sources = extract_sources(image_sub, background.rms, exptime, threshold=threshold, min_area=min_area)
    except RuntimeError as exc:
        raise FrameError(raw.path, str(exc)) from exc
    saturation = None
    if saturation_adu is not None:
        # Above-sky saturation level; a value at or below the sky means every star is saturated.
        saturation = max(saturation_adu * gain / exptime - background.level, np.finfo(float).tiny)
    seeing = measure_seeing(image_sub, sources, background.rms, saturation=saturation)
    add_windowed_positions(image_sub, sources, seeing.fwhm_pixels)

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
    with atomic_path(path) as temporary:
        hdul.writeto(temporary, overwrite=True, output_verify="silentfix")
