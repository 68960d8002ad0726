"""Queries on plate solutions: ``frame_wcs``, ``footprints``, ``combined_footprint`` and the
plate-solving columns of ``frames``."""

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select, update

from lightcurver_ops.db.schema import combined_footprint, footprints, frame_wcs, frames
from lightcurver_ops.db.upsert import upsert

BAD_POINTING = "bad_pointing"
"""``frames.comment`` of frames eliminated by the footprints stage (lightcurver's wording)."""


@dataclass(frozen=True)
class StoredWcs:
    """A frame's solved WCS as stored: FITS header string and provenance."""

    frame_id: int
    partition_key: str
    wcs_header: str
    strategy: str
    sources_relpath: str | None


def store_plate_solution(
    connection: Connection,
    frame_id: int,
    frame_updates: Mapping[str, Any],
    wcs: Mapping[str, Any] | None,
    footprint: list[list[float]] | None,
) -> None:
    """Replace a frame's plate solution: its ``frames`` columns, WCS row and footprint.

    ``wcs`` holds the ``frame_wcs`` columns other than ``frame_id``; None (like a None
    ``footprint``) removes an earlier one, so a frame that no longer solves keeps nothing stale.
    """
    connection.execute(update(frames).where(frames.c.id == frame_id).values(**frame_updates))
    if wcs is None:
        connection.execute(delete(frame_wcs).where(frame_wcs.c.frame_id == frame_id))
    else:
        upsert(connection, frame_wcs, [{"frame_id": frame_id, **wcs}], key=["frame_id"])
    if footprint is None:
        connection.execute(delete(footprints).where(footprints.c.frame_id == frame_id))
    else:
        row = {"frame_id": frame_id, "polygon": json.dumps(footprint)}
        upsert(connection, footprints, [row], key=["frame_id"])


def stored_wcs(connection: Connection, frame_id: int) -> StoredWcs | None:
    """The stored WCS of a frame, or None."""
    query = (
        select(frame_wcs, frames.c.partition_key, frames.c.sources_relpath)
        .join(frames, frames.c.id == frame_wcs.c.frame_id)
        .where(frame_wcs.c.frame_id == frame_id)
    )
    row = connection.execute(query).mappings().first()
    if row is None:
        return None
    return StoredWcs(
        row["frame_id"], row["partition_key"], row["wcs_header"], row["strategy"], row["sources_relpath"]
    )


def reference_wcs(connection: Connection, preferred_frame_id: int | None, exclude: str) -> StoredWcs | None:
    """The WCS other frames are adapted from.

    ``preferred_frame_id`` (lightcurver's ``reference_frame_for_wcs``) when given, else the first
    usable frame whose WCS was not itself adapted; never the frame ``exclude`` (a partition key).
    """
    query = (
        select(frame_wcs.c.frame_id)
        .join(frames, frames.c.id == frame_wcs.c.frame_id)
        .where(frames.c.eliminated == 0, frames.c.partition_key != exclude)
        .order_by(frames.c.id)
    )
    if preferred_frame_id is not None:
        query = query.where(frame_wcs.c.frame_id == preferred_frame_id)
    else:
        query = query.where(frame_wcs.c.strategy != "adapt_wcs_from_reference")
    frame_id = connection.execute(query).scalars().first()
    return stored_wcs(connection, frame_id) if frame_id is not None else None


@dataclass(frozen=True)
class FrameFootprint:
    """A solved frame's footprint: 4 corners [[ra, dec], ...] in degrees."""

    frame_id: int
    partition_key: str
    corners: list[list[float]]
    flagged_bad: bool


def solved_footprints(connection: Connection) -> list[FrameFootprint]:
    """Footprints of every frame usable so far or eliminated only as a bad pointing."""
    query = (
        select(footprints.c.frame_id, footprints.c.polygon, frames.c.partition_key, frames.c.comment)
        .join(frames, frames.c.id == footprints.c.frame_id)
        .where((frames.c.eliminated == 0) | (frames.c.comment == BAD_POINTING))
        .order_by(frames.c.id)
    )
    return [
        FrameFootprint(row.frame_id, row.partition_key, json.loads(row.polygon), row.comment == BAD_POINTING)
        for row in connection.execute(query)
    ]


def set_bad_pointings(connection: Connection, bad: Iterable[int], good: Iterable[int]) -> None:
    """Eliminate the ``bad`` frames as bad pointings and restore ``good`` ones flagged earlier."""
    bad, good = list(bad), list(good)
    if bad:
        connection.execute(
            update(frames).where(frames.c.id.in_(bad)).values(eliminated=1, comment=BAD_POINTING)
        )
    if good:
        connection.execute(
            update(frames)
            .where(frames.c.id.in_(good), frames.c.comment == BAD_POINTING)
            .values(eliminated=0, comment=None)
        )


def frames_hash(frame_ids: list[int]) -> int:
    """Positive 63-bit content hash of a set of frame ids (the key of ``combined_footprint``)."""
    digest = hashlib.sha256(",".join(map(str, sorted(frame_ids))).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def store_combined_footprint(
    connection: Connection, frames_key: int, largest: Mapping | None, common: Mapping | None
) -> None:
    """Record the union (``largest``) and intersection (``common``) GeoJSON of a set of frames."""
    row = {
        "hash": frames_key,
        "largest": json.dumps(largest) if largest is not None else None,
        "common": json.dumps(common) if common is not None else None,
    }
    upsert(connection, combined_footprint, [row], key=["hash"])


def latest_combined_footprint(connection: Connection) -> tuple[dict | None, dict | None] | None:
    """(largest, common) GeoJSON of the most recent combined footprint, or None."""
    row = connection.execute(select(combined_footprint).order_by(combined_footprint.c.id.desc())).first()
    if row is None:
        return None
    return (
        json.loads(row.largest) if row.largest else None,
        json.loads(row.common) if row.common else None,
    )
