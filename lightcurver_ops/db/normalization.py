"""Queries on the photometry tables: ``star_flux_in_frame``, ``star_reference_fluxes`` and
``normalization_coefficients``, one star set at a time."""

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select

from lightcurver_ops.db.schema import (
    frames,
    normalization_coefficients,
    star_flux_in_frame,
    star_reference_fluxes,
)
from lightcurver_ops.db.upsert import replace_rows


def replace_star_fluxes(
    connection: Connection, frame_id: int, set_hash: int, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Replace a frame's star fluxes for a set (rows: ``star_gaia_id, flux, flux_uncertainty, chi2,
    relative_loss_differential``); every column is rewritten, so no chi2 is left stale."""
    replace_rows(
        connection, star_flux_in_frame, {"frame_id": frame_id, "combined_footprint_hash": set_hash}, rows
    )


def star_fluxes_of_set(connection: Connection, set_hash: int) -> list[dict[str, Any]]:
    """Every star flux of a set on a frame that is not eliminated, with the frame's MJD."""
    query = (
        select(star_flux_in_frame, frames.c.mjd)
        .join(frames, frames.c.id == star_flux_in_frame.c.frame_id)
        .where(star_flux_in_frame.c.combined_footprint_hash == set_hash, frames.c.eliminated == 0)
        .order_by(frames.c.mjd, star_flux_in_frame.c.star_gaia_id)
    )
    return [dict(row) for row in connection.execute(query).mappings()]


def star_fluxes_of_frame(connection: Connection, frame_id: int, set_hash: int) -> dict[str, dict[str, Any]]:
    """A frame's star fluxes for a set, by Gaia id."""
    query = select(star_flux_in_frame).where(
        star_flux_in_frame.c.frame_id == frame_id, star_flux_in_frame.c.combined_footprint_hash == set_hash
    )
    return {row["star_gaia_id"]: dict(row) for row in connection.execute(query).mappings()}


def flux_chi2_values(connection: Connection, set_hash: int) -> list[float]:
    """Reduced chi2 of every star flux of a set (for ``fluxes_fit_exclude_strategy``)."""
    query = select(star_flux_in_frame.c.chi2).where(star_flux_in_frame.c.combined_footprint_hash == set_hash)
    return list(connection.execute(query).scalars())


def replace_baseline(connection: Connection, set_hash: int, rows: Sequence[Mapping[str, Any]]) -> None:
    """Replace the reference fluxes of a set (the normalisation baseline)."""
    replace_rows(connection, star_reference_fluxes, {"combined_footprint_hash": set_hash}, rows)


def baseline_of_set(connection: Connection, set_hash: int) -> dict[str, dict[str, Any]]:
    """The reference fluxes of a set by Gaia id; empty if no baseline was built."""
    query = select(star_reference_fluxes).where(star_reference_fluxes.c.combined_footprint_hash == set_hash)
    return {row["star_gaia_id"]: dict(row) for row in connection.execute(query).mappings()}


def replace_coefficient(
    connection: Connection, frame_id: int, set_hash: int, row: Mapping[str, Any] | None
) -> None:
    """Replace a frame's coefficient for a set (None only removes it)."""
    match = {"frame_id": frame_id, "combined_footprint_hash": set_hash}
    replace_rows(connection, normalization_coefficients, match, [row] if row is not None else [])


def coefficients_of_set(connection: Connection, set_hash: int) -> list[dict[str, Any]]:
    """Every coefficient of a set with the frame's MJD and partition key, in time order."""
    query = (
        select(normalization_coefficients, frames.c.mjd, frames.c.partition_key)
        .join(frames, frames.c.id == normalization_coefficients.c.frame_id)
        .where(normalization_coefficients.c.combined_footprint_hash == set_hash)
        .order_by(frames.c.mjd)
    )
    return [dict(row) for row in connection.execute(query).mappings()]
