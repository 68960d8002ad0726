"""Queries on reference stars: ``star_sets``, ``stars`` and ``stars_in_frames``."""

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, delete, select

from lightcurver_ops.db.schema import star_sets, stars, stars_in_frames
from lightcurver_ops.db.upsert import upsert

STAR_COLUMNS = tuple(column.name for column in stars.columns if column.name != "combined_footprint_hash")


def store_star_set(
    connection: Connection,
    set_hash: int,
    parameters: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    created_mjd: float,
) -> None:
    """Replace the stars of one star set (rows carry the ``stars`` columns except the hash)."""
    upsert(
        connection,
        star_sets,
        [
            {
                "hash": set_hash,
                "parameters": json.dumps(parameters, sort_keys=True),
                "n_stars": len(rows),
                "created_mjd": created_mjd,
            }
        ],
        key=["hash"],
    )
    connection.execute(delete(stars).where(stars.c.combined_footprint_hash == set_hash))
    connection.execute(
        stars.insert(),
        [{"combined_footprint_hash": set_hash, **{name: row[name] for name in STAR_COLUMNS}} for row in rows],
    )


def stars_of_set(connection: Connection, set_hash: int) -> list[dict[str, Any]]:
    """The stars of a set, nearest to the ROI first; empty if the set was never stored."""
    query = (
        select(stars)
        .where(stars.c.combined_footprint_hash == set_hash)
        .order_by(stars.c.distance_to_roi_arcsec)
    )
    return [dict(row) for row in connection.execute(query).mappings()]


def star_set_exists(connection: Connection, set_hash: int) -> bool:
    return (
        connection.execute(select(star_sets.c.hash).where(star_sets.c.hash == set_hash)).first() is not None
    )


def replace_stars_in_frame(
    connection: Connection, frame_id: int, set_hash: int, gaia_ids: Iterable[str]
) -> None:
    """Record which stars of a set have a full stamp in a frame (earlier rows replaced)."""
    connection.execute(
        delete(stars_in_frames).where(
            stars_in_frames.c.frame_id == frame_id, stars_in_frames.c.combined_footprint_hash == set_hash
        )
    )
    rows = [{"frame_id": frame_id, "star_gaia_id": g, "combined_footprint_hash": set_hash} for g in gaia_ids]
    if rows:
        connection.execute(stars_in_frames.insert(), rows)


def latest_star_set(connection: Connection) -> int | None:
    """Hash of the most recently stored star set, or None."""
    query = select(star_sets.c.hash).order_by(star_sets.c.created_mjd.desc())
    return connection.execute(query).scalars().first()
