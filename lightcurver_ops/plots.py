"""Diagnostic figures written as image files (matplotlib's object API: no display, no pyplot state)."""

from pathlib import Path

import numpy as np
from astropy.table import Table
from astropy.visualization import AsinhStretch, ImageNormalize, ZScaleInterval
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

MAX_PLOTTED_SOURCES = 2000


def plot_sources(image: np.ndarray, sources: Table, path: Path, title: str = "") -> Path:
    """Sky-subtracted frame (zscale, asinh stretch) with the detected sources circled.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Frame in e-/s.
    sources : astropy.table.Table
        sep sources with ``x``, ``y``, ``a``, ``b``, ``theta`` (pixels, radians), brightest first;
        at most the first 2000 are drawn.
    path : Path
        Output file; the format follows the suffix (``.jpg``, ``.png``). Parent folders are created.
    title : str
        Figure title.
    """
    finite = np.where(np.isfinite(image), image, 0.0)
    norm = ImageNormalize(finite, interval=ZScaleInterval(contrast=0.4), stretch=AsinhStretch())
    ny, nx = image.shape
    figure = Figure(figsize=(8, 8 * ny / nx), dpi=100)
    axes = figure.subplots()
    axes.imshow(finite, origin="lower", cmap="gray", norm=norm, interpolation="nearest")
    for row in sources[:MAX_PLOTTED_SOURCES]:
        size = 6 * max(float(row["a"]), 1.0), 6 * max(float(row["b"]), 1.0)
        ellipse = Ellipse(
            (row["x"], row["y"]), *size, angle=np.degrees(row["theta"]), fill=False, color="red", lw=0.6
        )
        axes.add_patch(ellipse)
    axes.set_title(title or f"{len(sources)} sources")
    axes.set_axis_off()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, bbox_inches="tight", pil_kwargs={"quality": 85} if path.suffix == ".jpg" else None)
    return path
