"""Plate solutions, frame geometry, combined footprints and bad pointings.

Pure functions on arrays, WCS objects and plain values (no database, no configuration object, no
dagster). Three ways of giving a frame a WCS follow lightcurver's plate-solving strategies (spec
§6.3), with its bugs fixed:

- :func:`adapt_wcs_from_reference` carries a reference frame's WCS over to a frame that is shifted,
  rotated or slightly scaled with respect to it. With ``target = A·ref + t`` (pixels) the new WCS has
  ``CRPIX = A·CRPIX_ref + t`` and ``CD = CD_ref·A⁻¹``; lightcurver used ``A·CD_ref``, which is only
  right for near-identity transforms (spec §11.3 item 6). SIP distortion is carried over exactly.
- :func:`solve_with_catalog` is lightcurver's ``alternate_gaia_solve`` done right: the catalogue is
  matched with a rotation and scale left free, then a full TAN WCS (CRVAL and CD) is fitted to every
  matched star, so the ROI may be anywhere in the frame and the rotation is not assumed to be zero.

Both fits are weighted least squares (a star's weight is its flux when fluxes are given, the inverse
centroid variance of a photon-noise-limited source) with iterative rejection of outlying pairs
(blends, cosmic rays next to a star). astroalign's similarity transforms cannot mirror; when it
fails, the match is tried again with one list mirrored, so either parity is solved.
- :func:`solve_with_astrometry_net` runs a local ``solve-field`` on the source list. The list is
  written in FITS pixel coordinates (1-based), as astrometry.net expects.

:func:`frame_geometry` gives the footprint, pixel scale and angle to north from the full pixel scale
matrix (lightcurver ignored CDELT when a PC matrix was present, spec §11.3 item 7).
:func:`combine_footprints` and :func:`bad_pointings` work on unit vectors and in a local tangent plane,
so fields across RA = 0/360 are handled (spec §11.3 item 8).

Conventions
-----------
Pixel coordinates are 0-based with the centre of the first pixel at (0, 0), as in numpy, sep and
astropy's ``*_world2pix(..., 0)``; FITS ``CRPIX`` keywords stay 1-based. Sky coordinates are (RA,
Dec) in degrees. Images have shape ``(ny, nx)``. Source lists are ``(N, 2)`` arrays of ``(x, y)``,
brightest first: the matcher only uses the first 50 of each list.
"""

import os
import shutil
import signal
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import astroalign
import numpy as np
import shapely
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning, Sip
from astropy.wcs.utils import proj_plane_pixel_scales
from scipy.signal import convolve2d
from scipy.spatial import cKDTree
from shapely.geometry import Polygon, mapping

from lightcurver_ops._checks import check_positive
from lightcurver_ops.errors import AstrometryError
from lightcurver_ops.sky import (
    radec,
    sky_from_tangent_plane,
    tangent_plane_offsets,
    unit_vectors,
)

MIN_MATCHES = 5
"""Fewest matched stars accepted for a solution: six affine (or CD + CRVAL) parameters need three,
the rest guard against a chance match."""

MATCH_TOLERANCE_PIXELS = 2.0
"""A source and a predicted position closer than this (pixels) are a match in the refinement."""

MAX_CONTROL_POINTS = 50
"""Sources per list given to astroalign (the brightest)."""

MIN_SINGULAR_VALUE_RATIO = 0.5
"""A fitted linear transform whose smaller/larger singular value ratio is below this is degenerate."""

CATALOG_MARGIN_FRACTION = 0.15
"""Catalogue stars projected up to this fraction of the image size outside the frame are still offered
to the matcher, since the initial guess of rotation and scale may be off by a few per cent."""

MAX_FOOTPRINT_DISTANCE_DEG = 80.0
"""Footprints further than this from their mean pointing cannot be combined in one tangent plane."""

MIN_POINTING_SCATTER_ARCSEC = 1.0
"""Floor of the robust scatter of pointing distances used by :func:`bad_pointings`."""

CLIP_SIGMA = 3.5
"""Matched pairs with residuals beyond this many robust standard deviations are rejected."""

CLIP_FLOOR_PIXELS = 0.05
"""Residuals below this (pixels) are never rejected (noise-free data have ~0 scatter)."""

MAX_CLIP_ITERATIONS = 5

SOLVE_FIELD = "solve-field"

_MIRROR = np.diag([-1.0, 1.0, 1.0])
_RAYLEIGH_MEDIAN = float(np.sqrt(2.0 * np.log(2.0)))  # median / sigma of the length of a 2-D Gaussian

_Model = TypeVar("_Model")


@dataclass(frozen=True)
class WcsSolution:
    """A plate solution.

    Attributes
    ----------
    wcs : astropy.wcs.WCS
        Celestial TAN WCS (TAN-SIP when the reference or astrometry.net provides SIP distortion).
        Use 0-based pixels with it (``wcs.all_world2pix(ra, dec, 0)``, ``world_to_pixel_values``).
    strategy : str
        ``'adapt_wcs_from_reference'``, ``'catalog'`` or ``'astrometry_net'``.
    n_matches : int
        Number of matched stars the solution was fitted to (0 when unknown).
    rms_pixels : float
        Root mean square of the matched residuals (pixels); NaN when unknown.
    """

    wcs: WCS
    strategy: str
    n_matches: int
    rms_pixels: float


