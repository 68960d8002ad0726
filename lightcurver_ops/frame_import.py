"""Importing one raw frame: read, convert to e-/s, subtract the sky, find sources, measure seeing.

This is lightcurver's ``read_convert_skysub_character_catalog`` for a single frame, returning the
``frames`` row to store. A frame that cannot be used (unreadable file, header the parser rejects,
no sources) is a result, not an exception: its row says ``eliminated = 1`` with the reason in
``comment``, and the files of any earlier import of it are removed.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightcurver_ops import frames, paths
from lightcurver_ops.config import LightcurverConfig
from lightcurver_ops.ephemeris import ephemeris
from lightcurver_ops.errors import FrameError
from lightcurver_ops.files import file_sha256
from lightcurver_ops.header import HeaderParser, parse_frame_header
from lightcurver_ops.plots import plot_sources
from lightcurver_ops.stages import CALIBRATION, elimination

FRAME_COLUMNS_RESET = (
    "mjd",
    "exptime",
    "gain",
    "filter",
    "image_relpath",
    "sources_relpath",
    "airmass",
    "degrees_to_moon",
    "moon_phase",
    "sun_altitude",
    "seeing_pixels",
    "seeing_arcseconds",
    "sky_level_electron_per_second",
    "background_rms_electron_per_second",
    "ellipticity",
    "n_sources",
    "azimuth",
    "altitude",
    "comment",
    "eliminated_stage",
)
"""Columns an import (re)writes: a re-import never leaves values of an earlier one behind."""


@dataclass(frozen=True)
class FrameImport:
    """Outcome of importing one frame.

    Attributes
    ----------
    row : dict
        Values of the ``frames`` columns to upsert (keyed by ``partition_key``).
    plot_path : Path or None
        The source-extraction plot, when the config asks for it.
    eliminated : bool
        True when the frame cannot be used; ``row['comment']`` says why.
    """

    row: dict[str, Any]
    plot_path: Path | None = None

    @property
    def eliminated(self) -> bool:
        return bool(self.row["eliminated"])


def _base_row(
    config: LightcurverConfig, partition_key: str, raw_path: Path, sha256: str | None
) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(FRAME_COLUMNS_RESET)
    row |= {
        "partition_key": partition_key,
        "original_image_path": str(raw_path),
        "raw_sha256": sha256,
    } | elimination(CALIBRATION, None)
    telescope = config.telescope
    row |= {
        "telescope_name": telescope.name if telescope else None,
        "telescope_imager_name": telescope.imager_name if telescope else None,
        "telescope_latitude": telescope.latitude if telescope else None,
        "telescope_longitude": telescope.longitude if telescope else None,
        "telescope_elevation": telescope.elevation if telescope else None,
    }
    return row


def _remove_products(workdir: Path, partition_key: str) -> None:
    for relpath in (
        paths.calibrated_frame_relpath(partition_key),
        paths.sources_relpath(partition_key),
        paths.source_plot_relpath(partition_key),
    ):
        (workdir / relpath).unlink(missing_ok=True)


def eliminated_frame(
    config: LightcurverConfig, partition_key: str, raw_path: Path, sha256: str | None, reason: str
) -> FrameImport:
    """The outcome for a frame that cannot be used; removes files of an earlier import."""
    _remove_products(config.workdir, partition_key)
    row = _base_row(config, partition_key, raw_path, sha256) | elimination(CALIBRATION, reason)
    return FrameImport(row)


def import_frame(
    config: LightcurverConfig, parser: HeaderParser, partition_key: str, raw_path: Path, sha256: str
) -> FrameImport:
    """Calibrate one raw frame, write ``frames/<key>.fits`` and its sources, return its row.

    Parameters
    ----------
    config : LightcurverConfig
        Import settings (HDUs, trims, background boxes, extraction thresholds, telescope, ROI).
    parser : callable
        The user's ``parse_header``.
    partition_key : str
        The frame's partition key; names its products.
    raw_path : Path
        The raw FITS file (ADU); never modified.
    sha256 : str
        Content hash of the raw file.
    """
    try:
        raw = frames.read_raw_frame(
            raw_path,
            hdu_data_index=config.hdu_data_index,
            hdu_header_indexes=tuple(config.hdu_header_indexes),
            trim_vertical=config.trim_vertical,
            trim_horizontal=config.trim_horizontal,
        )
        info = parse_frame_header(parser, raw.header, raw_path)
        saturation = raw.header.get("SATURATE")
        calibrated = frames.calibrate_frame(
            raw,
            info.gain,
            info.exptime,
            n_boxes=config.background_estimation_n_boxes,
            mask_sources=config.mask_sources_before_background,
            background_model=config.background_model,
            polynomial_degree=config.background_polynomial_degree,
            subtract_background=config.do_background_subtraction,
            threshold=config.source_extraction_threshold,
            min_area=config.source_extraction_min_area,
            saturation_adu=float(saturation) if isinstance(saturation, int | float) else None,
        )
    except FrameError as exc:
        return eliminated_frame(config, partition_key, raw_path, sha256, exc.reason)

    workdir = config.require_workdir()
    image_relpath = paths.calibrated_frame_relpath(partition_key)
    sources_relpath = paths.sources_relpath(partition_key)
    frames.write_calibrated_frame(calibrated, workdir / image_relpath, workdir / sources_relpath)

    row = _base_row(config, partition_key, raw_path, sha256)
    row |= {
        "mjd": info.mjd,
        "exptime": info.exptime,
        "gain": info.gain,
        "filter": info.filter,
        "image_relpath": image_relpath,
        "sources_relpath": sources_relpath,
        "seeing_pixels": _finite_or_none(calibrated.seeing_pixels),
        "ellipticity": _finite_or_none(calibrated.ellipticity),
        "sky_level_electron_per_second": float(calibrated.sky_level),
        "background_rms_electron_per_second": float(calibrated.sky_rms),
        "n_sources": int(calibrated.n_sources),
    }
    if config.telescope is not None:
        site = config.telescope
        conditions = ephemeris(
            info.mjd, config.roi_ra_deg, config.roi_dec_deg, site.latitude, site.longitude, site.elevation
        )
        row |= {
            "airmass": conditions.airmass,
            "altitude": conditions.altitude,
            "azimuth": conditions.azimuth,
            "degrees_to_moon": conditions.degrees_to_moon,
            "moon_phase": conditions.moon_phase,
            "sun_altitude": conditions.sun_altitude,
        }
    if row["seeing_pixels"] is None:
        row |= elimination(CALIBRATION, "no stars found to measure the seeing")
    plot_path = None
    if config.source_extraction_do_plots:
        title = f"{partition_key}: {calibrated.n_sources} sources, seeing {calibrated.seeing_pixels:.2f} px"
        plot_path = plot_sources(
            calibrated.image, calibrated.sources, workdir / paths.source_plot_relpath(partition_key), title
        )
    return FrameImport(row, plot_path)


def import_raw_file(
    config: LightcurverConfig,
    parser: HeaderParser,
    partition_key: str,
    raw_path: Path,
    find_duplicate: Callable[[str], str | None],
) -> FrameImport:
    """Import a registered raw file unless it is missing or a byte-identical copy of another frame.

    Parameters
    ----------
    find_duplicate : callable
        Given the file's SHA-256, the partition key of another usable frame with the same content,
        or None.
    """
    if not raw_path.is_file():
        return eliminated_frame(config, partition_key, raw_path, None, f"raw file {raw_path} is missing")
    sha256 = file_sha256(raw_path)
    duplicate = find_duplicate(sha256)
    if duplicate is not None:
        reason = f"same content as frame {duplicate}: not imported twice"
        return eliminated_frame(config, partition_key, raw_path, sha256, reason)
    return import_frame(config, parser, partition_key, raw_path, sha256)


def _finite_or_none(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None
