"""Plate solving one calibrated frame with the configured strategy, and its geometry.

lightcurver's ``plate_solving`` step for a single frame: the WCS comes from the header
(``already_plate_solved``), from astrometry.net (``plate_solve``), from a solved reference frame
(``adapt_wcs_from_reference``) or from the star catalogue (``alternate_gaia_solve``); then the
footprint, pixel scale, anisotropy, angle to north and whether the ROI is in the frame. A frame
that cannot be solved, is suspiciously distorted or does not contain the ROI is a result: it is
eliminated with the reason, and other frames go on.
"""

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS, FITSFixedWarning

from lightcurver_ops import astrometry
from lightcurver_ops.catalog import propagate
from lightcurver_ops.config import LightcurverConfig
from lightcurver_ops.errors import AstrometryError
from lightcurver_ops.stages import PLATE_SOLUTION, elimination

ALREADY_SOLVED = "already_plate_solved"


@dataclass(frozen=True)
class ReferenceFrame:
    """A solved frame other frames are adapted from: its id, WCS, source positions (N, 2) and fluxes."""

    frame_id: int
    wcs: WCS
    source_xy: np.ndarray
    source_flux: np.ndarray


@dataclass(frozen=True)
class PlateSolution:
    """Outcome of plate solving one frame.

    Attributes
    ----------
    frame_updates : dict
        ``frames`` columns: plate_solved, attempted_plate_solve, pixel_scale (arcsec/pixel),
        angle_to_north (deg), roi_in_footprint, seeing_arcseconds, and the elimination columns.
    wcs : dict or None
        ``frame_wcs`` columns (header string, strategy, reference frame, matches, rms in pixels).
    footprint : list or None
        The 4 corners [[ra, dec], ...] in degrees.
    """

    frame_updates: dict[str, Any]
    wcs: dict[str, Any] | None = None
    footprint: list[list[float]] | None = None

    @property
    def eliminated(self) -> bool:
        return bool(self.frame_updates["eliminated"])


def header_wcs(header: fits.Header) -> WCS | None:
    """The celestial WCS of a header, or None when it has none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        try:
            wcs = WCS(header)
        except (ValueError, KeyError, MemoryError):
            return None
    return wcs.celestial if wcs.has_celestial else None


def source_positions(sources: Table) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) pixel positions (windowed when available) and (N,) fluxes of a source table, brightest
    first; flagged sources (blends, saturation, truncation) are left out."""
    usable = np.asarray(sources["flag"]) == 0 if "flag" in sources.colnames else np.ones(len(sources), bool)
    table = sources[usable]
    x, y = ("xwin", "ywin") if "xwin" in table.colnames else ("x", "y")
    flux = np.asarray(table["flux"], dtype=float)
    order = np.argsort(-flux, kind="stable")
    xy = np.column_stack([np.asarray(table[x], float), np.asarray(table[y], float)])
    return xy[order], flux[order]


def _unsolved(reason: str) -> PlateSolution:
    updates = {"plate_solved": 0, "attempted_plate_solve": 1, "roi_in_footprint": 0}
    updates |= {"pixel_scale": None, "seeing_arcseconds": None, "angle_to_north": 0.0}
    return PlateSolution(updates | elimination(PLATE_SOLUTION, reason))


