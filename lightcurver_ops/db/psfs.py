"""Queries on ``PSFs``: one PSF model per frame and reference-star set."""

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Connection, select

from lightcurver_ops.db.schema import psfs
from lightcurver_ops.db.upsert import replace_rows


def replace_psf(connection: Connection, frame_id: int, set_hash: int, row: Mapping[str, Any] | None) -> None:
    """Replace the frame's PSF row for a star set (``row`` holds the other ``PSFs`` columns; None
    only removes it, for a frame whose PSF could not be fitted)."""
    match = {"frame_id": frame_id, "combined_footprint_hash": set_hash}
    replace_rows(connection, psfs, match, [row] if row is not None else [])


def psf_chi2_values(connection: Connection, set_hash: int) -> dict[int, float]:
    """Reduced chi2 of every stored PSF of a star set, by frame id."""
    query = select(psfs.c.frame_id, psfs.c.chi2).where(psfs.c.combined_footprint_hash == set_hash)
    return {row.frame_id: row.chi2 for row in connection.execute(query)}
