"""Absolute zero points: catalogue magnitudes of the reference stars and the zero point of a frame.

A frame's absolute zero point is the magnitude of a source giving 1 e-/s in it. It is measured from
the reference stars, whose magnitudes in the pipeline's band come either from Gaia G, BP and RP
through a colour polynomial, or from Pan-STARRS DR1 mean PSF photometry (``<b>_panstarrs`` bands,
including the synthetic ATLAS ``c`` and ``o``).

Fixes of lightcurver 1.2.4 (spec §6.10, §11.3 item 15):

- Each Gaia colour polynomial is used only inside the colour interval it was fitted on; outside it,
  or when BP or RP is missing, the magnitude is NaN (lightcurver extrapolated and propagated NaN
  silently).
- ATLAS ``c`` and ``o`` errors are combined in quadrature, not linearly.
- A Pan-STARRS query that fails is an error naming the position, not an empty answer; the same
  best-match rule applies to an online query and to a local Pan-STARRS table.

Conventions: magnitudes in mag, fluxes in e-/s, angles in degrees unless named ``*_arcsec``.
"""

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from pathlib import Path
from typing import Any

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.table import Table

from lightcurver_ops._checks import check_positive
from lightcurver_ops.errors import CatalogError
from lightcurver_ops.sky import separation_deg


@dataclass(frozen=True)
class ColourTransform:
    """A Gaia colour polynomial ``G - X = sum_i c_i (BP-RP)**i`` and where it holds.

    Attributes
    ----------
    coefficients : tuple of float
        ``c_0, c_1, ...`` of ``G - X`` in powers of ``BP - RP`` (mag).
    colour_range : (float, float)
        Closed interval of ``BP - RP`` (mag) on which the polynomial was fitted.
    nominal_error_mag : float
        Uncertainty given to a transformed magnitude (mag).
    """

    coefficients: tuple[float, ...]
    colour_range: tuple[float, float]
    nominal_error_mag: float = 0.03


# Coefficients: Gaia EDR3 documentation §5.5.1 (Riello et al. 2021, A&A 649, A3, Table C.2), as
# lightcurver uses them (spec §6.10). Colour ranges: Riello et al. 2021, Table C.1 ("Applicable
# range for the relationships between the Gaia EDR3 system and the other photometric systems"), the
# intervals the EDR3 documentation also gives. Two footnotes there restrict part of a range to M
# giants: G-r above BP-RP = 2.0 and G-g (footnote g) at the red end. The nominal error is
# lightcurver's 0.03 mag for every band (the documentation's per-band fit scatter, 0.03-0.08 mag,
# is not reproduced here).
GAIA_TRANSFORMS: dict[str, ColourTransform] = {
    "r_sdss": ColourTransform((-0.09837, 0.08592, 0.1907, -0.1701, 0.02263), (0.0, 3.0)),
    "i_sdss": ColourTransform((-0.293, 0.6404, -0.09609, -0.002104), (0.5, 2.0)),
    "g_sdss": ColourTransform((0.2199, -0.6365, -0.1548, 0.0064), (0.3, 3.0)),
    "V": ColourTransform((-0.02704, 0.01424, -0.2156, 0.01426), (-0.5, 5.0)),
    "R": ColourTransform((-0.02275, 0.3961, -0.1243, -0.01396, 0.003775), (0.0, 4.0)),
    "Ic": ColourTransform((0.01753, 0.76, -0.0991), (-0.5, 4.5)),
    "V_T": ColourTransform((-0.01077, -0.0682, -0.2387, 0.02342), (-0.35, 4.0)),
    "B_T": ColourTransform((-0.004288, -0.8547, 0.1244, -0.9085, 0.4843, -0.06814), (-0.3, 3.0)),
}
"""Gaia (E)DR3 colour transformations by band name (the config's ``photometric_band``)."""

PANSTARRS_FILTERS = ("g", "r", "i", "z", "y")
"""Pan-STARRS DR1 filters with mean PSF magnitudes ``<b>MeanPSFMag`` / ``<b>MeanPSFMagErr``."""

ATLAS_FROM_PANSTARRS: dict[str, dict[str, float]] = {
    "c": {"g": 0.49, "r": 0.51},
    "o": {"r": 0.55, "i": 0.45},
}
"""ATLAS ``c`` and ``o`` as weighted sums of Pan-STARRS magnitudes (Tonry et al. 2018, ApJ 867, 105,
Eq. 2)."""

