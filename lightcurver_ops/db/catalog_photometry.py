"""Queries on ``catalog_star_photometry`` (catalogue magnitudes of stars) and ``absolute_zeropoints``.

``catalog_star_photometry`` is keyed by star, catalogue *and band* (lightcurver's key lacks the band,
so a changed band reused stale magnitudes). A star looked up without a catalogue match is stored with
a NULL magnitude, so that it is not queried again. NaN is stored as NULL and read back as NaN.
"""

import math
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, select

from lightcurver_ops.db.schema import absolute_zeropoints, catalog_star_photometry
from lightcurver_ops.db.upsert import replace_rows, upsert

_IN_CHUNK = 500  # identifiers per IN (...) clause, under SQLite's bound-parameter limit
_ZEROPOINT_COLUMNS = ("zeropoint", "zeropoint_uncertainty", "source_catalog")


def _sql_float(value: Any) -> float | None:
    """A number as a Python float, None for None or NaN."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _sql_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _float_or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def cached_magnitudes(
    connection: Connection, catalog: str, band: str, gaia_ids: Iterable[str | int]
) -> dict[str, tuple[float, float]]:
    """Stored magnitudes of stars in one catalogue and band.

    Parameters
    ----------
    connection : sqlalchemy.Connection
    catalog : str
        ``'gaia'`` or ``'panstarrs'`` (lightcurver's ``catalog`` values).
    band : str
        The band (the config's ``photometric_band``).
    gaia_ids : iterable of str or int
        Gaia source identifiers of the stars asked for.

    Returns
    -------
    dict
        ``{gaia_id (str): (mag, mag_err)}`` (mag) for the stars that have a row; NaN for a star
        stored without a catalogue match. Stars never stored are absent.
    """
    ids = sorted({str(gaia_id) for gaia_id in gaia_ids})
    table = catalog_star_photometry
    found: dict[str, tuple[float, float]] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        query = select(table.c.star_gaia_id, table.c.mag, table.c.mag_err).where(
            table.c.catalog == catalog,
            table.c.band == band,
            table.c.star_gaia_id.in_(ids[start : start + _IN_CHUNK]),
        )
        for row in connection.execute(query):
            found[row.star_gaia_id] = (_float_or_nan(row.mag), _float_or_nan(row.mag_err))
    return found


def store_magnitudes(
    connection: Connection, catalog: str, band: str, rows: Iterable[Mapping[str, Any]]
) -> None:
    """Insert or replace catalogue magnitudes of stars in one catalogue and band (idempotent).

    Parameters
    ----------
    connection : sqlalchemy.Connection
    catalog, band : str
        As in `cached_magnitudes`.
    rows : iterable of mapping
        One per star: ``star_gaia_id`` (str or int) and optionally ``mag``, ``mag_err`` (mag; None or
        NaN for a star without a catalogue match) and ``original_catalog_id`` (the catalogue's own
        identifier, str).

    Raises
    ------
    ValueError
        If a row has no ``star_gaia_id`` or the same star appears twice.
    """
    records = []
    for row in rows:
        if row.get("star_gaia_id") is None:
            raise ValueError(f"each row needs a star_gaia_id, got {dict(row)!r}")
        records.append(
            {
                "star_gaia_id": str(row["star_gaia_id"]),
                "catalog": catalog,
                "band": band,
                "mag": _sql_float(row.get("mag")),
                "mag_err": _sql_float(row.get("mag_err")),
                "original_catalog_id": _sql_text(row.get("original_catalog_id")),
            }
        )
    ids = [record["star_gaia_id"] for record in records]
    if len(set(ids)) != len(ids):
        raise ValueError(f"star_gaia_id repeated in rows: {sorted({i for i in ids if ids.count(i) > 1})}")
    upsert(connection, catalog_star_photometry, records, key=["star_gaia_id", "catalog", "band"])


def replace_zeropoint(
    connection: Connection, frame_id: int, set_hash: int, row: Mapping[str, Any] | None
) -> None:
    """Replace a frame's absolute zero point for a star set.

    ``row`` holds ``zeropoint``, ``zeropoint_uncertainty`` (mag; NaN stored as NULL, e.g. for one
    star) and ``source_catalog`` (``'gaia'`` or ``'panstarrs'``); None only removes the frame's row,
    for a frame whose zero point cannot be measured.
    """
    rows = []
    if row is not None:
        rows = [{name: _sql_float(row.get(name)) for name in ("zeropoint", "zeropoint_uncertainty")}]
        rows[0]["source_catalog"] = _sql_text(row.get("source_catalog"))
    match = {"frame_id": frame_id, "combined_footprint_hash": set_hash}
    replace_rows(connection, absolute_zeropoints, match, rows)


def zeropoints_of_set(connection: Connection, set_hash: int) -> dict[int, dict[str, Any]]:
    """Every stored zero point of a star set: ``{frame_id: {zeropoint, zeropoint_uncertainty,
    source_catalog}}`` (mag; NULL read as NaN)."""
    table = absolute_zeropoints
    query = (
        select(table.c.frame_id, *(table.c[name] for name in _ZEROPOINT_COLUMNS))
        .where(table.c.combined_footprint_hash == set_hash)
        .order_by(table.c.frame_id)
    )
    return {
        row.frame_id: {
            "zeropoint": _float_or_nan(row.zeropoint),
            "zeropoint_uncertainty": _float_or_nan(row.zeropoint_uncertainty),
            "source_catalog": row.source_catalog,
        }
        for row in connection.execute(query)
    }
