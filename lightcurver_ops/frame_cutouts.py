"""The cutouts of one frame: every reference star with a full stamp in it, and the ROI.

lightcurver's ``stamp_extraction`` for a single frame. Stars are placed at their positions at the
frame's date (proper motion applied); bad columns and rows are found on the whole frame, then
each stamp gets its noise map and mask (cosmic rays, bad lines, saturation, NaN).
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from lightcurver_ops.catalog import stars_in_frame
from lightcurver_ops.config import LightcurverConfig
from lightcurver_ops.cutouts import Stamp, bad_lines, extract_stamp

ROI_STAMP = "ROI"
"""Name of the ROI stamp in a frame's cutout file (lightcurver's)."""


@dataclass(frozen=True)
class FrameCutouts:
    """Stamps of one frame by name (``ROI`` and Gaia ids) and what was found on the way.

    Attributes
    ----------
    stamps : dict of str to Stamp
    bad_columns, bad_rows : ndarray of int
        Defective lines of the frame (0-based), masked in every stamp when the config says so.
    """

    stamps: dict[str, Stamp]
    bad_columns: np.ndarray
    bad_rows: np.ndarray

    @property
    def star_ids(self) -> list[str]:
        return [name for name in self.stamps if name != ROI_STAMP]


def saturation_above_sky(
    header: fits.Header, gain: float, exptime: float, sky_level: float, sky_rms: float
) -> float | None:
    """The header's ``SATURATE`` (ADU) in e-/s above the sky, or None when the header has none.

    The level is lowered by 5 sky rms: the sky under a star varies across the frame, and clipped
    pixels on a brighter patch sit below the level computed from the mean sky.
    """
    value = header.get("SATURATE")
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return None
    return max(value * gain / exptime - sky_level - 5 * sky_rms, np.finfo(float).tiny)


def make_frame_cutouts(
    config: LightcurverConfig,
    frame: Mapping[str, Any],
    image: np.ndarray,
    header: fits.Header,
    wcs: WCS,
    stars: Sequence[Mapping[str, Any]],
) -> FrameCutouts:
    """Cut the stamps of one calibrated frame.

    Parameters
    ----------
    config : LightcurverConfig
        Stamp sizes, masking switches, cosmic-ray parameters, ROI.
    frame : mapping
        The frame's ``frames`` row (``mjd``, ``exptime``, ``gain``, sky level and rms in e-/s).
    image : ndarray, shape (ny, nx)
        Calibrated, sky-subtracted frame, e-/s.
    header : astropy.io.fits.Header
        Its header (for ``SATURATE``, ADU).
    wcs : astropy.wcs.WCS
        The frame's solved WCS.
    stars : sequence of mappings
        The reference-star set (``stars`` rows: gaia_id, ra, dec, pmra, pmdec, ref_epoch).
    """
    exptime, rms = float(frame["exptime"]), float(frame["background_rms_electron_per_second"])
    sky_level = float(frame["sky_level_electron_per_second"])
    saturation = saturation_above_sky(header, float(frame["gain"]), exptime, sky_level, rms)
    columns, rows = bad_lines(image, rms) if config.mask_bad_rows_and_columns else (np.array([], int),) * 2
    common = {
        "sky_rms": rms,
        "exptime": exptime,
        "saturation": saturation,
        "bad_columns": columns,
        "bad_rows": rows,
        "cosmics": dict(config.cosmics_masking_params) if config.clean_cosmics else None,
    }
    stamps: dict[str, Stamp] = {}
    roi_x, roi_y = wcs.all_world2pix(config.roi_ra_deg, config.roi_dec_deg, 0)
    stamps[ROI_STAMP] = extract_stamp(image, wcs, float(roi_x), float(roi_y), config.stamp_size_ROI, **common)
    if stars:
        table = Table(rows=[dict(star) for star in stars])
        placed = stars_in_frame(table, wcs, image.shape, float(frame["mjd"]), config.stamp_size_stars)
        for star in placed:
            stamps[str(star["gaia_id"])] = extract_stamp(
                image, wcs, float(star["x"]), float(star["y"]), config.stamp_size_stars, **common
            )
    return FrameCutouts(stamps, columns, rows)