def _solve(
    config: LightcurverConfig,
    frame: Mapping[str, Any],
    header: fits.Header,
    sources: Table,
    image_shape: tuple[int, int],
    reference: ReferenceFrame | None,
    catalog: Callable[[], Table] | None,
) -> astrometry.WcsSolution:
    """The WCS of the frame by the configured strategy; AstrometryError when it cannot be had."""
    if config.already_plate_solved:
        wcs = header_wcs(header)
        if wcs is None:
            raise AstrometryError("already_plate_solved is set but the header has no celestial WCS")
        return astrometry.WcsSolution(wcs, ALREADY_SOLVED, 0, float("nan"))
    xy, flux = source_positions(sources)
    strategy = config.plate_solving_strategy
    if strategy == "plate_solve":
        return astrometry.solve_with_astrometry_net(
            xy,
            flux,
            image_shape,
            config.roi_ra_deg,
            config.roi_dec_deg,
            config.plate_scale_interval,
        )
    if strategy == "adapt_wcs_from_reference":
        if reference is None:
            raise AstrometryError("no plate-solved reference frame to adapt the WCS from yet")
        return astrometry.adapt_wcs_from_reference(
            reference.wcs, reference.source_xy, xy, reference_flux=reference.source_flux, target_flux=flux
        )
    if catalog is None:
        raise AstrometryError("alternate_gaia_solve needs the star catalogue, none was given")
    stars = catalog()
    ra, dec = propagate(
        stars["ra"], stars["dec"], stars["pmra"], stars["pmdec"], stars["ref_epoch"], frame["mjd"]
    )
    order = np.argsort(np.asarray(stars["phot_g_mean_mag"], float), kind="stable")
    return astrometry.solve_with_catalog(
        xy,
        np.column_stack([np.asarray(ra)[order], np.asarray(dec)[order]]),
        config.roi_ra_deg,
        config.roi_dec_deg,
        float(np.mean(config.plate_scale_interval)),
        image_shape,
        source_flux=flux,
    )


def solve_frame(
    config: LightcurverConfig,
    frame: Mapping[str, Any],
    header: fits.Header,
    sources: Table,
    image_shape: tuple[int, int],
    *,
    reference: ReferenceFrame | None = None,
    catalog: Callable[[], Table] | None = None,
) -> PlateSolution:
    """Plate-solve one calibrated frame and measure its geometry.

    Parameters
    ----------
    config : LightcurverConfig
        Strategy, scale interval, anisotropy limit, ROI.
    frame : mapping
        The frame's ``frames`` row (``id``, ``mjd``, ``seeing_pixels``).
    header : astropy.io.fits.Header
        Header of the calibrated frame (trim-corrected WCS, if any).
    sources : astropy.table.Table
        Its sep sources (``x``, ``y``, ``flux``).
    image_shape : (ny, nx)
        Pixels.
    reference : ReferenceFrame, optional
        For ``adapt_wcs_from_reference``.
    catalog : callable, optional
        Returns the star catalogue around the ROI, for ``alternate_gaia_solve``.
    """
    try:
        solution = _solve(config, frame, header, sources, image_shape, reference, catalog)
    except AstrometryError as exc:
        return _unsolved(f"not plate solved ({config.plate_solving_strategy}): {exc}")
    geometry = astrometry.frame_geometry(solution.wcs, image_shape, config.roi_ra_deg, config.roi_dec_deg)
    reason = None
    if geometry.anisotropy > config.max_pixel_anisotropy:
        reason = f"suspicious_plate_solved: pixel anisotropy {geometry.anisotropy:.3g}"
    elif not geometry.roi_in_footprint:
        reason = f"ROI {config.roi_name} is outside the frame"
    seeing = frame.get("seeing_pixels")
    updates = {
        "plate_solved": 1,
        "attempted_plate_solve": 1,
        "pixel_scale": geometry.pixel_scale,
        "angle_to_north": geometry.angle_to_north,
        "roi_in_footprint": int(geometry.roi_in_footprint),
        "seeing_arcseconds": geometry.pixel_scale * seeing if seeing is not None else None,
    } | elimination(PLATE_SOLUTION, reason)
    wcs_row = {
        "wcs_header": solution.wcs.to_header(relax=True).tostring(),
        "strategy": solution.strategy,
        "reference_frame_id": reference.frame_id if solution.strategy == "adapt_wcs_from_reference" else None,
        "n_matches": solution.n_matches,
        "rms_pixels": solution.rms_pixels if np.isfinite(solution.rms_pixels) else None,
    }
    footprint = [[float(ra), float(dec)] for ra, dec in geometry.footprint]
    return PlateSolution(updates, wcs_row, footprint)