@dataclass(frozen=True, eq=False)
class FrameGeometry:
    """Where a frame lies on the sky.

    Attributes
    ----------
    footprint : ndarray, shape (4, 2)
        (RA, Dec) in deg of the outer corners of the image, pixel edges ``(-0.5, -0.5)``,
        ``(-0.5, ny - 0.5)``, ``(nx - 0.5, ny - 0.5)``, ``(nx - 0.5, -0.5)`` (0-based), the order of
        astropy's ``calc_footprint``; RA in [0, 360).
    pixel_scale : float
        Mean of the two pixel scales at the reference pixel (arcsec/pixel).
    anisotropy : float
        ``|psx - psy| / (psx + psy)`` of those two scales.
    angle_to_north : float
        ``atan2(-M[0, 1], M[1, 1])`` in deg, M the full pixel scale matrix (CD, or PC scaled by CDELT):
        minus the position angle (east of north) of the +y pixel axis. For an image with the usual
        parity (east to the left of north) it is the counter-clockwise angle from +y to north. Same
        as lightcurver's value for CD headers; lightcurver could get the sign wrong for PC headers.
    roi_in_footprint : bool
        The ROI's pixel position lies on the image (within its outer pixel edges).
    roi_pixel : tuple of float
        ``(x, y)`` of the ROI (0-based pixels); NaN when the ROI is not on the tangent-plane side of
        the sky.
    """

    footprint: np.ndarray
    pixel_scale: float
    anisotropy: float
    angle_to_north: float
    roi_in_footprint: bool
    roi_pixel: tuple[float, float]


@dataclass(frozen=True)
class CombinedFootprint:
    """Union and intersection of frame footprints.

    The geometry is computed in the gnomonic tangent plane centred on ``centre``, where the straight
    image edges are straight lines at any RA, then mapped back to (RA, Dec) vertex by vertex. RA of
    the vertices is continuous around the centre: ``centre[0] - 180 <= RA < centre[0] + 180``, so it
    may be below 0 or above 360 for fields across RA = 0/360.

    Attributes
    ----------
    union : shapely Polygon or MultiPolygon
        Sky covered by at least one frame, (RA, Dec) in deg.
    intersection : shapely Polygon or None
        Sky covered by every frame, (RA, Dec) in deg; None when the frames have no common area.
    union_geojson : dict
        ``shapely.geometry.mapping(union)``, for storage.
    intersection_geojson : dict or None
        ``mapping(intersection)``, or None.
    centre : tuple of float
        (RA, Dec) in deg of the tangent point: the normalised mean of the footprint centres' unit
        vectors; RA in [0, 360).
    """

    union: Polygon | shapely.MultiPolygon
    intersection: Polygon | None
    union_geojson: dict[str, Any]
    intersection_geojson: dict[str, Any] | None
    centre: tuple[float, float]


# --------------------------------------------------------------------------------------------------
# Argument checks


def _as_xy(name: str, xy: object) -> np.ndarray:
    """``xy`` as a finite float array of shape (N, 2)."""
    array = np.asarray(xy, dtype=float)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ValueError(f"{name} must have shape (N, 2), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite")
    return array


def _as_shape(image_shape: object) -> tuple[int, int]:
    """``(ny, nx)`` of an image shape given as two positive integers."""
    try:
        ny, nx = image_shape
    except (TypeError, ValueError):
        raise ValueError(f"image_shape must be (ny, nx), got {image_shape!r}") from None
    for value in (ny, nx):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"image_shape must be two positive integers (ny, nx), got {image_shape!r}")
    return int(ny), int(nx)


def _check_finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _check_radec(ra: object, dec: object, what: str) -> tuple[float, float]:
    ra, dec = _check_finite(f"{what} RA (deg)", ra), _check_finite(f"{what} Dec (deg)", dec)
    if abs(dec) > 90.0:
        raise ValueError(f"{what} Dec must be within [-90, 90] deg, got {dec!r}")
    return ra, dec


def _check_celestial_wcs(name: str, wcs: object) -> WCS:
    """The celestial part of a 2-D (RA, Dec) TAN or TAN-SIP WCS without table distortions."""
    if not isinstance(wcs, WCS) or not wcs.has_celestial:
        raise ValueError(f"{name} must be an astropy WCS with celestial axes")
    celestial = wcs.celestial
    if celestial.wcs.lng != 0 or celestial.wcs.lat != 1:
        raise ValueError(f"{name} must have RA on the first axis and Dec on the second")
    projections = {str(ctype)[5:8] for ctype in celestial.wcs.ctype}
    if projections != {"TAN"}:
        raise ValueError(f"{name} must use the TAN projection, got CTYPE {list(celestial.wcs.ctype)}")
    if any(getattr(celestial, attr) is not None for attr in ("cpdis1", "cpdis2", "det2im1", "det2im2")):
        raise ValueError(f"{name} has lookup-table distortions, which are not supported")
    return celestial


# --------------------------------------------------------------------------------------------------
# Matching and fitting


def _control_points(xy: np.ndarray) -> np.ndarray:
    """The brightest ``MAX_CONTROL_POINTS`` distinct positions (astroalign fails on coincident points)."""
    _, first = np.unique(np.round(xy, 2), axis=0, return_index=True)
    return xy[np.sort(first)[:MAX_CONTROL_POINTS]]


def _find_transform(source_xy: np.ndarray, target_xy: np.ndarray, what: str) -> np.ndarray:
    """Homogeneous 3x3 matrix mapping source to target positions, found by astroalign.

    astroalign only fits similarities (rotation, scale, shift); when that fails the source list is
    mirrored (x -> -x) and tried again, so either parity is found.
    """
    source, target = _control_points(source_xy), _control_points(target_xy)
    for mirror in (np.eye(3), _MIRROR):
        try:
            transform, _ = astroalign.find_transform(
                _apply(mirror, source), target, max_control_points=MAX_CONTROL_POINTS
            )
        except (astroalign.MaxIterError, ValueError):
            continue
        return transform.params @ mirror
    raise AstrometryError(
        f"no consistent match between the {what} (astroalign found no transformation, with either "
        "parity, between the brightest sources of the two lists)"
    )