PANSTARRS_BANDS = tuple(f"{name}_panstarrs" for name in (*PANSTARRS_FILTERS, *ATLAS_FROM_PANSTARRS))
"""Band names (as in the config) served by Pan-STARRS."""

PANSTARRS_ID_COLUMNS = ("objID", "raMean", "decMean", "nDetections")
"""Columns of a Pan-STARRS table besides the magnitudes: identifier, position (deg), detections."""

PANSTARRS_RADIUS_ARCSEC = 1.5
"""Default match radius of a reference star to Pan-STARRS (lightcurver's)."""

PANSTARRS_MIN_DETECTION_FRACTION = 0.2
"""Among several matches, those with more than this fraction of the most detections are kept."""

_PANSTARRS_MISSING = -999.0  # Pan-STARRS' value for "no measurement"


# --------------------------------------------------------------------------------------------------
# Gaia


def _transform(band: str) -> ColourTransform:
    try:
        return GAIA_TRANSFORMS[band]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown Gaia band {band!r}; expected one of {', '.join(GAIA_TRANSFORMS)}"
        ) from None


def _float_array(name: str, values: Any) -> np.ndarray:
    """``values`` as float64 with masked entries NaN."""
    try:
        return np.ma.filled(np.ma.asarray(values, dtype=np.float64), np.nan)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numbers (mag), got {values!r}") from None


def gaia_band_magnitudes(g: Any, bp: Any, rp: Any, band: str) -> tuple[np.ndarray, np.ndarray]:
    """Magnitudes in ``band`` from Gaia G, BP and RP through the band's colour polynomial.

    ``band_mag = G - sum_i c_i (BP - RP)**i`` with the coefficients of `GAIA_TRANSFORMS`.

    Parameters
    ----------
    g, bp, rp : array_like of float, broadcastable to one shape
        Gaia ``phot_g_mean_mag``, ``phot_bp_mean_mag`` and ``phot_rp_mean_mag`` (mag); NaN or masked
        where missing.
    band : str
        One of `GAIA_TRANSFORMS` (e.g. ``'r_sdss'``).

    Returns
    -------
    mag, mag_err : numpy.ndarray of float64, the broadcast shape
        Magnitude in ``band`` and its nominal uncertainty (mag). Both are NaN where G, BP or RP is
        missing or where ``BP - RP`` is outside the band's colour range (ends included).

    Raises
    ------
    ValueError
        If ``band`` is unknown or a magnitude argument is not numeric.
    """
    transform = _transform(band)
    g, bp, rp = (_float_array(name, v) for name, v in (("g", g), ("bp", bp), ("rp", rp)))
    colour = bp - rp
    lo, hi = transform.colour_range
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(g) & (colour >= lo) & (colour <= hi)
    # Summed term by term in increasing powers (the simulator's values depend on this order).
    mag = g - sum(c * colour**i for i, c in enumerate(transform.coefficients))
    mag = np.where(valid, mag, np.nan)
    return mag, np.where(valid, transform.nominal_error_mag, np.nan)


# --------------------------------------------------------------------------------------------------
# Pan-STARRS magnitudes


def _panstarrs_filter(band: str) -> str:
    """``'r'`` from ``'r_panstarrs'`` (also ``'c'``, ``'o'``)."""
    if band not in PANSTARRS_BANDS:
        raise ValueError(f"unknown Pan-STARRS band {band!r}; expected one of {', '.join(PANSTARRS_BANDS)}")
    return band.removesuffix("_panstarrs")


def panstarrs_columns(band: str) -> tuple[str, ...]:
    """Magnitude columns (``<b>MeanPSFMag``, ``<b>MeanPSFMagErr``) a Pan-STARRS band is computed from.

    Raises
    ------
    ValueError
        If ``band`` is not one of `PANSTARRS_BANDS`.
    """
    name = _panstarrs_filter(band)
    filters = tuple(ATLAS_FROM_PANSTARRS[name]) if name in ATLAS_FROM_PANSTARRS else (name,)
    return tuple(column for f in filters for column in (f"{f}MeanPSFMag", f"{f}MeanPSFMagErr"))


