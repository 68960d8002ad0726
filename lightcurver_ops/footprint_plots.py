"""Footprint diagnostic figure (matplotlib's object API: no display, no pyplot state).

Everything is drawn in the gnomonic tangent plane centred on the frames' mean pointing, as offsets
in arcmin towards east and north, so fields across RA = 0/360 look the way they are on the sky.
"""

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import shapely
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import PathPatch
from matplotlib.path import Path as MplPath

from lightcurver_ops.astrometry import mean_pointing, tangent_plane_offsets

_ARCMIN_PER_DEG = 60.0


def _offsets_arcmin(radec: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """(N, 2) east/north tangent-plane offsets (arcmin) of (N, 2) (RA, Dec) deg."""
    xi, eta = tangent_plane_offsets(radec[:, 0], radec[:, 1], *centre)
    return np.column_stack([xi, eta]) * _ARCMIN_PER_DEG


def _patch(geometry: shapely.Geometry, centre: tuple[float, float], **style: object) -> PathPatch:
    """A patch of a (Multi)Polygon in (RA, Dec) deg, holes included, in tangent-plane arcmin."""
    rings = []
    for polygon in shapely.get_parts(geometry):
        rings.append(np.asarray(polygon.exterior.coords))
        rings.extend(np.asarray(interior.coords) for interior in polygon.interiors)
    paths = [MplPath(_offsets_arcmin(ring, centre), closed=True) for ring in rings]
    return PathPatch(MplPath.make_compound_path(*paths), **style)


def plot_footprints(
    footprints: Sequence[np.ndarray],
    union: shapely.Geometry,
    intersection: shapely.Geometry | None,
    path: Path,
    roi: tuple[float, float] | None = None,
    bad: np.ndarray | None = None,
) -> Path:
    """Frame footprints, their union and intersection, and the ROI.

    Parameters
    ----------
    footprints : sequence of ndarray, shape (K, 2)
        Corners (RA, Dec) in deg of each frame, outlined (frames flagged in ``bad`` in red, dashed).
    union : shapely Polygon or MultiPolygon
        Union in (RA, Dec) deg (``CombinedFootprint.union``), filled light blue.
    intersection : shapely Polygon or None
        Intersection in (RA, Dec) deg, filled green; None draws nothing.
    path : Path
        Output image; the format follows the suffix (``.png``, ``.jpg``). Parent folders are created.
    roi : tuple of float, optional
        (RA, Dec) of the ROI in deg, marked with a cross.
    bad : ndarray of bool, shape (N,), optional
        Frames with a bad pointing (from :func:`~lightcurver_ops.astrometry.bad_pointings`).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        If the footprints are malformed or ``bad`` does not have one entry per footprint.
    """
    centre = mean_pointing(footprints)
    flags = np.zeros(len(footprints), dtype=bool) if bad is None else np.asarray(bad, dtype=bool)
    if flags.shape != (len(footprints),):
        raise ValueError(f"bad must have shape ({len(footprints)},), got {flags.shape}")

    figure = Figure(figsize=(7, 7), dpi=100)
    axes = figure.add_subplot()
    axes.add_patch(
        _patch(
            union, centre, facecolor=to_rgba("tab:blue", 0.15), edgecolor="tab:blue", lw=1.2, label="union"
        )
    )
    if intersection is not None:
        axes.add_patch(
            _patch(
                intersection,
                centre,
                facecolor=to_rgba("tab:green", 0.4),
                edgecolor="tab:green",
                lw=1.2,
                label="intersection",
            )
        )
    for footprint, flagged in zip(footprints, flags, strict=True):
        corners = _offsets_arcmin(np.asarray(footprint, dtype=float), centre)
        closed = np.vstack([corners, corners[:1]])
        style = {"color": "tab:red", "ls": "--", "lw": 1.0} if flagged else {"color": "0.3", "lw": 0.4}
        axes.plot(closed[:, 0], closed[:, 1], **style)
    if flags.any():
        axes.plot([], [], color="tab:red", ls="--", lw=1.0, label=f"bad pointing ({int(flags.sum())})")
    if roi is not None:
        marker = _offsets_arcmin(np.array([roi], dtype=float), centre)
        axes.plot(marker[:, 0], marker[:, 1], "x", color="black", ms=10, mew=2, label="ROI")

    axes.set_aspect("equal")
    axes.autoscale_view()
    axes.invert_xaxis()  # east to the left, as on the sky
    axes.set_xlabel("offset towards east, ΔRA cos Dec (arcmin)")
    axes.set_ylabel("offset towards north, ΔDec (arcmin)")
    axes.set_title(f"{len(footprints)} footprints around RA {centre[0]:.4f}°, Dec {centre[1]:+.4f}°")
    axes.legend(loc="best", fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, pil_kwargs={"quality": 85} if path.suffix == ".jpg" else None)
    return path