def _apply(transform: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Apply a homogeneous 3x3 (or 2x3) affine matrix to (N, 2) positions."""
    return xy @ transform[:2, :2].T + transform[:2, 2]


def _match(predicted: np.ndarray, observed: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Mutual nearest neighbours closer than ``tolerance``: index arrays into predicted and observed."""
    finite = np.flatnonzero(np.isfinite(predicted).all(axis=1))
    if finite.size == 0 or len(observed) == 0:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    distance, j = cKDTree(observed).query(predicted[finite], distance_upper_bound=tolerance)
    close = np.isfinite(distance)
    i, j = finite[close], j[close]
    _, back = cKDTree(predicted[finite]).query(observed[j])
    mutual = finite[back] == i
    return i[mutual], j[mutual]


def _fit_affine(source_xy: np.ndarray, target_xy: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted least-squares affine 2x3 matrix ``[A | t]`` with ``target = A·source + t``."""
    root = np.sqrt(weights)[:, None]
    design = np.column_stack([source_xy, np.ones(len(source_xy))])
    solution, *_ = np.linalg.lstsq(design * root, target_xy * root, rcond=None)
    return solution.T


def _rms(residuals: np.ndarray) -> float:
    """Root mean square length of (N, 2) residual vectors."""
    return float(np.sqrt(np.mean(np.sum(residuals**2, axis=1))))


def _flux_weights(name: str, flux: object, n: int) -> np.ndarray:
    """Relative inverse position variances ``flux`` (photon-noise-limited centroids) of n sources.

    None gives equal weights; non-positive fluxes get a negligible weight.
    """
    if flux is None:
        return np.ones(n)
    values = np.asarray(flux, dtype=float)
    if values.shape != (n,) or not np.isfinite(values).all():
        raise ValueError(f"{name} must be finite with shape ({n},), got shape {values.shape}")
    positive = values[values > 0]
    floor = 1e-6 * positive.max() if positive.size else 1.0
    return np.maximum(values, floor)


@dataclass(frozen=True)
class _PairFit(Generic[_Model]):
    """A model fitted to matched pairs: ``i`` indexes the predicted list, ``j`` the observed one."""

    model: _Model
    i: np.ndarray
    j: np.ndarray
    rms_pixels: float


def _match_and_fit(
    predicted: np.ndarray,
    observed_xy: np.ndarray,
    pair_weights: Callable[[np.ndarray, np.ndarray], np.ndarray],
    fit: Callable[[np.ndarray, np.ndarray, np.ndarray], _Model],
    residuals: Callable[[_Model, np.ndarray, np.ndarray], np.ndarray],
    what: str,
) -> _PairFit[_Model]:
    """Match predicted to observed positions and fit a model to the pairs, rejecting outliers.

    Pairs are mutual nearest neighbours within ``MATCH_TOLERANCE_PIXELS``. ``fit(i, j, w)`` fits the
    pairs ``(i, j)`` with weights ``w``; ``residuals(model, i, j)`` gives their (n, 2) pixel
    residuals. Pairs whose weight-normalised residual exceeds ``CLIP_SIGMA`` robust standard
    deviations (from the median, a Rayleigh distribution), and ``CLIP_FLOOR_PIXELS``, are dropped
    (blends, cosmic rays next to a star) and the fit repeated until nothing changes.
    """
    i, j = _match(predicted, observed_xy, MATCH_TOLERANCE_PIXELS)
    _require_matches(len(i), what)
    weights = pair_weights(i, j)
    relative = np.sqrt(weights / np.median(weights))
    keep = np.ones(len(i), dtype=bool)
    for _ in range(MAX_CLIP_ITERATIONS):
        model = fit(i[keep], j[keep], weights[keep])
        normalised = np.hypot(*residuals(model, i, j).T) * relative
        sigma = np.median(normalised[keep]) / _RAYLEIGH_MEDIAN
        new_keep = normalised <= max(CLIP_SIGMA * sigma, CLIP_FLOOR_PIXELS)
        if (new_keep == keep).all():
            break
        keep = new_keep
        _require_matches(int(keep.sum()), f"{what} after outlier rejection")
    i, j = i[keep], j[keep]
    return _PairFit(model=model, i=i, j=j, rms_pixels=_rms(residuals(model, i, j)))


def _check_linear(matrix: np.ndarray, what: str) -> None:
    """Raise AstrometryError for a non-finite or degenerate 2x2 linear part."""
    if not np.isfinite(matrix).all():
        raise AstrometryError(f"the fitted {what} is not finite")
    singular = np.linalg.svd(matrix, compute_uv=False)
    if singular[1] <= 0 or singular[1] / singular[0] < MIN_SINGULAR_VALUE_RATIO:
        raise AstrometryError(
            f"the fitted {what} is degenerate (singular values {singular[0]:.4g}, {singular[1]:.4g})"
        )


def _require_sources(n: int, what: str) -> None:
    if n < MIN_MATCHES:
        raise AstrometryError(f"too few sources: {n} in the {what}, at least {MIN_MATCHES} needed")


def _require_matches(n: int, what: str) -> None:
    if n < MIN_MATCHES:
        raise AstrometryError(
            f"too few matched stars: {n} {what} within {MATCH_TOLERANCE_PIXELS} pixels, "
            f"at least {MIN_MATCHES} needed"
        )


# --------------------------------------------------------------------------------------------------
# WCS construction


def _world_to_pixel(wcs: WCS, radec: np.ndarray) -> np.ndarray:
    """(N, 2) 0-based pixel positions of (N, 2) (RA, Dec) deg; NaN behind the tangent plane."""
    return np.column_stack(wcs.wcs_world2pix(radec[:, 0], radec[:, 1], 0))


def _tan_wcs(
    crval: Sequence[float],
    crpix0: np.ndarray,
    cd: np.ndarray,
    template: WCS | None = None,
    sip: tuple[np.ndarray | None, ...] | None = None,
) -> WCS:
    """A celestial TAN (or TAN-SIP) WCS from CRVAL (deg), 0-based CRPIX and CD (deg/pixel).

    RADESYS, EQUINOX and LONPOLE/LATPOLE are copied from ``template`` (ICRS when None). ``sip`` is
    ``(a, b, ap, bp)`` (``ap``, ``bp`` may be None).
    """
    wcs = WCS(naxis=2)
    suffix = "-SIP" if sip is not None else ""
    wcs.wcs.ctype = [f"RA---TAN{suffix}", f"DEC--TAN{suffix}"]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.crval = [float(crval[0]) % 360.0, float(crval[1])]
    wcs.wcs.crpix = np.asarray(crpix0, dtype=float) + 1.0
    wcs.wcs.cd = np.asarray(cd, dtype=float)
    if template is None:
        wcs.wcs.radesys = "ICRS"
    else:
        wcs.wcs.radesys = template.wcs.radesys
        wcs.wcs.equinox = template.wcs.equinox
        wcs.wcs.lonpole = template.wcs.lonpole
        wcs.wcs.latpole = template.wcs.latpole
    if sip is not None:
        wcs.sip = Sip(*sip, wcs.wcs.crpix)
    wcs.wcs.set()
    return wcs


def _substitute_linear(coefficients: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Coefficients ``c'[p, q]`` of ``P(matrix·(x, y))``, P given as ``c[p, q]`` of ``u^p v^q``.

    The substitution keeps the degree of every term, so the output has the input's shape.
    """
    size = coefficients.shape[0]
    u = np.zeros((2, 2))
    u[1, 0], u[0, 1] = matrix[0]
    v = np.zeros((2, 2))
    v[1, 0], v[0, 1] = matrix[1]
    u_powers, v_powers = [np.ones((1, 1))], [np.ones((1, 1))]
    for _ in range(size - 1):
        u_powers.append(convolve2d(u_powers[-1], u))
        v_powers.append(convolve2d(v_powers[-1], v))
    result = np.zeros_like(coefficients, dtype=float)
    for p in range(size):
        for q in range(size - p):
            if coefficients[p, q] != 0.0:
                term = convolve2d(u_powers[p], v_powers[q])
                result[: term.shape[0], : term.shape[1]] += coefficients[p, q] * term
    return result


def _transform_sip_pair(
    first: np.ndarray | None, second: np.ndarray | None, matrix: np.ndarray, inverse: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The distortion ``f`` (components ``first``, ``second``) as ``v -> matrix·f(inverse·v)``."""
    if first is None or second is None:
        return None, None
    size = max(first.shape[0], second.shape[0])
    padded = []
    for component in (first, second):
        full = np.zeros((size, size))
        full[: component.shape[0], : component.shape[1]] = component
        padded.append(_substitute_linear(full, inverse))
    return (
        matrix[0, 0] * padded[0] + matrix[0, 1] * padded[1],
        matrix[1, 0] * padded[0] + matrix[1, 1] * padded[1],
    )


def _compose_wcs(reference: WCS, affine: np.ndarray) -> WCS:
    """The reference WCS carried to pixels ``q = A·p + t`` (0-based): ``world(q) = ref(A⁻¹(q - t))``."""
    matrix, shift = affine[:2, :2], affine[:2, 2]
    inverse = np.linalg.inv(matrix)
    crpix0 = matrix @ (reference.wcs.crpix - 1.0) + shift
    cd = reference.pixel_scale_matrix @ inverse
    sip = None
    if reference.sip is not None:
        # SIP works on u = p - CRPIX; with v = A·u the distortion term f(u) becomes A·f(A⁻¹v) and
        # the inverse polynomial transforms the same way, so the composition stays exact.
        a, b = _transform_sip_pair(reference.sip.a, reference.sip.b, matrix, inverse)
        ap, bp = _transform_sip_pair(reference.sip.ap, reference.sip.bp, matrix, inverse)
        sip = (a, b, ap, bp)
    return _tan_wcs(reference.wcs.crval, crpix0, cd, template=reference, sip=sip)


# --------------------------------------------------------------------------------------------------
# Strategy: adapt the WCS of a reference frame


def adapt_wcs_from_reference(
    reference_wcs: WCS,
    reference_xy: np.ndarray,
    target_xy: np.ndarray,
    reference_flux: np.ndarray | None = None,
    target_flux: np.ndarray | None = None,
) -> WcsSolution:
    """Carry a reference frame's WCS over to a frame of the same field.

    The target frame may be shifted, rotated (any angle), mirrored or slightly scaled with respect
    to the reference. astroalign matches the brightest sources of the two lists; an affine transform
    ``target = A·ref + t`` is then fitted by weighted least squares to every pair closer than 2
    pixels (outliers rejected), re-matched with that transform and fitted again. The WCS is composed
    exactly: ``CRPIX = A·CRPIX_ref + t`` (0-based pixels), ``CD = CD_ref·A⁻¹`` (CD_ref being the
    reference's full pixel scale matrix, so CD, PC/CDELT and CROTA headers all work), SIP
    coefficients transformed along.

    Parameters
    ----------
    reference_wcs : astropy.wcs.WCS
        Celestial TAN or TAN-SIP WCS of the reference frame (0-based pixel convention).
    reference_xy : ndarray, shape (N, 2)
        Source positions ``(x, y)`` in the reference frame (0-based pixels), brightest first.
    target_xy : ndarray, shape (M, 2)
        Source positions in the target frame (0-based pixels), brightest first.
    reference_flux, target_flux : ndarray, shape (N,) and (M,), optional
        Source fluxes, in the same unit in both frames (e.g. e-/s). A pair is weighted by
        ``1 / (1/f_ref + 1/f_target)``, the inverse centroid variance of photon-noise-limited
        sources; without fluxes all pairs weigh the same. Weighting makes the faint, noisy
        centroids count less, which matters when there are few stars.

    Returns
    -------
    WcsSolution
        ``strategy='adapt_wcs_from_reference'``; ``n_matches`` pairs of the final fit and the rms of
        their residuals (pixels).

    Raises
    ------
    ValueError
        If ``reference_wcs`` is not a celestial TAN/TAN-SIP WCS, or a position or flux array is
        malformed.
    AstrometryError
        If either list has fewer than 5 sources, astroalign finds no transformation, fewer than 5
        stars match, or the fitted transform is degenerate.
    """
    reference = _check_celestial_wcs("reference_wcs", reference_wcs)
    reference_xy = _as_xy("reference_xy", reference_xy)
    target_xy = _as_xy("target_xy", target_xy)
    reference_weight = _flux_weights("reference_flux", reference_flux, len(reference_xy))
    target_weight = _flux_weights("target_flux", target_flux, len(target_xy))
    _require_sources(len(reference_xy), "reference list")
    _require_sources(len(target_xy), "target list")

    def pair_weights(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 / reference_weight[i] + 1.0 / target_weight[j])

    def fit(i: np.ndarray, j: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return _fit_affine(reference_xy[i], target_xy[j], weights)

    def residuals(affine: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return _apply(affine, reference_xy[i]) - target_xy[j]

    predicted = _apply(_find_transform(reference_xy, target_xy, "reference and target sources"), reference_xy)
    for _ in range(2):
        result = _match_and_fit(predicted, target_xy, pair_weights, fit, residuals, "reference/target pairs")
        _check_linear(result.model[:, :2], "reference-to-target transform")
        predicted = _apply(result.model, reference_xy)
    return WcsSolution(
        wcs=_compose_wcs(reference, result.model),
        strategy="adapt_wcs_from_reference",
        n_matches=len(result.i),
        rms_pixels=result.rms_pixels,
    )


# --------------------------------------------------------------------------------------------------
# Strategy: match a star catalogue


def _fit_tan(
    xy: np.ndarray, radec: np.ndarray, weights: np.ndarray, crpix0: np.ndarray, crval: tuple[float, float]
) -> WCS:
    """TAN WCS with 0-based reference pixel ``crpix0`` best fitting the pairs (weighted least squares).

    For a fixed tangent point the TAN WCS is linear, ``(xi, eta) = CD·(p - crpix) + offset``; the
    offset moves the tangent point (CRVAL, starting at ``crval``) and the fit is repeated until it is
    negligible.
    """
    root = np.sqrt(weights)[:, None]
    design = np.column_stack([xy - crpix0, np.ones(len(xy))]) * root
    for _ in range(4):
        xi, eta = tangent_plane_offsets(radec[:, 0], radec[:, 1], *crval)
        solution, *_ = np.linalg.lstsq(design, np.column_stack([xi, eta]) * root, rcond=None)
        crval = sky_from_tangent_plane(solution[2, 0], solution[2, 1], *crval)
        if np.hypot(solution[2, 0], solution[2, 1]) < 1e-10:
            break
    return _tan_wcs(crval, crpix0, solution[:2].T)


def _initial_cd(pixel_scale_arcsec: float, rotation_deg: float) -> np.ndarray:
    """CD (deg/pixel) of an image with east to the left when rotated by ``rotation_deg`` (north at
    ``rotation_deg`` from +y towards +x), as in the simulator."""
    scale = pixel_scale_arcsec / 3600.0
    c, s = np.cos(np.radians(rotation_deg)), np.sin(np.radians(rotation_deg))
    return scale * np.array([[-c, s], [s, c]])


def solve_with_catalog(
    source_xy: np.ndarray,
    catalog_radec: np.ndarray,
    ra0: float,
    dec0: float,
    pixel_scale_arcsec: float,
    image_shape: tuple[int, int],
    rotation_guess_deg: float = 0.0,
    source_flux: np.ndarray | None = None,
) -> WcsSolution:
    """Plate solve a frame by matching its sources to a star catalogue.

    An initial TAN WCS puts ``(ra0, dec0)`` on the image centre with the guessed scale and rotation;
    the catalogue is projected with it and matched to the sources with astroalign, which leaves
    rotation, scale and shift (and the parity) free, so ``(ra0, dec0)`` only needs to be somewhere
    in the frame's field, the rotation guess within tens of degrees and the scale within ~10 %. A TAN
    WCS (CRVAL, CD; CRPIX at the image centre) is fitted by linear least squares to the matched
    pairs, then every catalogue star within 2 pixels of a source under that WCS is matched and the
    fit repeated.

    Parameters
    ----------
    source_xy : ndarray, shape (N, 2)
        Detected source positions ``(x, y)`` (0-based pixels), brightest first.
    catalog_radec : ndarray, shape (M, 2)
        Catalogue (RA, Dec) in deg at the frame's epoch (proper motions applied by the caller),
        brightest first.
    ra0, dec0 : float
        Approximate sky position (deg) of a point inside the frame, e.g. the ROI.
    pixel_scale_arcsec : float
        Guessed pixel scale (arcsec/pixel).
    image_shape : tuple of int
        ``(ny, nx)`` of the image.
    rotation_guess_deg : float
        Guessed rotation (deg): north at this angle from the +y pixel axis towards +x.
    source_flux : ndarray, shape (N,), optional
        Source fluxes (any unit); a matched star is weighted by its flux, the inverse centroid
        variance of a photon-noise-limited source. Without fluxes all stars weigh the same.

    Returns
    -------
    WcsSolution
        ``strategy='catalog'``; ``n_matches`` and the rms (pixels) of the final fit. The WCS has
        ``pixel_shape = (nx, ny)``.

    Raises
    ------
    ValueError
        If an argument is malformed or out of range.
    AstrometryError
        If there are fewer than 5 sources or catalogue stars near the frame, astroalign finds no
        transformation, fewer than 5 stars match, or the fitted WCS is degenerate.
    """
    source_xy = _as_xy("source_xy", source_xy)
    catalog_radec = _as_xy("catalog_radec", catalog_radec)
    if (np.abs(catalog_radec[:, 1]) > 90.0).any():
        raise ValueError("catalog_radec Dec must be within [-90, 90] deg")
    ra0, dec0 = _check_radec(ra0, dec0, "pointing")
    check_positive("pixel_scale_arcsec", pixel_scale_arcsec)
    ny, nx = _as_shape(image_shape)
    rotation_guess_deg = _check_finite("rotation_guess_deg", rotation_guess_deg)
    _require_sources(len(source_xy), "source list")

    centre = np.array([(nx - 1) / 2.0, (ny - 1) / 2.0])
    initial = _tan_wcs((ra0, dec0), centre, _initial_cd(pixel_scale_arcsec, rotation_guess_deg))
    projected = _world_to_pixel(initial, catalog_radec)
    margin = CATALOG_MARGIN_FRACTION * max(nx, ny)
    near = np.flatnonzero(
        np.isfinite(projected).all(axis=1)
        & (projected[:, 0] > -margin)
        & (projected[:, 0] < nx - 1 + margin)
        & (projected[:, 1] > -margin)
        & (projected[:, 1] < ny - 1 + margin)
    )
    _require_sources(len(near), "catalogue near the frame")
    transform = _find_transform(projected[near], source_xy, "catalogue and the detected sources")
    predicted = np.full_like(projected, np.nan)
    predicted[near] = _apply(transform, projected[near])

    source_weight = _flux_weights("source_flux", source_flux, len(source_xy))
    crval = (ra0, dec0)

    def pair_weights(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return source_weight[j]

    def fit(i: np.ndarray, j: np.ndarray, weights: np.ndarray) -> WCS:
        return _fit_tan(source_xy[j], catalog_radec[i], weights, centre, crval)

    def residuals(wcs: WCS, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        return _world_to_pixel(wcs, catalog_radec[i]) - source_xy[j]

    for _ in range(2):
        result = _match_and_fit(predicted, source_xy, pair_weights, fit, residuals, "catalogue stars")
        wcs = result.model
        _check_linear(wcs.wcs.cd, "CD matrix")
        crval = (float(wcs.wcs.crval[0]), float(wcs.wcs.crval[1]))
        predicted = _world_to_pixel(wcs, catalog_radec)
    wcs.pixel_shape = (nx, ny)
    return WcsSolution(wcs=wcs, strategy="catalog", n_matches=len(result.i), rms_pixels=result.rms_pixels)


# --------------------------------------------------------------------------------------------------
# Strategy: astrometry.net


def solve_field_available() -> bool:
    """Whether astrometry.net's ``solve-field`` is on PATH."""
    return shutil.which(SOLVE_FIELD) is not None


def _solve_field_command(
    executable: str,
    xylist: Path,
    out_dir: Path,
    image_shape: tuple[int, int],
    ra0: float,
    dec0: float,
    scale_bounds_arcsec: tuple[float, float],
    timeout_s: float,
) -> list[str]:
    """Command line of ``solve-field`` on an xylist (columns X, Y, FLUX in FITS pixels)."""
    ny, nx = image_shape
    return [
        executable,
        str(xylist),
        "--x-column",
        "X",
        "--y-column",
        "Y",
        "--sort-column",
        "FLUX",
        "--width",
        str(nx),
        "--height",
        str(ny),
        "--ra",
        repr(float(ra0)),
        "--dec",
        repr(float(dec0)),
        "--radius",
        "1",
        "--scale-low",
        repr(float(scale_bounds_arcsec[0])),
        "--scale-high",
        repr(float(scale_bounds_arcsec[1])),
        "--scale-units",
        "arcsecperpix",
        "--cpulimit",
        str(max(1, int(timeout_s))),
        "--dir",
        str(out_dir),
        "--no-plots",
        "--overwrite",
    ]


def _run_with_timeout(command: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run a command in its own process group; on timeout kill that group (solve-field's children too)."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AstrometryError(f"astrometry.net's solve-field did not finish within {timeout_s} s") from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _read_correspondences(path: Path) -> tuple[int, float]:
    """Number of matched stars and rms (pixels) from solve-field's ``.corr`` table; (0, NaN) if absent."""
    if not path.is_file():
        return 0, float("nan")
    table = Table.read(path, format="fits", hdu=1)
    if len(table) == 0:
        return 0, float("nan")
    residuals = np.column_stack(
        [
            np.asarray(table["field_x"]) - np.asarray(table["index_x"]),
            np.asarray(table["field_y"]) - np.asarray(table["index_y"]),
        ]
    )
    return len(table), _rms(residuals)


def solve_with_astrometry_net(
    source_xy: np.ndarray,
    fluxes: np.ndarray,
    image_shape: tuple[int, int],
    ra0: float,
    dec0: float,
    scale_bounds_arcsec: tuple[float, float],
    timeout_s: float = 120,
    workdir: Path | str | None = None,
) -> WcsSolution:
    """Plate solve a source list with a local astrometry.net ``solve-field``.

    The sources are written as an xylist FITS table (columns X, Y in FITS pixels, i.e. 0-based + 1,
    and FLUX, brightest first) and solved within 1 deg of ``(ra0, dec0)`` in the given scale range.

    Parameters
    ----------
    source_xy : ndarray, shape (N, 2)
        Source positions ``(x, y)`` (0-based pixels).
    fluxes : ndarray, shape (N,)
        Source fluxes (any unit); the list is sorted by decreasing flux.
    image_shape : tuple of int
        ``(ny, nx)`` of the image.
    ra0, dec0 : float
        Approximate field position (deg).
    scale_bounds_arcsec : tuple of float
        ``(low, high)`` pixel scale bounds (arcsec/pixel), ``0 < low < high``.
    timeout_s : float
        Wall-clock limit (s); also passed as ``--cpulimit``.
    workdir : Path or str or None
        Folder for solve-field's files (kept); None uses a temporary folder that is removed.

    Returns
    -------
    WcsSolution
        ``strategy='astrometry_net'``; the WCS read from the ``.wcs`` file (TAN-SIP by default),
        ``pixel_shape = (nx, ny)``; ``n_matches`` and ``rms_pixels`` from the ``.corr`` file
        (0 and NaN when it is missing).

    Raises
    ------
    ValueError
        If an argument is malformed or out of range.
    AstrometryError
        If solve-field is not installed, there are fewer than 5 sources, solve-field fails, times
        out or finds no solution.
    """
    source_xy = _as_xy("source_xy", source_xy)
    fluxes = np.asarray(fluxes, dtype=float)
    if fluxes.shape != (len(source_xy),) or not np.isfinite(fluxes).all():
        raise ValueError(f"fluxes must be finite with shape ({len(source_xy)},), got shape {fluxes.shape}")
    ny, nx = _as_shape(image_shape)
    ra0, dec0 = _check_radec(ra0, dec0, "pointing")
    try:
        low, high = (float(v) for v in scale_bounds_arcsec)
    except (TypeError, ValueError):
        raise ValueError(f"scale_bounds_arcsec must be (low, high), got {scale_bounds_arcsec!r}") from None
    if not (np.isfinite(high) and 0.0 < low < high):
        raise ValueError(f"scale_bounds_arcsec must satisfy 0 < low < high, got {scale_bounds_arcsec!r}")
    check_positive("timeout_s", timeout_s)
    executable = shutil.which(SOLVE_FIELD)
    if executable is None:
        raise AstrometryError(
            "astrometry.net's solve-field is not installed (not found on PATH); install astrometry.net "
            "with its index files, or use another plate-solving strategy"
        )
    _require_sources(len(source_xy), "source list")

    if workdir is not None:
        Path(workdir).mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="solve_field_") if workdir is None else nullcontext(str(workdir))
    ) as folder:
        out_dir = Path(folder)
        xylist = out_dir / "xylist.fits"
        order = np.argsort(-fluxes, kind="stable")
        table = Table({"X": source_xy[order, 0] + 1.0, "Y": source_xy[order, 1] + 1.0, "FLUX": fluxes[order]})
        table.write(xylist, overwrite=True)
        command = _solve_field_command(
            executable, xylist, out_dir, (ny, nx), ra0, dec0, (low, high), timeout_s
        )
        try:
            result = _run_with_timeout(command, timeout_s)
        except OSError as exc:
            raise AstrometryError(f"cannot run astrometry.net's solve-field: {exc}") from exc
        if result.returncode != 0:
            raise AstrometryError(
                f"astrometry.net's solve-field failed (exit status {result.returncode}): "
                f"{result.stderr.strip()[-500:]}"
            )
        wcs_path = xylist.with_suffix(".wcs")
        if not xylist.with_suffix(".solved").is_file() or not wcs_path.is_file():
            raise AstrometryError(
                "astrometry.net found no solution within 1 deg of the pointing and the scale range"
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(fits.getheader(wcs_path), naxis=2, relax=True)
        n_matches, rms = _read_correspondences(xylist.with_suffix(".corr"))
    if not wcs.has_celestial:
        raise AstrometryError("astrometry.net's .wcs file holds no celestial WCS")
    wcs.pixel_shape = (nx, ny)
    return WcsSolution(wcs=wcs, strategy="astrometry_net", n_matches=n_matches, rms_pixels=rms)


# --------------------------------------------------------------------------------------------------
# Frame geometry


def frame_geometry(wcs: WCS, image_shape: tuple[int, int], roi_ra: float, roi_dec: float) -> FrameGeometry:
    """Footprint, pixel scale, anisotropy, angle to north and ROI position of a solved frame.

    Parameters
    ----------
    wcs : astropy.wcs.WCS
        Celestial WCS of the frame (0-based pixel convention; SIP distortion is used for the
        footprint and the ROI position).
    image_shape : tuple of int
        ``(ny, nx)`` of the image.
    roi_ra, roi_dec : float
        ROI position (deg).

    Returns
    -------
    FrameGeometry

    Raises
    ------
    ValueError
        If ``wcs`` has no celestial axes, or another argument is malformed.
    """
    if not isinstance(wcs, WCS) or not wcs.has_celestial:
        raise ValueError("wcs must be an astropy WCS with celestial axes")
    ny, nx = _as_shape(image_shape)
    roi_ra, roi_dec = _check_radec(roi_ra, roi_dec, "ROI")
    celestial = wcs.celestial

    corners = np.array([[-0.5, -0.5], [-0.5, ny - 0.5], [nx - 0.5, ny - 0.5], [nx - 0.5, -0.5]])
    ra, dec = celestial.all_pix2world(corners[:, 0], corners[:, 1], 0)
    footprint = np.column_stack([np.mod(ra, 360.0), dec])

    psx, psy = proj_plane_pixel_scales(celestial) * 3600.0
    matrix = celestial.pixel_scale_matrix
    angle = float(np.degrees(np.arctan2(-matrix[0, 1], matrix[1, 1]))) + 0.0  # no -0.0

    with warnings.catch_warnings():
        # Behind the tangent plane the position is NaN and astropy's SIP inversion warns about it; far
        # outside the frame that inversion may not converge (quiet), its estimate being far outside too.
        warnings.simplefilter("ignore", RuntimeWarning)
        x, y = (float(v) for v in celestial.all_world2pix(roi_ra, roi_dec, 0, quiet=True))
    inside = bool(-0.5 <= x <= nx - 0.5 and -0.5 <= y <= ny - 0.5)
    return FrameGeometry(
        footprint=footprint,
        pixel_scale=float(0.5 * (psx + psy)),
        anisotropy=float(abs(psx - psy) / (psx + psy)),
        angle_to_north=angle,
        roi_in_footprint=inside,
        roi_pixel=(x, y),
    )


# --------------------------------------------------------------------------------------------------
# Sphere helpers: unit vectors and the gnomonic tangent plane


def _check_footprints(footprints: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Footprints as finite (K >= 3, 2) float arrays with Dec within [-90, 90]."""
    if isinstance(footprints, np.ndarray) and footprints.ndim == 3:
        footprints = list(footprints)
    if not isinstance(footprints, Sequence) or len(footprints) == 0:
        raise ValueError("footprints must be a non-empty sequence of (4, 2) arrays of (RA, Dec) deg")
    checked = []
    for index, footprint in enumerate(footprints):
        corners = np.asarray(footprint, dtype=float)
        if corners.ndim != 2 or corners.shape[1] != 2 or corners.shape[0] < 3:
            raise ValueError(f"footprints[{index}] must have shape (K >= 3, 2), got {corners.shape}")
        if not np.isfinite(corners).all() or (np.abs(corners[:, 1]) > 90.0).any():
            raise ValueError(f"footprints[{index}] must hold finite (RA, Dec) with Dec within [-90, 90]")
        checked.append(corners)
    return checked


def _footprint_centres(footprints: list[np.ndarray]) -> np.ndarray:
    """(N, 3) unit vectors of the footprint centres (normalised mean of the corner vectors)."""
    sums = np.array([unit_vectors(f[:, 0], f[:, 1]).sum(axis=0) for f in footprints])
    return sums / np.linalg.norm(sums, axis=1, keepdims=True)


def mean_pointing(footprints: Sequence[np.ndarray]) -> tuple[float, float]:
    """Mean pointing of frames: normalised mean of the footprint centres' unit vectors.

    Parameters
    ----------
    footprints : sequence of ndarray, shape (K, 2)
        Corners (RA, Dec) in deg of each frame (K >= 3).

    Returns
    -------
    tuple of float
        (RA in [0, 360), Dec) in deg. Wrap-safe at RA = 0/360.

    Raises
    ------
    ValueError
        If the footprints are malformed or their centres cancel out (spread over the whole sky).
    """
    total = _footprint_centres(_check_footprints(footprints)).sum(axis=0)
    if np.linalg.norm(total) < 1e-9 * len(footprints):
        raise ValueError("footprints are spread over the whole sky: they have no mean pointing")
    ra, dec = radec(total)
    return float(ra), float(dec)


def _to_radec_geometry(geometry: shapely.Geometry, ra0: float, dec0: float) -> shapely.Geometry:
    """Tangent-plane geometry back to (RA, Dec) deg with RA continuous around ``ra0``."""

    def convert(xy: np.ndarray) -> np.ndarray:
        ra, dec = sky_from_tangent_plane(xy[:, 0], xy[:, 1], ra0, dec0)
        return np.column_stack([ra0 + np.mod(ra - ra0 + 180.0, 360.0) - 180.0, dec])

    return shapely.transform(geometry, convert)


def combine_footprints(footprints: Sequence[np.ndarray]) -> CombinedFootprint:
    """Union and intersection of frame footprints, correct across RA = 0/360.

    Each footprint is projected onto the gnomonic tangent plane centred on the mean pointing (where
    great-circle edges are straight), combined with shapely, and the result mapped back to (RA, Dec).

    Parameters
    ----------
    footprints : sequence of ndarray, shape (K, 2)
        Corners (RA, Dec) in deg of each frame, in order around the frame (K >= 3; 4 from
        :func:`frame_geometry`).

    Returns
    -------
    CombinedFootprint

    Raises
    ------
    ValueError
        If a footprint is malformed, is not a simple polygon, or lies more than 80 deg from the mean
        pointing.
    """
    checked = _check_footprints(footprints)
    ra0, dec0 = mean_pointing(checked)
    polygons = []
    for index, corners in enumerate(checked):
        xi, eta = tangent_plane_offsets(corners[:, 0], corners[:, 1], ra0, dec0)
        if not (
            np.isfinite(xi).all()
            and np.hypot(xi, eta).max() < np.degrees(np.tan(np.radians(MAX_FOOTPRINT_DISTANCE_DEG)))
        ):
            raise ValueError(
                f"footprints[{index}] lies more than {MAX_FOOTPRINT_DISTANCE_DEG} deg from the "
                "mean pointing; the frames cannot be combined in one tangent plane"
            )
        polygon = Polygon(np.column_stack([xi, eta]))
        if not polygon.is_valid or polygon.area == 0.0:
            raise ValueError(
                f"footprints[{index}] is not a simple polygon: its corners must go around the frame"
            )
        polygons.append(polygon)

    union = _to_radec_geometry(shapely.union_all(polygons), ra0, dec0)
    common = shapely.intersection_all(polygons)
    intersection = None
    if isinstance(common, Polygon) and common.area > 0.0:
        intersection = _to_radec_geometry(common, ra0, dec0)
    return CombinedFootprint(
        union=union,
        intersection=intersection,
        union_geojson=mapping(union),
        intersection_geojson=None if intersection is None else mapping(intersection),
        centre=(ra0, dec0),
    )


def bad_pointings(footprints: Sequence[np.ndarray], n_sigma: float = 5.0) -> np.ndarray:
    """Flag frames pointed far from the others.

    The reference pointing is the normalised coordinate-wise median of the footprint centres' unit
    vectors (robust to the outliers being looked for, wrap-safe). A frame is flagged when its angular
    distance ``d`` to it exceeds ``median(d) + n_sigma·max(1.4826·MAD(d), 1 arcsec)``.

    Parameters
    ----------
    footprints : sequence of ndarray, shape (K, 2)
        Corners (RA, Dec) in deg of each frame.
    n_sigma : float
        Threshold in robust standard deviations.

    Returns
    -------
    ndarray of bool, shape (N,)
        True for the frames with a bad pointing.

    Raises
    ------
    ValueError
        If a footprint is malformed or ``n_sigma`` is not a finite positive number.
    """
    checked = _check_footprints(footprints)
    check_positive("n_sigma", n_sigma)
    centres = _footprint_centres(checked)
    reference = np.median(centres, axis=0)
    norm = np.linalg.norm(reference)
    if norm < 1e-9:
        raise ValueError("footprints are spread over the whole sky: they have no median pointing")
    reference = reference / norm
    distance = (
        np.degrees(np.arctan2(np.linalg.norm(np.cross(centres, reference), axis=1), centres @ reference))
        * 3600.0
    )
    median = np.median(distance)
    scatter = max(1.4826 * float(np.median(np.abs(distance - median))), MIN_POINTING_SCATTER_ARCSEC)
    return distance > median + n_sigma * scatter
