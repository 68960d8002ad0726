"""Queries on the ROI tables: ``roi_models``, ``roi_fluxes`` and ``roi_frame_fits``."""

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, select

from lightcurver_ops.db.schema import frames, roi_fluxes, roi_frame_fits, roi_models
from lightcurver_ops.db.upsert import replace_rows, upsert


def store_roi_model(connection: Connection, set_hash: int, roi_name: str, row: Mapping[str, Any]) -> None:
    """Insert or replace the ROI model of a star set and ROI."""
    upsert(
        connection,
        roi_models,
        [{"combined_footprint_hash": set_hash, "roi_name": roi_name, **row}],
        key=["combined_footprint_hash", "roi_name"],
    )


def roi_model_row(connection: Connection, set_hash: int, roi_name: str) -> dict[str, Any] | None:
    """The ROI model row of a star set and ROI, or None."""
    query = select(roi_models).where(
        roi_models.c.combined_footprint_hash == set_hash, roi_models.c.roi_name == roi_name
    )
    row = connection.execute(query).mappings().first()
    return dict(row) if row is not None else None


def replace_roi_fit(
    connection: Connection,
    frame_id: int,
    set_hash: int,
    roi_name: str,
    fit: Mapping[str, Any] | None,
    fluxes: Sequence[Mapping[str, Any]],
) -> None:
    """Replace a frame's ROI fit (``roi_frame_fits`` columns) and point-source fluxes (rows with
    ``source, flux, flux_uncertainty, fit_flux_uncertainty``); None and [] only remove them."""
    match = {"frame_id": frame_id, "combined_footprint_hash": set_hash, "roi_name": roi_name}
    replace_rows(connection, roi_frame_fits, match, [fit] if fit is not None else [])
    replace_rows(connection, roi_fluxes, match, fluxes)


def roi_photometry(connection: Connection, set_hash: int, roi_name: str) -> list[dict[str, Any]]:
    """Every frame's ROI fit with its fluxes and the frame's metadata, in time order.

    Each item: ``frame_id, partition_key, mjd, seeing_arcseconds, sky_level_electron_per_second,
    reduced_chi2`` and ``fluxes`` ``{source: (flux, flux_uncertainty)}``.
    """
    query = (
        select(
            roi_frame_fits.c.frame_id,
            roi_frame_fits.c.reduced_chi2,
            frames.c.partition_key,
            frames.c.mjd,
            frames.c.seeing_arcseconds,
            frames.c.sky_level_electron_per_second,
        )
        .join(frames, frames.c.id == roi_frame_fits.c.frame_id)
        .where(
            roi_frame_fits.c.combined_footprint_hash == set_hash,
            roi_frame_fits.c.roi_name == roi_name,
            frames.c.eliminated == 0,
        )
        .order_by(frames.c.mjd)
    )
    epochs = {row["frame_id"]: dict(row) | {"fluxes": {}} for row in connection.execute(query).mappings()}
    flux_query = select(roi_fluxes).where(
        roi_fluxes.c.combined_footprint_hash == set_hash, roi_fluxes.c.roi_name == roi_name
    )
    for row in connection.execute(flux_query).mappings():
        if row["frame_id"] in epochs:
            epochs[row["frame_id"]]["fluxes"][row["source"]] = (row["flux"], row["flux_uncertainty"])
    return list(epochs.values())