def _psf_values(row_or_columns: Any, column: str) -> np.ndarray:
    """A magnitude column as float64; missing, masked, non-positive and -999 values NaN."""
    try:
        raw = row_or_columns[column]
    except (KeyError, IndexError, ValueError):
        raise CatalogError(f"Pan-STARRS data lack column '{column}'") from None
    if raw is None or raw is np.ma.masked:
        return np.array(np.nan)
    values = np.ma.asarray(raw)
    if values.dtype.kind == "O":  # e.g. a column of a dict row list, None where missing
        flat = [np.nan if v is None or v is np.ma.masked else v for v in values.filled(None).ravel()]
        values = np.ma.asarray(flat).reshape(values.shape)
    try:
        values = np.ma.filled(values.astype(np.float64), np.nan)
    except (TypeError, ValueError):
        raise CatalogError(f"Pan-STARRS column '{column}' is not numeric: {raw!r}") from None
    with np.errstate(invalid="ignore"):
        return np.where((values > 0) & (values != _PANSTARRS_MISSING), values, np.nan)


def panstarrs_band_magnitude(row_or_columns: Any, band: str) -> tuple[Any, Any]:
    """Magnitude in a Pan-STARRS band (or synthetic ATLAS ``c``/``o``) from mean PSF photometry.

    ``g, r, i, z, y`` are ``<b>MeanPSFMag`` and ``<b>MeanPSFMagErr``. ATLAS magnitudes follow Tonry et
    al. (2018, Eq. 2): ``c = 0.49 g + 0.51 r`` and ``o = 0.55 r + 0.45 i``, with errors
    ``sqrt(sum (w_b sigma_b)**2)`` for independent Pan-STARRS errors. lightcurver added the weighted
    errors linearly, which overestimates the error (by up to a factor sqrt(2)).

    Parameters
    ----------
    row_or_columns : mapping, astropy Row or Table
        Anything indexable by column name: one Pan-STARRS row (scalars) or columns (arrays of one
        shape), with the columns of `panstarrs_columns` for ``band``.
    band : str
        One of `PANSTARRS_BANDS`, e.g. ``'r_panstarrs'`` or ``'c_panstarrs'``.

    Returns
    -------
    mag, mag_err : float or numpy.ndarray of float64
        Magnitude and uncertainty (mag); floats for a row, arrays of the columns' shape otherwise.
        NaN where an input is missing, masked, None, non-positive or -999 (Pan-STARRS' "no value");
        for ``c``/``o`` where any of the two filters is.

    Raises
    ------
    ValueError
        If ``band`` is unknown.
    CatalogError
        If a needed column is missing or not numeric.
    """
    name = _panstarrs_filter(band)
    weights = ATLAS_FROM_PANSTARRS.get(name, {name: 1.0})
    mag: Any = 0.0
    variance: Any = 0.0
    for f, weight in weights.items():
        mag = mag + weight * _psf_values(row_or_columns, f"{f}MeanPSFMag")
        variance = variance + (weight * _psf_values(row_or_columns, f"{f}MeanPSFMagErr")) ** 2
    err = np.sqrt(variance)
    err = np.where(np.isfinite(mag), err, np.nan)
    if np.ndim(mag) == 0:
        return float(mag), float(err)
    return np.asarray(mag, dtype=np.float64), np.asarray(err, dtype=np.float64)


# --------------------------------------------------------------------------------------------------
# Pan-STARRS matching: online and from a local table


def _check_position(ra: object, dec: object) -> tuple[float, float]:
    for label, value in (("ra_deg", ra), ("dec_deg", dec)):
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise ValueError(f"{label} must be a finite number of degrees, got {value!r}")
    if not -90.0 <= float(dec) <= 90.0:
        raise ValueError(f"dec_deg must be within [-90, 90], got {dec!r}")
    return float(ra), float(dec)


def _candidate_columns(table: Table, source: str, columns: Sequence[str]) -> None:
    missing = [name for name in columns if name not in table.colnames]
    if missing:
        raise CatalogError(f"{source}: missing column(s) {', '.join(missing)}")


def _best_match(candidates: Table, ra: float, dec: float) -> int | None:
    """Index of the best of the Pan-STARRS rows found around ``(ra, dec)`` (deg), None if none.

    Several rows: those with more than `PANSTARRS_MIN_DETECTION_FRACTION` of the largest
    ``nDetections`` are kept (all of them if no row has a detection), then the nearest is taken.
    """
    if len(candidates) == 0:
        return None
    detections = np.ma.filled(np.ma.asarray(candidates["nDetections"], dtype=np.float64), 0.0)
    keep = detections > PANSTARRS_MIN_DETECTION_FRACTION * np.max(detections)
    if not np.any(keep):
        keep = np.ones(len(candidates), dtype=bool)
    ra_c = np.ma.filled(np.ma.asarray(candidates["raMean"], dtype=np.float64), np.nan)
    dec_c = np.ma.filled(np.ma.asarray(candidates["decMean"], dtype=np.float64), np.nan)
    distance = np.where(keep, separation_deg(ra_c, dec_c, ra, dec), np.inf)
    distance = np.where(np.isnan(distance), np.inf, distance)
    if not np.any(np.isfinite(distance)):
        return None
    return int(np.argmin(distance))


