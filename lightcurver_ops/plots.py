"""Diagnostic figures written as image files (matplotlib's object API: no display, no pyplot state)."""

from pathlib import Path

import numpy as np
from astropy.table import Table
from astropy.visualization import AsinhStretch, ImageNormalize, ZScaleInterval
from matplotlib.collections import EllipseCollection
from matplotlib.figure import Figure

MAX_PLOTTED_SOURCES = 2000
MAX_DISPLAY_PIXELS = 800
"""Frames are block-averaged to at most this many pixels on a side before drawing (the figure is
800 pixels wide): drawing a full 2k frame cost more than the whole calibration."""


def _binned(image: np.ndarray, max_pixels: int) -> np.ndarray:
    """Block average of ``image`` by the smallest integer factor giving <= ``max_pixels`` per side."""
    factor = -(-max(image.shape) // max_pixels)
    if factor <= 1:
        return image
    ny, nx = (size // factor * factor for size in image.shape)
    return image[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor).mean(axis=(1, 3))


def plot_sources(image: np.ndarray, sources: Table, path: Path, title: str = "") -> Path:
    """Sky-subtracted frame (zscale, asinh stretch) with the detected sources circled.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Frame in e-/s; block-averaged for display when larger than 800 pixels.
    sources : astropy.table.Table
        sep sources with ``x``, ``y``, ``a``, ``b``, ``theta`` (pixels, radians), brightest first;
        at most the first 2000 are drawn.
    path : Path
        Output file; the format follows the suffix (``.jpg``, ``.png``). Parent folders are created.
    title : str
        Figure title.
    """
    ny, nx = image.shape
    shown = _binned(np.where(np.isfinite(image), image, 0.0), MAX_DISPLAY_PIXELS)
    norm = ImageNormalize(shown, interval=ZScaleInterval(contrast=0.4), stretch=AsinhStretch())
    figure = Figure(figsize=(8, 8 * ny / nx), dpi=100)
    axes = figure.add_axes((0.0, 0.0, 1.0, 0.95))
    extent = (-0.5, nx - 0.5, -0.5, ny - 0.5)
    axes.imshow(shown, origin="lower", cmap="gray", norm=norm, interpolation="nearest", extent=extent)
    shown_sources = sources[:MAX_PLOTTED_SOURCES]
    # One collection, not a patch per source: 500 patches cost more than the rest of the figure.
    ellipses = EllipseCollection(
        widths=6 * np.maximum(np.asarray(shown_sources["a"], dtype=float), 1.0),
        heights=6 * np.maximum(np.asarray(shown_sources["b"], dtype=float), 1.0),
        angles=np.degrees(np.asarray(shown_sources["theta"], dtype=float)),
        units="xy",
        offsets=np.column_stack([shown_sources["x"], shown_sources["y"]]),
        offset_transform=axes.transData,
        facecolors="none",
        edgecolors="red",
        linewidths=0.6,
    )
    axes.add_collection(ellipses, autolim=False)
    axes.set_title(title or f"{len(sources)} sources")
    axes.set_axis_off()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, pil_kwargs={"quality": 85} if path.suffix == ".jpg" else None)
    return path
