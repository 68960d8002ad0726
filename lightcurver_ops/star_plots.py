"""Figure of the frame footprints and the selected reference stars (matplotlib object API, no pyplot)."""

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from lightcurver_ops.catalog import SkyPolygon, tangent_plane_offsets


def plot_footprints_with_stars(
    footprints: Sequence[Any], stars: Table, roi: tuple[float, float], radius_arcsec: float | None, path: Path
) -> Path:
    """Footprint outlines, reference stars circled and named, the ROI and the selection disk.

    Everything is drawn in tangent-plane offsets (arcmin) about the ROI, east to the left and north
    up, so fields across RA 0/360 draw correctly; footprint edges are great circles, straight here.

    Parameters
    ----------
    footprints : sequence
        Frame footprints (vertices in deg), each a SkyPolygon or any form `SkyPolygon.from_footprint`
        accepts (e.g. the 4 ``[ra, dec]`` corners of ``WCS.calc_footprint``).
    stars : astropy.table.Table
        Reference stars with ``name``, ``ra``, ``dec`` (deg), e.g. from `select_stars`.
    roi : tuple of float
        ``(ra, dec)`` of the ROI (deg), the projection centre.
    radius_arcsec : float or None
        Radius of the selection disk (arcsec); None draws no disk (footprint strategies).
    path : Path
        Output file; the format follows the suffix (``.png``, ``.jpg``). Parent folders are created.

    Returns
    -------
    Path
        ``path``.
    """
    missing = [name for name in ("name", "ra", "dec") if name not in stars.colnames]
    if missing:
        raise ValueError(f"stars lack column(s) {', '.join(missing)}")
    if radius_arcsec is not None and not (math.isfinite(radius_arcsec) and radius_arcsec > 0):
        raise ValueError(f"radius_arcsec must be a positive number or None, got {radius_arcsec!r}")
    ra0, dec0 = (float(v) for v in roi)
    path = Path(path)
    figure = Figure(figsize=(8, 8), dpi=100)
    axes = figure.add_subplot()

    outlines = []
    for footprint in footprints:
        vertices = np.array(SkyPolygon.from_footprint(footprint).vertices)
        xi, eta = tangent_plane_offsets(vertices[:, 0], vertices[:, 1], ra0, dec0)
        outlines.append(np.column_stack([np.append(xi, xi[0]), np.append(eta, eta[0])]) * 60.0)
    axes.add_collection(
        LineCollection(
            outlines, colors="tab:blue", linewidths=0.6, alpha=0.5, label=f"{len(outlines)} frame footprints"
        )
    )

    ra, dec = (np.asarray(stars[name], dtype=float) for name in ("ra", "dec"))
    xi, eta = tangent_plane_offsets(ra, dec, ra0, dec0)
    axes.scatter(
        xi * 60.0,
        eta * 60.0,
        s=90,
        facecolors="none",
        edgecolors="tab:red",
        linewidths=1.0,
        label=f"{len(stars)} reference stars",
    )
    for name, x, y in zip(stars["name"], xi * 60.0, eta * 60.0, strict=True):
        axes.annotate(
            str(name), (x, y), xytext=(5, 5), textcoords="offset points", color="tab:red", fontsize=8
        )

    axes.plot([0.0], [0.0], marker="+", color="black", markersize=14, linestyle="none", label="ROI")
    extent = [np.abs(np.concatenate([o.ravel() for o in outlines])).max()] if outlines else []
    if radius_arcsec is not None:
        disk = 60.0 * math.degrees(math.tan(math.radians(radius_arcsec / 3600.0)))  # exact circle here
        axes.add_patch(
            Circle(
                (0.0, 0.0),
                disk,
                fill=False,
                linestyle="--",
                color="black",
                label=f"selection disk {radius_arcsec:g} arcsec",
            )
        )
        extent.append(disk)
    if len(stars):
        extent.append(float(np.nanmax(np.abs(np.concatenate([xi, eta])))) * 60.0)
    half = 1.05 * max(extent, default=1.0)
    axes.set_xlim(half, -half)  # east to the left
    axes.set_ylim(-half, half)
    axes.set_aspect("equal")
    axes.set_xlabel("east offset from the ROI (arcmin)")
    axes.set_ylabel("north offset from the ROI (arcmin)")
    axes.set_title(f"ROI ({ra0:.5f}, {dec0:+.5f}) deg")
    axes.legend(loc="upper right", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, pil_kwargs={"quality": 85} if path.suffix.lower() in (".jpg", ".jpeg") else None)
    return path
