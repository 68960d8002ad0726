"""Positions on the sphere: unit vectors, separations and the gnomonic tangent plane.

Everything here is wrap-safe at RA = 0/360: geometry is done on unit vectors or in the tangent
plane about a point, never in raw (RA, Dec) degrees (lightcurver's footprints broke near RA 0).
"""

from typing import Any

import numpy as np
from astropy.coordinates import angular_separation


def unit_vectors(ra: Any, dec: Any) -> np.ndarray:
    """(..., 3) unit vectors of positions (RA, Dec) in deg."""
    a, d = np.radians(np.asarray(ra, dtype=float)), np.radians(np.asarray(dec, dtype=float))
    return np.stack([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)], axis=-1)


def wrap_ra(ra: Any) -> np.ndarray:
    """RA in [0, 360) deg (``-1e-17 % 360`` is 360.0 in floating point, mapped to 0)."""
    wrapped = np.asarray(ra, dtype=float) % 360.0
    return np.where(wrapped >= 360.0, 0.0, wrapped)


def radec(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RA in [0, 360) and Dec, deg, of (..., 3) vectors (not necessarily unit)."""
    x, y, z = vectors[..., 0], vectors[..., 1], vectors[..., 2]
    return wrap_ra(np.degrees(np.arctan2(y, x))), np.degrees(np.arctan2(z, np.hypot(x, y)))


def separation_deg(ra1: Any, dec1: Any, ra2: Any, dec2: Any) -> np.ndarray:
    """Angular separation (deg) between positions in deg (Vincenty's formula; arrays broadcast)."""
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(v, dtype=float)) for v in (ra1, dec1, ra2, dec2))
    return np.degrees(angular_separation(lon1, lat1, lon2, lat2))


def tangent_basis(ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre, east and north unit vectors at (ra0, dec0), deg."""
    a, d = np.radians(ra0), np.radians(dec0)
    centre = np.array([np.cos(d) * np.cos(a), np.cos(d) * np.sin(a), np.sin(d)])
    east = np.array([-np.sin(a), np.cos(a), 0.0])
    north = np.array([-np.sin(d) * np.cos(a), -np.sin(d) * np.sin(a), np.cos(d)])
    return centre, east, north


def tangent_plane_offsets(ra: Any, dec: Any, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Gnomonic (TAN) projection about ``(ra0, dec0)``: standard coordinates ``xi`` (east), ``eta`` (north).

    Great circles are straight lines in this projection, so polygon tests in it are exact on the
    sphere; these are the intermediate world coordinates of a TAN WCS with CRVAL ``(ra0, dec0)``.

    Parameters
    ----------
    ra, dec : array_like
        Positions in deg, any shape.
    ra0, dec0 : float
        Tangent point in deg.

    Returns
    -------
    xi, eta : numpy.ndarray
        Offsets in deg of the tangent plane (``degrees(tan(angle))``); NaN for positions 90 deg or
        more from the tangent point.
    """
    centre, east, north = tangent_basis(ra0, dec0)
    vectors = unit_vectors(ra, dec)
    cos_c = vectors @ centre
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.where(cos_c > 0, np.degrees(1.0) / cos_c, np.nan)
    return (vectors @ east) * scale, (vectors @ north) * scale


def sky_from_tangent_plane(xi: Any, eta: Any, ra0: float, dec0: float) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`tangent_plane_offsets`: (RA in [0, 360), Dec) in deg."""
    centre, east, north = tangent_basis(ra0, dec0)
    xi, eta = np.radians(np.asarray(xi, dtype=float)), np.radians(np.asarray(eta, dtype=float))
    return radec(centre + xi[..., None] * east + eta[..., None] * north)
