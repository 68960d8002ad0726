"""Catalogue magnitudes of the reference stars in the config's photometric band.

Gaia bands come from the stars' own G, BP and RP through the colour polynomials (NaN outside their
colour range); Pan-STARRS bands from a local Pan-STARRS table (``panstarrs_catalog_file``) or from
MAST, one query per star never looked up before. Every looked-up star is returned as a row to cache
in ``catalog_star_photometry`` (a star without a match too, so it is not queried again).
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from astropy.table import Table

from lightcurver_ops.catalog import propagate
from lightcurver_ops.zeropoints import (
    gaia_band_magnitudes,
    match_panstarrs,
    panstarrs_band_magnitude,
    query_panstarrs,
)

PANSTARRS_EPOCH_MJD = 56000.0
"""Mean epoch of Pan-STARRS DR1 positions (2012.2): stars are moved there before matching."""

Magnitudes = dict[str, tuple[float, float]]


def gaia_magnitudes(stars: Sequence[Mapping[str, Any]], band: str) -> Magnitudes:
    """``{gaia_id: (mag, mag_err)}`` in a Gaia-calibrated band from the stars' G, BP and RP."""
    columns = [np.array([star[name] for star in stars], dtype=float) for name in ("gmag", "bmag", "rmag")]
    mags, errors = gaia_band_magnitudes(*columns, band)
    return {star["gaia_id"]: (float(m), float(e)) for star, m, e in zip(stars, mags, errors, strict=True)}


def panstarrs_magnitudes(
    stars: Sequence[Mapping[str, Any]],
    band: str,
    table: Table | None = None,
    query: Callable[[float, float], Mapping[str, Any] | None] = query_panstarrs,
) -> tuple[Magnitudes, list[dict[str, Any]]]:
    """Pan-STARRS magnitudes of stars and the rows to cache.

    Parameters
    ----------
    stars : sequence of mappings
        ``gaia_id, ra, dec, pmra, pmdec, ref_epoch`` of the stars to look up.
    band : str
        ``<g|r|i|z|y|c|o>_panstarrs``.
    table : astropy.table.Table, optional
        A local Pan-STARRS table (offline); default: query MAST per star.
    query : callable
        The online lookup ``(ra, dec) -> row or None``.
    """
    if not stars:
        return {}, []
    ra, dec = propagate(
        [s["ra"] for s in stars],
        [s["dec"] for s in stars],
        [s["pmra"] for s in stars],
        [s["pmdec"] for s in stars],
        [s["ref_epoch"] for s in stars],
        PANSTARRS_EPOCH_MJD,
    )
    matches = (
        match_panstarrs(table, ra, dec)
        if table is not None
        else [query(float(r), float(d)) for r, d in zip(ra, dec, strict=True)]
    )
    found: Magnitudes = {}
    rows = []
    for star, match in zip(stars, matches, strict=True):
        mag, err = panstarrs_band_magnitude(match, band) if match is not None else (np.nan, np.nan)
        found[star["gaia_id"]] = (float(mag), float(err))
        rows.append(
            {
                "star_gaia_id": star["gaia_id"],
                "mag": mag,
                "mag_err": err,
                "original_catalog_id": None if match is None else match.get("objID"),
            }
        )
    return found, rows