def _row_dict(row: Any) -> dict[str, Any]:
    """A table row as a plain dict: numpy scalars as Python numbers, masked values as None."""
    out: dict[str, Any] = {}
    for name in row.colnames:
        value = row[name]
        if value is np.ma.masked or np.ma.is_masked(value):
            out[name] = None
        elif isinstance(value, np.generic):
            out[name] = value.item()
        else:
            out[name] = value
    return out


def query_panstarrs(
    ra_deg: float, dec_deg: float, radius_arcsec: float = PANSTARRS_RADIUS_ARCSEC
) -> dict[str, Any] | None:
    """The best Pan-STARRS DR1 mean-photometry match of a position, queried online from MAST.

    Parameters
    ----------
    ra_deg, dec_deg : float
        Position (deg, ICRS; Pan-STARRS mean positions are at epoch ~2012, so give a fast-moving
        star's position at that epoch, not Gaia's).
    radius_arcsec : float
        Search radius (arcsec).

    Returns
    -------
    dict or None
        The row of the best match (see `match_panstarrs` for the rule) with MAST's column names
        (``objID``, ``raMean``, ``decMean``, ``nDetections``, ``<b>MeanPSFMag``, ...), masked values
        as None; None if nothing lies within the radius.

    Raises
    ------
    ValueError
        For a bad position or radius.
    CatalogError
        If the query fails (network, MAST), naming the position, or its answer lacks a needed column.
    """
    ra, dec = _check_position(ra_deg, dec_deg)
    check_positive("radius_arcsec", radius_arcsec)
    from astroquery.exceptions import NoResultsWarning
    from astroquery.mast import Catalogs

    where = f"RA {ra:.6f} Dec {dec:+.6f} deg (radius {radius_arcsec} arcsec)"
    # Every failure is an error, ValueError included (lightcurver read it as "no match"): a JSON
    # decoding error, a ValueError, is what MAST's HTML error pages give. No match is an empty table.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoResultsWarning)
            answer = Catalogs.query_region(
                SkyCoord(ra * u.deg, dec * u.deg),
                radius=radius_arcsec * u.arcsec,
                catalog="Panstarrs",
                data_release="dr1",
            )
    except Exception as error:  # any failure of the remote query is a catalogue error
        raise CatalogError(f"Pan-STARRS DR1 query at {where} failed: {error}") from error
    if answer is None or len(answer) == 0:
        return None
    _candidate_columns(answer, f"Pan-STARRS DR1 answer at {where}", PANSTARRS_ID_COLUMNS)
    best = _best_match(answer, ra, dec)
    return None if best is None else _row_dict(answer[best])


def read_panstarrs_file(path: Path | str, band: str | None = None) -> Table:
    """A local Pan-STARRS DR1 table, checked for the columns the Pan-STARRS matching needs.

    Parameters
    ----------
    path : Path or str
        Any table astropy reads with format auto-detection (FITS, VOTable, ECSV, CSV, ...), with
        MAST's column names.
    band : str, optional
        A `PANSTARRS_BANDS` name: only its magnitude columns are required; all five filters' when
        None.

    Returns
    -------
    astropy.table.Table
        The table as read.

    Raises
    ------
    ValueError
        If ``band`` is unknown.
    CatalogError
        Naming the file: missing, unreadable, or lacking a column (named).
    """
    needed = (
        panstarrs_columns(band)
        if band is not None
        else tuple(column for f in PANSTARRS_FILTERS for column in (f"{f}MeanPSFMag", f"{f}MeanPSFMagErr"))
    )
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"Pan-STARRS file {path} does not exist")
    try:
        table = Table.read(path)
    except Exception as error:  # astropy raises many kinds for an unreadable table
        raise CatalogError(f"Pan-STARRS file {path} cannot be read as a table: {error}") from error
    _candidate_columns(table, f"Pan-STARRS file {path}", (*PANSTARRS_ID_COLUMNS, *needed))
    return table


def match_panstarrs(
    table: Table, ra_deg: Any, dec_deg: Any, radius_arcsec: float = PANSTARRS_RADIUS_ARCSEC
) -> list[dict[str, Any] | None]:
    """The best match of each position in a local Pan-STARRS table, by the rule of `query_panstarrs`.

    Every table row within ``radius_arcsec`` of a position is a candidate; with several, those with
    more than 0.2 times the largest ``nDetections`` among them are kept and the nearest is taken
    (lightcurver kept the detection cut and gave up unless one row remained).

    Parameters
    ----------
    table : astropy.table.Table
        Pan-STARRS rows with at least `PANSTARRS_ID_COLUMNS` (e.g. from `read_panstarrs_file`).
    ra_deg, dec_deg : array_like of float, shape (n,)
        Positions of the stars (deg).
    radius_arcsec : float
        Match radius (arcsec).

    Returns
    -------
    list of (dict or None), length n
        For each star, its matched row as in `query_panstarrs`, or None.

    Raises
    ------
    ValueError
        For positions of different lengths or not finite, or a bad radius.
    CatalogError
        If the table lacks a needed column.
    """
    check_positive("radius_arcsec", radius_arcsec)
    ra, dec = np.atleast_1d(_float_array("ra_deg", ra_deg)), np.atleast_1d(_float_array("dec_deg", dec_deg))
    if ra.shape != dec.shape or ra.ndim != 1:
        raise ValueError(f"ra_deg and dec_deg must be 1-D of one length, got shapes {ra.shape}, {dec.shape}")
    if not (np.all(np.isfinite(ra)) and np.all(np.abs(dec) <= 90.0)):
        raise ValueError("ra_deg and dec_deg must be finite, with Dec within [-90, 90] deg")
    _candidate_columns(table, "Pan-STARRS table", PANSTARRS_ID_COLUMNS)
    matches: list[dict[str, Any] | None] = [None] * len(ra)
    if len(table) == 0 or len(ra) == 0:
        return matches
    row_ra, row_dec = _float_array("raMean", table["raMean"]), _float_array("decMean", table["decMean"])
    located = np.flatnonzero(np.isfinite(row_ra) & (np.abs(row_dec) <= 90.0))
    if located.size == 0:
        return matches
    catalogue = SkyCoord(row_ra[located] * u.deg, row_dec[located] * u.deg)
    stars = SkyCoord(ra * u.deg, dec * u.deg)
    # every (star, row) pair within the radius; match_to_catalog_sky would give only the nearest row
    star_index, located_index, _, _ = catalogue.search_around_sky(stars, radius_arcsec * u.arcsec)
    table_index = located[located_index]
    for star in np.unique(star_index):
        rows = table_index[star_index == star]
        best = _best_match(table[rows], float(ra[star]), float(dec[star]))
        if best is not None:
            matches[int(star)] = _row_dict(table[int(rows[best])])
    return matches


# --------------------------------------------------------------------------------------------------
# Zero point of a frame


def frame_zeropoint(catalogue_mags: Any, fluxes_e_per_s: Any) -> tuple[float, float, int]:
    """Absolute zero point of a frame from the catalogue magnitudes and measured fluxes of its stars.

    ``ZP = median_s(mag_s + 2.5 log10 F_s)``, the magnitude of a source of 1 e-/s.

    Parameters
    ----------
    catalogue_mags : array_like of float, shape (n,)
        Catalogue magnitude of each star in the pipeline's band (mag); NaN where unknown.
    fluxes_e_per_s : array_like of float, shape (n,)
        Flux of each star in the frame (e-/s); NaN or non-positive ones are ignored.

    Returns
    -------
    zeropoint : float
        Median over the usable stars (mag).
    scatter : float
        Sample standard deviation (ddof=1) of the per-star values (mag); NaN for one star.
    n_stars : int
        Number of usable stars.

    Raises
    ------
    ValueError
        If the inputs are not numeric 1-D arrays of one length, or no star is usable.
    """
    mags = _float_array("catalogue_mags", catalogue_mags)
    fluxes = _float_array("fluxes_e_per_s", fluxes_e_per_s)
    if mags.ndim != 1 or mags.shape != fluxes.shape:
        raise ValueError(
            f"catalogue_mags and fluxes_e_per_s must be 1-D of one length, got shapes {mags.shape}, "
            f"{fluxes.shape}"
        )
    with np.errstate(invalid="ignore"):
        usable = np.isfinite(mags) & np.isfinite(fluxes) & (fluxes > 0)
    if not np.any(usable):
        raise ValueError(
            f"no usable star for a zero point among {mags.size}: each needs a catalogue magnitude "
            "and a positive flux"
        )
    values = mags[usable] + 2.5 * np.log10(fluxes[usable])
    scatter = float(np.std(values, ddof=1)) if values.size > 1 else math.nan
    return float(np.median(values)), scatter, int(values.size)
